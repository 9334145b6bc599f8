/**
 * pg's failures as ferry's errors: a server that is down, restarting, unreachable or refusing the
 * login is REPO_UNAVAILABLE (the sequencer and the replica pause and retry); anything a statement
 * did wrong is SQL_ERROR with its SQLSTATE.
 */
import { FerryError, RepositoryError } from "../../../errors.js";

const NETWORK = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EPIPE"]);
/** SQLSTATEs that say the server (not the statement) is the problem. */
const UNAVAILABLE_STATES = /^(08|57P0[1-3]|53300|3D000|28)/;
const CONNECTION_LOST = /Connection terminated|connection error|not queryable|timeout exceeded when trying to connect|Client was closed/i;

export function pgError(err: unknown, where: string): Error {
  if (err instanceof FerryError) return err;
  const e = err as { code?: string; message?: string; detail?: string; hint?: string };
  const code = e.code ?? "";
  const message = e.message ?? String(err);
  if (NETWORK.has(code) || UNAVAILABLE_STATES.test(code) || (!code && CONNECTION_LOST.test(message))) {
    const login = code === "28P01" || code === "28000";
    return new RepositoryError("REPO_UNAVAILABLE", `repository ${where} is unavailable: ${oneLine(message)}${code ? ` (${code})` : ""}`, {
      cause: err,
      hint: login ? "check the user and password (PGPASSWORD or the URL)" : code === "3D000" ? "create the database, or fix the URL" : "ferry resumes by itself when the database is back",
    });
  }
  return new RepositoryError("SQL_ERROR", oneLine(message) + (e.detail ? ` (${oneLine(e.detail)})` : ""), {
    cause: err,
    hint: noIdentityHint(code, message) ?? e.hint,
    details: code ? { sqlstate: code } : undefined,
  });
}

/**
 * PostgreSQL refuses an UPDATE or DELETE of a table without a primary key (or another replica
 * identity) while capture's publication exists, naming the table: say how to make it replicable.
 */
function noIdentityHint(code: string, message: string): string | undefined {
  const m = /^cannot (?:update|delete from) table "(.+)" because it does not have a replica identity/.exec(message);
  if (code !== "55000" || !m) return undefined;
  const t = /^[a-z_][a-z0-9_$]*$/.test(m[1]) ? m[1] : `"${m[1].replace(/"/g, '""')}"`;
  return `add a primary key to ${t}, or ALTER TABLE ${t} REPLICA IDENTITY FULL (then its updates and deletes replicate by the whole old row)`;
}

const oneLine = (s: string) => s.replace(/\s+/g, " ").trim();
