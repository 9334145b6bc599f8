/**
 * Starts a real `nats-server` with JetStream: the embedded default of `ferry up`, and the
 * launcher the tests and chaos scripts use.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdirSync, openSync, closeSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { FerryError } from "../errors.js";

export interface NatsServerOpts {
  dir: string;
  port?: number;
  host?: string;
  /**
   * For a cluster: this server's name, its cluster port and the routes to its peers. `noAdvertise`
   * keeps the servers from telling clients each other's URLs, so clients use only the URLs they
   * were given (the chaos suite puts a fault proxy in front of each server).
   */
  cluster?: { name: string; serverName: string; port: number; routes: string[]; noAdvertise?: boolean };
  /** Extra lines for the server's config file (authorization, tls, ...). */
  extraConfig?: string;
  /** Client URL to probe readiness with, when the server needs credentials. */
  probe?: (url: string) => Promise<void>;
}

export interface NatsServer {
  url: string;
  port: number;
  pid: number;
  dir: string;
  proc: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function natsServerBinary(): string {
  const found = spawnSync("sh", ["-c", "command -v nats-server || ls /usr/sbin/nats-server 2>/dev/null"], {
    encoding: "utf8",
  }).stdout.trim().split("\n")[0];
  if (!found) {
    throw new FerryError("NATS_UNAVAILABLE", "nats-server is not installed", {
      hint: "install it with: sudo apt-get install -y nats-server (or run npm start, which does)",
    });
  }
  return found;
}

export async function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export async function startNatsServer(opts: NatsServerOpts): Promise<NatsServer> {
  const host = opts.host ?? "127.0.0.1";
  const port = opts.port ?? (await freePort(host));
  mkdirSync(opts.dir, { recursive: true });
  const conf = [
    `listen: "${host}:${port}"`,
    `jetstream { store_dir: "${join(opts.dir, "jetstream")}" }`,
    `max_payload: 8MB`,
    opts.cluster
      ? `server_name: "${opts.cluster.serverName}"\ncluster { name: "${opts.cluster.name}", listen: "${host}:${opts.cluster.port}", routes: [${opts.cluster.routes.map((r) => `"${r}"`).join(", ")}]${opts.cluster.noAdvertise ? ", no_advertise: true" : ""} }`
      : `server_name: "ferry-${port}"`,
    opts.extraConfig ?? "",
  ].join("\n");
  const confFile = join(opts.dir, "nats-server.conf");
  writeFileSync(confFile, conf);
  const log = openSync(join(opts.dir, "nats-server.log"), "a");
  const proc = spawn(natsServerBinary(), ["-c", confFile], { stdio: ["ignore", log, log] });
  closeSync(log);
  const url = `nats://${host}:${port}`;
  let exited: number | null = null;
  proc.once("exit", (code) => (exited = code ?? -1));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited !== null) {
      throw new FerryError("NATS_UNAVAILABLE", `nats-server exited with code ${exited} at start`, {
        hint: `see ${join(opts.dir, "nats-server.log")}`,
      });
    }
    try {
      if (opts.probe) await opts.probe(url);
      else {
        const nc = await connect({ servers: url, timeout: 1000 });
        await nc.close();
      }
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        proc.kill("SIGKILL");
        throw new FerryError("NATS_UNAVAILABLE", `nats-server did not accept connections on ${url}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url,
    port,
    pid: proc.pid!,
    dir: opts.dir,
    proc,
    stop: (signal: NodeJS.Signals = "SIGTERM") =>
      new Promise<void>((resolve) => {
        if (exited !== null || proc.exitCode !== null) return resolve();
        const force = setTimeout(() => proc.kill("SIGKILL"), 5000);
        proc.once("exit", () => {
          clearTimeout(force);
          resolve();
        });
        proc.kill(signal);
      }),
  };
}
