import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, type NatsConnection, type ConnectionOptions } from "@nats-io/transport-node";
import type { Config } from "../config.js";
import { FerryError } from "../errors.js";

export type { NatsConnection };

export interface ConnectOpts {
  /** Processes wait for a server that is down at start; CLI commands fail at once. */
  waitForServer?: boolean;
  name?: string;
}

/**
 * Credentials written in server URLs, as the nats CLI reads them: `nats://USER:PASS@HOST:PORT`,
 * or `nats://TOKEN@HOST:PORT`. nats.js would connect without them (the server then refuses with
 * Authorization Violation), so they are taken out of the URLs and given as options; the first
 * URL that carries any gives them.
 */
export function credentialsInUrls(servers: string[]): { servers: string[]; user?: string; pass?: string; token?: string } {
  let found: { user?: string; pass?: string; token?: string } | null = null;
  const plain = servers.map((server) => {
    const m = /^([a-z]+:\/\/)([^@/]*)@(.*)$/i.exec(server);
    if (!m) return server;
    const [name, pass] = m[2].split(/:(.*)/s).map((x) => (x === undefined ? undefined : decodeURIComponent(x)));
    found ??= pass !== undefined ? { user: name, pass } : { token: name };
    return m[1] + m[3];
  });
  return { servers: plain, ...(found ?? {}) };
}

/** Builds nats.js options from config: servers, credentials and TLS. Secrets stay out of logs. */
export function connectionOptions(config: Config, opts: ConnectOpts = {}): ConnectionOptions {
  const n = config.nats;
  const inUrls = credentialsInUrls(n.servers);
  const o: ConnectionOptions = {
    servers: inUrls.servers,
    name: opts.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: opts.waitForServer ?? false,
    timeout: 3000,
    pingInterval: 2000,
    maxPingOut: 3,
    // Stack traces captured for every request cost CPU on the replication path.
    noAsyncTraces: true,
  };
  // What config names outright wins over what a URL carries.
  if (n.user !== undefined) Object.assign(o, { user: n.user, pass: n.pass });
  else if (inUrls.user !== undefined) Object.assign(o, { user: inUrls.user, pass: inUrls.pass });
  if (n.token !== undefined) o.token = n.token;
  else if (inUrls.token !== undefined && inUrls.user === undefined && n.user === undefined) o.token = inUrls.token;
  if (n.credsFile) o.authenticator = credsAuthenticator(readFileSync(n.credsFile));
  if (n.tls) o.tls = { caFile: n.tls.ca, certFile: n.tls.cert, keyFile: n.tls.key };
  return o;
}

/** A server URL fit for logs: any user:password in it is masked. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, "//***@");
}

export async function connectNats(config: Config, opts: ConnectOpts = {}): Promise<NatsConnection> {
  try {
    return await connect(connectionOptions(config, opts));
  } catch (err) {
    const e = err as Error;
    const auth = /auth|credential|tls|certificate/i.test(e.message) || e.name === "AuthorizationError";
    throw new FerryError(
      "NATS_UNAVAILABLE",
      `cannot connect to NATS at ${config.nats.servers.map(redactUrl).join(",")}: ${e.message}`,
      {
        cause: err,
        hint: auth
          ? "check nats.user/pass, nats.token, nats.credsFile or the TLS files"
          : "start the cluster (npm start) or point --nats / FERRY_NATS at a running server",
      },
    );
  }
}
