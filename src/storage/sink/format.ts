/**
 * A task's format as given, checked. Apart from index.ts, which loads every sink: the command line
 * checks --format without loading the Parquet libraries.
 */
import { UsageError } from "../../errors.js";
import { SINK_FORMATS, type SinkFormat } from "./types.js";

export function parseFormat(value: unknown): SinkFormat {
  if (SINK_FORMATS.includes(value as SinkFormat)) return value as SinkFormat;
  throw new UsageError(`--format ${JSON.stringify(value)} is not a format ferry writes: give one of ${SINK_FORMATS.join(", ")}`);
}
