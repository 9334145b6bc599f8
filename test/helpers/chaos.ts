/**
 * The chaos suite's short profile as uvu tests: each entry of SHORT_PROFILE is one run (a 3-server
 * NATS cluster, eight ferry processes, a workload, the scenario's faults, the invariant checker),
 * and every invariant must PASS. Reports go to chaos-results/ as with `npm run chaos`. With
 * `repo: "postgres"` every node gets a PostgreSQL server of its own (npm run chaos -- --repo postgres).
 */
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Test } from "uvu";
import * as assert from "uvu/assert";
import { runChaos, summarize } from "../../scripts/chaos/run.js";
import { SHORT_PROFILE, scenario } from "../../scripts/chaos/scenarios.js";
import type { RepositoryKind } from "../../src/storage/repository/types.js";
import { cleanup } from "./procs.js";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

export function chaosTests(test: Test, entries: typeof SHORT_PROFILE, opts: { repo?: RepositoryKind } = {}): void {
  const repo = opts.repo ?? "sqlite";
  test.after.each(cleanup);
  for (const p of entries) {
    test(`chaos ${p.scenario} seed ${p.seed} on ${repo} (${p.durationS} s of faults): every invariant PASSes`, async () => {
      const r = await runChaos({
        scenario: scenario(p.scenario),
        seed: p.seed,
        durationMs: p.durationS * 1000,
        repo,
        outDir: join(ROOT, "chaos-results"),
        log: (line) => process.stdout.write(`${line}\n`),
      });
      process.stdout.write(`${summarize(r)}\n`);
      assert.is(r.error, undefined, "the run completed");
      for (const i of r.invariants) assert.ok(i.ok, `FAIL ${i.title}: ${i.evidence.join(" | ")}`);
      const injected = r.faults.filter((f) => f.kind !== "sync-task" && !f.skipped);
      assert.ok(injected.length >= 2, `faults were injected (${injected.length})`);
      // Enough to show the workload ran through the faults; a loaded 2-core machine runs fewer.
      assert.ok(r.figures.writes.ok >= 50, `the workload ran (${r.figures.writes.ok} acknowledged writes)`);
      assert.is(r.figures.ackedLost, 0, "no acknowledged write lost");
    });
  }
}
