/**
 * What a chaos run records (the history) and what it finds at the end (the final state): plain
 * data, written to the report and judged by the checker (checker.ts), which does no I/O.
 */

import type { RepositoryKind } from "../../src/storage/repository/types.js";
import type { WriteRecord } from "../../test/helpers/workload.js";

export type { Outcome } from "../../test/helpers/workload.js";

export interface WriteOp extends Omit<WriteRecord, "id"> {
  writer: string;
  k: number;
}

/** A change of the `master` key in the leases bucket, as the run's observer saw it (wall clock). */
export interface LeaseObs {
  at: number;
  revision: number;
  op: "PUT" | "DEL" | "PURGE";
  node: string | null;
  epoch: number | null;
  instance?: string;
}

/** One heartbeat of a master or slave node: the epoch it reported. */
export interface EpochObs {
  at: number;
  node: string;
  instance: string;
  pid: number;
  epoch: number;
  state: string;
}

export interface FaultRecord {
  /** Position in the schedule. */
  n: number;
  kind: string;
  /** What the schedule names (a process, "master", "slave", a NATS server...). */
  target: string;
  /** The process or server it hit, resolved when injected. */
  resolved?: string;
  /** Planned offset from the start of the workload, and duration. */
  offsetMs: number;
  durationMs: number;
  params?: Record<string, unknown>;
  injectedAt?: number;
  healedAt?: number;
  skipped?: string;
  notes: string[];
}

/** An exit of a ferry process, with whether the run caused it. */
export interface ProcExit {
  name: string;
  pid: number;
  at: number;
  code: number | null;
  signal: string | null;
  /** Set when the run itself killed or stopped the process (a fault, or the end of the run). */
  cause: string | null;
}

/** A mode-0 (FULL) sync task of a table the workload never changes. */
export interface SyncTaskRecord {
  table: string;
  /** The task's DB of DB.TABLE (main when missing: reports of SQLite runs before PostgreSQL). */
  db?: string;
  dest: string;
  createdAt: number;
  /** When the synctool alerted that every subtask reached SUCCESS. */
  completedAt?: number;
  error?: string;
}

export interface History {
  scenario: string;
  seed: number;
  /** The nodes' repository kind (missing in reports written before PostgreSQL: sqlite). */
  repo?: RepositoryKind;
  startedAt: number;
  /** Workload start and end (faults are offsets from the start). */
  workload: { from: number; to: number };
  writes: WriteOp[];
  leases: LeaseObs[];
  epochs: EpochObs[];
  faults: FaultRecord[];
  exits: ProcExit[];
  syncTasks: SyncTaskRecord[];
  alerts: { at: number; kind: string; node?: string; message: string; data?: Record<string, unknown> }[];
  /** What went wrong while the cluster was being started (before the workload), if anything. */
  setup: string[];
}

export interface FinalState {
  /** Whether the cluster settled (all nodes streaming at the master's LSN) after the heal, and if not why. */
  quiescent: { ok: boolean; detail: string; ms: number };
  /** Replica (master and slaves) -> dump of its user tables (Repository.dump). */
  dumps: Record<string, string>;
  /** Replica -> every k in table w (one entry per row). */
  keys: Record<string, number[]>;
  /** Sync: per task (by dest), the rows of its table as JSON and the rows found in its files. */
  sync: { table: string; dest: string; want: string[]; got: string[] }[];
  /** Per process: lines of its log that say it crashed (fatal, uncaught). */
  crashLines: Record<string, string[]>;
  /** Processes still running at the end, before the orderly stop. */
  running: string[];
}

/** The result of one invariant. */
export interface InvariantResult {
  id: string;
  title: string;
  ok: boolean;
  /** What was checked (counts). */
  summary: string;
  /** Evidence of each violation (at most a few dozen lines). */
  evidence: string[];
}
