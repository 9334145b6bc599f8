/** A sink encoder thread (encoder.ts): encodes one file a message and hands its bytes back. */
import { parentPort } from "node:worker_threads";
import { asFerryError } from "../../errors.js";
import { openSink } from "./index.js";
import type { EncodeJob, EncodeReply } from "./encoder.js";

if (parentPort) {
  const port = parentPort;
  port.on("message", (job: EncodeJob) => {
    let reply: EncodeReply;
    try {
      const data = openSink(job.format, job.table).encode(job.batch);
      // Only a buffer of its own can be transferred.
      const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
      reply = { id: job.id, ok: true, data: own };
      port.postMessage(reply, [own.buffer as ArrayBuffer]);
      return;
    } catch (err) {
      reply = { id: job.id, ok: false, error: asFerryError(err).toWire() };
    }
    port.postMessage(reply);
  });
}
