import { test } from "uvu";
import * as assert from "uvu/assert";
import { fromCallback, fromPromise } from "xstate";
import { leaseMachine, LeaseConflict, type LeaseEntry, type LeaseEvent, type Renewal } from "../../src/machines/lease.js";
import { LeaseClock, now } from "../../src/actors/runtime.js";
import { deferred, harness, type Harness } from "../helpers/harness.js";

const TTL = 1000;
const MARGIN = 300;

/** A lease machine whose KV is scripted by the test. */
function setup(opts: { wants?: boolean; takes?: () => Promise<Renewal>; renews?: () => Promise<Renewal> } = {}) {
  let emit: (e: LeaseEvent) => void = () => {};
  const calls = { take: 0, renew: 0, release: 0 };
  let h!: Harness;
  const now = () => h.clock.now();
  let rev = 10;
  const machine = leaseMachine.provide({
    actors: {
      watch: fromCallback<LeaseEvent, { key: string }>(({ sendBack }) => {
        emit = sendBack;
        return () => {};
      }),
      take: fromPromise<Renewal, { entry: LeaseEntry | null }>(async () => {
        calls.take++;
        if (opts.takes) return opts.takes();
        return { revision: ++rev, epoch: 5, sentAt: now(), doneAt: now() };
      }),
      renew: fromPromise<Renewal, { revision: number; epoch: number }>(async ({ input }) => {
        calls.renew++;
        if (opts.renews) return opts.renews();
        return { revision: ++rev, epoch: input.epoch, sentAt: now(), doneAt: now() };
      }),
      release: fromPromise<void, { revision: number }>(async () => {
        calls.release++;
      }),
    },
  });
  h = harness(machine, { key: "master", node: "a", instance: "i1", ttlMs: TTL, safetyMarginMs: MARGIN, wants: opts.wants });
  const seen = (value: LeaseEntry["value"], revision = ++rev) => emit({ type: "SEEN", entry: { revision, value } });
  const types = () => h.received.map((e) => e.type);
  return { h, calls, seen, types };
}

const other = { node: "b", epoch: 3, instance: "ib" };

test("a free lease is taken when wanted and reported held with its epoch", async () => {
  const { h, calls, seen } = setup({ wants: true });
  seen(null);
  await h.settle();
  assert.is(calls.take, 1);
  assert.ok(h.state().startsWith("{holding"), h.state());
  const held = h.received.find((e) => e.type === "LEASE_HELD");
  assert.equal({ ...held, revision: undefined }, { type: "LEASE_HELD", key: "master", epoch: 5, revision: undefined });
  h.stop();
});

test("a free lease is not taken until ACQUIRE", async () => {
  const { h, calls, seen } = setup();
  seen(null);
  await h.advance(5 * TTL);
  assert.is(calls.take, 0);
  assert.is(h.state(), "{observing:free}");
  h.child().send({ type: "ACQUIRE" });
  await h.settle();
  assert.is(calls.take, 1);
  h.stop();
});

test("a replayed revision does not restart the expiry clock", async () => {
  const { h, calls, seen } = setup({ wants: true });
  seen(other, 50);
  await h.advance(TTL - 10);
  seen(other, 50);
  await h.advance(20);
  assert.is(calls.take, 1);
  h.stop();
});

test("a live lease expires only after ttl without a revision change on the observer's clock", async () => {
  const { h, calls, seen, types } = setup({ wants: true });
  seen(other);
  await h.advance(TTL - 10);
  seen(other); // renewed by its holder: the timer starts again
  await h.advance(TTL - 10);
  assert.is(h.state(), "{observing:live}");
  assert.is(calls.take, 0);
  await h.advance(20);
  assert.is(calls.take, 1);
  assert.ok(types().includes("LEASE_HELD"));
  h.stop();
});

test("the holder renews before the fence deadline and stays held", async () => {
  const { h, calls, seen, types } = setup({ wants: true });
  seen(null);
  await h.settle();
  for (let i = 0; i < 10; i++) await h.advance(100);
  assert.ok(calls.renew >= 3, `renewed ${calls.renew} times`);
  assert.not.ok(types().includes("LEASE_FENCED"));
  h.stop();
});

test("a holder whose renew hangs fences itself at ttl - margin after its last renew was sent", async () => {
  const hang = deferred<Renewal>();
  const { h, seen, types } = setup({ wants: true, renews: () => hang.promise });
  seen(null);
  await h.settle();
  await h.advance(TTL - MARGIN - 1);
  assert.not.ok(types().includes("LEASE_FENCED"));
  await h.advance(1);
  assert.ok(types().includes("LEASE_FENCED"));
  assert.ok(h.state().includes("fenced"), h.state());
  h.stop();
});

test("a fenced holder that renews its own revision holds again", async () => {
  let fail = true;
  let h!: Harness;
  const s = setup({
    wants: true,
    renews: async () => {
      if (fail) throw new Error("nats unreachable");
      return { revision: 99, epoch: 5, sentAt: h.clock.now(), doneAt: h.clock.now() };
    },
  });
  h = s.h;
  s.seen(null);
  await h.settle();
  await h.advance(TTL);
  assert.ok(s.types().includes("LEASE_FENCED"));
  fail = false;
  await h.advance(TTL / 10);
  assert.is(s.types().filter((t) => t === "LEASE_HELD").length, 2);
  assert.ok(h.state().includes("term"), h.state());
  h.stop();
});

test("a renew that finds the revision moved loses the lease and does not take it back", async () => {
  const { h, calls, seen, types } = setup({
    wants: true,
    renews: async () => {
      throw new LeaseConflict();
    },
  });
  seen(null);
  await h.settle();
  await h.advance(TTL);
  assert.ok(types().includes("LEASE_LOST"));
  assert.is(h.state(), "{observing:free}");
  assert.is(calls.take, 1);
  h.stop();
});

test("another instance writing the key while we hold it is a loss", async () => {
  const { h, seen, types } = setup({ wants: true });
  seen(null);
  await h.settle();
  seen({ ...other, epoch: 6 });
  await h.settle();
  assert.ok(types().includes("LEASE_LOST"));
  assert.is(h.state(), "{observing:live}");
  h.stop();
});

test("a higher epoch of another instance is a loss at any revision: the KV accepted a renew of ours after that take", async () => {
  const { h, calls, seen, types } = setup({ wants: true });
  seen(null);
  await h.settle();
  const took = (h.received.find((e) => e.type === "LEASE_HELD") as unknown as { revision: number }).revision;
  await h.advance(TTL); // renewed: our held revision is now above the take's
  assert.ok(calls.renew > 0);
  seen({ ...other, epoch: 6 }, took + 1);
  await h.settle();
  assert.ok(types().includes("LEASE_LOST"));
  h.stop();
});

test("a newer revision of another instance below our epoch is a holder that lost to us, not a loss; at our epoch it is one", async () => {
  const { h, seen, types } = setup({ wants: true });
  seen(null);
  await h.settle();
  seen({ ...other, epoch: 4 });
  await h.settle();
  assert.not.ok(types().includes("LEASE_LOST"));
  assert.ok(h.state().startsWith("{holding"), h.state());
  // Two takes from the same revision, both accepted, chose the same epoch: the later write wins.
  seen({ ...other, epoch: 5 });
  await h.settle();
  assert.ok(types().includes("LEASE_LOST"));
  h.stop();
});

test("a late replay of the value the take replaced is not a loss", async () => {
  const { h, seen, types } = setup({ wants: true });
  seen({ node: "a", epoch: 4, instance: "old" }, 5);
  await h.settle();
  assert.ok(h.state().startsWith("{holding"), h.state());
  // The watch opened before the take landed and now delivers the key as it was then.
  seen({ node: "a", epoch: 4, instance: "old" }, 5);
  seen(other, 6);
  await h.settle();
  assert.not.ok(types().includes("LEASE_LOST"));
  assert.ok(h.state().startsWith("{holding"), h.state());
  h.stop();
});

test("our own renewals seen on the watch are not a loss", async () => {
  const { h, seen, types } = setup({ wants: true });
  seen(null);
  await h.settle();
  seen({ node: "a", epoch: 5, instance: "i1" });
  await h.settle();
  assert.not.ok(types().includes("LEASE_LOST"));
  h.stop();
});

test("a lease left by an earlier process of our own node is taken at once", async () => {
  const { h, calls, seen } = setup({ wants: true });
  seen({ node: "a", epoch: 4, instance: "old" });
  await h.settle();
  assert.is(calls.take, 1);
  h.stop();
});

test("a take that loses the compare-and-set goes back to observing", async () => {
  const { h, seen } = setup({
    wants: true,
    takes: async () => {
      throw new LeaseConflict();
    },
  });
  seen(other);
  await h.advance(TTL);
  assert.ok(h.state().startsWith("{observing") || h.state() === "acquiring", h.state());
  h.stop();
});

test("RELEASE while holding releases and observes without wanting", async () => {
  const { h, calls, seen } = setup({ wants: true });
  seen(null);
  await h.settle();
  h.child().send({ type: "RELEASE" });
  await h.settle();
  assert.is(calls.release, 1);
  assert.ok(h.state().startsWith("{observing"), h.state());
  assert.is(h.child().getSnapshot().context.wants, false);
  h.stop();
});

// The clock the master's services check before every write and batch (src/actors/runtime.ts).
test("LeaseClock: every successful renew extends validity, whichever attempt the machine followed", () => {
  const c = new LeaseClock();
  assert.not.ok(c.valid(), "nothing held yet");
  c.grant(3, now() - 1);
  assert.not.ok(c.valid(), "the deadline passed");
  // A renew the machine gave up on landed after the one it followed; both extend the clock.
  c.renewed(3, now() + 60_000);
  c.renewed(3, now() + 1000);
  assert.ok(c.valid());
  assert.ok(Number(c.shared[0]) > performance.timeOrigin + now() + 30_000, "a late attempt with an earlier deadline does not shorten it");
});

test("LeaseClock: a renew after revoke, or under an earlier epoch, does not revive the lease", () => {
  const c = new LeaseClock();
  c.grant(4, now() + 60_000);
  c.revoke();
  c.renewed(4, now() + 60_000);
  assert.not.ok(c.valid(), "revoked stays revoked");
  assert.is(c.shared[0], 0n, "the SQL worker sees no deadline");
  c.grant(5, now() - 1);
  c.renewed(4, now() + 60_000);
  assert.not.ok(c.valid(), "a renew of epoch 4 does not extend epoch 5");
});


test("a holder found gone (GONE of the revision seen) is expired at once, well before the TTL, and reported gone", async () => {
  const { h, calls, seen, types } = setup({ wants: true });
  seen(other, 40);
  await h.advance(TTL / 10);
  h.child().send({ type: "GONE", revision: 40 });
  await h.settle();
  assert.is(calls.take, 1);
  assert.ok(types().includes("LEASE_HELD"));
  const expired = h.received.find((e) => e.type === "LEASE_SEEN" && !e.live);
  assert.equal(expired && { live: expired.live, gone: (expired as { gone?: boolean }).gone }, { live: false, gone: true });
  h.stop();
});

test("GONE about an older revision is ignored: the holder renewed since it was probed", async () => {
  const { h, calls, seen } = setup({ wants: true });
  seen(other, 40);
  seen(other, 41);
  h.child().send({ type: "GONE", revision: 40 });
  await h.advance(TTL - 10);
  assert.is(h.state(), "{observing:live}");
  assert.is(calls.take, 0);
  h.stop();
});

test("a holder whose own connection drops fences itself at once and holds again after a renew", async () => {
  let renewOk = false;
  const { h, seen, types } = setup({
    wants: true,
    renews: async () => {
      if (!renewOk) throw new Error("disconnected");
      return { revision: 99, epoch: 5, sentAt: h.clock.now(), doneAt: h.clock.now() };
    },
  });
  seen(null);
  await h.settle();
  assert.ok(h.state().startsWith("{holding"), h.state());
  h.child().send({ type: "DISCONNECTED" });
  await h.settle();
  assert.ok(types().includes("LEASE_FENCED"), types().join(","));
  assert.ok(h.state().includes("fenced"), h.state());
  renewOk = true;
  await h.advance(TTL / 5);
  assert.is(types().filter((t) => t === "LEASE_HELD").length, 2);
  assert.not.ok(h.state().includes("fenced"), h.state());
  h.stop();
});

test.run();
