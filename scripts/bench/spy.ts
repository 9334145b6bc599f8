/**
 * Watches a cluster's replication traffic from the outside (a plain NATS subscriber): when the
 * master announced each LSN, when each replica asked for which LSN, and when the master's answer
 * (with which LSNs) went back. With the writer's commit times and the sampler's visibility times,
 * this splits commit-to-visible latency into its phases without touching ferry.
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { decodeFrame, isJsonReply } from "../../src/nats/codec.js";
import type { PullReplyHeader } from "../../src/nats/messages.js";
import { subjects } from "../../src/nats/subjects.js";
import { lowerBound, percentiles, wallMs } from "./common.js";

export interface Pull {
  node: string;
  /** Published without a reply subject: an acknowledgement after pushed batches, not a pull. */
  ack?: boolean;
  lsn: number;
  sentAt: number;
  repliedAt?: number;
  /** LSNs whose last part the reply carried. */
  lsns?: number[];
  head?: number;
  error?: string;
}

export class ReplicationSpy {
  readonly notifies: [number, number][] = []; // [time, lsn]
  readonly pulls: Pull[] = [];
  private byInbox = new Map<string, Pull>();
  private constructor(private nc: NatsConnection) {}

  static async start(url: string, cluster: string, master: string): Promise<ReplicationSpy> {
    const nc = await connect({ servers: url, name: "bench-spy" });
    const spy = new ReplicationSpy(nc);
    const s = subjects(cluster);
    const dec = new TextDecoder();
    nc.subscribe(s.notify, {
      callback: (_e, m) => {
        try {
          spy.notifies.push([wallMs(), JSON.parse(dec.decode(m.data)).lsn]);
        } catch {
          /* not ours */
        }
      },
    });
    nc.subscribe(s.node(master).pull, {
      callback: (_e, m) => {
        try {
          const req = JSON.parse(dec.decode(m.data));
          const p: Pull = { node: req.node, lsn: req.lsn, sentAt: wallMs(), ack: !m.reply };
          spy.pulls.push(p);
          if (m.reply) spy.byInbox.set(m.reply, p);
        } catch {
          /* not ours */
        }
      },
    });
    nc.subscribe("_INBOX.>", {
      callback: (_e, m) => {
        const p = spy.byInbox.get(m.subject);
        if (!p) return;
        spy.byInbox.delete(m.subject);
        p.repliedAt = wallMs();
        if (isJsonReply(m.data)) {
          p.error = dec.decode(m.data).slice(0, 200);
          return;
        }
        try {
          const { header } = decodeFrame<PullReplyHeader>(m.subject, m.data, () => []);
          p.lsns = header.records.filter((r) => r.meta).map((r) => r.lsn);
          p.head = header.head;
        } catch {
          p.error = "undecodable";
        }
      },
    });
    await nc.flush();
    return spy;
  }

  async stop(): Promise<void> {
    await this.nc.drain().catch(() => {});
  }

  /**
   * Per transaction (commit times from the writer) and replica: capture (commit -> announced),
   * react (announced -> the pull that brought it was sent; negative when a pull was already on its
   * way), serve (pull sent -> answer seen) and apply (answer -> visible in the replica's file).
   * A transaction's LSN is taken as the first one announced after its commit.
   */
  breakdown(commits: number[], visible: (node: string, k: number) => number | null, nodes: string[]) {
    const notifies = this.notifies;
    const out: Record<string, unknown> = {};
    const capture: number[] = [];
    const lsnOf: (number | null)[] = commits.map((c) => {
      const i = lowerBound(notifies, 0, c);
      if (i >= notifies.length) return null;
      capture.push(notifies[i][0] - c);
      return notifies[i][1];
    });
    out.captureMs = percentiles(capture);
    for (const node of nodes) {
      const pulls = this.pulls.filter((p) => p.node === node && p.lsns);
      const carrying = new Map<number, Pull>();
      for (const p of pulls) for (const l of p.lsns!) if (!carrying.has(l)) carrying.set(l, p);
      const react: number[] = [];
      const serve: number[] = [];
      const apply: number[] = [];
      const pushed: number[] = [];
      commits.forEach((_, k) => {
        const l = lsnOf[k];
        const p = l === null ? undefined : carrying.get(l);
        const v = visible(node, k);
        if (v === null || l === null) return;
        const announced = notifies.find((n) => n[1] === l)?.[0];
        // No pull carried it: the replica took it from the master's push.
        if (!p) {
          if (announced !== undefined) pushed.push(v - announced);
          return;
        }
        if (announced !== undefined) react.push(p.sentAt - announced);
        serve.push(p.repliedAt! - p.sentAt);
        apply.push(v - p.repliedAt!);
      });
      const all = this.pulls.filter((p) => p.node === node && !p.ack);
      const empty = all.filter((p) => p.lsns && p.lsns.length === 0);
      // A wake-up that was lost: an answer with no records although the master's head was already
      // past what the replica asked for (it then waits for the next NOTIFY or pollMs).
      const lost = empty.filter((p) => p.head !== undefined && p.head >= p.lsn);
      out[node] = {
        reactMs: percentiles(react),
        serveMs: percentiles(serve),
        spoolAndApplyMs: percentiles(apply),
        pushedTxns: pushed.length,
        pushedToVisibleMs: percentiles(pushed),
        pulls: all.length,
        acks: this.pulls.filter((p) => p.node === node && p.ack).length,
        emptyPulls: empty.length,
        emptyPullsWithNewerHead: lost.length,
        errors: all.filter((p) => p.error).length,
      };
    }
    return out;
  }
}
