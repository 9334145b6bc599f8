/** ferry's command line. */
import { Command, CommanderError } from "commander";
import { compareCommand, repairCommand } from "./compare.js";
import { dashboardCommand } from "./dashboard.js";
import { demoCommand } from "./demo.js";
import { failoverCommand, switchoverCommand } from "./failover.js";
import { inspectCommand } from "./inspect.js";
import { repoCommand } from "./repo.js";
import { resyncCommand } from "./resync.js";
import { sqlCommand } from "./sql.js";
import { startCommand } from "./start.js";
import { statusCommand } from "./status.js";
import { normaliseArgv, taskCommand, toolStatusCommand } from "./task.js";
import { upCommand } from "./up.js";

/** Usage errors print one line, "ferry: <cause>", then a hint, and exit 2. */
const outputs = {
  outputError: (str: string, write: (s: string) => void) => write(`ferry: ${str.replace(/^error: /, "")}`),
};
const configure = (c: Command): Command => {
  c.exitOverride().configureOutput(outputs).showHelpAfterError("hint: add --help for usage");
  c.commands.forEach(configure);
  return c;
};

const program = new Command("ferry")
  .description("keeps SQL repositories in sync over NATS and fails over without losing data")
  .version("0.1.0");
for (const c of [startCommand(), upCommand(), repoCommand(), sqlCommand(), statusCommand(), resyncCommand(), compareCommand(), repairCommand(), failoverCommand(), switchoverCommand(), taskCommand(), toolStatusCommand(), inspectCommand(), dashboardCommand(), demoCommand()]) {
  program.addCommand(c);
}
configure(program);

try {
  await program.parseAsync(normaliseArgv(process.argv));
} catch (err) {
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode === 0 ? 0 : 2;
  } else throw err;
}
// A command is over when its action is (a node's `start` only once it has stopped): whatever it
// left behind must not keep the process alive (a watch's timer did, see MasterFollower.close).
// A second lets asynchronous log writes finish; FERRY_DEBUG=1 names what was still running.
setTimeout(() => {
  if (process.env.FERRY_DEBUG) process.stderr.write(`ferry: still running after the command ended: ${process.getActiveResourcesInfo().join(", ")}\n`);
  process.exit();
}, 1000).unref();
