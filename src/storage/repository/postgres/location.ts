/**
 * Where a PostgreSQL URL points and how to reach it, read without loading the client (a process
 * that only names a repository, in a member record or a log, does not load pg).
 */
import { UsageError } from "../../../errors.js";
import { redactRepositoryUrl } from "../url.js";
import type { RepositoryLocation } from "../types.js";

export interface Target {
  host: string;
  port: number;
  user: string;
  database: string;
  password?: string;
}

export function parseUrl(url: string, password?: string): Target {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`${redactRepositoryUrl(url)} is not a PostgreSQL URL`, "give postgres://USER[:PASS]@HOST:PORT/DB");
  }
  if (!/^postgres(ql)?:$/.test(u.protocol) || !u.hostname || u.pathname.length < 2) {
    throw new UsageError(`${redactRepositoryUrl(url)} is not a PostgreSQL URL`, "give postgres://USER[:PASS]@HOST:PORT/DB");
  }
  return {
    host: u.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: u.port ? Number(u.port) : 5432,
    user: decodeURIComponent(u.username || "postgres"),
    database: decodeURIComponent(u.pathname.slice(1)),
    password: password ?? (u.password ? decodeURIComponent(u.password) : undefined) ?? process.env.PGPASSWORD,
  };
}

export function locate(url: string): RepositoryLocation {
  const t = parseUrl(url, "");
  return { kind: "postgres", url: redactRepositoryUrl(url), id: `${t.host}:${t.port}/${t.database}` };
}
