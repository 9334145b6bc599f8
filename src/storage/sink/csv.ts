/**
 * CSV (RFC 4180): a header row, CRLF line ends. Every text value is quoted (quotes doubled) and
 * nothing else is, so the file alone tells text from numbers: an unquoted empty field is NULL, a
 * quoted empty one the empty string; numbers are written as the repository printed them (every
 * digit of a 64-bit integer, reals with their '.'); blobs are \x and their HEX. Modes 1 and 2 add
 * the change columns _op, _lsn, _seq.
 */
import { readFile } from "node:fs/promises";
import { SyncError } from "../../errors.js";
import { CHANGE_COLUMNS, sinkRecords } from "./records.js";
import { rawShape } from "./values.js";
import type { Sink, SinkBatch, SinkTable } from "./types.js";

const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;

function field(raw: string | undefined): string {
  const v = rawShape(raw);
  if (v.t === "null") return "";
  if (v.t === "string") return quote(v.s);
  if (v.t === "blob") return `\\x${v.hex}`;
  return v.token;
}

export function csvSink(table: SinkTable): Sink {
  const header = [...table.columns, ...(table.changes ? CHANGE_COLUMNS : [])].map(quote).join(",") + "\r\n";
  const keyAt = table.key.map((k) => table.columns.indexOf(k));
  return {
    format: "csv",
    ext: "csv",
    combines: true,
    encode(batch: SinkBatch) {
      const lines = [header];
      for (const r of sinkRecords(batch, table)) {
        const fields = r.raws.map(field);
        if (table.changes) fields.push(quote(r.op), String(r.lsn), String(r.seq));
        lines.push(fields.join(",") + "\r\n");
      }
      return Buffer.from(lines.join(""), "utf8");
    },
    async lastKey(path) {
      const records = parseCsv(await readFile(path, "utf8"));
      const last = records[records.length - 1];
      if (!last || records.length < 2) throw new SyncError("INTERNAL", `${path} holds no row`);
      return `[${keyAt.map((i) => element(last[i])).join(",")}]`;
    },
  };
}

interface Field {
  text: string;
  quoted: boolean;
}

/** A field back as the raw image element it was written from. */
function element(f: Field): string {
  if (f.quoted) return JSON.stringify(f.text);
  if (f.text === "") return "null";
  if (f.text.startsWith("\\x")) return JSON.stringify(["x", f.text.slice(2)]);
  return f.text;
}

/** RFC 4180 records, each field with whether it was quoted. */
function parseCsv(text: string): Field[][] {
  const out: Field[][] = [];
  let row: Field[] = [];
  let i = 0;
  while (i < text.length) {
    let f: Field;
    if (text.charCodeAt(i) === 34) {
      let s = "";
      for (i++; ; ) {
        const q = text.indexOf('"', i);
        if (q < 0) throw new SyncError("INTERNAL", "unterminated quoted CSV field");
        s += text.slice(i, q);
        if (text.charCodeAt(q + 1) === 34) {
          s += '"';
          i = q + 2;
        } else {
          i = q + 1;
          break;
        }
      }
      f = { text: s, quoted: true };
    } else {
      let j = i;
      while (j < text.length && text[j] !== "," && text[j] !== "\r" && text[j] !== "\n") j++;
      f = { text: text.slice(i, j), quoted: false };
      i = j;
    }
    row.push(f);
    if (text[i] === ",") i++;
    else {
      if (text[i] === "\r") i++;
      if (text[i] === "\n") i++;
      out.push(row);
      row = [];
    }
  }
  return out;
}
