/**
 * Triggers: ferry's capture triggers, which write every change of a replicated table to
 * ferry_changes while the node is the master, and the user's own, which a replica suspends while
 * it applies (the master replicated what they wrote as rows of their own).
 */
import { cached, type DB } from "./db.js";
import { enc, quoteId, quoteStr } from "./sql-text.js";
import type { TableInfo } from "./schema.js";

/** A replica's copies of the user triggers, dropped and put back inside one apply transaction. */
export interface UserTriggers {
  suspend(): void;
  restore(): void;
}

/** The triggers that capture a table's changes, by name. */
export function captureTriggers(t: TableInfo): Map<string, string> {
  const img = (p: string) => `json_array(${t.image.map((c) => enc(`${p}.${quoteId(c)}`)).join(",")})`;
  const key = (p: string) => `json_array(${t.key.map((c) => enc(`${p}.${quoteId(c)}`)).join(",")})`;
  const same = t.key.map((c) => `OLD.${quoteId(c)} IS NEW.${quoteId(c)}`).join(" AND ");
  const ins = (op: string, rid: string, row: string) =>
    `INSERT INTO ferry_changes(tbl,op,rid,row) VALUES(${quoteStr(t.name)},'${op}',${rid},${row});`;
  const tbl = quoteId(t.name);
  const name = (op: string) => `ferry_cap_${op}_${t.name}`;
  return new Map([
    [name("i"), `CREATE TRIGGER ${quoteId(name("i"))} AFTER INSERT ON ${tbl} BEGIN ${ins("I", "NULL", img("NEW"))} END`],
    [
      name("u"),
      `CREATE TRIGGER ${quoteId(name("u"))} AFTER UPDATE ON ${tbl} BEGIN ${ins("U", `CASE WHEN ${same} THEN NULL ELSE ${key("OLD")} END`, img("NEW"))} END`,
    ],
    [name("d"), `CREATE TRIGGER ${quoteId(name("d"))} AFTER DELETE ON ${tbl} BEGIN ${ins("D", key("OLD"), "NULL")} END`],
  ]);
}

/** The capture triggers the file holds, by name. */
export function existingCaptureTriggers(db: DB): Map<string, string> {
  const rows = db
    .prepare(`SELECT name, sql FROM sqlite_master WHERE type='trigger' AND name LIKE 'ferry\\_cap\\_%' ESCAPE '\\'`)
    .all() as { name: string; sql: string }[];
  return new Map(rows.map((r) => [r.name, r.sql]));
}

/** The repository's own triggers (not ferry's capture triggers). */
function userTriggers(db: DB): { name: string; sql: string }[] {
  return cached(db, `SELECT name, sql FROM sqlite_master WHERE type='trigger' AND name NOT LIKE 'ferry\\_cap\\_%' ESCAPE '\\'`).all() as {
    name: string;
    sql: string;
  }[];
}

/**
 * The master replicates what its triggers wrote as rows of their own, so a replica applies with
 * its copies of the user triggers dropped, inside the apply transaction, and puts them back
 * before it commits: readers never see them missing. (SQLITE_DBCONFIG_ENABLE_TRIGGER would do
 * this without touching the schema, but better-sqlite3 does not expose it.)
 */
export function withoutUserTriggers(db: DB): UserTriggers {
  let held: { name: string; sql: string }[] = [];
  return {
    suspend: () => {
      held = userTriggers(db);
      for (const t of held) db.exec(`DROP TRIGGER ${quoteId(t.name)}`);
    },
    restore: () => {
      for (const t of held) db.exec(t.sql);
      held = [];
    },
  };
}
