/**
 * The sync destination: a directory. Each pack of a subtask becomes one file in
 * `DIR/<table>/part-<p>/`, written to a hidden temporary name, fsynced, renamed, and the directory
 * fsynced; only then is the progress saved (LevelDB). File names carry the position range, so the
 * files alone say exactly where a subtask stands (a standby synctool resumes from them):
 *
 *   snapshot-<LSN:20>-<FIRST:12>-<LAST:12>.jsonl
 *       snapshot rows FIRST..LAST (1-based, in key order) of the partition, read at LSN.
 *       Rows are JSON objects, one a line: {"col": value, ...}; blobs are {"$blob": "HEX"}; a rowid
 *       table without an INTEGER PRIMARY KEY has its "rowid" first.
 *   stream-<FROM>-<TO>-<N:10>.jsonl   (FROM and TO are LSN:20.PART:6.CHANGE:6)
 *       N change records, from change FROM up to (not including) change TO of the stream:
 *       {"op":"insert"|"update"|"delete","lsn":L,"row":{...}}; a delete's row holds the key columns;
 *       an update that changed the key carries "old": {the old key}.
 *
 * Replay: every snapshot file, then the stream files in name order, each record as an upsert
 * (insert, update: deleting "old" first) or a delete by key. Names sort in that order.
 */
import { mkdir, open, readdir, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { SyncError } from "../errors.js";
import { keyOfRow, type SyncPosition, type SyncSegment } from "./sync.js";

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

export const snapshotFileName = (lsn: number, firstRow: number, lastRow: number) =>
  `snapshot-${pad(lsn, 20)}-${pad(firstRow, 12)}-${pad(lastRow, 12)}.jsonl`;

export const streamFileName = (from: StreamPoint, to: StreamPoint, records: number) =>
  `stream-${point(from)}-${point(to)}-${pad(records, 10)}.jsonl`;

const SNAPSHOT = /^snapshot-(\d+)-(\d+)-(\d+)\.jsonl$/;
const STREAM = /^stream-(\d+)\.(\d+)\.(\d+)-(\d+)\.(\d+)\.(\d+)-(\d+)\.jsonl$/;
const TMP = /^\..*\.tmp$/;

export function parseFileName(name: string): PackFile | null {
  let m = SNAPSHOT.exec(name);
  if (m) return { kind: "snapshot", name, lsn: Number(m[1]), firstRow: Number(m[2]), lastRow: Number(m[3]) };
  m = STREAM.exec(name);
  if (m) {
    const n = m.slice(1).map(Number);
    return { kind: "stream", name, from: { lsn: n[0], part: n[1], off: n[2] }, to: { lsn: n[3], part: n[4], off: n[5] }, records: n[6] };
  }
  return null;
}

const streamOrder = (a: StreamPoint, b: StreamPoint) => a.lsn - b.lsn || a.part - b.part || a.off - b.off;

/** Where the files say a subtask stands; null when there are none. `lastLine` reads a file's last row. */
export async function positionFromFiles(
  files: PackFile[],
  lastLine: (name: string) => Promise<string>,
  key: string[],
): Promise<{ pos: SyncPosition; rows: number } | null> {
  const snaps = files.filter((f) => f.kind === "snapshot").sort((a, b) => a.firstRow - b.firstRow);
  const streams = files.filter((f) => f.kind === "stream").sort((a, b) => streamOrder(a.from, b.from));
  if (snaps.length === 0 && streams.length === 0) return null;
  const segs: SyncSegment[] = [];
  for (let i = 0; i < snaps.length; i++) {
    if (i > 0 && snaps[i].lsn === snaps[i - 1].lsn) continue;
    segs.push({ lsn: snaps[i].lsn, after: i === 0 ? null : keyOfRow(await lastLine(snaps[i - 1].name), key), firstRow: snaps[i].firstRow });
  }
  const snapRows = snaps.length ? snaps[snaps.length - 1].lastRow : 0;
  const rows = snapRows + streams.reduce((n, f) => n + f.records, 0);
  if (streams.length > 0) {
    const to = streams[streams.length - 1].to;
    return { pos: { phase: "stream", segs, ...to }, rows };
  }
  const last = snaps[snaps.length - 1];
  return { pos: { phase: "snapshot", segs, rows: snapRows, key: keyOfRow(await lastLine(last.name), key) }, rows };
}

const unwritable = (dir: string, err: unknown) =>
  new SyncError("DESTINATION_UNWRITABLE", `cannot write to ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
    cause: err,
    hint: "give a directory this synctool's user can create and write (-d DIR)",
  });

/** One subtask's directory. */
export class PartitionDir {
  readonly dir: string;

  constructor(root: string, table: string, part: number) {
    this.dir = partitionDir(root, table, part);
  }

  async ensure(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (err) {
      throw unwritable(this.dir, err);
    }
  }

  /** Writes a pack durably: temporary name, fsync, `beforeRename` (may veto), rename, directory fsync. */
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

  /** Pack files, and temporary files left by a write that never finished. */
  async scan(): Promise<{ files: PackFile[]; tmp: string[] }> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { files: [], tmp: [] };
      throw unwritable(this.dir, err);
    }
    const files: PackFile[] = [];
    const tmp: string[] = [];
    for (const n of names) {
      const f = parseFileName(n);
      if (f) files.push(f);
      else if (TMP.test(n)) tmp.push(n);
    }
    return { files, tmp };
  }

  async remove(name: string): Promise<void> {
    await unlink(join(this.dir, name));
  }

  /** The last line of a file (without its newline). */
  async lastLine(name: string): Promise<string> {
    const fh = await open(join(this.dir, name), "r");
    try {
      const size = (await fh.stat()).size;
      for (let want = 64 * 1024; ; want *= 4) {
        const len = Math.min(size, want);
        const buf = Buffer.alloc(len);
        await fh.read(buf, 0, len, size - len);
        const end = buf[len - 1] === 10 ? len - 1 : len;
        const nl = buf.lastIndexOf(10, end - 1);
        if (nl >= 0 || len === size) return buf.subarray(nl + 1, end).toString("utf8");
      }
    } finally {
      await fh.close();
    }
  }
}

export const partitionDir = (root: string, table: string, part: number) => join(root, table, `part-${part}`);

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Refuses a destination that cannot be written or already holds files of a table (a second task would double rows). */
export async function checkDestination(root: string, table: string): Promise<void> {
  const dir = join(root, table);
  try {
    await mkdir(dir, { recursive: true });
    const probe = join(dir, `.ferry-probe-${process.pid}.tmp`);
    const fh = await open(probe, "w");
    await fh.close();
    await unlink(probe);
  } catch (err) {
    throw unwritable(dir, err);
  }
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const inner = entry.isDirectory() ? await readdir(join(dir, entry.name)) : [entry.name];
    if (inner.length > 0) {
      throw new SyncError("DESTINATION_NOT_EMPTY", `${dir} already holds files (${entry.name}${entry.isDirectory() ? "/..." : ""})`, {
        hint: "give another directory (-d): files of an earlier task there would be doubled",
      });
    }
  }
}
