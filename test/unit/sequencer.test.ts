/**
 * The sequencer machine on a simulated clock: capture and probe are stubs the test completes;
 * the harness parent records REPO_DOWN / REPO_UP.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fromCallback, fromPromise } from "xstate";
import { sequencerMachine, type SequencerEvent } from "../../src/machines/sequencer.js";
import { RepositoryError, StorageError } from "../../src/errors.js";
import { deferred, harness } from "../helpers/harness.js";

const INTERVAL = 5;
const RETRY = 1000;

function setup() {
  const watch = { running: false, intervalMs: 0, kick: () => {} };
  const captures: ReturnType<typeof deferred<number>>[] = [];
  const probes: ReturnType<typeof deferred<void>>[] = [];
  const machine = sequencerMachine.provide({
    actors: {
      capture: fromPromise<number, void>(() => {
        const d = deferred<number>();
        captures.push(d);
        return d.promise;
      }),
      probe: fromPromise<void, void>(() => {
        const d = deferred<void>();
        probes.push(d);
        return d.promise;
      }),
      watch: fromCallback<SequencerEvent, { intervalMs: number }>(({ sendBack, input }) => {
        watch.running = true;
        watch.intervalMs = input.intervalMs;
        watch.kick = () => sendBack({ type: "KICK" });
        return () => {
          watch.running = false;
        };
      }),
    },
  });
  const h = harness(machine, { intervalMs: INTERVAL, retryMs: RETRY });
  const snap = () => h.child().getSnapshot();
  const is = (v: string, why = "") => assert.is(snap().value, v, `expected ${v}, in ${h.state()} ${why}`);
  const types = () => h.received.map((e) => e.type);
  const last = <T>(l: T[]) => l[l.length - 1];
  return { h, captures, probes, snap, is, types, last, watch };
}

const down = () => new RepositoryError("REPO_UNAVAILABLE", "repository /x/repo.db is unavailable: the file is missing");

test("idle runs the watch (every intervalMs) and captures only when it kicks; no capture on its own", async () => {
  const s = setup();
  const w = s.watch;
  await s.h.settle();
  s.is("idle");
  assert.ok(w.running);
  assert.is(w.intervalMs, INTERVAL);
  await s.h.advance(10 * INTERVAL);
  assert.is(s.captures.length, 0, "nothing to capture: no capture cycle");
  w.kick();
  await s.h.settle();
  s.is("capturing");
  assert.not.ok(w.running, "the watch stops while capturing");
  s.captures[0].resolve(1);
  await s.h.settle();
  s.is("idle");
  assert.ok(w.running);
  s.h.stop();
});

test("KICK captures at once", async () => {
  const s = setup();
  await s.h.settle();
  s.h.child().send({ type: "KICK" });
  await s.h.settle();
  s.is("capturing");
  assert.is(s.captures.length, 1);
  s.h.stop();
});

test("a KICK during a capture runs another capture right after it, without waiting for the interval", async () => {
  const s = setup();
  s.h.child().send({ type: "KICK" });
  await s.h.settle();
  s.h.child().send({ type: "KICK" });
  s.h.child().send({ type: "KICK" });
  s.captures[0].resolve(1);
  await s.h.settle();
  s.is("capturing");
  assert.is(s.captures.length, 2);
  s.captures[1].resolve(0);
  await s.h.settle();
  s.is("idle");
  assert.is(s.captures.length, 2, "two KICKs during one capture make one more capture");
  s.h.stop();
});

test("REPO_UNAVAILABLE pauses and tells the parent why; after retryMs it probes", async () => {
  const s = setup();
  s.watch.kick();
  await s.h.settle();
  s.captures[0].reject(down());
  await s.h.settle();
  s.is("paused");
  assert.equal(s.h.received, [{ type: "REPO_DOWN", code: "REPO_UNAVAILABLE", message: down().message }]);
  assert.equal(s.snap().context.down, { code: "REPO_UNAVAILABLE", message: down().message });
  await s.h.advance(RETRY - 1);
  s.is("paused");
  assert.is(s.probes.length, 0);
  assert.is(s.captures.length, 1, "no capture while paused");
  await s.h.advance(1);
  s.is("probing");
  assert.is(s.probes.length, 1);
  s.h.stop();
});

test("a data directory refusing writes (DATA_DIR_UNWRITABLE, a full disk) pauses the same way, no capture until a probe succeeds", async () => {
  const s = setup();
  const full = new StorageError("DATA_DIR_UNWRITABLE", "cannot write to /x/level: IO error: No space left on device");
  s.watch.kick();
  await s.h.settle();
  s.captures[0].reject(full);
  await s.h.settle();
  s.is("paused");
  assert.equal(s.h.received, [{ type: "REPO_DOWN", code: "DATA_DIR_UNWRITABLE", message: full.message }]);
  await s.h.advance(10 * RETRY);
  assert.is(s.captures.length, 1, "not one capture cycle after another while the disk is full");
  s.h.stop();
});

test("any other failed cycle goes back to idle and captures at the next kick", async () => {
  const s = setup();
  s.watch.kick();
  await s.h.settle();
  s.captures[0].reject(new RepositoryError("SQL_ERROR", "a statement failed"));
  await s.h.settle();
  s.is("idle");
  assert.equal(s.h.received, []);
  s.h.stop();
});

test("a successful probe resumes: REPO_UP to the parent, idle, and captures again", async () => {
  const s = setup();
  s.watch.kick();
  await s.h.settle();
  s.captures[0].reject(down());
  await s.h.advance(RETRY);
  s.probes[0].resolve();
  await s.h.settle();
  s.is("idle");
  assert.equal(s.types(), ["REPO_DOWN", "REPO_UP"]);
  assert.is(s.snap().context.down, null);
  s.watch.kick();
  await s.h.settle();
  assert.is(s.captures.length, 2);
  s.h.stop();
});

test("a failed probe goes back to paused, says so again and probes again after retryMs", async () => {
  const s = setup();
  s.watch.kick();
  await s.h.settle();
  s.captures[0].reject(down());
  await s.h.advance(RETRY);
  s.probes[0].reject(down());
  await s.h.settle();
  s.is("paused");
  assert.equal(s.types(), ["REPO_DOWN", "REPO_DOWN"]);
  await s.h.advance(RETRY);
  s.is("probing");
  assert.is(s.probes.length, 2);
  assert.is(s.captures.length, 1);
  s.h.stop();
});

test("a KICK while paused does not capture until the repository is back", async () => {
  const s = setup();
  s.watch.kick();
  await s.h.settle();
  s.captures[0].reject(down());
  await s.h.settle();
  s.h.child().send({ type: "KICK" });
  await s.h.settle();
  s.is("paused");
  assert.is(s.captures.length, 1);
  await s.h.advance(RETRY);
  s.probes[0].resolve();
  await s.h.settle();
  s.is("capturing", "the remembered KICK captures right after the probe");
  assert.is(s.captures.length, 2);
  s.h.stop();
});

test("any other capture error goes back to idle without telling the parent", async () => {
  const s = setup();
  s.watch.kick();
  await s.h.settle();
  s.captures[0].reject(new RepositoryError("SQL_ERROR", "no such table: t"));
  await s.h.settle();
  s.is("idle");
  assert.equal(s.h.received, []);
  assert.is(s.snap().context.down, null);
  s.watch.kick();
  await s.h.settle();
  s.is("capturing");
  assert.is(s.captures.length, 2);
  s.h.stop();
});

test.run();
