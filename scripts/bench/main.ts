/**
 * `npm run bench -- NAME [NAME...] [--all] [options]`: runs scripts/bench/NAME.ts, whose
 * `run(argv)` prints a table and resolves with its figures, and writes those figures to
 * bench/results/NAME-<ISO timestamp>.json. `--all` runs every benchmark that exists.
 * Options after the names are passed to each benchmark (e.g. `--profile`, `--repo postgres`).
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./common.js";

const KNOWN = ["replication", "failover", "sync", "parquet-libs", "compare", "parts"];
/** Options followed by a value. */
const VALUE_OPTIONS = ["--repo", "--runs", "--rows", "--format"];

interface Bench {
  run(argv?: string[]): Promise<object>;
}

async function main(argv: string[]): Promise<number> {
  const all = argv.includes("--all");
  // Options that take a value (`--repo postgres`): the value is not a benchmark's name.
  const values = new Set(argv.flatMap((a, i) => (VALUE_OPTIONS.includes(a) ? [i + 1] : [])));
  const words = argv.filter((a, i) => !a.startsWith("-") && !values.has(i));
  const names = all ? KNOWN.filter((n) => existsSync(join(ROOT, "scripts", "bench", `${n}.ts`))) : words.filter((a) => KNOWN.includes(a));
  const unknown = words.filter((a) => !KNOWN.includes(a) && !/^\d+$/.test(a));
  const repoAt = argv.indexOf("--repo");
  const repo = argv.find((a) => a.startsWith("--repo="))?.slice(7) ?? (repoAt >= 0 ? argv[repoAt + 1] : undefined);
  if (unknown.length || names.length === 0) {
    process.stderr.write(
      `${unknown.length ? `unknown benchmark: ${unknown.join(", ")}\n` : ""}usage: npm run bench -- ${KNOWN.join("|")} [...] | --all [--profile] [--quick] [--repo sqlite|postgres]\n`,
    );
    return 2;
  }
  const outDir = join(ROOT, "bench", "results");
  mkdirSync(outDir, { recursive: true });
  let failed = 0;
  for (const name of names) {
    const file = join(ROOT, "scripts", "bench", `${name}.ts`);
    if (!existsSync(file)) {
      process.stderr.write(`bench ${name}: scripts/bench/${name}.ts does not exist yet\n`);
      failed++;
      continue;
    }
    const startedAt = new Date();
    try {
      const mod = (await import(file)) as Bench;
      const figures = await mod.run(argv);
      const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
      // Figures of another repository kind than SQLite get a file name of their own.
      const out = join(outDir, `${name}${repo && repo !== "sqlite" ? `-${repo}` : ""}-${stamp}.json`);
      const body = { bench: name, startedAt: startedAt.toISOString(), durationS: (Date.now() - startedAt.getTime()) / 1000, ...figures };
      writeFileSync(out, JSON.stringify(body, null, 2) + "\n");
      process.stdout.write(`\n${name}: figures written to ${out}\n`);
    } catch (err) {
      failed++;
      process.stderr.write(`bench ${name} failed: ${(err as Error)?.stack ?? err}\n`);
    }
  }
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
