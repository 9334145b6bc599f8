/**
 * A small TCP fault proxy between one ferry process and the NATS servers. The process is given
 * one listening port per NATS server (its `nats.servers`); each port forwards to that server.
 * A fault applies to every path of the process at once:
 *
 *   pass       forward both ways
 *   drop       close every connection, and each new one as soon as it is accepted
 *   delay MS   forward every chunk MS milliseconds late (order kept)
 *   blackhole  accept, forward nothing (both sides stall as on a dead link; nothing is lost, and
 *              what was held back flows again when the fault is healed, unless a side gave up)
 *
 * The proxy also tells which server the process is connected to now (live upstream connections).
 */
import { createServer, connect, type Server, type Socket } from "node:net";
import { freePort } from "../../src/nats/server.js";

export type ProxyMode = { mode: "pass" } | { mode: "drop" } | { mode: "delay"; ms: number } | { mode: "blackhole" };

interface Link {
  upstream: number;
  client: Socket;
  server: Socket;
  /** Delayed chunks per direction: [due time, chunk]. */
  queues: { toServer: Pipe; toClient: Pipe };
}

class Pipe {
  private q: { due: number; chunk: Buffer }[] = [];
  private timer: NodeJS.Timeout | null = null;
  constructor(private out: Socket) {}
  push(chunk: Buffer, delayMs: number): void {
    if (delayMs <= 0 && this.q.length === 0) {
      if (!this.out.destroyed) this.out.write(chunk);
      return;
    }
    const last = this.q.length ? this.q[this.q.length - 1].due : 0;
    this.q.push({ due: Math.max(Date.now() + delayMs, last), chunk });
    this.arm();
  }
  private arm(): void {
    if (this.timer || this.q.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const now = Date.now();
      while (this.q.length && this.q[0].due <= now) {
        const { chunk } = this.q.shift()!;
        if (!this.out.destroyed) this.out.write(chunk);
      }
      this.arm();
    }, Math.max(0, this.q[0].due - Date.now()));
  }
  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.q = [];
  }
}

export class FaultProxy {
  /** The URL the process uses for each upstream server, in the order of `upstreams`. */
  readonly urls: string[] = [];
  private servers: Server[] = [];
  private links = new Set<Link>();
  private state: ProxyMode = { mode: "pass" };
  /** Connections accepted per upstream, for the report. */
  readonly accepted: number[];

  private constructor(
    readonly name: string,
    private upstreams: number[],
  ) {
    this.accepted = upstreams.map(() => 0);
  }

  /** Listens on one free loopback port per upstream NATS port. */
  static async start(name: string, upstreams: number[]): Promise<FaultProxy> {
    const p = new FaultProxy(name, upstreams);
    for (let i = 0; i < upstreams.length; i++) {
      for (let attempt = 1; ; attempt++) {
        const port = await freePort();
        const srv = createServer((sock) => p.accept(i, sock));
        try {
          await new Promise<void>((res, rej) => {
            srv.once("error", rej);
            srv.listen(port, "127.0.0.1", () => res());
          });
        } catch (err) {
          // Taken between freePort and listen: another port.
          if (attempt < 5) continue;
          throw err;
        }
        p.servers.push(srv);
        p.urls.push(`nats://127.0.0.1:${port}`);
        break;
      }
    }
    return p;
  }

  get mode(): ProxyMode {
    return this.state;
  }

  /** Upstream indexes with a live connection now (the servers this process talks to). */
  connectedTo(): number[] {
    return [...new Set([...this.links].filter((l) => !l.client.destroyed && !l.server.destroyed).map((l) => l.upstream))].sort();
  }

  set(mode: ProxyMode): void {
    const prev = this.state;
    this.state = mode;
    if (mode.mode === "drop") for (const l of this.links) this.close(l);
    if (mode.mode === "blackhole") for (const l of this.links) this.stall(l);
    if (prev.mode === "blackhole" && mode.mode !== "blackhole") for (const l of this.links) this.flow(l);
  }

  private accept(upstream: number, client: Socket): void {
    this.accepted[upstream]++;
    if (this.state.mode === "drop") {
      client.destroy();
      return;
    }
    const server = connect(this.upstreams[upstream], "127.0.0.1");
    const link: Link = { upstream, client, server, queues: { toServer: new Pipe(server), toClient: new Pipe(client) } };
    this.links.add(link);
    client.setNoDelay(true);
    server.setNoDelay(true);
    const delay = () => (this.state.mode === "delay" ? this.state.ms : 0);
    client.on("data", (d: Buffer) => link.queues.toServer.push(d, delay()));
    server.on("data", (d: Buffer) => link.queues.toClient.push(d, delay()));
    const end = () => this.close(link);
    client.on("error", end);
    server.on("error", end);
    client.on("close", end);
    server.on("close", end);
    if (this.state.mode === "blackhole") this.stall(link);
  }

  private stall(l: Link): void {
    l.client.pause();
    l.server.pause();
  }

  private flow(l: Link): void {
    l.client.resume();
    l.server.resume();
  }

  private close(l: Link): void {
    if (!this.links.delete(l)) return;
    l.queues.toServer.clear();
    l.queues.toClient.clear();
    l.client.destroy();
    l.server.destroy();
  }

  async stop(): Promise<void> {
    for (const l of [...this.links]) this.close(l);
    await Promise.all(this.servers.map((s) => new Promise<void>((res) => s.close(() => res()))));
  }
}
