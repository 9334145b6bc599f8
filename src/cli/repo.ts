/** `ferry repo init`: ferry's tables and capture triggers, idempotent. */
import { Command } from "commander";
import { ConfigError } from "../errors.js";
import { openRepository, REPOSITORY_URL_FORMS } from "../storage/repository/index.js";
import { command, configFrom, printJson, type OptionSpec } from "./common.js";

export function repoCommand(): Command {
  const repo = new Command("repo").description("manage a repository");
  const options: OptionSpec[] = [
    ["--repo <url>", `the repository, ${REPOSITORY_URL_FORMS}`],
    ["--json", "print the result as JSON"],
  ];
  const init = command("init", "create ferry's tables and capture triggers on every user table (idempotent)", options, async (opts) => {
    const config = configFrom(opts);
    if (!config.node.repo) throw new ConfigError("node.repo", `required (give --repo ${REPOSITORY_URL_FORMS})`);
    const r = await openRepository(config.node.repo, { password: config.node.repoPassword });
    try {
      await r.init();
      await r.installCapture();
      const fp = await r.fingerprint();
      if (opts.json) printJson({ repo: r.location.id, kind: r.kind, fingerprint: fp });
      else process.stdout.write(`initialised ${r.location.url} (schema fingerprint ${fp})\n`);
    } finally {
      await r.close();
    }
  });
  return repo.addCommand(init);
}
