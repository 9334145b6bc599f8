/**
 * Connections: the URL, one small pool per repository, and dedicated clients for transactions that
 * must outlive a pool checkout (snapshot readers). Every session gets the same settings, so the
 * text form of values (dates, floats, bytea) is the same in capture, snapshots and dumps.
 */
import pg from "pg";
import { RepositoryError } from "../../../errors.js";
import type { Target } from "./location.js";

/** Settings that fix the text output of values: exact floats, ISO dates in UTC, hex bytea. */
const SESSION = ["DateStyle=ISO", "IntervalStyle=postgres", "TimeZone=UTC", "extra_float_digits=3", "bytea_output=hex"]
  .map((s) => `-c ${s}`)
  .join(" ");

/** Values as the server's text: ferry encodes them itself, pg's parsers would round int8 and dates. */
export const RAW_TEXT = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

export function clientConfig(t: Target): pg.ClientConfig {
  return {
    host: t.host,
    port: t.port,
    user: t.user,
    database: t.database,
    password: t.password,
    options: SESSION,
    application_name: "ferry",
    types: RAW_TEXT,
    connectionTimeoutMillis: 5000,
    keepAlive: true,
  };
}

export function newPool(t: Target): pg.Pool {
  const pool = new pg.Pool({ ...clientConfig(t), max: 4, idleTimeoutMillis: 30_000 });
  // A connection dies with the server: the query on it, or the next checkout, reports it. Without
  // a listener, the error event of a client that is checked out would crash the process.
  pool.on("error", () => {});
  pool.on("connect", (c) => c.on("error", () => {}));
  return pool;
}

export async function newClient(t: Target): Promise<pg.Client> {
  const c = new pg.Client(clientConfig(t));
  c.on("error", () => {});
  await c.connect();
  return c;
}

export type Queryable = pg.Pool | pg.ClientBase;

/** Rows as objects of text values. */
export async function rows<T = Record<string, string | null>>(q: Queryable, text: string, values: unknown[] = []): Promise<T[]> {
  return (await q.query(text, values)).rows as T[];
}

export async function one<T = Record<string, string | null>>(q: Queryable, text: string, values: unknown[] = []): Promise<T | undefined> {
  return (await rows<T>(q, text, values))[0];
}

export const quoteId = (name: string) => `"${name.replace(/"/g, '""')}"`;
export const quoteLit = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** A pg_lsn text 'X/Y' as a number (exact below 2^53 bytes of WAL). */
export function lsnNumber(lsn: string | null | undefined): number {
  if (!lsn) return 0;
  const [hi, lo] = lsn.split("/");
  return parseInt(hi, 16) * 2 ** 32 + parseInt(lo, 16);
}

export function lsnText(n: number): string {
  return `${Math.floor(n / 2 ** 32).toString(16).toUpperCase()}/${(n % 2 ** 32).toString(16).toUpperCase()}`;
}

/**
 * Asks `done` until it holds, backing off from 1 to 50 ms, for a state the server reaches by itself
 * within moments (a flush, a commit becoming visible); past `limitMs` the repository counts as
 * unavailable and the caller's cycle runs again.
 */
export async function pollUntil(done: () => Promise<boolean>, limitMs: number, what: string): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (let wait = 1; ; wait = Math.min(wait * 2, 50)) {
    if (await done()) return;
    if (Date.now() > deadline) throw new RepositoryError("REPO_UNAVAILABLE", `${what} within ${limitMs / 1000} s`);
    await new Promise((r) => setTimeout(r, wait));
  }
}
