/**
 * The sync destination: a directory. Each file of a subtask goes to `DIR/<table>/part=<p>/` (Hive
 * style, so readers take the partition as a column; tasks created before formats existed keep
 * `part-<p>/`), written to a hidden temporary name, fsynced, renamed, and the directory fsynced;
 * only then is the progress saved (LevelDB). File names carry the position range, so the files
 * alone say exactly where a subtask stands (a standby synctool resumes from them). EXT is the
 * task's format (src/storage/sink/ says what a file holds):
 *
 *   snapshot-<LSN:20>-<FIRST:12>-<LAST:12>.EXT
 *       snapshot rows FIRST..LAST (1-based, in key order) of the partition, read at LSN.
 *   stream-<FROM>-<TO>-<N:10>.EXT   (FROM and TO are LSN:20.PART:6.CHANGE:6)
 *       N change records, from change FROM up to (not including) change TO of the stream.
 *
 * Replay: every snapshot file, then the stream files in name order, each record as an upsert or a
 * delete by key. Names sort in that order.
 */
import { randomUUID } from "node:crypto";
import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { SyncError } from "../errors.js";
import type { SyncPosition, SyncSegment } from "./sync.js";

const pad = (n: number, w: number) => String(n).padStart(w, "0");

export interface StreamPoint {
  lsn: number;
  part: number;
  off: number;
}

export type PackFile =
  | { kind: "snapshot"; name: string; lsn: number; firstRow: number; lastRow: number }
  | { kind: "stream"; name: string; from: StreamPoint; to: StreamPoint; records: number };

const point = (p: StreamPoint) => `${pad(p.lsn, 20)}.${pad(p.part, 6)}.${pad(p.off, 6)}`;

export const snapshotFileName = (lsn: number, firstRow: number, lastRow: number, ext: string) =>
  `snapshot-${pad(lsn, 20)}-${pad(firstRow, 12)}-${pad(lastRow, 12)}.${ext}`;

export const streamFileName = (from: StreamPoint, to: StreamPoint, records: number, ext: string) =>
  `stream-${point(from)}-${point(to)}-${pad(records, 10)}.${ext}`;

const SNAPSHOT = /^snapshot-(\d+)-(\d+)-(\d+)\.(\w+)$/;
const STREAM = /^stream-(\d+)\.(\d+)\.(\d+)-(\d+)\.(\d+)\.(\d+)-(\d+)\.(\w+)$/;
const TMP = /^\..*\.tmp$/;

/** A file of the format whose extension is `ext`; null for any other name. */
export function parseFileName(name: string, ext: string): PackFile | null {
  if (!name.endsWith(`.${ext}`)) return null;
  let m = SNAPSHOT.exec(name);
  if (m) return { kind: "snapshot", name, lsn: Number(m[1]), firstRow: Number(m[2]), lastRow: Number(m[3]) };
  m = STREAM.exec(name);
  if (m) {
    const n = m.slice(1, 8).map(Number);
    return { kind: "stream", name, from: { lsn: n[0], part: n[1], off: n[2] }, to: { lsn: n[3], part: n[4], off: n[5] }, records: n[6] };
  }
  return null;
}

const streamOrder = (a: StreamPoint, b: StreamPoint) => a.lsn - b.lsn || a.part - b.part || a.off - b.off;

/** Where the files say a subtask stands; null when there are none. `lastKey` reads the key image of a file's last row. */
export async function positionFromFiles(files: PackFile[], lastKey: (name: string) => Promise<string>): Promise<{ pos: SyncPosition; rows: number } | null> {
  const snaps = files.filter((f) => f.kind === "snapshot").sort((a, b) => a.firstRow - b.firstRow);
  const streams = files.filter((f) => f.kind === "stream").sort((a, b) => streamOrder(a.from, b.from));
  if (snaps.length === 0 && streams.length === 0) return null;
  const segs: SyncSegment[] = [];
  for (let i = 0; i < snaps.length; i++) {
    if (i > 0 && snaps[i].lsn === snaps[i - 1].lsn) continue;
    segs.push({ lsn: snaps[i].lsn, after: i === 0 ? null : await lastKey(snaps[i - 1].name), firstRow: snaps[i].firstRow });
  }
  const snapRows = snaps.length ? snaps[snaps.length - 1].lastRow : 0;
  const rows = snapRows + streams.reduce((n, f) => n + f.records, 0);
  if (streams.length > 0) {
    const to = streams[streams.length - 1].to;
    return { pos: { phase: "stream", segs, ...to }, rows };
  }
  const last = snaps[snaps.length - 1];
  return { pos: { phase: "snapshot", segs, rows: snapRows, key: await lastKey(last.name) }, rows };
}

/** The OS's error as it said it (ENOSPC: no space left on device, write), for status and alerts. */
const unwritable = (dir: string, err: unknown) =>
  new SyncError("DESTINATION_UNWRITABLE", `cannot write to ${dir}: ${(err as Error).message ?? String(err)}`, {
    cause: err,
    hint: "give a directory this synctool's user can create and write (-d DIR)",
  });

/** One subtask's directory, holding files of one format. */
export class PartitionDir {
  readonly dir: string;

  constructor(
    root: string,
    table: string,
    part: number,
    private ext: string,
    layout: PartitionLayout,
  ) {
    this.dir = partitionDir(root, table, part, layout);
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  async ensure(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (err) {
      throw unwritable(this.dir, err);
    }
  }

  /** Writes a file durably: temporary name, fsync, `beforeRename` (may veto), rename, directory fsync. */
  async write(name: string, data: Uint8Array, beforeRename: () => void): Promise<void> {
    const tmp = join(this.dir, `.${name}.tmp`);
    try {
      const fh = await open(tmp, "w");
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      await unlink(tmp).catch(() => {}); // a full disk keeps no partial file
      throw unwritable(this.dir, err);
    }
    try {
      beforeRename();
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    try {
      await rename(tmp, join(this.dir, name));
      await syncDir(this.dir);
    } catch (err) {
      throw unwritable(this.dir, err);
    }
  }

  /** Pack files with their total size, and temporary files left by a write that never finished. */
  async scan(): Promise<{ files: PackFile[]; bytes: number; tmp: string[] }> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { files: [], bytes: 0, tmp: [] };
      throw unwritable(this.dir, err);
    }
    const files: PackFile[] = [];
    const tmp: string[] = [];
    let bytes = 0;
    for (const n of names) {
      const f = parseFileName(n, this.ext);
      if (f) {
        files.push(f);
        bytes += (await stat(join(this.dir, n))).size;
      } else if (TMP.test(n)) tmp.push(n);
    }
    return { files, bytes, tmp };
  }

  async remove(name: string): Promise<void> {
    await unlink(join(this.dir, name));
  }
}

/** `hive`: part=<p> (every task with a format); `legacy`: part-<p> (tasks created before formats existed). */
export type PartitionLayout = "hive" | "legacy";

export const partitionDir = (root: string, table: string, part: number, layout: PartitionLayout) =>
  join(root, table, layout === "hive" ? `part=${part}` : `part-${part}`);

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const PROBE_PREFIX = ".ferry-probe-";

/** Refuses a destination that cannot be written or already holds files of a table (a second task would double rows). */
export async function checkDestination(root: string, table: string): Promise<void> {
  const dir = join(root, table);
  try {
    await mkdir(dir, { recursive: true });
    const probe = join(dir, `${PROBE_PREFIX}${process.pid}-${randomUUID()}.tmp`);
    const fh = await open(probe, "w");
    await fh.close();
    await unlink(probe);
  } catch (err) {
    throw unwritable(dir, err);
  }
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    // Two creates at once (a repeated request) probe the same directory: another's probe is not a file of a task.
    if (entry.name.startsWith(PROBE_PREFIX)) continue;
    const inner = entry.isDirectory() ? await readdir(join(dir, entry.name)) : [entry.name];
    if (inner.length > 0) {
      throw new SyncError("DESTINATION_NOT_EMPTY", `${dir} already holds files (${entry.name}${entry.isDirectory() ? "/..." : ""})`, {
        hint: "give another directory (-d): files of an earlier task there would be doubled",
      });
    }
  }
}
