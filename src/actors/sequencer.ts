/**
 * The sequencer's I/O: one capture cycle reads every committed change past the checkpoint in one
 * statement (so the batch is a union of whole transactions), spools it under the next LSN in parts,
 * and writes the last part, the batch meta and the new checkpoint in one synced LevelDB batch.
 */
import { fromCallback, fromPromise } from "xstate";
import { encodeJson } from "../nats/codec.js";
import { sequencerMachine, type SequencerEvent } from "../machines/sequencer.js";
import type { Meta } from "../storage/meta.js";
import type { BatchMeta, Spool } from "../storage/spool.js";
import type { Repository } from "../storage/types.js";
import type { CaptureProgress, LeaseClock, Runtime } from "./runtime.js";

export interface SequencerDeps {
  rt: Runtime;
  repo: Repository;
  spool: Spool;
  meta: Meta;
  progress: CaptureProgress;
  clock: LeaseClock;
}

const enc = new TextEncoder();
/** Captured rows already spooled are deleted now and then, not after every batch... */
const PRUNE_EVERY_MS = 5000;
/**
 * ...and a slice at a time: the delete runs on the master's event loop, and a burst's million rows
 * deleted at once would stall it (and the lease renewals) for seconds. Leftovers go next cycle.
 */
const PRUNE_ROWS = 10_000;

/**
 * Capture cycles, one at a time. `upto` caps a cycle at a change id: a snapshot taken at capture
 * position S asks for a batch that ends exactly at S, so the snapshot corresponds to an LSN.
 */
export type Capture = (upto?: number) => Promise<number>;

export function createCapture(d: SequencerDeps): Capture {
  let fp: string | null = null;
  let fpEpoch = -1;
  let lastPrune = 0;
  let pruned = 0;
  let pruneBehind = false;
  let running: Promise<unknown> = Promise.resolve();

  const cycle = async (upto?: number): Promise<number> => {
    const { repo, spool, progress } = d;
    repo.checkAvailable();
    const checkpoint = progress.checkpoint;
    if (Math.min(repo.changeSeq(), upto ?? Infinity) <= checkpoint) return 0;
    if (!d.clock.valid()) return 0; // fenced: nothing may be sequenced under an epoch we no longer hold

    const lsn = spool.head + 1;
    const epoch = d.clock.epoch;
    const partBytes = d.rt.config.replication.partBytes;
    let cur: string[] = [];
    let curBytes = 0;
    let part = 0;
    let bytes = 0;
    let firstId = 0;
    let lastId = 0;
    let ddl = false;
    const take = (): Uint8Array => {
      const data = enc.encode(`[${cur.join(",")}]`);
      cur = [];
      curBytes = 0;
      bytes += data.length;
      return data;
    };
    for (const [id, op, s] of repo.readEncodedChanges(checkpoint, upto)) {
      if (firstId === 0) firstId = id;
      lastId = id;
      if (op === "X") ddl = true;
      cur.push(s);
      curBytes += s.length + 1;
      // A large transaction goes out in parts, written unsynced: without its meta, a batch is never served.
      if (curBytes >= partBytes) await spool.writeUnsynced({ lsn, part: part++, parts: 0, data: take() });
    }
    if (lastId === 0) return 0;
    const data = take();

    // Cached per epoch: a node promoted again may have applied DDL as a replica in between.
    if (ddl || fp === null || fpEpoch !== epoch) {
      fp = repo.fingerprint();
      fpEpoch = epoch;
    }
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
      fp,
      ddl,
    };
    await spool.write([{ lsn, part, parts: part + 1, data, meta }], [d.meta.captureOp({ checkpoint: lastId, lsn, epoch })]);
    progress.advanced(lastId, lsn);
    d.rt.nc.publish(d.rt.subj.notify, encodeJson({ node: d.rt.node, epoch, lsn }));

    const t = Date.now();
    if ((t - lastPrune > PRUNE_EVERY_MS || pruneBehind) && lastId > pruned) {
      lastPrune = t;
      try {
        pruneBehind = repo.pruneChanges(lastId, PRUNE_ROWS) === PRUNE_ROWS;
        if (!pruneBehind) pruned = lastId;
      } catch (err) {
        d.rt.log.debug({ err: String(err) }, "pruning captured changes deferred");
      }
    }
    return 1;
  };
  return (upto?: number) => {
    const next = running.then(() => cycle(upto));
    running = next.catch(() => {});
    return next;
  };
}

export function sequencerLogic(d: SequencerDeps, capture: Capture) {
  return sequencerMachine.provide({
    actors: {
      capture: fromPromise<number, void>(async () => {
        try {
          return await capture();
        } catch (err) {
          if ((err as { code?: string }).code !== "REPO_UNAVAILABLE") d.rt.log.error({ err }, "capture cycle failed");
          throw err;
        }
      }),
      probe: fromPromise<void, void>(async () => {
        d.repo.checkAvailable();
        d.repo.changeSeq();
      }),
      watch: fromCallback<SequencerEvent, { intervalMs: number }>(({ sendBack, input }) => {
        const t = setInterval(() => {
          try {
            if (d.repo.changeSeq() > d.progress.checkpoint) sendBack({ type: "KICK" });
          } catch {
            sendBack({ type: "KICK" }); // the capture cycle reports what is wrong
          }
        }, input.intervalMs);
        return () => clearInterval(t);
      }),
    },
  });
}
