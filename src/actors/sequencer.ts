/**
 * The sequencer's I/O: one capture cycle reads every committed change past the checkpoint in one
 * statement (so the batch is a union of whole transactions), spools it under the next LSN in parts,
 * and writes the last part, the batch meta and the new checkpoint in one synced LevelDB batch.
 */
import { fromCallback, fromPromise } from "xstate";
import { encodeFrame, encodeJson } from "../nats/codec.js";
import type { PushHeader } from "../nats/messages.js";
import { OUTAGE_CODES, sequencerMachine, type SequencerEvent } from "../machines/sequencer.js";
import type { Meta } from "../storage/meta.js";
import type { BatchMeta } from "../batch.js";
import type { Spool } from "../storage/spool.js";
import type { CapturedPart, Repository } from "../storage/repository/types.js";
import type { ReplicaRegistry } from "./replicas.js";
import type { CaptureProgress, LeaseClock, Runtime } from "./runtime.js";

export interface SequencerDeps {
  rt: Runtime;
  repo: Repository;
  spool: Spool;
  meta: Meta;
  progress: CaptureProgress;
  clock: LeaseClock;
  replicas: ReplicaRegistry;
}

/**
 * Capture cycles, one at a time. `upto` caps a cycle at a change id: a snapshot taken at capture
 * position S asks for a batch that ends exactly at S, so the snapshot corresponds to an LSN.
 */
export interface Capture {
  (upto?: number): Promise<number>;
  /**
   * Opens a read with `open` between two capture cycles and cuts a batch at its capture position
   * (`seqOf`) before any other cycle runs: the spool's head is then exactly what the read holds.
   */
  aligned<R>(open: () => Promise<R>, seqOf: (r: R) => number): Promise<R>;
}

export function createCapture(d: SequencerDeps): Capture {
  let fp: string | null = null;
  let fpEpoch = -1;
  let running: Promise<unknown> = Promise.resolve();

  const cycle = async (upto?: number): Promise<number> => {
    const { repo, spool, progress } = d;
    const cfg = d.rt.config.replication;
    await repo.checkAvailable();
    const checkpoint = progress.checkpoint;
    if (Math.min(await repo.changeSeq(), upto ?? Infinity) <= checkpoint) return 0;
    if (!d.clock.valid()) return 0; // fenced: nothing may be sequenced under an epoch we no longer hold

    // The schema before the read: a batch's fingerprint must be the schema as of its end, and DDL
    // committed while it is read (by another writer) belongs to a later batch.
    const fpBefore = await repo.fingerprint();
    const lsn = spool.head + 1;
    const epoch = d.clock.epoch;
    let held: CapturedPart | null = null;
    let part = 0;
    let bytes = 0;
    let firstId = 0;
    let lastId = 0;
    let ddl = false;
    const read = repo.readChanges(checkpoint, { upto, partBytes: cfg.partBytes });
    for await (const p of read) {
      // A large transaction goes out in parts, written unsynced: without its meta, a batch is never
      // served. The last part is held back to be written with the meta.
      if (held) await spool.writeUnsynced({ lsn, part: part++, parts: 0, data: held.data });
      held = p;
      bytes += p.data.length;
      if (firstId === 0) firstId = p.first;
      lastId = p.last;
      ddl ||= p.ddl;
    }
    // The read may cover more than its last change (positions that are not change ids): a waiter
    // for such a position is answered by this batch, or by the head when nothing was captured.
    const reached = Math.max(read.reached(), lastId);
    if (held === null) {
      if (reached <= checkpoint) return 0;
      await d.meta.setCapture({ checkpoint: reached, lsn: spool.head, epoch: spool.last?.epoch ?? epoch });
      progress.advanced(reached, spool.head);
      await confirm(reached);
      return 0;
    }
    const data = held.data;

    // Cached per epoch: a node promoted again may have applied DDL as a replica in between.
    if (ddl || fp === null || fpEpoch !== epoch) {
      const after = await repo.fingerprint();
      // Changed during the read: this batch's schema is not known (""), and nobody checks it.
      fp = after === fpBefore ? after : "";
      fpEpoch = epoch;
    }
    const batchFp = fp;
    if (fp === "") fp = null;
    const prev = spool.last;
    const meta: BatchMeta = {
      lsn,
      epoch,
      ts: Date.now(),
      parts: part + 1,
      bytes,
      cum: (prev?.cum ?? 0) + bytes,
      firstId,
      lastId,
      fp: batchFp,
      ddl,
    };
    await spool.write([{ lsn, part, parts: part + 1, data, meta }], [d.meta.captureOp({ checkpoint: reached, lsn, epoch })]);
    progress.advanced(reached, lsn);
    // Pushed with the same guard as a pull's reply: nothing goes out under an epoch no longer held.
    if (part === 0 && data.length <= cfg.pushBytes && d.clock.valid()) {
      const header: PushHeader = { node: d.rt.node, epoch, head: lsn, ack: cfg.syncReplicas > 0, records: [{ lsn, part: 0, parts: 1, len: data.length, meta: { ...meta, parts: 1 } }] };
      try {
        d.rt.nc.publish(d.rt.subj.push, encodeFrame(header, [data]));
      } catch (err) {
        // Past the server's max_payload (pushBytes set above it): the replicas pull it, as any batch.
        d.rt.log.debug({ err: String(err), lsn }, "batch not pushed");
      }
    }
    d.rt.nc.publish(d.rt.subj.notify, encodeJson({ node: d.rt.node, epoch, lsn }));
    await confirm(reached);
    return 1;
  };
  /** Only after the synced spool write: a crash before it finds the changes still captured. */
  const confirm = async (upto: number) => {
    try {
      await d.repo.confirmCapture(upto);
    } catch (err) {
      d.rt.log.debug({ err: String(err) }, "releasing captured changes deferred");
    }
  };
  const queue = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = running.then(fn);
    running = next.catch(() => {});
    return next;
  };
  const capture = (upto?: number) => queue(() => cycle(upto));
  capture.aligned = <R>(open: () => Promise<R>, seqOf: (r: R) => number) =>
    queue(async () => {
      const r = await open();
      // A read that gave up waiting for the position (PostgreSQL's stream lagging past its wait) takes another cycle.
      for (let before = -1; d.progress.checkpoint < seqOf(r) && d.progress.checkpoint !== before; ) {
        before = d.progress.checkpoint;
        await cycle(seqOf(r));
      }
      return r;
    });
  return capture;
}

/**
 * Changes were committed where capture could not see them (a PostgreSQL slot dropped by hand, a
 * server restored without it): what the replicas hold can no longer be proven complete, so every
 * replica is marked for a resync and the operator is told. Capture itself goes on.
 */
async function captureLost(d: SequencerDeps, err: Error): Promise<void> {
  const reason = `${d.rt.node} lost captured changes: ${err.message}`;
  for (const r of d.replicas.all()) await d.replicas.markResync(r.node, reason);
  await d.replicas.flush();
  d.rt.alerts.raise("capture-lost", "critical", reason, { replicas: d.replicas.all().map((r) => r.node) });
}

export function sequencerLogic(d: SequencerDeps, capture: Capture) {
  return sequencerMachine.provide({
    actors: {
      capture: fromPromise<number, void>(async () => {
        try {
          return await capture();
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code === "CAPTURE_LOST") await captureLost(d, err as Error);
          // An outage is said once, by the node's alert when the sequencer pauses.
          else if (!OUTAGE_CODES.has(code ?? "")) d.rt.log.error({ err }, "capture cycle failed");
          throw err;
        }
      }),
      probe: fromPromise<void, void>(async () => {
        await d.repo.checkAvailable();
        await d.repo.changeSeq();
        await d.meta.checkWritable();
      }),
      watch: fromCallback<SequencerEvent, { intervalMs: number }>(({ sendBack, input }) => {
        let busy = false;
        const t = setInterval(() => {
          if (busy) return;
          busy = true;
          d.repo
            .changeSeq()
            .then((seq) => seq > d.progress.checkpoint && sendBack({ type: "KICK" }))
            .catch(() => sendBack({ type: "KICK" })) // the capture cycle reports what is wrong
            .finally(() => (busy = false));
        }, input.intervalMs);
        return () => clearInterval(t);
      }),
    },
  });
}
