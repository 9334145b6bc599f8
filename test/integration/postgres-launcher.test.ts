/**
 * The throwaway PostgreSQL servers tests and `ferry up --postgres` run on: each on a port of its
 * own (never the machine's 5432), logical WAL, restartable, gone after cleanup.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { cleanup, postgresServer, tempDir } from "../helpers/procs.js";

test.after.each(cleanup);

async function query(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql)).rows;
  } finally {
    await c.end();
  }
}

/** Resolves with the error code of a TCP connect to the port ("ok" when it connects). */
function tcpConnect(port: number): Promise<string> {
  return new Promise((res) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), res("ok")));
    s.once("error", (err: NodeJS.ErrnoException) => res(err.code ?? err.message));
  });
}

/** Whether the process runs; a zombie (exited, not yet reaped by init) does not. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

test("two servers: their own ports, not 5432, logical WAL, a created database", async () => {
  // The second one deeper in a temp dir, as a test cluster keeps a node's server.
  const [a, b] = await Promise.all([postgresServer(), postgresServer({ dir: join(tempDir(), "n1", "pg") })]);
  assert.is.not(a.port, b.port);
  for (const s of [a, b]) {
    assert.is.not(s.port, 5432);
    assert.is(s.url, `postgres://postgres@127.0.0.1:${s.port}/postgres`);
    assert.equal(await query(s.url, "SHOW wal_level"), [{ wal_level: "logical" }]);
  }
  const url = await a.createDb("ferry_test");
  assert.is(url, `postgres://postgres@127.0.0.1:${a.port}/ferry_test`);
  await query(url, "CREATE TABLE t(id int PRIMARY KEY, v text)");
  await query(url, "INSERT INTO t VALUES (1, 'one')");
  assert.equal(await query(url, "SELECT current_database() AS db, count(*)::int AS n FROM t"), [{ db: "ferry_test", n: 1 }]);
  // The other server has no such database.
  assert.equal(await query(b.url, "SELECT count(*)::int AS n FROM pg_database WHERE datname = 'ferry_test'"), [{ n: 0 }]);
});

test("stop and start: the port refuses while stopped, committed rows survive a fast and an immediate stop", async () => {
  const s = await postgresServer();
  const url = await s.createDb("keep");
  await query(url, "CREATE TABLE t(id int PRIMARY KEY)");
  await query(url, "INSERT INTO t VALUES (1)");
  const pid = s.pid;

  await s.stop("fast");
  assert.is(s.pid, 0);
  assert.not.ok(alive(pid), "the postmaster is gone");
  assert.is(await tcpConnect(s.port), "ECONNREFUSED");

  await s.start();
  assert.ok(s.pid > 0 && s.pid !== pid, "a new postmaster");
  assert.is(await tcpConnect(s.port), "ok");
  assert.equal(await query(url, "SELECT id FROM t"), [{ id: 1 }]);
  await query(url, "INSERT INTO t VALUES (2)");

  await s.stop("immediate");
  assert.is(await tcpConnect(s.port), "ECONNREFUSED");
  await s.start(); // crash recovery
  assert.equal(await query(url, "SELECT id FROM t ORDER BY id"), [{ id: 1 }, { id: 2 }]);
});

test("cleanup stops the server and removes its directory", async () => {
  const s = await postgresServer();
  const { pid, dir, port } = s;
  await cleanup();
  assert.not.ok(alive(pid), "the postmaster is gone");
  // FERRY_KEEP_TEST_DIRS keeps every temp directory for a look after the run.
  if (!process.env.FERRY_KEEP_TEST_DIRS) assert.not.ok(existsSync(dir), "the directory is removed");
  assert.is(await tcpConnect(port), "ECONNREFUSED");
});

test.run();
