/**
 * The sync's storage pieces: raw JSON of row images, partitions and key order agreeing between
 * SQLite (snapshots) and JavaScript (the change stream), and the destination's files.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { SqliteRepository } from "../../src/storage/repository/sqlite/repository.js";
import {
  compareKeys,
  keyOfRow,
  partitionOf,
  pastSnapshot,
  splitJsonArray,
  splitJsonObject,
  toObject,
  comparePositions,
  type SyncPosition,
} from "../../src/storage/sync.js";
import { checkDestination, PartitionDir, parseFileName, positionFromFiles, snapshotFileName, streamFileName } from "../../src/storage/destination.js";
import { openSink, SINK_FORMATS } from "../../src/storage/sink/index.js";
import { cleanup, tempDir } from "../helpers/procs.js";

test.after(cleanup);

test("raw JSON: array elements and object members keep SQLite's text, blobs convert both ways", () => {
  assert.equal(splitJsonArray(`[1,"a,\\"b]",null,["x","00FF"],9007199254740993,1.5]`), ["1", `"a,\\"b]"`, "null", `["x","00FF"]`, "9007199254740993", "1.5"]);
  assert.equal(splitJsonArray("[]"), []);
  assert.equal(splitJsonObject(`{"a":1,"b\\"c":{"$blob":"AB"},"d":"x:y"}`), [["a", "1"], ['b"c', `{"$blob":"AB"}`], ["d", `"x:y"`]]);
  assert.is(toObject(["id", "pic"], ["7", `["x","00FF"]`]), `{"id":7,"pic":{"$blob":"00FF"}}`);
  assert.is(keyOfRow(`{"k":{"$blob":"AB"},"n":9007199254740993,"v":"z"}`, ["k", "n"]), `[["x","AB"],9007199254740993]`);
  assert.throws(() => splitJsonArray("[1,2"), /not a complete JSON/);
});

async function repoWith(sql: string): Promise<{ repo: SqliteRepository; db: Database.Database }> {
  const file = join(tempDir(), "repo.db");
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.exec(sql);
  const repo = new SqliteRepository(`sqlite:${file}`);
  await repo.init();
  return { repo, db };
}

/** assert.throws for a promise: it must reject, and the error must pass `check`. */
async function rejectsWith(p: Promise<unknown>, check: (e: unknown) => boolean): Promise<void> {
  let threw = false;
  try {
    await p;
  } catch (err) {
    threw = true;
    assert.ok(check(err), `unexpected error: ${String(err)}`);
  }
  assert.ok(threw, "expected a rejection");
}

/** Every row of a partition read through openTableReader. */
async function readAll(repo: SqliteRepository, table: string, opts: Record<string, unknown> = {}): Promise<string[]> {
  const r = await repo.openTableReader({ table, ...opts });
  const out: string[] = [];
  try {
    for (let c = await r.next(200); c; c = await r.next(200)) out.push(...c.text.split("\n").filter(Boolean));
  } finally {
    await r.close();
  }
  return out;
}

test("partitions: the snapshot's SQL filter and the change stream's function put every key in the same partition", async () => {
  const { repo, db } = await repoWith(`
    CREATE TABLE ints(id INTEGER PRIMARY KEY, v TEXT);
    CREATE TABLE texts(name TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
    CREATE TABLE combo(a TEXT, b INTEGER, c BLOB, PRIMARY KEY(a, b)) WITHOUT ROWID;
    CREATE TABLE plain(x, y);
    CREATE TABLE mixed(k PRIMARY KEY, v) WITHOUT ROWID;`);
  const ins = db.prepare("INSERT INTO ints VALUES (?, ?)");
  for (const id of [-7, -4, -1, 0, 1, 2, 3, 5, 8, 13, 2 ** 53 - 1, 2n ** 62n, -(2n ** 62n)]) ins.run(id, `v${id}`);
  for (let i = 0; i < 50; i++) db.prepare("INSERT INTO texts VALUES (?, ?)").run(`név-${i}-${"☃".repeat(i % 3)}`, i);
  for (let i = 0; i < 30; i++) db.prepare("INSERT INTO combo VALUES (?, ?, ?)").run(`a${i % 4}`, i, Buffer.from([i, 255]));
  for (let i = 0; i < 30; i++) db.prepare("INSERT INTO plain VALUES (?, ?)").run(i, `p${i}`);
  for (const k of [1, 2.5, "1", "z", Buffer.from("b"), 7]) db.prepare("INSERT INTO mixed VALUES (?, 0)").run(k);
  for (const [table, P] of [["ints", 4], ["texts", 3], ["combo", 5], ["plain", 4], ["mixed", 3]] as const) {
    const key = (await repo.tableColumns(table))!.key;
    const all = await readAll(repo, table);
    let seen = 0;
    for (let p = 0; p < P; p++) {
      const rows = await readAll(repo, table, { partition: { index: p, count: P } });
      seen += rows.length;
      for (const row of rows) assert.is(partitionOf(splitJsonArray(keyOfRow(row, key)), P), p, `${table}: ${row} in partition ${p}`);
    }
    assert.is(seen, all.length, `${table}: every row in exactly one partition`);
  }
  assert.is(partitionOf(["-7"], 4), 1);
  assert.is(partitionOf(['"x"'], 1), 0);
  await repo.close();
  db.close();
});

test("key order: compareKeys agrees with SQLite's ORDER BY, and a read resumes after a key", async () => {
  const { repo, db } = await repoWith(
    `CREATE TABLE mixed(k PRIMARY KEY, v) WITHOUT ROWID; CREATE TABLE pair(a TEXT, b INTEGER, PRIMARY KEY(a, b)) WITHOUT ROWID; CREATE TABLE nocase(k TEXT PRIMARY KEY COLLATE NOCASE) WITHOUT ROWID;`,
  );
  for (const k of ["b", "A", "c", "B2", "a2"]) db.prepare("INSERT INTO nocase VALUES (?)").run(k);
  for (const k of [3, -1, 2.5, 10, "b", "B", "é", "ab", Buffer.from([1]), Buffer.from([0, 9]), 9007199254740993n]) db.prepare("INSERT INTO mixed VALUES (?, 0)").run(k);
  for (const [a, b] of [["x", 2], ["x", 10], ["a", 5], ["y", -1]]) db.prepare("INSERT INTO pair VALUES (?, ?)").run(a, b);
  for (const table of ["mixed", "pair", "nocase"]) {
    const key = (await repo.tableColumns(table))!.key;
    const keys = (await readAll(repo, table)).map((r) => splitJsonArray(keyOfRow(r, key)));
    for (let i = 1; i < keys.length; i++) assert.ok(compareKeys(keys[i - 1], keys[i]) < 0, `${keys[i - 1]} < ${keys[i]}`);
    const sorted = [...keys].reverse().sort(compareKeys);
    assert.equal(sorted, keys);
    // Resuming after the third key gives the rest.
    const after = `[${keys[2].join(",")}]`;
    const rest = (await readAll(repo, table, { after })).map((r) => splitJsonArray(keyOfRow(r, key)));
    assert.equal(rest, keys.slice(3));
  }
  await repo.close();
  db.close();
});

test("a read with a timestamp keeps rows at or after it; a missing table or column is NOT_FOUND", async () => {
  const { repo, db } = await repoWith(`CREATE TABLE ev(id INTEGER PRIMARY KEY, ts INTEGER)`);
  for (let i = 0; i < 20; i++) db.prepare("INSERT INTO ev VALUES (?, ?)").run(i, i * 10);
  const rows = (await readAll(repo, "ev", { since: { column: "ts", min: 150 } })).map((r) => JSON.parse(r).id);
  assert.equal(rows, [15, 16, 17, 18, 19]);
  await rejectsWith(repo.openTableReader({ table: "nope" }), (e: any) => e.code === "NOT_FOUND");
  await rejectsWith(repo.openTableReader({ table: "ev", since: { column: "nope", min: 0 } }), (e: any) => e.code === "NOT_FOUND");
  assert.is(await repo.tableColumns("nope"), null);
  assert.is(await repo.tableColumns("ferry_changes"), null, "ferry's own tables are not synced");
  await repo.close();
  db.close();
});

test("a change belongs after the snapshot when its LSN is past the segment that holds its key", () => {
  const segs = [
    { lsn: 10, after: null, firstRow: 1 },
    { lsn: 20, after: "[100]", firstRow: 51 },
  ];
  const afters = segs.map((s) => (s.after ? splitJsonArray(s.after) : null));
  assert.ok(pastSnapshot(segs, afters, ["50"], 11), "key in the first segment: after LSN 10");
  assert.not.ok(pastSnapshot(segs, afters, ["150"], 15), "key in the second segment, read at LSN 20, holds it");
  assert.ok(pastSnapshot(segs, afters, ["150"], 21));
  assert.ok(pastSnapshot(segs, afters, ["100"], 11), "the segment starts after its key");
});

for (const format of SINK_FORMATS) {
  test(`destination (${format}): names carry the position; files alone say where a subtask stands`, async () => {
    const sink = openSink(format, { columns: ["id", "v"], kinds: ["integer", "text"], key: ["id"], changes: true });
    const dir = new PartitionDir(tempDir(), "t", 0, sink.ext, "hive");
    assert.ok(dir.dir.endsWith(join("t", "part=0")), "Hive-style partition directory");
    await dir.ensure();
    const rows = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `{"id":${(from + i) * 2},"v":"x,\\"y\\"\\n"}`).join("\n") + "\n";
    const snap = (lsn: number, from: number, to: number) => sink.encode({ kind: "snapshot", lsn, firstSeq: from, payloads: [new TextEncoder().encode(rows(from, to))] });
    await dir.write(snapshotFileName(7, 1, 3, sink.ext), snap(7, 1, 3), () => {});
    await dir.write(snapshotFileName(9, 4, 5, sink.ext), snap(9, 4, 5), () => {});
    writeFileSync(join(dir.dir, `.${snapshotFileName(9, 6, 8, sink.ext)}.tmp`), "partial");
    const vetoed = await dir.write(`x.${sink.ext}`, new Uint8Array(1), () => {
      throw new Error("vetoed");
    }).then(() => false, (e: Error) => /vetoed/.test(e.message));
    assert.ok(vetoed, "beforeRename can veto the rename");
    const scanned = await dir.scan();
    let files = scanned.files;
    assert.equal(scanned.tmp, [`.${snapshotFileName(9, 6, 8, sink.ext)}.tmp`]);
    assert.ok(scanned.bytes > 0, "scan counts the files' bytes");
    assert.not.ok(readdirSync(dir.dir).includes(`x.${sink.ext}`), "a vetoed write leaves nothing");
    const lastKey = (n: string) => sink.lastKey(dir.path(n));
    let at = await positionFromFiles(files, lastKey);
    assert.equal(at, {
      pos: { phase: "snapshot", segs: [{ lsn: 7, after: null, firstRow: 1 }, { lsn: 9, after: "[6]", firstRow: 4 }], rows: 5, key: "[10]" },
      rows: 5,
    });
    const from = { lsn: 8, part: 0, off: 0 };
    const to = { lsn: 12, part: 1, off: 3 };
    const changes = ['{"op":"insert","lsn":8,"row":{"id":1,"v":"a"}}', '{"op":"delete","lsn":9,"row":{"id":2}}', '{"op":"update","lsn":12,"old":{"id":1},"row":{"id":3,"v":null}}'];
    await dir.write(streamFileName(from, to, 3, sink.ext), sink.encode({ kind: "stream", lsn: 0, firstSeq: 6, payloads: [new TextEncoder().encode(changes.join("\n") + "\n")] }), () => {});
    ({ files } = await dir.scan());
    at = await positionFromFiles(files, lastKey);
    assert.equal(at!.pos, { phase: "stream", segs: [{ lsn: 7, after: null, firstRow: 1 }, { lsn: 9, after: "[6]", firstRow: 4 }], lsn: 12, part: 1, off: 3 });
    assert.is(at!.rows, 8);
    assert.equal(parseFileName(streamFileName(from, to, 3, sink.ext), sink.ext), { kind: "stream", name: streamFileName(from, to, 3, sink.ext), from, to, records: 3 });
    assert.is(parseFileName("notes.txt", sink.ext), null);
    assert.is(parseFileName(snapshotFileName(7, 1, 3, "other"), sink.ext), null, "files of another format are not this task's");
    assert.is(await positionFromFiles([], lastKey), null);
  });
}

test("positions order: snapshot < stream < done, each by its counter", () => {
  const snap = (rows: number): SyncPosition => ({ phase: "snapshot", segs: [], rows, key: null });
  const stream = (lsn: number, part = 0, off = 0): SyncPosition => ({ phase: "stream", segs: [], lsn, part, off });
  assert.ok(comparePositions(snap(5), snap(4)) > 0);
  assert.ok(comparePositions(stream(1), snap(1000)) > 0);
  assert.ok(comparePositions(stream(3, 0, 5), stream(3, 0, 4)) > 0);
  assert.ok(comparePositions(stream(3, 1, 0), stream(3, 0, 99)) > 0);
  assert.ok(comparePositions({ phase: "done" }, stream(1e9)) > 0);
  assert.is(comparePositions(stream(2), stream(2)), 0);
});

test("a destination checked by many creates at once is empty to each, and a file in it refuses every one", async () => {
  const root = tempDir("ferry-dest-");
  // One process answers repeated creates concurrently; each probes the same directory.
  for (let round = 0; round < 20; round++) await Promise.all(Array.from({ length: 8 }, () => checkDestination(root, "t")));
  assert.equal(readdirSync(join(root, "t")), [], "no probe left behind");
  writeFileSync(join(root, "t", "rows.jsonl"), "{}\n");
  const results = await Promise.allSettled(Array.from({ length: 4 }, () => checkDestination(root, "t")));
  assert.ok(results.every((r) => r.status === "rejected" && (r.reason as { code?: string }).code === "DESTINATION_NOT_EMPTY"));
});

test.run();
