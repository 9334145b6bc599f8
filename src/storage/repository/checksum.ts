/**
 * The checksum compare uses for a chunk of rows: the sum, lane by lane modulo 2^32, of each row's
 * 128-bit hash (MurmurHash3 x86_128, seeded per lane, over the UTF-16 code units of its row image, row-image.ts).
 * The image is exact for every type (all of a 64-bit integer's digits, a double's shortest
 * round-trip text, 1.0 apart from 1, blobs in hex, NULL apart from ''), so two rows hash alike
 * only when their values and types are the same, but for a 2^-128 accident; the sum does not
 * depend on the order in which storage hands the rows out. MurmurHash3 rather than MD5: a digest
 * object per row cost twice a full scan of the table, this costs a fraction of one.
 */
import type { ChunkSum } from "./types.js";

const LANE = 2 ** 32;

export class RowSum {
  rows = 0;
  private lanes = [0, 0, 0, 0];

  /** Adds the row image `image`, or the one from `start` to `end` in it. */
  add(image: string, start = 0, end = image.length): void {
    const h = murmur128(image, start, end);
    for (let i = 0; i < 4; i++) this.lanes[i] = (this.lanes[i] + h[i]) % LANE;
    this.rows++;
  }

  digest(): string {
    return this.lanes.map((l) => l.toString(16).padStart(8, "0")).join("");
  }
}

const C1 = 0x239b961b;
const C2 = 0xab0e9789;
const C3 = 0x38b34ae5;
const C4 = 0xa1e38b93;
const out = new Uint32Array(4);

/**
 * MurmurHash3 x86_128 of the string's code units from `start` to `end` (the whole string by
 * default) taken two to a 32-bit word, with four lane seeds. A range hashes as its substring would,
 * so rows concatenated in one string are hashed without a string each.
 */
export function murmur128(s: string, start = 0, end = s.length): Uint32Array {
  const length = end - start;
  const words = (length + 1) >>> 1;
  const word = (i: number) => s.charCodeAt(start + 2 * i) | ((2 * i + 1 < length ? s.charCodeAt(start + 2 * i + 1) : 0) << 16);
  // Four different starting lanes (the reference starts all four at the seed, which leaves three
  // lanes equal for inputs of under 16 bytes).
  let h1 = 0x9747b28c | 0, h2 = 0x1b873593, h3 = 0x85ebca6b | 0, h4 = 0xc2b2ae35 | 0;
  const blocks = words >>> 2;
  for (let b = 0, i = start; b < blocks; b++, i += 8) {
    let k1 = s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16);
    let k2 = s.charCodeAt(i + 2) | (s.charCodeAt(i + 3) << 16);
    let k3 = s.charCodeAt(i + 4) | (s.charCodeAt(i + 5) << 16);
    // An odd length's last unit is padding: past `end` the string goes on when a range is hashed.
    let k4 = s.charCodeAt(i + 6) | ((i + 7 < end ? s.charCodeAt(i + 7) : 0) << 16);
    k1 = Math.imul(k1, C1); k1 = (k1 << 15) | (k1 >>> 17); k1 = Math.imul(k1, C2); h1 ^= k1;
    h1 = (h1 << 19) | (h1 >>> 13); h1 = (h1 + h2) | 0; h1 = (Math.imul(h1, 5) + 0x561ccd1b) | 0;
    k2 = Math.imul(k2, C2); k2 = (k2 << 16) | (k2 >>> 16); k2 = Math.imul(k2, C3); h2 ^= k2;
    h2 = (h2 << 17) | (h2 >>> 15); h2 = (h2 + h3) | 0; h2 = (Math.imul(h2, 5) + 0x0bcaa747) | 0;
    k3 = Math.imul(k3, C3); k3 = (k3 << 17) | (k3 >>> 15); k3 = Math.imul(k3, C4); h3 ^= k3;
    h3 = (h3 << 15) | (h3 >>> 17); h3 = (h3 + h4) | 0; h3 = (Math.imul(h3, 5) + 0x96cd1c35) | 0;
    k4 = Math.imul(k4, C4); k4 = (k4 << 18) | (k4 >>> 14); k4 = Math.imul(k4, C1); h4 ^= k4;
    h4 = (h4 << 13) | (h4 >>> 19); h4 = (h4 + h1) | 0; h4 = (Math.imul(h4, 5) + 0x32ac3b17) | 0;
  }
  const tail = words & 3;
  if (tail > 0) {
    const base = 4 * blocks;
    let k3 = tail > 2 ? word(base + 2) : 0;
    let k2 = tail > 1 ? word(base + 1) : 0;
    let k1 = word(base);
    if (tail > 2) { k3 = Math.imul(k3, C3); k3 = (k3 << 17) | (k3 >>> 15); k3 = Math.imul(k3, C4); h3 ^= k3; }
    if (tail > 1) { k2 = Math.imul(k2, C2); k2 = (k2 << 16) | (k2 >>> 16); k2 = Math.imul(k2, C3); h2 ^= k2; }
    k1 = Math.imul(k1, C1); k1 = (k1 << 15) | (k1 >>> 17); k1 = Math.imul(k1, C2); h1 ^= k1;
  }
  // The length in code units: strings that differ only by a trailing NUL do not collide.
  const len = length * 2;
  h1 ^= len; h2 ^= len; h3 ^= len; h4 ^= len;
  h1 = (h1 + h2 + h3 + h4) | 0; h2 = (h2 + h1) | 0; h3 = (h3 + h1) | 0; h4 = (h4 + h1) | 0;
  h1 = fmix(h1); h2 = fmix(h2); h3 = fmix(h3); h4 = fmix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0; h2 = (h2 + h1) | 0; h3 = (h3 + h1) | 0; h4 = (h4 + h1) | 0;
  out[0] = h1; out[1] = h2; out[2] = h3; out[3] = h4;
  return out;
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
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
