/**
 * Splits a script into PostgreSQL statements at top-level semicolons: not inside quotes ('',
 * E'' with backslash escapes, ""), dollar quotes ($$...$$, $tag$...$tag$) or comments (--, nested
 * /* *\/). Each statement comes with its first keyword, upper-cased (its verb).
 */
import type { Statement } from "../script.js";

export type { Statement };

export function splitSql(script: string): Statement[] {
  const out: Statement[] = [];
  let start = 0;
  let i = 0;
  const n = script.length;
  const push = (end: number) => {
    const sql = script.slice(start, end).trim();
    const verb = firstWord(sql);
    if (verb !== "") out.push({ sql, verb });
  };
  while (i < n) {
    const c = script[i];
    if (c === "'") {
      const escapes = i > 0 && /[eE]/.test(script[i - 1]) && (i < 2 || !/[\w$]/.test(script[i - 2]));
      i++;
      while (i < n) {
        if (escapes && script[i] === "\\") i += 2;
        else if (script[i] === "'") {
          if (script[i + 1] === "'") i += 2;
          else break;
        } else i++;
      }
      i++;
    } else if (c === '"') {
      i = script.indexOf('"', i + 1);
      i = i < 0 ? n : i + 1;
    } else if (c === "-" && script[i + 1] === "-") {
      i = script.indexOf("\n", i);
      i = i < 0 ? n : i + 1;
    } else if (c === "/" && script[i + 1] === "*") {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (script[i] === "/" && script[i + 1] === "*") {
          depth++;
          i += 2;
        } else if (script[i] === "*" && script[i + 1] === "/") {
          depth--;
          i += 2;
        } else i++;
      }
    } else if (c === "$" && (i === 0 || !/[\w$]/.test(script[i - 1]))) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(script.slice(i, i + 64));
      if (tag) {
        const close = script.indexOf(tag[0], i + tag[0].length);
        i = close < 0 ? n : close + tag[0].length;
      } else i++;
    } else if (c === ";") {
      push(i);
      start = ++i;
    } else i++;
  }
  push(n);
  return out;
}

/** A statement without the blanks and comments before its first token. */
export function statementStart(sql: string): string {
  return sql.replace(/^(\s+|--[^\n]*\n?|\/\*[\s\S]*?\*\/)+/, "");
}

/** The first keyword after comments and opening parentheses. */
function firstWord(sql: string): string {
  const s = sql.replace(/^(\s+|--[^\n]*\n?|\/\*[\s\S]*?\*\/|\()+/, "");
  return (/^[A-Za-z_]+/.exec(s)?.[0] ?? (s ? s[0] : "")).toUpperCase();
}
