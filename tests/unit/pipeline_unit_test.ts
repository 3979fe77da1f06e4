/**
 * Pipeline building blocks, pure: envelope, dead letters, token bucket
 * (simulated time), partition worker (ordering, watermark, bound, drain,
 * queue compaction),
 * processor (fake upstream, audit and DLQ).
 */
import assert from "node:assert/strict";
import { SimulatedClock } from "xstate";
import type { AuditEvent } from "../../actors/audit/event.ts";
import {
  buildDeadLetter,
  deadLetterToRecord,
  parseDeadLetter,
  parseDeadLetterId,
  REPROCESSED_HEADER,
  toDeadLetterMessage,
} from "../../actors/record/dead_letter.ts";
import type { DeadLetter } from "../../actors/record/dead_letter.ts";
import { deriveTraceId, type Envelope, parseEnvelope } from "../../actors/record/envelope.ts";
import {
  hasEventSubscribers,
  publishEvent,
  type SluiceEvent,
  subscribeEvents,
} from "../../actors/runtime/events.ts";
import {
  createPartitionWorker,
  type OrderingMode,
} from "../../actors/pipeline/partition_worker.ts";
import { createProcessor, type ProcessorDeps } from "../../actors/pipeline/processor.ts";
import { createRateLimiter, TokenBucket } from "../../actors/pipeline/rate_limiter.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import type { DeliveryResult } from "../../actors/pipeline/upstream.ts";
import { waitFor } from "../harness/procs.ts";

const enc = new TextEncoder();

function rec(
  offset: number | string,
  value: unknown,
  extra: Partial<SourceRecord> = {},
): SourceRecord {
  return {
    topic: "orders",
    partition: 2,
    offset: String(offset),
    key: null,
    value: value === null
      ? null
      : value instanceof Uint8Array
      ? value
      : enc.encode(typeof value === "string" ? value : JSON.stringify(value)),
    headers: {},
    timestamp: "1735689600000",
    ...extra,
  };
}

const good = (n = 1) => ({
  request_id: `r-${n}`,
  timestamp: "2025-01-01T00:00:00Z",
  payload: { n },
});

// ---------------------------------------------------------------- envelope

Deno.test("parseEnvelope accepts a valid envelope and defaults idempotency_key and trace_id", () => {
  const r = parseEnvelope(rec(7, good()));
  assert.ok(r.ok);
  assert.equal(r.envelope.request_id, "r-1");
  assert.equal(r.envelope.idempotency_key, "orders/2/7");
  assert.equal(r.envelope.trace_id, deriveTraceId("orders/2/7"));
  assert.match(r.envelope.trace_id, /^[0-9a-f]{32}$/);
  assert.deepEqual(r.envelope.payload, { n: 1 });
  assert.match(r.envelope.traceparent, new RegExp(`^00-${r.envelope.trace_id}-[0-9a-f]{16}-01$`));
});

Deno.test("deriveTraceId gives the same ids as every earlier release (audit and traces correlate by them)", () => {
  assert.equal(deriveTraceId(""), "d6f6b135e7aca15b1a6c0d42db4bfc29");
  assert.equal(deriveTraceId("orders/2/7"), "0d45832eaa70ef6b27f0662256b76bbc");
  assert.equal(deriveTraceId("events/0/123456"), "5e323bd511ef35d56aff36b03d5fe92b");
  assert.equal(deriveTraceId("clé-é\u{1F600}"), "8d8e8ca4d04383ffa0c2f57fb29a0f65");
});

Deno.test("parseEnvelope takes the trace id from a valid traceparent header", () => {
  const tid = "4bf92f3577b34da6a3ce929d0e0e4736";
  const r = parseEnvelope(
    rec(1, { ...good(), trace_id: "0af7651916cd43dd8448eb211c80319c", idempotency_key: "k-1" }, {
      headers: { TraceParent: `00-${tid}-00f067aa0ba902b7-00` },
    }),
  );
  assert.ok(r.ok);
  assert.equal(r.envelope.trace_id, tid);
  assert.equal(r.envelope.idempotency_key, "k-1");
  assert.ok(r.envelope.traceparent.startsWith(`00-${tid}-`));
  assert.ok(r.envelope.traceparent.endsWith("-00"));
  // An invalid header is ignored: the body's trace_id is used.
  const r2 = parseEnvelope(
    rec(1, { ...good(), trace_id: "0af7651916cd43dd8448eb211c80319c" }, {
      headers: { traceparent: `00-${"0".repeat(32)}-00f067aa0ba902b7-01` },
    }),
  );
  assert.ok(r2.ok);
  assert.equal(r2.envelope.trace_id, "0af7651916cd43dd8448eb211c80319c");
});

Deno.test("parseEnvelope classifies bad values without throwing", () => {
  const cases: [SourceRecord, string, RegExp][] = [
    [rec(1, "not json {"), "DESERIALIZATION_ERROR", /^Record value is not JSON: /],
    [rec(1, new Uint8Array([0xff, 0xfe, 0x00, 0x80])), "DESERIALIZATION_ERROR", /not valid UTF-8$/],
    [rec(1, null), "VALIDATION_ERROR", /^Record value is empty$/],
    [rec(1, new Uint8Array(0)), "VALIDATION_ERROR", /^Record value is empty$/],
    [rec(1, "[1,2]"), "VALIDATION_ERROR", /must be a JSON object/],
    [rec(1, "42"), "VALIDATION_ERROR", /must be a JSON object/],
    [
      rec(1, { timestamp: "2025-01-01T00:00:00Z", payload: 1 }),
      "VALIDATION_ERROR",
      /Missing envelope field: request_id/,
    ],
    [
      rec(1, { request_id: "", timestamp: 1, payload: 1 }),
      "VALIDATION_ERROR",
      /Invalid envelope field request_id/,
    ],
    [
      rec(1, { request_id: "a", payload: 1 }),
      "VALIDATION_ERROR",
      /Missing envelope field: timestamp/,
    ],
    [
      rec(1, { request_id: "a", timestamp: "yesterday", payload: 1 }),
      "VALIDATION_ERROR",
      /Invalid envelope field timestamp/,
    ],
    [
      rec(1, { request_id: "a", timestamp: 1 }),
      "VALIDATION_ERROR",
      /Missing envelope field: payload/,
    ],
    [rec(1, { ...good(), trace_id: "XYZ" }), "VALIDATION_ERROR", /Invalid envelope field trace_id/],
    [
      rec(1, { ...good(), idempotency_key: 5 }),
      "VALIDATION_ERROR",
      /Invalid envelope field idempotency_key/,
    ],
    [rec(1, "[".repeat(200_000)), "DESERIALIZATION_ERROR", /not JSON/],
  ];
  for (const [r, reason, message] of cases) {
    const out = parseEnvelope(r);
    assert.equal(out.ok, false, `expected a failure for ${r.value?.length} bytes`);
    if (out.ok) continue;
    assert.equal(out.reason, reason);
    assert.match(out.message, message);
    assert.doesNotMatch(out.message, /\.$/);
    assert.match(out.traceId, /^[0-9a-f]{32}$/);
  }
  // Random bytes never throw.
  for (let i = 0; i < 500; i++) {
    const b = crypto.getRandomValues(new Uint8Array(1 + (i % 64)));
    const out = parseEnvelope(rec(i, b));
    assert.equal(typeof out.ok, "boolean");
  }
});

Deno.test("parseEnvelope rejects a value over maxBytes with a clear message, and keeps the ids it could read", () => {
  const out = parseEnvelope(rec(1, { ...good(), payload: "x".repeat(100) }), { maxBytes: 64 });
  assert.equal(out.ok, false);
  if (!out.ok) {
    assert.equal(out.reason, "VALIDATION_ERROR");
    assert.match(out.message, /^Record value is too large: \d+ bytes, limit 64$/);
  }
  const partial = parseEnvelope(rec(1, { request_id: "r-9", idempotency_key: "idem", payload: 1 }));
  assert.equal(partial.ok, false);
  if (!partial.ok) {
    assert.equal(partial.requestId, "r-9");
    assert.equal(partial.idempotencyKey, "idem");
  }
  const numeric = parseEnvelope(
    rec(1, { request_id: "r", timestamp: 1735689600000, payload: null }),
  );
  assert.ok(numeric.ok);
  assert.equal(numeric.envelope.timestamp, "2025-01-01T00:00:00.000Z");
});

// ------------------------------------------------------------ dead letters

Deno.test("buildDeadLetter fills every field of the README's dead-letter contract and round-trips through parseDeadLetter", () => {
  const record = rec(42, new Uint8Array([0xff, 0x00, 0x41]), {
    key: enc.encode("customer-1"),
    headers: { traceparent: "x", [REPROCESSED_HEADER]: "true" },
  });
  const dl = buildDeadLetter(record, {
    reason: "DESERIALIZATION_ERROR",
    message: "Record value is not valid UTF-8",
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  }, { consumerGroup: "g", processingHost: "sluice@h", now: new Date("2025-02-02T00:00:00Z") });
  assert.deepEqual(Object.keys(dl).sort(), [
    "consumer_group",
    "error_message",
    "failure_reason",
    "first_failure",
    "id",
    "is_reprocessed",
    "last_failure",
    "original_headers",
    "original_key",
    "original_key_encoding",
    "original_offset",
    "original_partition",
    "original_payload",
    "original_payload_encoding",
    "original_timestamp",
    "original_topic",
    "processing_host",
    "retry_count",
    "timestamp",
    "trace_id",
  ]);
  assert.equal(dl.id, "orders:2:42");
  assert.deepEqual(parseDeadLetterId(dl.id), { topic: "orders", partition: 2, offset: "42" });
  assert.equal(dl.original_key, "customer-1");
  assert.equal(dl.original_key_encoding, "utf8");
  assert.equal(dl.original_payload_encoding, "base64");
  assert.equal(dl.original_timestamp, "2025-01-01T00:00:00.000Z");
  assert.equal(dl.first_failure, "2025-02-02T00:00:00.000Z");
  assert.equal(dl.is_reprocessed, true);

  const msg = toDeadLetterMessage(dl);
  assert.equal(msg.topic, "orders-dlq");
  assert.deepEqual(msg.key, enc.encode("customer-1"));
  assert.equal(msg.headers["x-sluice-dead-letter-id"], "orders:2:42");
  const back = parseDeadLetter(msg.value);
  assert.deepEqual(back, dl);
  const original = deadLetterToRecord(back);
  assert.deepEqual(original, record);
  // Same record, same id.
  assert.equal(
    buildDeadLetter(record, { reason: "UNKNOWN_ERROR", message: "x", traceId: "t" }, {
      consumerGroup: "g",
    }).id,
    dl.id,
  );
});

Deno.test("parseDeadLetter refuses what is not a dead letter", () => {
  assert.throws(() => parseDeadLetter("nope"), /Dead letter is not JSON/);
  assert.throws(() => parseDeadLetter("[]"), /not a JSON object/);
  assert.throws(() => parseDeadLetter(JSON.stringify({ id: "x" })), /Invalid dead letter field/);
});

// ------------------------------------------------------------ token bucket

const flush = async () => {
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

/** Waits until `cond()` holds, polling every few ms; fails after `timeoutMs` (the harness's `waitFor`). */
async function until(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  await waitFor(cond, { timeoutMs, intervalMs: 2, message: what });
}

Deno.test("TokenBucket grants the configured rate with simulated time, FIFO", async () => {
  const clock = new SimulatedClock();
  const bucket = new TokenBucket(100, 10, { clock });
  let sync = 0;
  while (bucket.tryAcquire()) sync++;
  assert.equal(sync, 10);
  const order: number[] = [];
  const waits = Array.from({ length: 300 }, (_, i) => bucket.acquire()!.then(() => order.push(i)));
  assert.equal(bucket.waiting, 300);
  // A newcomer never jumps the queue, even when a token is there.
  for (let t = 0; t < 1000; t += 10) {
    clock.increment(10);
    await flush();
  }
  assert.ok(order.length >= 99 && order.length <= 101, `granted ${order.length} in 1 s at 100/s`);
  // Raising the rate applies to queued waiters at once.
  bucket.configure(1000, 10);
  for (let t = 0; t < 100; t++) {
    clock.increment(1);
    await flush();
  }
  assert.ok(
    order.length >= 199 && order.length <= 201,
    `granted ${order.length} after 100 ms at 1000/s`,
  );
  bucket.configure(0);
  await flush();
  assert.equal(order.length, 300);
  assert.deepEqual(order, [...order].sort((a, b) => a - b));
  await Promise.all(waits);
  bucket.stop();
});

Deno.test("TokenBucket waiter leaves the queue on abort and the rest keep their order", async () => {
  const clock = new SimulatedClock();
  const bucket = new TokenBucket(10, 1, { clock });
  assert.equal(bucket.acquire(), undefined);
  const ac = new AbortController();
  const got: string[] = [];
  const a = bucket.acquire()!.then(() => got.push("a"));
  const b = bucket.acquire(ac.signal)!.then(() => got.push("b"), (e) => got.push(`b:${e.name}`));
  const c = bucket.acquire()!.then(() => got.push("c"));
  ac.abort(new DOMException("gone", "AbortError"));
  await flush();
  clock.increment(100);
  await flush();
  clock.increment(100);
  await flush();
  await Promise.all([a, b, c]);
  assert.deepEqual(got, ["b:AbortError", "a", "c"]);
  bucket.stop();
});

Deno.test("createRateLimiter setRate goes through the actor and validates", () => {
  const limiter = createRateLimiter({ rate: 5, burst: 2, id: "rate-limiter-test" });
  try {
    assert.equal(limiter.status().state, "limited");
    limiter.setRate(0);
    assert.equal(limiter.status().state, "unlimited");
    for (let i = 0; i < 1000; i++) assert.equal(limiter.acquire(), undefined);
    limiter.setRate(20, 4);
    assert.deepEqual(
      { rate: limiter.status().rate, burst: limiter.status().burst },
      { rate: 20, burst: 4 },
    );
    assert.throws(() => limiter.setRate(-1), RangeError);
    assert.throws(() => limiter.setRate(1, 0), /Invalid rate limit/);
  } finally {
    limiter.stop();
  }
});

// ---------------------------------------------------------- partition worker

interface Pending {
  record: SourceRecord;
  resolve: () => void;
  reject: (e: unknown) => void;
}

function harness(ordering: OrderingMode, maxInflight = 64) {
  const started: Pending[] = [];
  let running = 0;
  let maxRunning = 0;
  const worker = createPartitionWorker({
    topic: "orders",
    partition: 2,
    ordering,
    maxInflight,
    generation: 7,
    process: (record, signal) =>
      new Promise<void>((resolve, reject) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        const done = (f: () => void) => () => {
          running--;
          f();
        };
        const p: Pending = {
          record,
          resolve: done(resolve),
          reject: (e) => done(() => reject(e))(),
        };
        signal.addEventListener("abort", () => p.reject(signal.reason), { once: true });
        started.push(p);
      }),
  });
  return { worker, started, maxRunning: () => maxRunning };
}

const keyed = (offset: number, key: string | null) =>
  rec(offset, good(offset), { key: key === null ? null : enc.encode(key) });

Deno.test("PartitionWorker in partition mode runs one record at a time in offset order", async () => {
  const { worker, started, maxRunning } = harness("partition");
  worker.push([0, 1, 2, 3, 4].map((o) => keyed(o, `k${o % 2}`)));
  for (let i = 0; i < 5; i++) {
    assert.equal(started.length, i + 1);
    started[i].resolve();
    await flush();
  }
  assert.deepEqual(started.map((p) => p.record.offset), ["0", "1", "2", "3", "4"]);
  assert.equal(maxRunning(), 1);
  assert.equal(worker.committableOffset(), "5");
  worker.dispose();
});

Deno.test("PartitionWorker in key mode runs keys in parallel and each key in order (random completion)", async () => {
  const { worker, started } = harness("key", 1000);
  const keys = ["a", "b", "c", null, "d"];
  const records = Array.from(
    { length: 400 },
    (_, i) => keyed(i, keys[(i * 7 + (i >> 3)) % keys.length]),
  );
  worker.push(records);
  const finished: SourceRecord[] = [];
  const done = new Set<string>();
  let seed = 42;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  const lastStartedPerKey = new Map<string, number>();
  let checked = 0;
  while (finished.length < records.length) {
    // Every running record is the oldest unfinished one of its key.
    const running = started.filter((p) => !done.has(p.record.offset));
    const runningKeys = running.map((p) =>
      String(p.record.key && new TextDecoder().decode(p.record.key))
    );
    assert.equal(new Set(runningKeys).size, runningKeys.length, "two records of one key at once");
    for (; checked < started.length; checked++) {
      const p = started[checked];
      const k = String(p.record.key && new TextDecoder().decode(p.record.key));
      const o = Number(p.record.offset);
      assert.ok((lastStartedPerKey.get(k) ?? -1) < o, `key ${k} out of order at ${o}`);
      lastStartedPerKey.set(k, o);
    }
    const p = running[Math.floor(rnd() * running.length)];
    done.add(p.record.offset);
    finished.push(p.record);
    p.resolve();
    await flush();
    // Watermark invariant: never past an unfinished record.
    const c = worker.committableOffset();
    if (c !== null) {
      for (let o = 0; o < Number(c); o++) {
        assert.ok(done.has(String(o)), `watermark ${c} passes ${o}`);
      }
      // ... and is the highest such offset.
      if (Number(c) < records.length) assert.ok(!done.has(c), `watermark ${c} could advance`);
    }
  }
  assert.ok(
    new Set(started.slice(0, 5).map((p) => String(p.record.key))).size > 1,
    "keys ran in parallel",
  );
  assert.equal(worker.committableOffset(), "400");
  assert.equal(worker.pending, 0);
  worker.dispose();
});

Deno.test("PartitionWorker in key mode orders null keys as one key", async () => {
  const { worker, started } = harness("key");
  worker.push([keyed(0, null), keyed(1, null), keyed(2, "x")]);
  assert.deepEqual(started.map((p) => p.record.offset), ["0", "2"]);
  started[0].resolve();
  await flush();
  assert.deepEqual(started.map((p) => p.record.offset), ["0", "2", "1"]);
  started[1].resolve();
  started[2].resolve();
  await flush();
  assert.equal(worker.committableOffset(), "3");
  worker.dispose();
});

Deno.test("PartitionWorker watermark never passes an unfinished record, across offset gaps", async () => {
  const { worker, started } = harness("none");
  worker.push([10, 11, 15, 20].map((o) => keyed(o, null)));
  assert.equal(started.length, 4);
  started[2].resolve(); // 15
  started[3].resolve(); // 20
  await flush();
  assert.equal(worker.committableOffset(), null);
  started[0].resolve(); // 10
  await flush();
  assert.equal(worker.committableOffset(), "11");
  started[1].reject(new Error("boom")); // 11 fails: stays unfinished
  await flush();
  assert.equal(worker.committableOffset(), "11");
  // A re-fetch of old offsets is ignored.
  assert.equal(worker.push([keyed(15, null), keyed(21, null)]), 1);
  started[4].resolve();
  await flush();
  assert.equal(worker.committableOffset(), "11");
  worker.dispose();
});

Deno.test("PartitionWorker respects maxInflight and signals full and ready", async () => {
  const { worker, started, maxRunning } = harness("none", 4);
  const events: string[] = [];
  worker.on("full", () => events.push("full"));
  worker.on("ready", () => events.push("ready"));
  worker.push(Array.from({ length: 10 }, (_, i) => keyed(i, null)));
  assert.ok(worker.isFull());
  assert.equal(worker.running, 4);
  assert.equal(worker.queued, 6);
  for (let i = 0; i < 8; i++) {
    started[i].resolve();
    await flush();
    assert.ok(worker.running <= 4);
  }
  assert.equal(maxRunning(), 4);
  assert.deepEqual(events, ["full", "ready"]);
  assert.equal(worker.isFull(), false);
  started[8].resolve();
  started[9].resolve();
  await flush();
  assert.equal(worker.committableOffset(), "10");
  worker.dispose();
});

Deno.test("PartitionWorker drain drops queued records, waits for running ones, and aborts at the deadline", async () => {
  const { worker, started } = harness("partition");
  worker.push([0, 1, 2].map((o) => keyed(o, null)));
  const draining = worker.drain(5_000);
  assert.throws(() => worker.push([keyed(3, null)]), /Partition worker is draining/);
  started[0].resolve();
  const r = await draining;
  assert.deepEqual(r, { drained: true, committable: "1", dropped: 2, unfinished: 0 });

  const h2 = harness("none");
  h2.worker.push([keyed(0, null)]);
  const r2 = await h2.worker.drain(20);
  assert.deepEqual(r2, { drained: false, committable: null, dropped: 0, unfinished: 1 });
  await flush();
  assert.equal(h2.worker.running, 0);
  worker.dispose();
  h2.worker.dispose();
});

Deno.test("PartitionWorker keeps order and watermark across its queues' compactions (thousands of records)", async () => {
  // Key mode, one at a time, three keys in rotation: the ready-key queue and
  // the entries pass 4096 consumed slots, each key's queue 256.
  const k = harness("key", 1);
  const n = 4500;
  const keys = ["a", "b", "c"];
  assert.equal(k.worker.push(Array.from({ length: n }, (_, i) => keyed(i, keys[i % 3]))), n);
  for (let i = 0; i < n; i++) {
    assert.equal(k.started.length, i + 1);
    assert.equal(k.started[i].record.offset, String(i));
    assert.equal(k.worker.queued, n - i - 1);
    k.started[i].resolve();
    await flush();
    assert.equal(k.worker.committableOffset(), String(i + 1));
  }
  assert.equal(k.worker.pending, 0);
  assert.equal(k.maxRunning(), 1);
  k.worker.dispose();

  // None mode, two at a time: the start queue passes 4096 consumed slots;
  // finishing out of order holds the watermark at the oldest unfinished.
  const u = harness("none", 2);
  const m = 5000;
  u.worker.push(Array.from({ length: m }, (_, i) => keyed(i, null)));
  for (let i = 0; i < m; i += 2) {
    assert.equal(u.started.length, i + 2);
    assert.deepEqual([u.started[i].record.offset, u.started[i + 1].record.offset], [
      String(i),
      String(i + 1),
    ]);
    u.started[i + 1].resolve();
    await flush();
    assert.equal(u.worker.committableOffset(), i === 0 ? null : String(i));
    u.started[i].resolve();
    await flush();
    assert.equal(u.worker.committableOffset(), String(i + 2));
  }
  assert.equal(u.worker.pending, 0);
  assert.equal(u.maxRunning(), 2);
  u.worker.dispose();
});

// --------------------------------------------------------------- processor

function fakeDeps(results: Partial<DeliveryResult>[], over: Partial<ProcessorDeps> = {}) {
  const audit: AuditEvent[] = [];
  const dlq: DeadLetter[] = [];
  const calls: Envelope[] = [];
  const deps: ProcessorDeps = {
    consumerGroup: "g",
    processingHost: "sluice@test",
    upstream: {
      host: "upstream:80",
      deliver: (envelope) => {
        calls.push(envelope);
        const r = results.shift() ?? {};
        return Promise.resolve({
          outcome: "delivered",
          reason: null,
          message: null,
          status: 200,
          latencyMs: 3,
          attempts: 1,
          retries: 0,
          timeouts: 0,
          timeoutType: null,
          firstFailureAt: null,
          lastFailureAt: null,
          ...r,
        });
      },
    },
    publishDeadLetter: (dl) => {
      dlq.push(dl);
      return Promise.resolve();
    },
    audit: {
      append: (e) => {
        audit.push(e);
        return Promise.resolve();
      },
    },
    sinkRetryBaseMs: 1,
    sinkRetryMaxMs: 2,
    ...over,
  };
  return { deps, audit, dlq, calls };
}

Deno.test("processor builds no record event when only circuit.changed is followed (the dashboard history)", async () => {
  const { deps } = fakeDeps([
    { status: 200 },
    {
      outcome: "failed",
      status: 400,
      reason: "PROCESSING_ERROR",
      message: "Upstream answered 400",
    },
  ]);
  const seen: SluiceEvent[] = [];
  const offCircuit = subscribeEvents((e) => seen.push(e), { types: ["circuit.changed"] });
  try {
    assert.equal(hasEventSubscribers("record.completed"), false);
    assert.equal(hasEventSubscribers("circuit.changed"), true);
    const p = createProcessor(deps);
    assert.equal((await p.process(rec(1, good()))).outcome, "delivered");
    assert.equal((await p.process(rec(2, good()))).outcome, "dead_lettered");
    publishEvent("circuit.changed", "warn", { to: "open" });
    assert.deepEqual(seen.map((e) => e.type), ["circuit.changed"]);
    // A client of every type (a WebSocket) gets the record events again.
    const all: SluiceEvent[] = [];
    const offAll = subscribeEvents((e) => all.push(e));
    try {
      assert.equal(hasEventSubscribers("record.completed"), true);
      await p.process(rec(3, good()));
      assert.deepEqual(all.map((e) => e.type), ["record.completed"]);
      assert.deepEqual(seen.map((e) => e.type), ["circuit.changed"]);
    } finally {
      offAll();
    }
    assert.equal(hasEventSubscribers("record.completed"), false);
  } finally {
    offCircuit();
  }
  assert.equal(hasEventSubscribers(), false);
});

Deno.test("processor delivers, audits and publishes record.completed with trace_id", async () => {
  const { deps, audit, dlq } = fakeDeps([{ status: 201 }]);
  const events: SluiceEvent[] = [];
  const off = subscribeEvents((e) => events.push(e));
  try {
    const out = await createProcessor(deps).process(rec(5, good()));
    assert.equal(out.outcome, "delivered");
    assert.equal(out.status, 201);
    assert.equal(dlq.length, 0);
    assert.equal(audit.length, 1);
    assert.equal(audit[0].event_type, "record.delivered");
    assert.equal(audit[0].idempotency_key, "orders/2/5");
    assert.equal(audit[0].upstream.host, "upstream:80");
    assert.equal(audit[0].result.outcome, "delivered");
    const ev = events.find((e) => e.type === "record.completed")!;
    assert.equal(ev.trace_id, out.traceId);
    assert.equal(ev.topic, "orders");
  } finally {
    off();
  }
});

Deno.test("processor dead-letters bad input before the audit event, and never throws", async () => {
  const { deps, audit, dlq, calls } = fakeDeps([]);
  const order: string[] = [];
  const p = createProcessor({
    ...deps,
    publishDeadLetter: async (dl) => {
      await new Promise((r) => setTimeout(r, 5));
      order.push("dlq");
      dlq.push(dl);
    },
    audit: {
      append: (e) => {
        order.push("audit");
        audit.push(e);
        return Promise.resolve();
      },
    },
  });
  const out = await p.process(rec(9, "{oops", { key: enc.encode("k") }));
  assert.equal(out.outcome, "dead_lettered");
  if (out.outcome === "dead_lettered") {
    assert.equal(out.reason, "DESERIALIZATION_ERROR");
    assert.equal(out.deadLetterId, "orders:2:9");
  }
  assert.deepEqual(order, ["dlq", "audit"]);
  assert.equal(calls.length, 0);
  assert.equal(dlq[0].original_key, "k");
  assert.equal(dlq[0].consumer_group, "g");
  assert.equal(audit[0].result.error_code, "DESERIALIZATION_ERROR");
  assert.equal(audit[0].upstream.host, null);
});

Deno.test("processor maps upstream failure to a dead letter with retry counts", async () => {
  const first = new Date("2025-01-01T00:00:00Z");
  const last = new Date("2025-01-01T00:00:01Z");
  const { deps, audit, dlq } = fakeDeps([{
    outcome: "failed",
    reason: "TIMEOUT_ERROR",
    message: "Upstream read timeout after 50 ms after 3 retries",
    status: null,
    attempts: 4,
    retries: 3,
    timeouts: 4,
    timeoutType: "read",
    firstFailureAt: first,
    lastFailureAt: last,
  }]);
  const out = await createProcessor(deps).process(rec(1, good()));
  assert.equal(out.outcome, "dead_lettered");
  assert.equal(dlq[0].failure_reason, "TIMEOUT_ERROR");
  assert.equal(dlq[0].retry_count, 3);
  assert.equal(dlq[0].first_failure, first.toISOString());
  assert.equal(dlq[0].last_failure, last.toISOString());
  assert.deepEqual(audit[0].resilience, {
    retry_count: 3,
    timeout_count: 4,
    timeout_type: "read",
    circuit_state: "closed",
  });
});

Deno.test("processor retries a failing DLQ publish and audit append until they succeed", async () => {
  let dlqFails = 2;
  let auditFails = 2;
  const { deps, audit } = fakeDeps([{
    outcome: "failed",
    reason: "PROCESSING_ERROR",
    message: "Upstream answered 400",
  }]);
  const out = await createProcessor({
    ...deps,
    publishDeadLetter: () =>
      dlqFails-- > 0 ? Promise.reject(new Error("broker down")) : Promise.resolve(),
    audit: {
      append: (e) =>
        auditFails-- > 0 ? Promise.reject(new Error("disk")) : (audit.push(e), Promise.resolve()),
    },
  }).process(rec(1, good()));
  assert.equal(out.outcome, "dead_lettered");
  assert.equal(dlqFails, -1);
  assert.equal(auditFails, -1);
  assert.equal(audit.length, 1);
});

Deno.test("processor rejects with the signal's reason when aborted while the sink keeps failing", async () => {
  const { deps } = fakeDeps([]);
  const ac = new AbortController();
  const p = createProcessor({
    ...deps,
    publishDeadLetter: () => Promise.reject(new Error("broker down")),
  }).process(rec(1, "bad"), ac.signal);
  setTimeout(() => ac.abort(new DOMException("drain", "AbortError")), 20);
  await assert.rejects(p, { name: "AbortError" });
});

Deno.test("processor with the pause policy waits for the breaker instead of dead-lettering", async () => {
  let state: "closed" | "open" | "halfOpen" = "open";
  let change: ((s: "closed" | "open" | "halfOpen") => void) | undefined;
  const breaker = {
    policy: "pause" as const,
    get state() {
      return state;
    },
    nextChange: () => new Promise<"closed" | "open" | "halfOpen">((r) => change = r),
  };
  const { deps, dlq, calls } = fakeDeps([
    {
      outcome: "circuit_open",
      reason: "CIRCUIT_OPEN",
      message: "Circuit breaker is open: call refused",
      attempts: 1,
      retries: 1,
    },
    { status: 200, retries: 1 },
  ], { breaker });
  const p = createProcessor(deps).process(rec(1, good()));
  await until(() => change !== undefined, "the processor to wait for the breaker");
  assert.equal(calls.length, 1);
  state = "halfOpen";
  change!("halfOpen");
  const out = await p;
  assert.equal(dlq.length, 0);
  assert.equal(out.outcome, "delivered");
  assert.equal(out.retries, 2);
  assert.equal(calls.length, 2);
});
