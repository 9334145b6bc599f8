#!/usr/bin/env node
// Runs every test file in its own process (uvu), with a deadline per file, and ends with one
// line CI understands: "N passed, N failed" (test cases). Usage: run-tests.mjs [path filter...]
// Files run FERRY_TEST_JOBS at a time (2 by default; their output is shown as each ends), except
// those whose assertions time faults, leases or alerts: each of those runs alone.
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const filters = process.argv.slice(2);
const perFileMs = Number(process.env.FERRY_TEST_FILE_TIMEOUT_MS ?? 300_000);
const jobs = Math.max(1, Number(process.env.FERRY_TEST_JOBS ?? 2));
/** Files that time what they check (failover, chaos, fault injection, alert deadlines, holds): never beside another. */
const SOLO = ["chaos-short", "failover", "faults", "verify", "compare.test", "backlog", "outage", "rejoin", "repromote", "client-library", "demo"];
const solo = (file) => file.includes("/integration/") && SOLO.some((s) => file.includes(s));
const rank = (file) => (file.includes("/unit/") ? 0 : solo(file) ? 2 : 1);

function walk(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return n === "helpers" ? [] : walk(p);
    return /\.test\.ts$/.test(n) ? [p] : [];
  });
}
const files = walk(join(root, "test"))
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  // Unit tests first, then the integration files that may run beside another, then those that run alone.
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

let passed = 0;
let failed = 0;
const failedFiles = [];

// The type check of src, tests and scripts counts as one case (tests run through tsx, which does not
// check types). It runs beside the unit tests, on the other core, and is done before any integration
// test starts processes whose timing it could disturb.
let typecheck = null;
if (filters.length === 0) {
  const started = Date.now();
  typecheck = run(null, false).then((r) => ({ ...r, ms: Date.now() - started }));
}
/** Waits for the type check and reports it between two files' outputs, not inside one. */
async function reportTypecheck() {
  if (!typecheck) return;
  const { code, out, ms } = await typecheck;
  typecheck = null;
  if (code === 0) passed++;
  else {
    failed++;
    failedFiles.push("typecheck (tsc -p tsconfig.check.json)");
    process.stdout.write(out);
  }
  process.stdout.write(`${code === 0 ? "ok  " : "FAIL"} typecheck (${(ms / 1000).toFixed(1)} s)\n`);
}

const running = new Set();
for (const file of files) {
  const alone = solo(file) || jobs === 1;
  while (running.size > 0 && (alone || running.size >= jobs)) await Promise.race(running);
  if (!file.includes("/unit/")) await reportTypecheck();
  const job = runFile(file, alone).finally(() => running.delete(job));
  running.add(job);
  if (alone) await job;
}
await Promise.all(running);
await reportTypecheck();
if (failedFiles.length) process.stdout.write(`failed files:\n${failedFiles.map((f) => `  ${f}`).join("\n")}\n`);
process.stdout.write(`${passed} passed, ${failed} failed\n`);
process.exit(failed > 0 ? 1 : 0);

/** Runs one file and counts its cases; a file run beside others shows its output when it ends. */
async function runFile(file, alone) {
  const started = Date.now();
  const { code, out, timedOut, lingered } = await run(file, alone);
  if (!alone) process.stdout.write(out);
  const total = Number(/Total:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const ok = Number(/Passed:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const skipped = Number(/Skipped:\s+(\d+)/.exec(out)?.[1] ?? 0);
  // uvu's Total counts the tests that ran: skipped ones are not in it.
  let bad = Math.max(0, total - ok);
  // A file that crashed or hung before its summary counts as one failed case.
  // So does one that printed its summary but did not exit (it left something running).
  if ((code !== 0 || timedOut || lingered) && bad === 0) bad = 1;
  passed += ok;
  failed += bad;
  if (bad > 0) failedFiles.push(file);
  process.stdout.write(`${bad > 0 ? "FAIL" : "ok  "} ${file} (${ok}/${total}${skipped ? `, ${skipped} skipped` : ""}${timedOut ? ", timed out" : ""}${lingered ? ", did not exit after its summary" : ""}, ${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
}

/** Runs a test file (or, for null, the type check) in its own process group; its output is shown as it comes unless `stream` is false. */
function run(file, stream = true) {
  return new Promise((resolve) => {
    // test/helpers/uvu-report.ts: every failure reports its message and details (see there).
    const args = file === null ? [join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.check.json"] : ["--import", "tsx", "--import", "./test/helpers/uvu-report.ts", file];
    const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let out = "";
    let lingered = false;
    let lingerTimer = null;
    const kill = (signal) => {
      try {
        process.kill(-child.pid, signal);
      } catch {}
    };
    const onData = (d) => {
      out += d;
      if (stream) process.stdout.write(d);
      // uvu has printed its summary: the file's tests are over; it must exit soon.
      if (!lingerTimer && /Duration:\s/.test(out)) {
        lingerTimer = setTimeout(() => {
          lingered = true;
          kill("SIGKILL");
        }, 20_000);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      kill("SIGTERM");
      setTimeout(() => kill("SIGKILL"), 5000);
    }, perFileMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      clearTimeout(lingerTimer);
      resolve({ code, out, timedOut, lingered });
    });
  });
}
