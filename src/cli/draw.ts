/**
 * Tables and progress bars, loaded when a command draws one: every ferry process (node processes
 * too) loads every command's module to parse its command line, and the two libraries cost it about
 * 100 ms of CPU at start.
 */
import { createRequire } from "node:module";
import type CliTable from "cli-table3";
import type * as CliProgress from "cli-progress";

const load = createRequire(import.meta.url);

export function newTable(options: CliTable.TableConstructorOptions): CliTable.Table {
  const Table = load("cli-table3") as typeof CliTable;
  return new Table(options);
}

export function cliProgress(): typeof CliProgress {
  return load("cli-progress") as typeof CliProgress;
}
