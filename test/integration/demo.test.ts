/** `ferry demo` runs as a test: the whole tour on a real local cluster, ending with PASS. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { cleanup, ferryRun, tempDir } from "../helpers/procs.js";

test.after.each(cleanup);

test("ferry demo: replication, failover, rejoin and an offline sync, every check PASS", async () => {
  const dir = tempDir("ferry-demo-test-");
  const r = await ferryRun(["demo", "--rows", "200", "--dir", dir], { timeoutMs: 240_000 });
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /PASS: every check passed\./);
  for (const step of ["the slaves caught up", "a slave took over", "all replicas identical", "no acknowledged write lost", "the offline files hold exactly the table's rows"]) {
    assert.match(r.stdout, new RegExp(`PASS  ${step}`), step);
  }
  assert.match(r.stdout, /failover time\s+\d+ ms/);
  assert.match(r.stdout, /alert from w1: failover: dm\d promoted with epoch \d+ \(was dm1\)/);
});

test("ferry demo --postgres: the same tour with every node on a PostgreSQL server of its own, every check PASS", async () => {
  const dir = tempDir("ferry-demo-pg-test-");
  const r = await ferryRun(["demo", "--postgres", "--rows", "200", "--dir", dir], { timeoutMs: 240_000 });
  assert.is(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /PASS: every check passed\./);
  assert.match(r.stdout, /-t public\.orders/, "the sync task names the table under PostgreSQL's schema");
  for (const step of ["the slaves caught up", "all replicas identical", "no acknowledged write lost", "the offline files hold exactly the table's rows"]) {
    assert.match(r.stdout, new RegExp(`PASS  ${step}`), step);
  }
  assert.not.match(r.stdout, /postgres:\/\/[^@\s]*:[^@\s]*@/, "no password printed");
});

test("ferry demo refuses a bad --rows, and leaves no directory behind", async () => {
  const demoDirs = () => readdirSync(tmpdir()).filter((n) => /^ferry-demo-[^-]+$/.test(n));
  const before = demoDirs();
  const r = await ferryRun(["demo", "--rows", "lots"]);
  assert.is(r.code, 2);
  assert.match(r.stderr, /--rows/);
  assert.equal(demoDirs().filter((n) => !before.includes(n)), [], "no temporary directory left");
});

test.run();
