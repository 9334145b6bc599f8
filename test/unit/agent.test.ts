/** The agent machine (collector, synctool): work only while the lease is held; a loser stays a candidate. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createActor, fromCallback, type AnyEventObject } from "xstate";
import { agentMachine } from "../../src/machines/agent.js";

function setup() {
  const toLease: string[] = [];
  const work = { started: 0, stopped: 0 };
  const machine = agentMachine.provide({
    actors: {
      lease: fromCallback<AnyEventObject>(({ receive }) => {
        receive((e) => toLease.push(e.type));
        return () => {};
      }),
      work: fromCallback(() => {
        work.started++;
        return () => void work.stopped++;
      }),
    },
  });
  const actor = createActor(machine, { input: { lease: { key: "synctool", node: "a", instance: "i", ttlMs: 1000, safetyMarginMs: 300 } } });
  actor.start();
  return { actor, toLease, work, state: () => actor.getSnapshot().value };
}

const held = { type: "LEASE_HELD", key: "synctool", epoch: 3, revision: 9 } as const;

test("standby until the lease is held; work runs only while active; fenced stops it until renewed", () => {
  const s = setup();
  assert.is(s.state(), "standby");
  assert.is(s.actor.getSnapshot().context.lease.wants, true, "every agent is a candidate");
  assert.is(s.work.started, 0);
  s.actor.send(held);
  assert.is(s.state(), "active");
  assert.is(s.actor.getSnapshot().context.epoch, 3);
  assert.is(s.work.started, 1);
  s.actor.send({ type: "LEASE_FENCED", key: "synctool", epoch: 3 });
  assert.is(s.state(), "fenced");
  assert.is(s.work.stopped, 1);
  s.actor.send(held);
  assert.is(s.state(), "active");
  assert.is(s.work.started, 2);
  s.actor.stop();
});

test("a lost lease stops the work and makes the agent a candidate again", () => {
  const s = setup();
  s.actor.send(held);
  s.actor.send({ type: "LEASE_LOST", key: "synctool", holder: { node: "b", epoch: 4, instance: "j" } });
  assert.is(s.state(), "standby");
  assert.is(s.work.stopped, 1);
  assert.equal(s.toLease, ["ACQUIRE"]);
  assert.is(s.actor.getSnapshot().context.holder?.node, "b");
  s.actor.stop();
});

test("STOP stops the work and releases the lease", () => {
  const s = setup();
  s.actor.send(held);
  s.actor.send({ type: "STOP" });
  assert.is(s.state(), "stopped");
  assert.is(s.work.stopped, 1);
  assert.equal(s.toLease, ["RELEASE"]);
  s.actor.stop();
});

test.run();
