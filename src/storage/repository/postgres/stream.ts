/**
 * The capture slot read as a stream: START_REPLICATION on a connection of its own, in the
 * replication protocol's logical mode. The walsender keeps its decoding state between reads, where
 * each SQL peek decoded again from the slot's restart point (which PostgreSQL moves about every
 * 15 s, so a peek under load re-read seconds of WAL), and a committed transaction arrives within a
 * round trip instead of at the next poll.
 *
 * Invariants:
 * - `txns` holds whole transactions in commit order; every transaction of the publication that
 *   committed at or before `sent` and after `flushed` is in it.
 * - `flushed` (the slot's confirmed position, as the walsender is told) moves past a transaction
 *   only by confirm(), which the sequencer calls after its synced spool write, and past WAL that
 *   holds none of ours once `txns` is empty: the slot never passes what the spool does not hold.
 *   A new stream starts at the slot's confirmed position, so what a dead stream held comes again
 *   (readers skip what their `from` already covers).
 * - What waits here is bounded: past MAX_BUFFERED bytes the socket is paused until confirm()
 *   drains it (one transaction is still held whole, from its first change to its commit).
 *
 * https://www.postgresql.org/docs/15/protocol-replication.html
 */
import pg from "pg";
import { quoteId, quoteLit } from "./connection.js";
import { TxnDecoder, type Txn } from "./changes.js";

const MAX_BUFFERED = 64 * 1024 * 1024;
/** The walsender ends a stream that says nothing for wal_sender_timeout (60 s by default). */
const STATUS_MS = 10_000;
/** Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
const PG_EPOCH_US = 946_684_800_000_000n;

/** pg's connection as the replication protocol uses it (its typings leave sendCopyFromChunk out). */
interface Wire {
  stream: { pause(): void; resume(): void };
  sendCopyFromChunk(chunk: Buffer): void;
  on(event: "copyData", listener: (msg: { chunk: Buffer }) => void): void;
  once(event: "replicationStart", listener: () => void): void;
}

const wire = (c: pg.Client) => c.connection as unknown as Wire;

export class SlotStream {
  private readonly decoder = new TxnDecoder();
  private readonly txns: Txn[] = [];
  private buffered = 0;
  private paused = false;
  /** Every transaction committed at or before this has arrived. */
  private sent = 0;
  private flushed = 0;
  private failure: Error | null = null;
  private waiters = new Set<() => void>();
  private readonly status: NodeJS.Timeout;

  private constructor(
    private readonly client: pg.Client,
    confirmed: number,
  ) {
    this.sent = confirmed;
    this.flushed = confirmed;
    this.status = setInterval(() => this.feedback(false), STATUS_MS);
    this.status.unref();
  }

  /**
   * Starts streaming the slot's changes from its confirmed position (`confirmed`, as the caller
   * read it: the walsender takes a lower flush position as given); fails as START_REPLICATION does
   * (the slot busy or missing).
   */
  static async open(config: pg.ClientConfig, slot: string, publication: string, confirmed: number): Promise<SlotStream> {
    const client = new pg.Client({ ...config, replication: "database" } as pg.ClientConfig);
    client.on("error", () => {});
    await client.connect();
    const s = new SlotStream(client, confirmed);
    client.on("error", (err) => s.fail(err));
    client.on("end", () => s.fail(new Error("the replication connection closed")));
    wire(client).on("copyData", (msg) => s.onData(msg.chunk));
    const started = new Promise<void>((resolve, reject) => {
      wire(client).once("replicationStart", () => resolve());
      client
        .query(`START_REPLICATION SLOT ${quoteId(slot)} LOGICAL 0/0 (proto_version '1', publication_names ${quoteLit(publication)})`)
        .then(
          () => s.fail(new Error("the walsender ended the stream")),
          (err: Error) => {
            reject(err);
            s.fail(err);
          },
        );
    });
    try {
      await started;
    } catch (err) {
      await s.close();
      throw err;
    }
    return s;
  }

  /** Every transaction committed at or before this has arrived. */
  get position(): number {
    return this.sent;
  }

  get failed(): Error | null {
    return this.failure;
  }

  /** The transactions after `from` up to `upto`, in commit order, and how far they are complete. */
  take(from: number, upto: number): { txns: Txn[]; sent: number } {
    if (this.failure) throw this.failure;
    return { txns: this.txns.filter((t) => t.end > from && t.end <= upto), sent: this.sent };
  }

  /**
   * Waits until everything committed to `until` has arrived, or `ms` passed; the walsender is
   * asked where it is, since it says so unasked only when it has caught up.
   */
  async wait(until: number, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.failure === null && this.sent < until && Date.now() < deadline) {
      this.feedback(true);
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(t);
          this.waiters.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, Math.min(100, Math.max(1, deadline - Date.now())));
        this.waiters.add(wake);
      });
    }
    if (this.failure) throw this.failure;
  }

  /** The spool holds everything to `upto`: the slot may move there, and the transactions go. */
  confirm(upto: number): void {
    if (upto <= this.flushed) return;
    this.flushed = upto;
    let n = 0;
    while (n < this.txns.length && this.txns[n].end <= upto) this.buffered -= this.txns[n++].bytes;
    this.txns.splice(0, n);
    if (this.paused && this.buffered < MAX_BUFFERED / 2) {
      this.paused = false;
      wire(this.client).stream.resume();
    }
    this.feedback(false);
  }

  async close(): Promise<void> {
    clearInterval(this.status);
    this.fail(new Error("the stream was closed"));
    await this.client.end().catch(() => {});
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }

  private onData(b: Buffer): void {
    if (b[0] === 0x77 /* 'w': XLogData */) {
      const txn = this.decoder.push(b.subarray(25));
      if (txn === null) return;
      this.sent = Math.max(this.sent, txn.end);
      if (txn.end <= this.flushed) return;
      this.txns.push(txn);
      this.buffered += txn.bytes;
      if (!this.paused && this.buffered > MAX_BUFFERED) {
        this.paused = true;
        wire(this.client).stream.pause();
      }
      this.wake();
    } else if (b[0] === 0x6b /* 'k': keepalive */) {
      // The walsender has decoded everything to walEnd: no transaction of ours commits at or before it unsent.
      const walEnd = readLsn(b, 1);
      if (walEnd > this.sent) {
        this.sent = walEnd;
        this.wake();
      }
      // Answered only when asked: the walsender sends one whenever it waits for WAL with the
      // reported position behind it, answered or not, and an answer to each cost both sides a
      // write per WAL flush (13% of the master's CPU under load).
      if (b[17] === 1) this.feedback(false);
    }
  }

  /**
   * Standby status update: received to `sent`, flushed (the slot's confirmed position) to
   * `flushed`. With no transaction waiting for the spool, everything to `sent` is spooled or holds
   * nothing of ours, so the slot may move there: a server shutting down waits for its walsenders'
   * clients to confirm all WAL sent (the shutdown checkpoint included), and ferry cannot run a
   * capture cycle then (new connections are refused).
   */
  private feedback(replyRequested: boolean): void {
    if (this.failure) return;
    if (this.txns.length === 0) this.flushed = Math.max(this.flushed, this.sent);
    const m = Buffer.alloc(34);
    m[0] = 0x72; // 'r'
    m.writeBigUInt64BE(BigInt(this.sent), 1);
    m.writeBigUInt64BE(BigInt(this.flushed), 9);
    m.writeBigUInt64BE(BigInt(this.flushed), 17);
    m.writeBigUInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_US, 25);
    m[33] = replyRequested ? 1 : 0;
    try {
      wire(this.client).sendCopyFromChunk(m);
    } catch (err) {
      this.fail(err as Error);
    }
  }

}

function readLsn(b: Buffer, at: number): number {
  return b.readUInt32BE(at) * 2 ** 32 + b.readUInt32BE(at + 4);
}
