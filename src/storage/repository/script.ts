/**
 * What every repository kind checks of a `ferry sql` script before it runs any of it: the kind's
 * splitter (sqlite/sql-split.ts, postgres/sql-split.ts) cuts the script into statements, and
 * checkScript refuses what cannot run inside ferry's one transaction per script, or is refused by
 * the kind, with the same messages for every kind.
 */
import { RepositoryError, UsageError } from "../../errors.js";

/** One statement of a script: its text and its first keyword, upper-cased (its verb). */
export interface Statement {
  sql: string;
  verb: string;
}

/**
 * Transaction control, which would end or split the script's transaction. The union over the
 * kinds (START, ABORT and PREPARE are PostgreSQL's; no SQLite statement begins with them).
 */
export const TRANSACTION_VERBS: ReadonlySet<string> = new Set(["BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE", "PREPARE"]);

/** A kind's own refused verbs, why (completing "VERB ... and is refused") and what to do instead. */
export interface RefusedVerbs {
  verbs: ReadonlySet<string>;
  why: string;
  hint: string;
}

/** Throws for an empty script, transaction control, a refused verb, or --params given to several statements. */
export function checkScript(statements: readonly Statement[], params: unknown, refused: RefusedVerbs): void {
  if (statements.length === 0) throw new UsageError("no SQL statement given", 'give a statement, e.g. ferry sql "SELECT 1"');
  for (const s of statements) {
    if (TRANSACTION_VERBS.has(s.verb)) {
      throw new RepositoryError("SQL_ERROR", `${s.verb} is not allowed: ferry runs the whole script as one transaction`, {
        hint: "remove BEGIN/COMMIT; a ;-separated script is already atomic",
      });
    }
    if (refused.verbs.has(s.verb)) {
      throw new RepositoryError("SQL_ERROR", `${s.verb} ${refused.why} and is refused`, { hint: refused.hint });
    }
  }
  if (params !== undefined && statements.length > 1) {
    throw new UsageError("--params applies to a single statement, the script has " + statements.length);
  }
}
