/**
 * A subtask's I/O on the synctool: one step pulls the pack at the saved position from the
 * collector, writes it to the destination durably (temporary name, fsync, rename, directory
 * fsync), then saves the new position in LevelDB. While a pack is written the next one is already
 * requested (two packs in flight at most), so collector and destination work side by side.
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
  /** Pack files renamed, over all subtasks (sync.drillHaltAfterFiles counts them). */
  renamed: { n: number };
  /** False once this synctool is no longer active: nothing more is renamed or saved. */
  live: () => boolean;
}

interface Pack {
  header: PackHeader;
  payload: Uint8Array;
}

export class SubtaskIo {
  pos: SyncPosition = START;
  rows = 0;
  stopped = false;
  readonly dir: PartitionDir;
  private prefetch: { key: string; pack: Promise<Pack> } | null = null;
  private loadError: unknown = null;

  constructor(private d: SubtaskDeps) {
    this.dir = new PartitionDir(d.def.dest, d.def.table, d.part);
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
      const { files, tmp } = await this.dir.scan();
      for (const t of tmp) {
        await this.dir.remove(t);
        rt.log.info({ subtask: this.label, file: t }, `removed ${t}: a pack whose write never finished`);
      }
      const saved = await progress.get(def.id, part);
      const fromFiles = await positionFromFiles(files, (n) => this.dir.lastLine(n), def.key);
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
      return { resumed: saved !== null || fromFiles !== null, done: this.pos.phase === "done" };
    } catch (err) {
      this.loadError = err; // the first step reports it (and the subtask fails)
      return { resumed: false, done: false };
    }
  }

  /** One pack: fetched (or taken from the prefetch), written, progress saved. */
  async step(c: CollectorRef): Promise<StepResult> {
    if (this.loadError) throw this.loadError;
    const pos = this.pos;
    if (pos.phase === "done") return { kind: "done", rows: 0 };
    const key = `${c.node}/${c.instance}|${JSON.stringify(pos)}`;
    const pending = this.prefetch?.key === key ? this.prefetch.pack : this.fetch(c, pos);
    this.prefetch = null;
    const { header, payload } = await pending;
    const { records, next, more } = header;
    try {
      if (records > 0 && next.phase !== "done") {
        const pack = this.fetch(c, next);
        pack.catch(() => {}); // awaited by the next step, or dropped
        this.prefetch = { key: `${c.node}/${c.instance}|${JSON.stringify(next)}`, pack };
      }
      if (records > 0) {
        const name =
          pos.phase === "snapshot" && next.phase === "snapshot"
            ? snapshotFileName(next.segs[next.segs.length - 1].lsn, pos.rows + 1, pos.rows + records)
            : pos.phase === "stream" && next.phase === "stream"
              ? streamFileName(pos, next, records)
              : null;
        if (!name) throw new SyncError("INTERNAL", `${this.label}: a pack of ${records} records from ${pos.phase} to ${next.phase}`);
        await this.dir.write(name, payload, () => this.guard());
        const halt = this.d.rt.config.sync.drillHaltAfterFiles;
        if (halt > 0 && ++this.d.renamed.n === halt) {
          this.d.rt.log.warn({ subtask: this.label, file: name }, "fault drill (sync.drillHaltAfterFiles): halted after renaming a pack file, before saving its progress");
          await new Promise(() => {});
        }
      }
      if (JSON.stringify(next) !== JSON.stringify(pos)) {
        this.guard();
        const rows = this.rows + records;
        await this.d.progress.save(this.d.def.id, this.d.part, { pos: next, rows, at: Date.now() });
        this.pos = next;
        this.rows = rows;
      }
    } catch (err) {
      this.prefetch = null;
      throw err;
    }
    return { kind: next.phase === "done" ? "done" : records > 0 || more ? "data" : "idle", rows: records };
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
