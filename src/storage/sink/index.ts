/** The sink of a task's format: one line a format. */
import { UsageError } from "../../errors.js";
import { csvSink } from "./csv.js";
import { jsonlSink } from "./jsonl.js";
import { parquetSink } from "./parquet.js";
import { SINK_FORMATS, type Sink, type SinkFormat, type SinkTable } from "./types.js";

const SINKS: Record<SinkFormat, (table: SinkTable) => Sink> = { jsonl: jsonlSink, csv: csvSink, parquet: parquetSink };

export function openSink(format: SinkFormat, table: SinkTable): Sink {
  return SINKS[format](table);
}

export function parseFormat(value: unknown): SinkFormat {
  if (SINK_FORMATS.includes(value as SinkFormat)) return value as SinkFormat;
  throw new UsageError(`--format ${JSON.stringify(value)} is not a format ferry writes: give one of ${SINK_FORMATS.join(", ")}`);
}

export { SINK_FORMATS, type Sink, type SinkFormat, type SinkTable } from "./types.js";
