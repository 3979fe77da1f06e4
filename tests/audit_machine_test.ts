/**
 * The audit batcher machine under simulated time (xstate SimulatedClock):
 * batch age, flushing, degraded with backoff, draining with a deadline,
 * backpressure flag.
 */
import assert from "node:assert/strict";
import { createActor, fromPromise, SimulatedClock } from "xstate";
import {
  auditBatcherMachine,
  backoffDelay,
  batcherStateName,
  type UploadInput,
  type UploadOutput,
} from "../machines/audit_batcher.ts";

/** A controllable upload: each call waits until the test settles it. */
function harness(input: { sealed?: number } = {}) {
  const calls: {
    input: UploadInput;
    resolve: (o: UploadOutput) => void;
    reject: (e: Error) => void;
  }[] = [];
  const log: string[] = [];
  const clock = new SimulatedClock();
  const machine = auditBatcherMachine.provide({
    actors: {
      uploadSealed: fromPromise<UploadOutput, UploadInput>(({ input }) =>
        new Promise((resolve, reject) => calls.push({ input, resolve, reject }))
      ),
    },
    actions: {
      sealActive: () => log.push("seal"),
      onDegraded: (_, p) => log.push(`degraded:${p.error}`),
      onRecovered: () => log.push("recovered"),
      onBackpressure: (_, p) => log.push(`backpressure:${p.on}`),
      onStopped: () => log.push("stopped"),
    },
    delays: {
      // No jitter in tests: the ceiling of each attempt.
      retryBackoff: ({ context }) => backoffDelay(context.failures, 100, 1000, () => 1),
    },
  });
  const actor = createActor(machine, {
    clock,
    input: { batchAgeMs: 1000, retryBaseMs: 100, retryMaxMs: 1000, ...input },
  });
  actor.start();
  const state = () => batcherStateName(actor.getSnapshot());
  return { actor, clock, calls, log, state };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("backoffDelay doubles up to the maximum, with jitter in the upper half", () => {
  assert.equal(backoffDelay(1, 100, 1000, () => 1), 100);
  assert.equal(backoffDelay(2, 100, 1000, () => 1), 200);
  assert.equal(backoffDelay(4, 100, 1000, () => 1), 800);
  assert.equal(backoffDelay(9, 100, 1000, () => 1), 1000);
  assert.equal(backoffDelay(9, 100, 1000, () => 0), 500);
  for (let i = 0; i < 100; i++) {
    const d = backoffDelay(3, 100, 1000);
    assert.ok(d >= 200 && d <= 400, `delay ${d} out of [200, 400]`);
  }
});

Deno.test("auditBatcherMachine seals a batch when it is batchAgeMs old", () => {
  const h = harness();
  assert.equal(h.state(), "collecting");
  h.actor.send({ type: "SEGMENT_OPENED" });
  h.clock.increment(999);
  assert.deepEqual(h.log, []);
  h.clock.increment(1);
  assert.deepEqual(h.log, ["seal"]);
  // The timer fires once per batch.
  h.clock.increment(5000);
  assert.deepEqual(h.log, ["seal"]);
  h.actor.stop();
});

Deno.test("auditBatcherMachine uploads a sealed segment, and leftovers at start", async () => {
  const h = harness({ sealed: 2 });
  assert.equal(h.state(), "flushing");
  assert.equal(h.calls.length, 1);
  assert.deepEqual(h.calls[0].input, { seal: false });
  h.calls[0].resolve({ uploaded: 10, remaining: 0 });
  await tick();
  assert.equal(h.state(), "collecting");
  h.actor.send({ type: "SEGMENT_OPENED" });
  h.actor.send({ type: "SEGMENT_SEALED" });
  assert.equal(h.state(), "flushing");
  // A sealed segment during an upload triggers another pass afterwards.
  h.actor.send({ type: "SEGMENT_SEALED" });
  h.calls[1].resolve({ uploaded: 5, remaining: 3 });
  await tick();
  assert.equal(h.state(), "flushing");
  assert.equal(h.calls.length, 3);
  h.calls[2].resolve({ uploaded: 3, remaining: 0 });
  await tick();
  assert.equal(h.state(), "collecting");
  assert.equal(h.actor.getSnapshot().context.uploaded, 18);
  // The age timer was cancelled by the seal.
  h.clock.increment(5000);
  assert.deepEqual(h.log, []);
  h.actor.stop();
});

Deno.test("auditBatcherMachine is degraded while uploads fail and retries with growing backoff", async () => {
  const h = harness();
  h.actor.send({ type: "SEGMENT_SEALED" });
  h.calls[0].reject(new Error("connect ECONNREFUSED"));
  await tick();
  assert.equal(h.state(), "degraded");
  assert.deepEqual(h.log, ["degraded:connect ECONNREFUSED"]);
  assert.equal(h.actor.getSnapshot().context.failures, 1);
  // Sealed segments keep coming while degraded: no upload before the backoff.
  h.actor.send({ type: "SEGMENT_SEALED" });
  assert.equal(h.calls.length, 1);
  h.clock.increment(99);
  assert.equal(h.calls.length, 1);
  h.clock.increment(1);
  assert.equal(h.calls.length, 2);
  h.calls[1].reject(new Error("still down"));
  await tick();
  assert.equal(h.state(), "degraded");
  assert.equal(h.actor.getSnapshot().context.failures, 2);
  h.clock.increment(199);
  assert.equal(h.calls.length, 2);
  h.clock.increment(1);
  assert.equal(h.calls.length, 3);
  h.calls[2].resolve({ uploaded: 7, remaining: 0 });
  await tick();
  assert.equal(h.state(), "collecting");
  assert.equal(h.actor.getSnapshot().context.failures, 0);
  assert.equal(h.actor.getSnapshot().context.lastError, null);
  // One notification per state change, not per retry.
  assert.deepEqual(h.log, ["degraded:connect ECONNREFUSED", "recovered"]);
  h.actor.stop();
});

Deno.test("auditBatcherMachine drains everything then stops", async () => {
  const h = harness();
  h.actor.send({ type: "SEGMENT_OPENED" });
  h.actor.send({ type: "DRAIN", deadlineMs: 10_000 });
  assert.equal(h.state(), "draining");
  assert.deepEqual(h.calls[0].input, { seal: true });
  h.calls[0].reject(new Error("down"));
  await tick();
  h.clock.increment(100);
  assert.equal(h.calls.length, 2);
  h.calls[1].resolve({ uploaded: 4, remaining: 2 });
  await tick();
  assert.equal(h.calls.length, 3, "uploads again while events remain");
  h.calls[2].resolve({ uploaded: 2, remaining: 0 });
  await tick();
  assert.equal(h.state(), "stopped");
  assert.equal(h.actor.getSnapshot().status, "done");
  assert.equal(h.actor.getSnapshot().context.drainTimedOut, false);
  assert.deepEqual(h.log.at(-1), "stopped");
});

Deno.test("auditBatcherMachine stops at the drain deadline while the store is down", async () => {
  const h = harness();
  h.actor.send({ type: "DRAIN", deadlineMs: 2000 });
  for (let i = 0; i < 20 && h.state() === "draining"; i++) {
    h.calls.at(-1)!.reject(new Error("down"));
    await tick();
    h.clock.increment(100);
  }
  assert.equal(h.state(), "stopped");
  assert.equal(h.actor.getSnapshot().context.drainTimedOut, true);
  assert.ok(h.calls.length >= 4 && h.calls.length <= 6, `${h.calls.length} attempts`);
});

Deno.test("auditBatcherMachine flips the backpressure flag once per change", () => {
  const h = harness();
  h.actor.send({ type: "OVER_BUDGET" });
  h.actor.send({ type: "OVER_BUDGET" });
  assert.equal(h.actor.getSnapshot().context.backpressure, true);
  h.actor.send({ type: "UNDER_BUDGET" });
  h.actor.send({ type: "UNDER_BUDGET" });
  assert.equal(h.actor.getSnapshot().context.backpressure, false);
  assert.deepEqual(h.log, ["backpressure:true", "backpressure:false"]);
  h.actor.send({ type: "STOP" });
  assert.equal(h.state(), "stopped");
});
