import { createRequire } from "node:module";
import { pino, type Logger } from "pino";
import type { InspectionEvent } from "xstate";

export type { Logger };

/**
 * A pino logger whose every line carries `role` and `node`: JSON, or human-readable lines
 * (pino-pretty) when `pretty` is set or, by default, when stdout is a terminal.
 */
export function createLogger(opts: { role: string; node: string; level?: string; pretty?: boolean }): Logger {
  const options = { level: opts.level ?? "info", base: { role: opts.role, node: opts.node } };
  if (!(opts.pretty ?? process.stdout.isTTY)) return pino(options);
  // Loaded only here: it costs a process about 70 ms at start, and node processes log JSON.
  const pretty = createRequire(import.meta.url)("pino-pretty") as typeof import("pino-pretty");
  return pino(options, pretty({ sync: true, colorize: process.stdout.isTTY, ignore: "pid,hostname", messageFormat: "{role} {node} {msg}" }));
}

/**
 * An XState `inspect` observer that logs each actor's state changes (not every event) on the
 * given logger, with the actor's id, so every transition of every actor is in the log; and each
 * change of an actor's `context.error` (e.g. "no active master") as a warning.
 */
export function inspectInto(log: Logger): (ev: InspectionEvent) => void {
  const last = new Map<string, string>();
  const lastError = new Map<string, string>();
  return (ev) => {
    if (ev.type !== "@xstate.snapshot") return;
    const snap = ev.snapshot as { value?: unknown; status?: string; context?: { error?: { code?: string; message?: string } | null } };
    if (snap.value === undefined) return;
    const err = snap.context?.error;
    const errKey = err ? `${err.code}: ${err.message}` : "";
    if (errKey !== (lastError.get(ev.actorRef.sessionId) ?? "")) {
      lastError.set(ev.actorRef.sessionId, errKey);
      if (err) log.warn({ actor: (ev.actorRef as { id?: string }).id, code: err.code }, err.message ?? String(err.code));
    }
    const value = JSON.stringify(snap.value);
    const id = (ev.actorRef as { id?: string }).id || ev.actorRef.sessionId;
    if (last.get(ev.actorRef.sessionId) === value) return;
    last.set(ev.actorRef.sessionId, value);
    const level = isQuiet(snap) ? "debug" : "info";
    log[level]({ actor: id, state: snap.value, event: ev.event.type }, `${id}: ${value.replace(/"/g, "")}`);
  };
}

/**
 * Steady-loop states (a replica pulling and applying, a lease being renewed, the sequencer
 * capturing) are marked `meta: { quiet: true }`: entering them is logged at debug, so the info log
 * tells the story (promotions, fencing, resyncs, errors) instead of every batch.
 */
function isQuiet(snap: { value?: unknown; machine?: { id: string }; getMeta?: () => Record<string, { quiet?: boolean } | undefined> }): boolean {
  if (!snap.getMeta || !snap.machine) return false;
  const meta = snap.getMeta();
  const leaves: string[] = [];
  const walk = (v: unknown, path: string) => {
    if (typeof v === "string") leaves.push(`${path}.${v}`);
    else if (v && typeof v === "object") for (const [k, c] of Object.entries(v)) walk(c, `${path}.${k}`);
  };
  walk(snap.value, snap.machine.id);
  return leaves.length > 0 && leaves.every((l) => meta[l]?.quiet === true);
}

/**
 * An actor that fails (an action threw) stops silently in XState; a process must not go on
 * without its brain. Log it and exit non-zero so a supervisor restarts the process from its
 * durable state.
 */
export function exitOnActorError(actor: { subscribe(o: { error: (e: unknown) => void }): unknown }, log: Logger): void {
  actor.subscribe({
    error: (err) => {
      log.fatal({ err }, "actor failed; exiting so the process restarts from its durable state");
      process.exit(70);
    },
  });
}
