/** Requests to the active synctool, as `ferry task`, `ferry tool-status` and the dashboard make them. */
import { SyncError, TimeoutError } from "../errors.js";
import { encodeJson, unwrapReply } from "../nats/codec.js";
import type { Client } from "./client.js";

/** A request to the active synctool; NO_ACTIVE_SYNCTOOL when none answers. */
export async function synctoolRequest<T>(c: Client, subject: string, body: unknown): Promise<T> {
  try {
    const m = await c.nc.request(subject, encodeJson(body), { timeout: 2 * c.config.nats.requestTimeoutMs });
    return unwrapReply<T>(subject, m.data);
  } catch (err) {
    const e = err as { isNoResponders?: () => boolean; name?: string };
    if (e.isNoResponders?.()) {
      throw new SyncError("NO_ACTIVE_SYNCTOOL", "no active synctool answers", { hint: "start one: ferry start --role synctool --node ID (ferry up starts one)" });
    }
    if (e.name === "TimeoutError") throw new TimeoutError("the synctool did not answer in time", { cause: err });
    throw err;
  }
}
