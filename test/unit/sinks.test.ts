/**
 * The sink formats on their own: what DuckDB reads back from a Parquet or CSV file the sinks
 * encode (types, exact values, NULL against empty text, RFC 4180 quoting, change columns), and
 * the refusals of values a typed file cannot hold.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { openSink, type SinkTable } from "../../src/storage/sink/index.js";
import { cleanup, tempDir } from "../helpers/procs.js";
import { duck, duckTypes, lit } from "../helpers/duckdb.js";

test.after(() => cleanup());

const enc = (lines: string[]) => [new TextEncoder().encode(lines.join("\n") + "\n")];
const table: SinkTable = { columns: ["id", "r", "t", "b", "ok", "any"], kinds: ["integer", "real", "text", "blob", "boolean", "any"], key: ["id"], changes: false };
const ROWS = [
  '{"id":9223372036854775807,"r":1.0,"t":"comma, \\"quote\\"\\r\\nline","b":{"$blob":"00FF"},"ok":"t","any":12}',
  '{"id":-9223372036854775808,"r":-1.5e+300,"t":"","b":{"$blob":""},"ok":"f","any":"x"}',
  '{"id":3,"r":null,"t":null,"b":null,"ok":null,"any":{"$blob":"AB"}}',
];

function file(format: "parquet" | "csv", t: SinkTable, kind: "snapshot" | "stream", lines: string[]): string {
  const sink = openSink(format, t);
  const path = join(tempDir("ferry-sink-"), `f.${sink.ext}`);
  writeFileSync(path, sink.encode({ kind, lsn: 7, firstSeq: 1, payloads: enc(lines) }));
  return path;
}

test("parquet: every kind with its type; 64-bit integers, reals, text, blobs and NULLs exact", async () => {
  const src = `read_parquet(${lit(file("parquet", table, "snapshot", ROWS))})`;
  assert.equal(await duckTypes(`SELECT * FROM ${src}`), { id: "BIGINT", r: "DOUBLE", t: "VARCHAR", b: "BLOB", ok: "BOOLEAN", any: "VARCHAR" });
  const rows = await duck(`SELECT * FROM ${src}`);
  assert.equal(rows, [
    { id: 9223372036854775807n, r: 1, t: 'comma, "quote"\r\nline', b: "00FF", ok: true, any: "12" },
    { id: -9223372036854775808n, r: -1.5e300, t: "", b: "", ok: false, any: "x" },
    { id: 3n, r: null, t: null, b: null, ok: null, any: "\\xAB" },
  ]);
  const meta = await duck(`SELECT DISTINCT compression FROM parquet_metadata(${lit(src.slice(14, -2))})`);
  assert.equal(meta, [{ compression: "SNAPPY" }]);
});

test("csv: header, RFC 4180 quoting; DuckDB tells NULL from empty text", async () => {
  const t = { ...table, columns: ["id", "r", "t", "b"], kinds: table.kinds.slice(0, 4) };
  const lines = ROWS.map((l) => l.replace(/,"ok".*\}$/, "}"));
  const path = file("csv", t, "snapshot", lines);
  const rows = await duck(`SELECT id, r, t, b FROM read_csv(${lit(path)}, header = true, allow_quoted_nulls = false) ORDER BY id DESC`);
  assert.equal(rows, [
    { id: 9223372036854775807n, r: 1, t: 'comma, "quote"\r\nline', b: "\\x00FF" },
    { id: 3n, r: null, t: null, b: null },
    { id: -9223372036854775808n, r: -1.5e300, t: "", b: "\\x" },
  ]);
  assert.is(await openSink("csv", t).lastKey(path), "[3]", "a restarted subtask finds the last key");
});

test("change records: _op, _lsn, _seq; an update that changed the key is a delete of the old key and the update", async () => {
  const t: SinkTable = { columns: ["id", "v"], kinds: ["integer", "text"], key: ["id"], changes: true };
  const lines = ['{"op":"insert","lsn":8,"row":{"id":1,"v":"a"}}', '{"op":"update","lsn":9,"old":{"id":1},"row":{"id":2,"v":"b"}}', '{"op":"delete","lsn":10,"row":{"id":2}}'];
  for (const format of ["parquet", "csv"] as const) {
    const path = file(format, t, "stream", lines);
    const src = format === "parquet" ? `read_parquet(${lit(path)})` : `read_csv(${lit(path)}, header = true)`;
    const rows = await duck(`SELECT id, v, _op, _lsn, _seq FROM ${src}`);
    assert.equal(rows, [
      { id: 1n, v: "a", _op: "insert", _lsn: 8n, _seq: 1n },
      { id: 1n, v: null, _op: "delete", _lsn: 9n, _seq: 2n },
      { id: 2n, v: "b", _op: "update", _lsn: 9n, _seq: 2n },
      { id: 2n, v: null, _op: "delete", _lsn: 10n, _seq: 3n },
    ], format);
  }
});

test("values a typed file cannot hold are refused with a code, never changed", () => {
  const t: SinkTable = { columns: ["id", "n"], kinds: ["integer", "integer"], key: ["id"], changes: false };
  const encode = (line: string) => () => openSink("parquet", t).encode({ kind: "snapshot", lsn: 1, firstSeq: 1, payloads: enc([line]) });
  assert.throws(encode('{"id":1,"n":"abc"}'), (e: any) => e.code === "SINK_TYPE_MISMATCH" && /column n holds "abc"/.test(e.message));
  assert.throws(encode('{"id":1,"n":2.5}'), (e: any) => e.code === "SINK_TYPE_MISMATCH");
  assert.throws(encode('{"id":1,"extra":2}'), (e: any) => e.code === "SINK_SCHEMA_CHANGED" && /column extra/.test(e.message));
});

test.run();
