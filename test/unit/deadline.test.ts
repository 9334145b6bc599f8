import { test } from "uvu";
import * as assert from "uvu/assert";
import { withDeadline } from "../../src/nats/buckets.js";

test("withDeadline passes on what settles in time, value or error", async () => {
  assert.is(await withDeadline(Promise.resolve(7), 1000, "x"), 7);
  const err = (await withDeadline(Promise.reject(new Error("boom")), 1000, "x").catch((e: unknown) => e)) as Error;
  assert.is(err.message, "boom");
});

test("withDeadline turns a request that never answers into TIMEOUT naming it", async () => {
  const err = (await withDeadline(new Promise(() => {}), 20, "reading lease master").catch((e: unknown) => e)) as { code?: string; message: string };
  assert.is(err.code, "TIMEOUT");
  assert.match(err.message, /reading lease master did not answer within 20 ms/);
});

test.run();
