/**
 * A full disk under a process's data directory (a tmpfs of a few MiB): LevelDB's refusal is
 * DATA_DIR_UNWRITABLE, a master pauses replication with one alert instead of retrying every few
 * milliseconds, and everything resumes, with nothing lost, once there is space again, also after
 * a failed compaction that LevelDB would refuse every later write for until reopened.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Level } from "level";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup, tempDir } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { checkWritable, tracked, writeOps } from "../../src/storage/store.js";

let cl: TestCluster | undefined;
let db: Level<string, string> | undefined;
const mounts: string[] = [];

test.after.each(async () => {
  await cl?.close();
  cl = undefined;
  await db?.close();
  db = undefined;
  for (const m of mounts.splice(0)) execFileSync("umount", ["-l", m]);
  await cleanup();
});

/** A directory on a tmpfs of its own, `size` big (mount needs root, as CI runs). */
function smallDisk(size: string): string {
  const dir = tempDir("ferry-full-");
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir]);
  mounts.push(dir);
  return dir;
}
const grow = (dir: string) => execFileSync("mount", ["-o", "remount,size=64m", dir]);

test("LevelDB refusing writes after a failed compaction takes them again once there is space: the next write reopens it", async () => {
  const dir = smallDisk("6m");
  db = new Level<string, string>(join(dir, "level"), { valueEncoding: "utf8" });
  await db.open();
  const sub = tracked(db, db.sublevel<string, string>("s", { valueEncoding: "utf8" }));
  const value = randomBytes(50_000).toString("hex");
  const put = (k: string) => writeOps(db!, [{ type: "put", sublevel: sub, key: k, value }]);
  let kept = 0;
  let refused: unknown = null;
  for (let i = 0; i < 200 && refused === null; i++) await put(`k${i}`).then(() => kept++, (err) => (refused = err));
  assert.is((refused as { code?: string } | null)?.code, "DATA_DIR_UNWRITABLE");
  assert.match(String((refused as Error).message), /No space left on device/);
  // Filled past the write buffer: a compaction failed, and LevelDB refuses writes with space back.
  for (let i = 0; i < 40; i++) await put(`more${i}`).catch(() => {});
  const stillFull = await checkWritable(db).then(() => null, (err: Error) => err.message);
  assert.match(String(stillFull), /No space left on device/, "still full: the probe fails");
  grow(dir);
  const raw = await db.put("raw", value, { sync: true }).then(() => true, () => false);
  assert.not.ok(raw, "LevelDB itself refuses writes with space back (the failed compaction is sticky)");
  await put("after");
  await checkWritable(db);
  await put("after2");
  const keys: string[] = [];
  for await (const k of sub.keys()) keys.push(k);
  assert.ok(keys.includes("after") && keys.includes("after2") && keys.includes("k0"), "the next write reopened it: the sublevel reads and writes");
  assert.ok(keys.length >= kept + 1, `every write that succeeded is kept (${keys.length} keys, ${kept} written before the disk filled)`);
});

test("a master whose data directory fills pauses replication with one alert and DATA_DIR_UNWRITABLE, and resumes with nothing lost once there is space", async () => {
  cl = await TestCluster.start();
  const c = await cl.client();
  const alerts: Record<string, any>[] = [];
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  const data = smallDisk("4m");
  cl.startNode("m1", "master", ["--data", data]);
  await cl.waitMaster("m1");
  cl.startNode("s1", "slave");
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming");
  await cl.sql("CREATE TABLE big(id INTEGER PRIMARY KEY, pad TEXT)");
  // s1 away: its batches stay in m1's spool until the disk is full.
  await cl.nodes.get("s1")!.stop();
  const paused = () => alerts.find((a) => a.kind === "data-dir-unwritable");
  for (let i = 0; i < 60 && !paused(); i++) {
    // A write the sequencer could not spool is committed and waits in the repository: its outcome is "unknown" (TIMEOUT).
    await cl.sql(`INSERT INTO big(pad) SELECT hex(randomblob(50000)) FROM (SELECT 1 UNION ALL SELECT 2)`, undefined, 1000).catch((err) => {
      if (err.code !== "TIMEOUT") throw err;
    });
  }
  const alert = await waitFor("the data-dir-unwritable alert", paused);
  assert.is(alert.severity, "critical");
  assert.match(alert.message, /^replication paused: cannot write to .*No space left on device/);
  const m1 = await cl.waitMember("m1", "DATA_DIR_UNWRITABLE in its record", (m) => m.error?.code === "DATA_DIR_UNWRITABLE");
  assert.is(m1.state, "active", "still the master: the changes wait, captured, in its repository");
  const status = await cl.cli(["status"]);
  assert.match(status.stdout, /cannot write to .*No space left/, "ferry status says why");

  grow(data);
  await waitFor("the data-dir-writable alert", () => alerts.find((a) => a.kind === "data-dir-writable"), { timeoutMs: 30_000 });
  await cl.waitMember("m1", "no error", (m) => m.error === null);
  cl.startNode("s1", "slave");
  const last = await cl.sql("INSERT INTO big(pad) VALUES ('after')");
  await cl.waitMember("s1", "the last write", (m) => m.appliedLsn >= last.lsn, 60_000);
  await cl.waitConverged("m1", ["s1"]);
  assert.is(alerts.filter((a) => a.kind === "data-dir-unwritable").length, 1, "one alert for the outage, not one per attempt");
  const log = readFileSync(join(cl.dir, "m1.log"), "utf8");
  assert.not.match(log, /capture cycle failed/, "a full disk is an outage, not an error per capture cycle");
});

test("a replica whose data directory fills says DATA_DIR_UNWRITABLE in its record and catches up, nothing lost, once there is space", async () => {
  cl = await TestCluster.start();
  const c = await cl.client();
  const alerts: Record<string, any>[] = [];
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  const data = smallDisk("4m");
  cl.startNode("s1", "slave", ["--data", data]);
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming");
  await cl.sql("CREATE TABLE big(id INTEGER PRIMARY KEY, pad TEXT)");
  for (let i = 0; i < 40; i++) await cl.sql(`INSERT INTO big(pad) SELECT hex(randomblob(50000)) FROM (SELECT 1 UNION ALL SELECT 2)`);
  const s1 = await cl.waitMember("s1", "DATA_DIR_UNWRITABLE in its record", (m) => m.error?.code === "DATA_DIR_UNWRITABLE", 30_000);
  assert.match(s1.error.message, /No space left on device/);
  await waitFor("s1's data-dir-unwritable alert", () => alerts.find((a) => a.kind === "data-dir-unwritable" && a.node === "s1"));
  grow(data);
  await cl.waitConverged("m1", ["s1"], 60_000);
  await cl.waitMember("s1", "no error", (m) => m.error === null);
  await waitFor("s1's data-dir-writable alert", () => alerts.find((a) => a.kind === "data-dir-writable" && a.node === "s1"));
  assert.is(alerts.filter((a) => a.kind === "data-dir-unwritable").length, 1, "one alert, not one per retry");
});

test.run();
