/** Requests to the active synctool, as `ferry task`, `ferry tool-status` and the dashboard make them. */
import type { Endpoint } from "../nats/protocol.js";
import { call } from "../nats/rpc.js";
import type { Client } from "./client.js";

/** A request to the active synctool (one of its endpoints); NO_ACTIVE_SYNCTOOL when none answers. */
export function synctoolRequest<T>(c: Client, endpoint: Endpoint<unknown, "json">, body: object): Promise<T> {
  return call<T>(c.nc, endpoint, endpoint.subject(c.subj, ""), body, { timeoutMs: 2 * c.config.nats.requestTimeoutMs });
}
