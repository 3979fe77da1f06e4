/**
 * Machines of the pipeline: partition consumer lifecycle, rate limiter
 * configuration, circuit breaker mirror. Pure: no I/O, no timers.
 */
import assert from "node:assert/strict";
import { createActor } from "xstate";
import { partitionConsumerMachine } from "../../machines/partition_consumer.ts";
import { rateLimiterMachine } from "../../machines/rate_limiter.ts";
import { circuitBreakerMachine } from "../../machines/circuit_breaker.ts";
import { reportingCircuitBreakerMachine } from "../../actors/pipeline/circuit_breaker.ts";
import { type SluiceEvent, subscribeEvents } from "../../actors/runtime/events.ts";
import { registry } from "../../actors/runtime/metrics.ts";

function partition() {
  const a = createActor(partitionConsumerMachine, {
    input: { topic: "t", partition: 0, generation: 3 },
  });
  a.start();
  return a;
}

Deno.test("partitionConsumerMachine goes assigned → running → draining → stopped", () => {
  const a = partition();
  assert.equal(a.getSnapshot().value, "assigned");
  a.send({ type: "START" });
  assert.equal(a.getSnapshot().value, "running");
  a.send({ type: "DRAIN" });
  assert.equal(a.getSnapshot().value, "draining");
  assert.equal(a.getSnapshot().context.drainReason, "shutdown");
  a.send({ type: "DRAINED" });
  assert.equal(a.getSnapshot().value, "stopped");
  assert.equal(a.getSnapshot().status, "done");
  assert.equal(a.getSnapshot().context.generation, 3);
});

Deno.test("partitionConsumerMachine stays paused while any pause reason holds", () => {
  const a = partition();
  a.send({ type: "START" });
  a.send({ type: "PAUSE", reason: "inflight" });
  assert.equal(a.getSnapshot().value, "paused");
  a.send({ type: "PAUSE", reason: "circuit" });
  a.send({ type: "PAUSE", reason: "circuit" });
  assert.deepEqual(a.getSnapshot().context.pauseReasons, ["inflight", "circuit"]);
  a.send({ type: "RESUME", reason: "inflight" });
  assert.equal(a.getSnapshot().value, "paused");
  a.send({ type: "RESUME", reason: "operator" }); // not held: no change
  assert.equal(a.getSnapshot().value, "paused");
  a.send({ type: "RESUME", reason: "circuit" });
  assert.equal(a.getSnapshot().value, "running");
  assert.equal(a.getSnapshot().context.pauses, 1);
  a.stop();
});

Deno.test("partitionConsumerMachine starts paused when a reason was raised while assigned", () => {
  const a = partition();
  a.send({ type: "PAUSE", reason: "backpressure" });
  assert.equal(a.getSnapshot().value, "assigned");
  a.send({ type: "START" });
  assert.equal(a.getSnapshot().value, "paused");
  a.send({ type: "RESUME", reason: "backpressure" });
  assert.equal(a.getSnapshot().value, "running");
  a.stop();
});

Deno.test("partitionConsumerMachine drains on REVOKE from paused and ignores resume while draining", () => {
  const a = partition();
  a.send({ type: "START" });
  a.send({ type: "PAUSE", reason: "operator" });
  a.send({ type: "REVOKE" });
  assert.equal(a.getSnapshot().value, "draining");
  assert.equal(a.getSnapshot().context.drainReason, "revoke");
  a.send({ type: "RESUME", reason: "operator" });
  assert.equal(a.getSnapshot().value, "draining");
  a.send({ type: "DRAIN_TIMEOUT" });
  assert.equal(a.getSnapshot().value, "stopped");
  assert.equal(a.getSnapshot().context.drainTimedOut, true);
});

Deno.test("rateLimiterMachine switches between limited and unlimited on SET_RATE", () => {
  const a = createActor(rateLimiterMachine, { input: { rate: 10, burst: 5 } });
  a.start();
  assert.equal(a.getSnapshot().value, "limited");
  a.send({ type: "SET_RATE", rate: 0 });
  assert.equal(a.getSnapshot().value, "unlimited");
  assert.equal(a.getSnapshot().context.burst, 5);
  a.send({ type: "SET_RATE", rate: 50, burst: 20 });
  assert.equal(a.getSnapshot().value, "limited");
  assert.deepEqual(a.getSnapshot().context, { rate: 50, burst: 20, changes: 2 });
  a.send({ type: "SET_RATE", rate: -1 });
  a.send({ type: "SET_RATE", rate: 5, burst: 0 });
  a.send({ type: "SET_RATE", rate: Number.NaN });
  assert.deepEqual(a.getSnapshot().context, { rate: 50, burst: 20, changes: 2 });
  a.stop();
});

Deno.test("rateLimiterMachine starts unlimited with rate 0", () => {
  const a = createActor(rateLimiterMachine, { input: { rate: 0 } });
  a.start();
  assert.equal(a.getSnapshot().value, "unlimited");
  assert.equal(a.getSnapshot().context.burst, 100);
  a.stop();
});

async function gauge(): Promise<number> {
  const m = await registry.getSingleMetric("circuit_state")!.get();
  return m.values[0].value;
}

Deno.test("the breaker mirror bound to the runtime: closed → open → halfOpen → closed with gauge and events", async () => {
  const seen: SluiceEvent[] = [];
  const unsubscribe = subscribeEvents((e) => {
    if (e.type === "circuit.changed") seen.push(e);
  });
  try {
    const a = createActor(reportingCircuitBreakerMachine, { input: { policy: "dlq" } });
    a.start();
    assert.equal(a.getSnapshot().value, "closed");
    assert.equal(await gauge(), 0);
    a.send({ type: "OPENED" });
    assert.equal(a.getSnapshot().value, "open");
    assert.equal(await gauge(), 2);
    a.send({ type: "HALF_OPENED" });
    assert.equal(await gauge(), 1);
    a.send({ type: "OPENED" });
    a.send({ type: "HALF_OPENED" });
    a.send({ type: "CLOSED" });
    assert.equal(a.getSnapshot().value, "closed");
    assert.equal(await gauge(), 0);
    assert.equal(a.getSnapshot().context.opens, 2);
    assert.equal(a.getSnapshot().context.policy, "dlq");
    assert.deepEqual(seen.map((e) => `${e.data.from}>${e.data.to}`), [
      "closed>open",
      "open>halfOpen",
      "halfOpen>open",
      "open>halfOpen",
      "halfOpen>closed",
    ]);
    assert.equal(seen[0].severity, "warn");
    a.stop();
  } finally {
    unsubscribe();
  }
});

Deno.test("circuitBreakerMachine reports through a replaceable action", () => {
  const calls: string[] = [];
  const m = circuitBreakerMachine.provide({
    actions: { report: (_, p) => calls.push(`${p.from}>${p.to}`) },
  });
  const a = createActor(m, { input: {} });
  a.start();
  a.send({ type: "HALF_OPENED" }); // not possible from closed: ignored
  a.send({ type: "OPENED" });
  assert.deepEqual(calls, ["closed>open"]);
  a.stop();
});
