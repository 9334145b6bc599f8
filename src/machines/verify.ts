/**
 * Continuous verification (compare.intervalMs): the active watchdog compares every replica with the
 * master on a cadence. `verifierMachine` is the cadence: it waits the interval, runs one compare,
 * and waits again, so two compares never overlap and a slow (throttled) one delays the next rather
 * than piling up. The watchdog invokes it only while monitoring, so a failover stops it.
 * `findings` turns a compare's report into the replicas to mark diverged or to clear.
 */
import { fromPromise, sendParent, setup } from "xstate";

/** What verification reads of a compare report (client/compare.ts's CompareReport has these fields). */
export interface VerifyReport {
  master: string;
  lsn: number;
  tables: { table: string; node: string; diffs: { key: string }[] }[];
  /** Replicas that could not be compared: neither marked nor cleared this time. */
  errors: { node: string }[];
}

export interface DivergedTable {
  table: string;
  rows: number;
  /** The first KEYS_KEPT keys that differ, as key images. */
  keys: string[];
}

/** A replica found different from the master, and where. */
export interface DivergedMark {
  node: string;
  /** The master and LSN of the compare that first found this difference. */
  master: string;
  lsn: number;
  /** When it was found (the I/O layer's wall clock). */
  at: number;
  rows: number;
  tables: DivergedTable[];
}

/** Keys kept per table in a mark (and its KV record): enough to start looking, bounded in size. */
export const KEYS_KEPT = 20;
/** Keys named per table in an alert's message. */
const KEYS_NAMED = 5;

export interface Findings {
  /** Replicas newly found diverged, or whose difference changed: record and alert. */
  diverged: DivergedMark[];
  /** Marked replicas found identical now, or that are now the master (the reference): clear. */
  clean: string[];
}

const sameDifference = (a: DivergedMark | undefined, b: DivergedMark) => a !== undefined && JSON.stringify(a.tables) === JSON.stringify(b.tables);

/** What a report says about each replica it compared, against the marks already recorded. */
export function findings(r: VerifyReport, known: Record<string, DivergedMark>, at: number): Findings {
  const failed = new Set(r.errors.map((e) => e.node));
  const byNode = new Map<string, DivergedTable[]>();
  for (const t of r.tables) {
    if (failed.has(t.node)) continue;
    const tables = byNode.get(t.node) ?? [];
    byNode.set(t.node, tables);
    if (t.diffs.length > 0) tables.push({ table: t.table, rows: t.diffs.length, keys: t.diffs.slice(0, KEYS_KEPT).map((d) => d.key) });
  }
  const out: Findings = { diverged: [], clean: [] };
  for (const [node, tables] of byNode) {
    if (tables.length === 0) {
      if (known[node]) out.clean.push(node);
      continue;
    }
    const mark: DivergedMark = { node, master: r.master, lsn: r.lsn, at, rows: tables.reduce((n, t) => n + t.rows, 0), tables };
    if (!sameDifference(known[node], mark)) out.diverged.push(mark);
  }
  if (known[r.master]) out.clean.push(r.master);
  return out;
}

/** An alert as the machines emit it; the I/O layer raises it (actors/alerts.ts). */
export interface AlertEmitted {
  type: "alert";
  kind: string;
  severity: "info" | "warning" | "critical";
  message: string;
  data?: Record<string, unknown>;
}

/** A report's consequences: the marks after it, what changed in them, and the alerts that say so. */
export function verifyOutcome(r: VerifyReport, known: Record<string, DivergedMark>, at: number): { diverged: Record<string, DivergedMark>; changed: Findings; alerts: AlertEmitted[] } {
  const changed = findings(r, known, at);
  const diverged = { ...known };
  for (const m of changed.diverged) diverged[m.node] = m;
  for (const n of changed.clean) delete diverged[n];
  const alerts: AlertEmitted[] = [
    ...changed.diverged.map((m): AlertEmitted => ({
      type: "alert",
      kind: "replica-diverged",
      severity: "critical",
      message: `${m.node} differs from master ${m.master} at LSN ${m.lsn}: ${describeMark(m)}. A failover passes it over while a clean replica holds as much; fix it with: ferry repair --node ${m.node}`,
      data: { ...m },
    })),
    ...changed.clean.map((n): AlertEmitted => ({
      type: "alert",
      kind: "replica-clean",
      severity: "info",
      message: n === r.master ? `${n} is the master now: its diverged mark is cleared (replicas are compared with it)` : `${n} matches master ${r.master} again at LSN ${r.lsn}`,
      data: { node: n, master: r.master, lsn: r.lsn },
    })),
  ];
  return { diverged, changed, alerts };
}

/** A mark in one line: each table with its count and first keys. */
export function describeMark(m: DivergedMark): string {
  const table = (t: DivergedTable) => {
    const more = t.rows - Math.min(t.rows, KEYS_NAMED);
    return `${t.table}: ${t.rows} row(s), key(s) ${t.keys.slice(0, KEYS_NAMED).join(", ")}${more > 0 ? ` and ${more} more` : ""}`;
  };
  return m.tables.map(table).join("; ");
}

export type VerifierParentEvent = { type: "VERIFIED"; report: VerifyReport; at: number } | { type: "VERIFY_FAILED"; message: string };

export const verifierMachine = setup({
  types: { input: {} as { intervalMs: number }, context: {} as { intervalMs: number } },
  actors: {
    /** One compare of every replica; resolves to null when there was nothing to compare (no master). */
    compare: fromPromise<{ report: VerifyReport; at: number } | null>(async () => null),
  },
  delays: { interval: ({ context }) => context.intervalMs },
  guards: { off: ({ context }) => context.intervalMs <= 0 },
}).createMachine({
  id: "verifier",
  context: ({ input }) => input,
  initial: "waiting",
  states: {
    waiting: {
      always: { guard: "off", target: "off" },
      after: { interval: "comparing" },
    },
    comparing: {
      invoke: {
        src: "compare",
        onDone: [
          { guard: ({ event }) => event.output === null, target: "waiting" },
          { target: "waiting", actions: sendParent(({ event }) => ({ type: "VERIFIED", report: event.output!.report, at: event.output!.at })) },
        ],
        onError: {
          target: "waiting",
          actions: sendParent(({ event }) => ({ type: "VERIFY_FAILED", message: (event.error as Error)?.message ?? String(event.error) })),
        },
      },
    },
    /** compare.intervalMs is 0: no continuous verification. */
    off: {},
  },
});
