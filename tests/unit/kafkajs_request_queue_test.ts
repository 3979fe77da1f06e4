/**
 * kafkajs's own `RequestQueue`, with `actors/log/kafkajs_request_queue.ts`
 * installed: an idle queue arms no timer after an answer (kafkajs 2.2.4 arms
 * one that re-arms itself every millisecond), and requests that wait for a
 * throttle or an in-flight slot still go out.
 */
import assert from "node:assert/strict";
import {
  KafkajsRequestQueue,
  originalScheduleCheckPendingRequests,
  patchKafkajsRequestQueue,
} from "../../actors/log/kafkajs_request_queue.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

function queue(maxInFlightRequests: number | null = null) {
  patchKafkajsRequestQueue();
  return new KafkajsRequestQueue({
    maxInFlightRequests,
    requestTimeout: 30_000,
    enforceRequestTimeout: false,
    clientId: "test",
    broker: "localhost:9092",
    logger: quiet,
  });
}

let nextId = 1;
/** Pushes a request; `sent` flips when the queue sends it, `answered` when its answer resolves it. */
function push(q: ReturnType<typeof queue>) {
  const correlationId = nextId++;
  const r = { correlationId, sent: false, answered: false };
  q.push({
    entry: {
      correlationId,
      apiName: "Produce",
      apiKey: 0,
      apiVersion: 3,
      resolve: () => (r.answered = true),
      reject: () => {},
    } as unknown as { correlationId: number },
    expectResponse: true,
    sendRequest: () => (r.sent = true),
  });
  return r;
}

function answer(q: ReturnType<typeof queue>, correlationId: number) {
  q.fulfillRequest({ correlationId, payload: null, size: 0 });
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5_000) {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Counts the queue's pending-request checks. */
function countChecks(q: ReturnType<typeof queue>) {
  const counter = { n: 0 };
  const check = q.checkPendingRequests.bind(q);
  q.checkPendingRequests = () => {
    counter.n++;
    check();
  };
  return counter;
}

// First in this file: the tests below install it themselves.
Deno.test("loading sluice's Kafka adapter installs the queue fix on kafkajs's RequestQueue", async () => {
  const proto = KafkajsRequestQueue.prototype as unknown as { __sluiceNoIdlePoll?: boolean };
  assert.equal(proto.__sluiceNoIdlePoll, undefined, "not installed by importing the fix alone");
  await import("../../actors/log/kafka.ts");
  assert.equal(proto.__sluiceNoIdlePoll, true);
  assert.notEqual(
    (proto as unknown as { scheduleCheckPendingRequests: unknown }).scheduleCheckPendingRequests,
    originalScheduleCheckPendingRequests,
  );
});

Deno.test("kafkajs 2.2.4's own method arms a timer on an idle queue after an answer (the loop the patch removes)", () => {
  const q = queue();
  (q as unknown as { scheduleCheckPendingRequests: () => void }).scheduleCheckPendingRequests =
    originalScheduleCheckPendingRequests;
  const r = push(q);
  assert.equal(r.sent, true);
  answer(q, r.correlationId);
  assert.equal(r.answered, true);
  assert.notEqual(
    q.throttleCheckTimeoutId,
    null,
    "kafkajs arms its 1 ms re-check with nothing pending",
  );
  q.destroy();
});

Deno.test("an idle queue arms no timer after an answer and checks nothing until the next request", async () => {
  const q = queue();
  const checks = countChecks(q);
  const r = push(q);
  answer(q, r.correlationId);
  assert.equal(r.answered, true);
  assert.equal(q.throttleCheckTimeoutId, null);
  const after = checks.n; // the one check fulfillRequest makes itself
  await new Promise((res) => setTimeout(res, 30));
  assert.equal(checks.n, after, "no check ran on its own");
  // The queue still works: the next request goes at once.
  const r2 = push(q);
  assert.equal(r2.sent, true);
  answer(q, r2.correlationId);
  assert.equal(q.throttleCheckTimeoutId, null);
  q.destroy();
});

Deno.test("a request pushed while throttled waits, and goes once the throttle ends", async () => {
  const q = queue();
  q.maybeThrottle(40);
  const r = push(q);
  assert.equal(r.sent, false, "held by the throttle");
  assert.notEqual(q.throttleCheckTimeoutId, null, "a check is armed for the throttle's end");
  await waitFor("the throttled request to be sent", () => r.sent);
  assert.ok(Date.now() >= q.throttledUntil, "not sent before the throttle ended");
  answer(q, r.correlationId);
  assert.equal(r.answered, true);
  assert.equal(q.throttleCheckTimeoutId, null, "idle again: no timer");
  q.destroy();
});

Deno.test("a throttle with nothing pending arms one check for its end, then none", async () => {
  const q = queue();
  const checks = countChecks(q);
  const r = push(q);
  q.maybeThrottle(20);
  answer(q, r.correlationId); // checks, finds nothing, throttled: one check at the throttle's end
  assert.notEqual(q.throttleCheckTimeoutId, null);
  const before = checks.n;
  await waitFor(
    "the end-of-throttle check",
    () => checks.n === before + 1 && q.throttleCheckTimeoutId === null,
  );
  await new Promise((res) => setTimeout(res, 30));
  assert.equal(checks.n, before + 1, "no further checks once the throttle is over");
  q.destroy();
});

Deno.test("with the in-flight limit reached, the next request goes when an answer frees a slot", async () => {
  const q = queue(1);
  const first = push(q);
  const second = push(q);
  assert.equal(first.sent, true);
  assert.equal(second.sent, false, "held: one request in flight at most");
  answer(q, first.correlationId);
  assert.equal(second.sent, true, "sent by the answer's own check");
  answer(q, second.correlationId);
  assert.equal(second.answered, true);
  await waitFor("the queue to go idle", () => q.throttleCheckTimeoutId === null);
  q.destroy();
});
