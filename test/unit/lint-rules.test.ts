/**
 * The lint rules themselves (npm run lint): deliberately bad files written into src/, where the
 * rules apply, are reported with the rule each one breaks, and a clean file passes. The probe
 * files are removed whatever happens.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ESLint } from "eslint";

const ROOT = resolve(new URL("../..", import.meta.url).pathname);
const DEPCRUISE = join(ROOT, "node_modules/dependency-cruiser/bin/dependency-cruise.mjs");
const tag = `__probe_lint_${randomBytes(4).toString("hex")}`;

/** Writes the files (path in the repository → source), runs fn on their paths, removes them. */
async function withProbes<T>(files: Record<string, string>, fn: (paths: string[]) => Promise<T> | T): Promise<T> {
  const paths = Object.keys(files);
  try {
    for (const p of paths) writeFileSync(join(ROOT, p), files[p]);
    return await fn(paths);
  } finally {
    for (const p of paths) rmSync(join(ROOT, p), { force: true });
  }
}

interface Cruise {
  code: number | null;
  /** Rule names by the file that breaks them. */
  broken: Map<string, string[]>;
}

/**
 * dependency-cruiser as npm run lint runs it, on just these files (and what they import). Its
 * report has a line "error RULE: FROM → TO" per violation; it exits with their count.
 */
function cruise(paths: string[]): Cruise {
  const r = spawnSync(process.execPath, [DEPCRUISE, "--config", ".dependency-cruiser.mjs", ...paths], { cwd: ROOT, encoding: "utf8" });
  const broken = new Map<string, string[]>();
  for (const [, rule, from] of r.stdout.matchAll(/^\s*error (\S+): (\S+) →/gm)) broken.set(from, [...(broken.get(from) ?? []), rule]);
  return { code: r.status, broken };
}

const machine = `src/machines/${tag}.ts`;
const machineType = `src/machines/${tag}_type.ts`;
const storageNats = `src/storage/${tag}.ts`;
const storageActors = `src/storage/${tag}_actors.ts`;
const natsStorage = `src/nats/${tag}.ts`;
const dashboardCli = `src/dashboard/${tag}.ts`;
const cycleA = `src/${tag}_a.ts`;
const cycleB = `src/${tag}_b.ts`;

test("every forbidden import is reported with the rule it breaks", () =>
  withProbes(
    {
      [machine]: `import { readFileSync } from "node:fs";\nexport const read = readFileSync;\n`,
      // A type written as import("…") is an import too.
      [machineType]: `export type Stats = import("node:fs").Stats;\n`,
      [storageNats]: `import type { NatsConnection } from "@nats-io/transport-node";\nexport type Conn = NatsConnection;\n`,
      [storageActors]: `import type { Runtime } from "../actors/runtime.js";\nexport type R = Runtime;\n`,
      [natsStorage]: `import type { Spool } from "../storage/spool.js";\nexport type S = Spool;\n`,
      [dashboardCli]: `import { printJson } from "../cli/common.js";\nexport const print = printJson;\n`,
      // One side imports only a type: still a cycle.
      [cycleA]: `import { b } from "./${tag}_b.js";\nexport interface A { n: number }\nexport const a = () => b;\n`,
      [cycleB]: `import type { A } from "./${tag}_a.js";\nexport const b = (x: A) => x.n;\n`,
    },
    (paths) => {
      const r = cruise(paths);
      const expect: Record<string, string> = {
        [machine]: "machines-import-xstate-only",
        [machineType]: "machines-import-xstate-only",
        [storageNats]: "storage-below-nats",
        [storageActors]: "storage-below-nats",
        [natsStorage]: "nats-is-the-protocol",
        [dashboardCli]: "only-cli-imports-cli",
      };
      for (const [file, rule] of Object.entries(expect)) assert.equal(r.broken.get(file), [rule], file);
      // A cycle is reported once, from one of its files.
      const cycle = [cycleA, cycleB].filter((f) => r.broken.has(f));
      assert.is(cycle.length, 1, "the cycle is reported");
      assert.equal(r.broken.get(cycle[0]), ["no-cycle"]);
      // Nothing in the files they import was reported: the probes were the only offenders.
      assert.equal([...r.broken.keys()].sort(), [...Object.keys(expect), cycle[0]].sort());
      assert.is(r.code, 7, "dependency-cruiser fails, counting every violation");
    },
  ));

test("a machine that imports xstate and a sibling passes both linters", () =>
  withProbes(
    {
      [machine]: [
        `import { setup } from "xstate";`,
        `import type { LeaseValue } from "./lease.js";`,
        ``,
        `export const probeMachine = setup({ types: {} as { context: { lease: LeaseValue | null } } }).createMachine({`,
        `  context: { lease: null },`,
        `});`,
        ``,
      ].join("\n"),
    },
    async (paths) => {
      const r = cruise(paths);
      assert.equal([...r.broken.entries()], []);
      assert.is(r.code, 0);
      const [result] = await new ESLint({ cwd: ROOT }).lintFiles(paths);
      assert.equal(result.messages, []);
    },
  ));

test("ESLint checks src/ with typescript-eslint's rules", () =>
  withProbes({ [machine]: `const unused = 1;\nexport const used = (x: any) => x;\n` }, async (paths) => {
    const [result] = await new ESLint({ cwd: ROOT }).lintFiles(paths);
    assert.equal(result.messages.map((m) => m.ruleId).sort(), ["@typescript-eslint/no-explicit-any", "@typescript-eslint/no-unused-vars"]);
  }));

test("subjects and buckets are named in src/nats only", () =>
  withProbes(
    {
      [machine]: [
        `declare const nc: { subscribe(s: string): void; publish(s: string): void };`,
        `declare const root: string;`,
        `declare const cluster: string;`,
        `nc.subscribe(\`\${root}.hb.>\`);`,
        `nc.publish("ferry.c.alert");`,
        `export const bucket = \`ferry_\${cluster}_leases\`;`,
        `export const metric = "ferry_epoch";`,
        ``,
      ].join("\n"),
    },
    async (paths) => {
      const [result] = await new ESLint({ cwd: ROOT }).lintFiles(paths);
      assert.equal(
        result.messages.map((m) => [m.line, m.ruleId]),
        [
          [4, "no-restricted-syntax"],
          [5, "no-restricted-syntax"],
          [6, "no-restricted-syntax"],
        ],
        "a metric name that starts with ferry_ is not a bucket",
      );
    },
  ));

test.run();
