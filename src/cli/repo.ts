/** `ferry repo init`: ferry's tables and capture triggers, idempotent. */
import { Command } from "commander";
import { ConfigError } from "../errors.js";
import { SqliteRepository } from "../storage/sqlite.js";
import { addGlobalOptions, action, allOpts, configFrom, printJson } from "./common.js";

export function repoCommand(): Command {
  const repo = new Command("repo").description("manage a repository");
  const init = new Command("init")
    .description("create ferry's tables and capture triggers on every user table (idempotent)")
    .option("--repo <url>", "the repository, sqlite:PATH")
    .option("--json", "print the result as JSON");
  addGlobalOptions(init);
  init.action(
    action(async () => {
      const opts = allOpts(init);
      const config = configFrom(opts);
      if (!config.node.repo) throw new ConfigError("node.repo", "required (give --repo sqlite:PATH)");
      const r = new SqliteRepository(config.node.repo);
      try {
        r.init();
        r.installCapture();
        const fp = r.fingerprint();
        if (opts.json) printJson({ repo: r.path, fingerprint: fp });
        else process.stdout.write(`initialised ${r.path} (schema fingerprint ${fp})\n`);
      } finally {
        r.close();
      }
    }),
  );
  return repo.addCommand(init);
}
