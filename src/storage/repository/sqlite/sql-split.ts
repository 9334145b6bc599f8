/**
 * Splits a SQLite script into statements at top-level semicolons, respecting quotes,
 * comments and the BEGIN ... END body of CREATE TRIGGER. better-sqlite3 prepares one
 * statement at a time, and ferry must see each statement to replicate DDL.
 */
import type { Statement } from "../script.js";

export function splitSql(script: string): Statement[] {
  const out: Statement[] = [];
  let start = 0;
  let i = 0;
  let words: string[] = [];
  let word = "";
  let depth = 0; // BEGIN..END nesting inside CREATE TRIGGER (CASE..END also counts)
  const n = script.length;

  const flushWord = () => {
    if (!word) return;
    const w = word.toUpperCase();
    if (words.length < 6) words.push(w);
    // CREATE [TEMP|TEMPORARY] TRIGGER only: a column named "trigger" does not make a table a trigger.
    const isTrigger =
      words[0] === "CREATE" && (words[1] === "TRIGGER" || ((words[1] === "TEMP" || words[1] === "TEMPORARY") && words[2] === "TRIGGER"));
    if (isTrigger && (w === "BEGIN" || w === "CASE")) depth++;
    else if (isTrigger && w === "END" && depth > 0) depth--;
    word = "";
  };
  const emit = (end: number) => {
    flushWord();
    const sql = script.slice(start, end).trim();
    if (stripComments(sql).trim()) out.push({ sql, verb: firstWord(sql) });
    start = end + 1;
    words = [];
    depth = 0;
  };

  while (i < n) {
    const c = script[i];
    if (c === "'" || c === '"' || c === "`") {
      flushWord();
      i = skipQuoted(script, i, c);
      continue;
    }
    if (c === "[") {
      flushWord();
      const close = script.indexOf("]", i + 1);
      i = close < 0 ? n : close + 1;
      continue;
    }
    if (c === "-" && script[i + 1] === "-") {
      flushWord();
      const nl = script.indexOf("\n", i);
      i = nl < 0 ? n : nl + 1;
      continue;
    }
    if (c === "/" && script[i + 1] === "*") {
      flushWord();
      const close = script.indexOf("*/", i + 2);
      i = close < 0 ? n : close + 2;
      continue;
    }
    if (/[A-Za-z0-9_]/.test(c)) {
      word += c;
      i++;
      continue;
    }
    flushWord();
    if (c === ";" && depth === 0) emit(i);
    i++;
  }
  emit(n);
  return out;
}

function skipQuoted(s: string, i: number, q: string): number {
  let j = i + 1;
  while (j < s.length) {
    if (s[j] === q) {
      if (s[j + 1] === q) j += 2;
      else return j + 1;
    } else j++;
  }
  return s.length;
}

function stripComments(sql: string): string {
  return sql.replace(/--[^\n]*/g, "").replace(/\/\*[\s\S]*?(\*\/|$)/g, "");
}

function firstWord(sql: string): string {
  const m = /^[A-Za-z]+/.exec(stripComments(sql).trim());
  return m ? m[0].toUpperCase() : "";
}
