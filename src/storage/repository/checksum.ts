/**
 * The checksum compare uses for a chunk of rows: the sum, lane by lane modulo 2^32, of each row's
 * MD5 taken over its row image (row-image.ts). The image is exact for every type (all of a 64-bit
 * integer's digits, a double's shortest round-trip text, 1.0 apart from 1, blobs in hex, NULL apart
 * from ''), so two rows give the same hash only when their values and types are the same; the sum
 * does not depend on the order in which storage hands the rows out.
 */
import { createHash } from "node:crypto";
import type { ChunkSum } from "./types.js";

const LANES = 4;
const LANE = 2 ** 32;

export class RowSum {
  rows = 0;
  private lanes = new Array<number>(LANES).fill(0);

  add(image: string): void {
    const h = createHash("md5").update(image).digest();
    for (let i = 0; i < LANES; i++) this.lanes[i] = (this.lanes[i] + h.readUInt32LE(i * 4)) % LANE;
    this.rows++;
  }

  digest(): string {
    return this.lanes.map((l) => l.toString(16).padStart(8, "0")).join("");
  }
}

/**
 * Cuts rows read in key order into chunks of about `chunkRows`, each with its sum. A cut falls
 * only between two different keys (a table without a primary key may hold equal rows), since a
 * range ends at its last key, included; the last chunk ends where the range read ends (open for a
 * whole table, so rows past the last key another node holds fall into it).
 */
export class Chunker {
  readonly chunks: ChunkSum[] = [];
  private sum = new RowSum();
  private last: string | null = null;

  constructor(
    private readonly chunkRows: number,
    private after: string | null,
  ) {}

  /** False once the row would begin a chunk past `maxChunks` (the row is not taken). */
  add(key: string, row: string, maxChunks: number): boolean {
    if (this.sum.rows >= this.chunkRows && key !== this.last) {
      if (this.chunks.length + 1 >= maxChunks) {
        this.chunks.push({ after: this.after, upto: this.last, rows: this.sum.rows, sum: this.sum.digest() });
        return false;
      }
      this.chunks.push({ after: this.after, upto: this.last, rows: this.sum.rows, sum: this.sum.digest() });
      this.after = this.last;
      this.sum = new RowSum();
    }
    this.sum.add(row);
    this.last = key;
    return true;
  }

  /** The last chunk, up to the end of the range read (null: open). */
  end(upto: string | null): ChunkSum[] {
    this.chunks.push({ after: this.after, upto, rows: this.sum.rows, sum: this.sum.digest() });
    return this.chunks;
  }
}
