/**
 * A subtask's I/O on the synctool: one step pulls the pack after the last one taken from the
 * collector. The task's sink (src/storage/sink/) turns packs into files: a row format writes each
 * pack as a file; a column format combines consecutive packs until sync.fileBytes (or until
 * sync.fileMaxAgeMs when the collector has nothing more), so files are row groups readers like.
 * A file is written durably (temporary name, fsync, rename, directory fsync), and only then is the
 * position after its last pack saved in LevelDB: packs combined but not yet written are simply
 * pulled again after a crash. While a file is encoded and written the subtask pulls on (one file
 * in flight a subtask; files and their progress in order), and while a pack is combined the next
 * one is already requested, so collector, encoder and destination work side by side.
 *
 * At start the saved progress is reconciled with the destination: temporary files are deleted,
 * and files past the saved position (the synctool died between the rename and the save, or a
 * standby takes over with no progress of its own) advance it, so no row is written twice.
 */
import { ClusterError, SyncError } from "../errors.js";
import type { CollectorRef, StepResult } from "../machines/sync-task.js";
import { decodeFrame } from "../nats/codec.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { callFrame } from "../nats/rpc.js";
import type { PackHeader, PackRequest } from "../nats/messages.js";
import { PartitionDir, positionFromFiles, snapshotFileName, streamFileName } from "../storage/destination.js";
import { openSink, parseFormat, type Sink, type SinkFormat, type SinkTable } from "../storage/sink/index.js";
import type { SinkEncoder } from "../storage/sink/encoder.js";
import type { ValueKind } from "../storage/repository/types.js";
import type { SyncProgress } from "../storage/sync-progress.js";
import { START, comparePositions, describePosition, requiredLsn, type SyncPosition } from "../storage/sync.js";
import type { TaskDef } from "../nats/records.js";
import type { Runtime } from "./runtime.js";

export const MODE_NAMES = ["FULL", "INCREMENTAL_BY_TIMESTAMP", "FULL_AND_CONTINUOUS"] as const;

export interface SubtaskDeps {
  rt: Runtime;
  def: TaskDef;
  part: number;
  progress: SyncProgress;
  /** Packs requested and not yet answered, over all subtasks. */
  inflight: { n: number };
  /** Encoder threads for the formats that combine packs into large files, shared by all subtasks. */
  encoder: SinkEncoder;
  /** Pack files renamed, over all subtasks (sync.drillHaltAfterFiles counts them). */
  renamed: { n: number };
  /** False once this synctool is no longer active: nothing more is renamed or saved. */
  live: () => boolean;
}

interface Pack {
  header: PackHeader;
  payload: Uint8Array;
}

/** Packs taken from the collector and not yet written: they become one file. */
interface Combined {
  kind: "snapshot" | "stream";
  /** The snapshot segment's LSN (snapshot files carry one). */
  lsn: number;
  from: SyncPosition;
  to: SyncPosition;
  /** The subtask's ordinal of the first record (`_seq`). */
  firstSeq: number;
  records: number;
  payloads: Uint8Array[];
  bytes: number;
  since: number;
}

export class SubtaskIo {
  pos: SyncPosition = START;
  rows = 0;
  /** Bytes of the subtask's files at the destination. */
  bytes = 0;
  stopped = false;
  readonly dir: PartitionDir;
  readonly sink: Sink;
  private format: SinkFormat;
  private table: SinkTable;
  private combined: Combined | null = null;
  /** The position and rows after every pack taken: saved, in the file being written, or combined. */
  private taken: SyncPosition = START;
  private takenRows = 0;
  /** The file being encoded and written, and the error of one that failed (the next step throws it). */
  private writing: Promise<void> | null = null;
  private writeError: unknown = null;
  private prefetch: { key: string; pack: Promise<Pack> } | null = null;
  private loadError: unknown = null;
  /**
   * Counts steps. A step's actor stopped by a reassignment is not cancelled: its pack may still
   * arrive (a collector paused or cut off answers once it is back) while a step on another
   * collector has taken the same range. Only the newest step may touch the subtask's state.
   */
  private steps = 0;

  constructor(private d: SubtaskDeps) {
    const { def } = d;
    // A task created before formats existed writes JSON Lines to part-<p>/, as it did.
    this.format = def.format === undefined ? "jsonl" : parseFormat(def.format);
    this.table = { columns: def.columns, kinds: (def.kinds as ValueKind[] | undefined) ?? def.columns.map(() => "any"), key: def.key, changes: def.mode !== 0 };
    this.sink = openSink(this.format, this.table);
    this.dir = new PartitionDir(def.dest, def.table, d.part, this.sink.ext, def.format === undefined ? "legacy" : "hive");
  }

  get label(): string {
    return `${this.d.def.db}.${this.d.def.table}/${this.d.part}`;
  }

  describe(): string {
    return describePosition(this.pos);
  }

  requiredLsn(): number {
    return requiredLsn(this.pos);
  }

  /** Reconciles saved progress with the destination; tells whether the subtask resumes and whether it is complete. */
  async load(): Promise<{ resumed: boolean; done: boolean }> {
    const { rt, def, part, progress } = this.d;
    try {
      await this.dir.ensure();
      const { files, bytes, tmp } = await this.dir.scan();
      this.bytes = bytes;
      for (const t of tmp) {
        await this.dir.remove(t);
        rt.log.info({ subtask: this.label, file: t }, `removed ${t}: a pack whose write never finished`);
      }
      const saved = await progress.get(def.id, part);
      const fromFiles = await positionFromFiles(files, (n) => this.sink.lastKey(this.dir.path(n)));
      this.pos = saved?.pos ?? START;
      this.rows = saved?.rows ?? 0;
      if (fromFiles && (!saved || comparePositions(fromFiles.pos, saved.pos) > 0)) {
        rt.log.info(
          { subtask: this.label, saved: saved ? describePosition(saved.pos) : null, files: describePosition(fromFiles.pos) },
          saved
            ? `${this.label}: the destination holds packs past the saved progress; advanced to ${describePosition(fromFiles.pos)}`
            : `${this.label}: progress rebuilt from the destination's files: ${describePosition(fromFiles.pos)}`,
        );
        this.pos = fromFiles.pos;
        this.rows = fromFiles.rows;
        await progress.save(def.id, part, { pos: this.pos, rows: this.rows, at: Date.now() });
      }
      this.taken = this.pos;
      this.takenRows = this.rows;
      return { resumed: saved !== null || fromFiles !== null, done: this.pos.phase === "done" };
    } catch (err) {
      this.loadError = err; // the first step reports it (and the subtask fails)
      return { resumed: false, done: false };
    }
  }

  /** One pack: fetched (or taken from the prefetch) and combined; a file written and its progress saved when due. */
  async step(c: CollectorRef): Promise<StepResult> {
    if (this.loadError) throw this.loadError;
    const step = ++this.steps;
    const at = this.taken;
    if (at.phase === "done") return { kind: "done", rows: 0 };
    const key = `${c.node}/${c.instance}|${JSON.stringify(at)}`;
    const pending = this.prefetch?.key === key ? this.prefetch.pack : this.fetch(c, at);
    this.prefetch = null;
    try {
      const { header, payload } = await pending;
      if (step !== this.steps) {
        this.d.rt.log.warn({ subtask: this.label, collector: c.node, records: header.records }, `${this.label}: a pack from ${c.node} arrived after the subtask moved on; dropped`);
        return { kind: "idle", rows: 0 };
      }
      const { records, next, more } = header;
      if (this.writeError) throw this.writeError;
      if (records > 0 && next.phase !== "done") {
        const pack = this.fetch(c, next);
        pack.catch(() => {}); // awaited by the next step, or dropped
        this.prefetch = { key: `${c.node}/${c.instance}|${JSON.stringify(next)}`, pack };
      }
      if (records > 0) await this.combine(at, next, records, payload);
      else if (JSON.stringify(next) !== JSON.stringify(at)) {
        if (next.phase === at.phase && this.combined) this.combined.to = next; // changes of other partitions: the file's range covers them
        else {
          // The snapshot ended (stream or done), or only other partitions changed: files first, then the position.
          await this.flush();
          await this.drain();
          await this.save(next, 0);
        }
        this.taken = next;
      }
      const due = this.combined;
      const { fileBytes, fileMaxAgeMs } = this.d.rt.config.sync;
      if (due && (!this.sink.combines || due.bytes >= fileBytes || (!more && Date.now() - due.since >= fileMaxAgeMs))) await this.flush();
      return { kind: next.phase === "done" ? "done" : records > 0 || more ? "data" : "idle", rows: records };
    } catch (err) {
      if (step !== this.steps) throw err;
      // Everything not saved is pulled again from the saved position, once the file in flight has ended.
      this.prefetch = null;
      this.combined = null;
      await this.drained();
      this.writing = null;
      this.writeError = null;
      this.taken = this.pos;
      this.takenRows = this.rows;
      throw err;
    }
  }

  /** Resolves when no file is being written (whether it succeeded or not). */
  drained(): Promise<void> {
    return this.writing?.catch(() => {}) ?? Promise.resolve();
  }

  /** Waits for the file being written; throws its error. */
  private async drain(): Promise<void> {
    await this.writing;
    if (this.writeError) throw this.writeError;
  }

  private async combine(at: SyncPosition, next: SyncPosition, records: number, payload: Uint8Array): Promise<void> {
    const kind = at.phase === "snapshot" && next.phase === "snapshot" ? "snapshot" : at.phase === "stream" && next.phase === "stream" ? "stream" : null;
    if (!kind) throw new SyncError("INTERNAL", `${this.label}: a pack of ${records} records from ${at.phase} to ${next.phase}`);
    const lsn = next.phase === "snapshot" ? next.segs[next.segs.length - 1].lsn : 0;
    // A snapshot file holds rows read at one LSN: a reopened snapshot starts a new file.
    if (this.combined && (this.combined.kind !== kind || this.combined.lsn !== lsn)) await this.flush();
    const c = (this.combined ??= { kind, lsn, from: at, to: at, firstSeq: this.takenRows + 1, records: 0, payloads: [], bytes: 0, since: Date.now() });
    c.to = next;
    this.taken = next;
    this.takenRows += records;
    c.records += records;
    c.payloads.push(payload);
    c.bytes += payload.length;
  }

  /** Starts writing the combined packs as one file, after the file before it. */
  private async flush(): Promise<void> {
    const c = this.combined;
    if (!c) return;
    this.combined = null;
    await this.drain();
    const w = this.write(c);
    this.writing = w;
    w.then(
      () => {
        if (this.writing === w) this.writing = null;
      },
      (err) => (this.writeError ??= err),
    );
  }

  /** Writes one file, then saves the position after it. */
  private async write(c: Combined): Promise<void> {
    const { from, to } = c;
    const ext = this.sink.ext;
    const name =
      from.phase === "snapshot"
        ? snapshotFileName(c.lsn, from.rows + 1, from.rows + c.records, ext)
        : from.phase === "stream" && to.phase === "stream"
          ? streamFileName(from, to, c.records, ext)
          : null;
    if (!name) throw new SyncError("INTERNAL", `${this.label}: a file from ${from.phase} to ${to.phase}`);
    const batch = { kind: c.kind, lsn: c.lsn, firstSeq: c.firstSeq, payloads: c.payloads };
    const data = this.sink.combines ? await this.d.encoder.encode(this.format, this.table, batch) : this.sink.encode(batch);
    await this.dir.write(name, data, () => this.guard());
    this.bytes += data.length;
    const halt = this.d.rt.config.sync.drillHaltAfterFiles;
    if (halt > 0 && ++this.d.renamed.n === halt) {
      this.d.rt.log.warn({ subtask: this.label, file: name }, "fault drill (sync.drillHaltAfterFiles): halted after renaming a pack file, before saving its progress");
      await new Promise(() => {});
    }
    await this.save(to, c.records);
  }

  private async save(next: SyncPosition, records: number): Promise<void> {
    this.guard();
    const rows = this.rows + records;
    await this.d.progress.save(this.d.def.id, this.d.part, { pos: next, rows, at: Date.now() });
    this.pos = next;
    this.rows = rows;
  }

  private guard(): void {
    if (this.stopped || !this.d.live()) {
      throw new ClusterError("FENCED", `${this.label}: this synctool is no longer active or the task was deleted`);
    }
  }

  private async fetch(c: CollectorRef, pos: SyncPosition): Promise<Pack> {
    const { rt, def, part, inflight } = this.d;
    const subject = rt.subj.collector(c.node).pack;
    const body: PackRequest = {
      task: def.id,
      table: def.table,
      part,
      partitions: def.partitions,
      mode: def.mode,
      since: def.mode === 1 && def.tsColumn !== undefined && def.ts !== undefined ? { column: def.tsColumn, min: def.ts } : undefined,
      pos,
      maxBytes: Math.max(1024, Math.min(rt.config.sync.maxPackBytes, (rt.nc.info?.max_payload ?? 1024 * 1024) - 64 * 1024)),
    };
    inflight.n++;
    let data: Uint8Array;
    try {
      data = await callFrame(rt.nc, ENDPOINTS.pack, subject, body, { timeoutMs: 2 * rt.config.nats.requestTimeoutMs, peer: `collector ${c.node}` });
    } finally {
      inflight.n--;
    }
    const { header, payloads } = decodeFrame<PackHeader>(subject, data, (h) => [h.len]);
    return { header, payload: payloads[0] };
  }
}
