/**
 * The adaptive limiter's control laws under simulated time (AIMD rate,
 * latency gradient, pause, outage judgement), and the upstream client with
 * flow control against loopback stubs: 429 is never dead-lettered, a long
 * Retry-After pauses every call, an outage opens the breaker instead of
 * dead-lettering, a poison record is still dead-lettered.
 */
import assert from "node:assert/strict";
import { SimulatedClock } from "xstate";
import {
  AdaptiveLimiter,
  type CallReport,
  type Permit,
} from "../../actors/pipeline/adaptive_limiter.ts";
import { createCircuitBreaker } from "../../actors/pipeline/circuit_breaker.ts";
import { CancelScope } from "../../actors/pipeline/deadlines.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import { createUpstreamClient } from "../../actors/pipeline/upstream.ts";
import { envelopeOf, loopbackUpstream } from "../harness/loopback_upstream.ts";

function take(l: AdaptiveLimiter): Permit {
  const p = l.acquire();
  assert.ok(!(p instanceof Promise), "a permit at once");
  return p as Permit;
}

function call(
  l: AdaptiveLimiter,
  clock: SimulatedClock,
  report: Omit<CallReport, "caller" | "latencyMs">,
  caller: object = {},
  latencyMs = 2,
): void {
  const p = take(l);
  clock.increment(latencyMs);
  p.release({ caller, latencyMs, ...report });
}

Deno.test("AdaptiveLimiter cuts the rate by 0.9 on a 429, once per round trip, and never above the ceiling", () => {
  const clock = new SimulatedClock();
  const l = new AdaptiveLimiter({ ceiling: 1000, burst: 1000, clock });
  try {
    assert.equal(l.rate, 1000);
    // Three calls in flight together, all answered 429: one cut.
    const ps = [take(l), take(l), take(l)];
    clock.increment(5);
    for (const p of ps) p.release({ caller: {}, kind: "http", status: 429, latencyMs: 5 });
    assert.equal(l.rate, 900);
    // A later call answered 429, but nothing succeeded since the cut: no cut.
    call(l, clock, { kind: "http", status: 429 });
    assert.equal(l.rate, 900);
    // Something succeeds, then a later call is pushed back: a second cut.
    call(l, clock, { kind: "ok", status: 200 });
    call(l, clock, { kind: "http", status: 503 });
    assert.equal(Math.round(l.rate), 810);
    call(l, clock, { kind: "ok", status: 200 });
    call(l, clock, { kind: "timeout" });
    assert.equal(Math.round(l.rate), 729);
    // 500 and network errors are the breaker's business, not pushback.
    call(l, clock, { kind: "ok", status: 200 });
    call(l, clock, { kind: "http", status: 500 });
    call(l, clock, { kind: "network" });
    assert.equal(Math.round(l.rate), 729);
    // The operator's ceiling bounds it.
    l.setCeiling(500);
    assert.equal(l.rate, 500);
    assert.equal(l.ceiling, 500);
    // At the ceiling, a higher one is followed at once; below it, not.
    l.setCeiling(800);
    assert.equal(l.rate, 800);
    call(l, clock, { kind: "ok", status: 200 });
    call(l, clock, { kind: "http", status: 429 });
    assert.equal(l.rate, 720);
    l.setCeiling(2000);
    assert.equal(l.rate, 720);
  } finally {
    l.stop();
  }
});

Deno.test("AdaptiveLimiter grows the rate by 1 % of the ceiling per second only while callers wait for tokens", async () => {
  const clock = new SimulatedClock();
  const l = new AdaptiveLimiter({ ceiling: 1000, burst: 10, clock });
  try {
    call(l, clock, { kind: "http", status: 429 });
    assert.equal(l.rate, 900);
    // Nobody waits: no growth.
    for (let t = 0; t < 50; t++) clock.increment(100);
    assert.equal(l.rate, 900);
    // Callers wait for tokens for 5 s: +10/s per second.
    const ac = new AbortController();
    const waiting: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      const p = l.acquire(ac.signal);
      if (p instanceof Promise) waiting.push(p.catch(() => {}));
    }
    assert.ok(waiting.length > 0);
    for (let t = 0; t < 50; t++) {
      // Keep the bucket busy: more callers each tick than it refills.
      for (let i = 0; i < 100; i++) {
        const p = l.acquire(ac.signal);
        if (p instanceof Promise) waiting.push(p.catch(() => {}));
      }
      clock.increment(100);
    }
    assert.ok(l.rate > 940 && l.rate <= 951, `≈ 950 after 5 s: ${l.rate}`);
    ac.abort();
    await Promise.all(waiting);
  } finally {
    l.stop();
  }
});

Deno.test("AdaptiveLimiter with no ceiling starts unlimited and cuts to 0.9 × the measured call rate", () => {
  const clock = new SimulatedClock();
  const l = new AdaptiveLimiter({ ceiling: 0, clock });
  try {
    assert.equal(l.rate, 0, "unlimited");
    for (let i = 0; i < 200; i++) take(l).release({ caller: {}, kind: "ok", latencyMs: 1 });
    for (let t = 0; t < 10; t++) clock.increment(100);
    for (let i = 0; i < 100; i++) take(l).release({ caller: {}, kind: "ok", latencyMs: 1 });
    call(l, clock, { kind: "http", status: 429 });
    // ≈ 100 calls over the last second.
    assert.ok(l.rate > 80 && l.rate < 100, `cut to ~91: ${l.rate}`);
  } finally {
    l.stop();
  }
  // A pushback on the very first calls: the rate is not cut to a handful a second.
  const early = new AdaptiveLimiter({ ceiling: 0, clock });
  try {
    for (let t = 0; t < 30; t++) clock.increment(100);
    for (let i = 0; i < 3; i++) take(early).release({ caller: {}, kind: "ok", latencyMs: 1 });
    call(early, clock, { kind: "http", status: 503 });
    assert.ok(early.rate >= 100, `an estimate from the calls made so far: ${early.rate}`);
  } finally {
    early.stop();
  }
});

Deno.test("AdaptiveLimiter shrinks the in-flight limit when latency rises, and grows it back when used and fast", () => {
  const clock = new SimulatedClock();
  const l = new AdaptiveLimiter({ ceiling: 0, maxConcurrency: 100, clock });
  try {
    assert.equal(l.concurrency, 100);
    for (let i = 0; i < 200; i++) call(l, clock, { kind: "ok" }, {}, 10);
    assert.equal(l.concurrency, 100, "steady latency: unchanged");
    for (let i = 0; i < 40; i++) call(l, clock, { kind: "ok" }, {}, 500);
    assert.ok(l.concurrency <= 10, `shrunk: ${l.concurrency}`);
    const low = l.concurrency;
    // Fast again, with the limit in use: grows.
    for (let i = 0; i < 50; i++) {
      const ps = Array.from({ length: l.concurrency }, () => l.acquire());
      clock.increment(10);
      for (const p of ps) (p as Permit).release({ caller: {}, kind: "ok", latencyMs: 10 });
    }
    assert.ok(l.concurrency > low, `grows back: ${low} → ${l.concurrency}`);
  } finally {
    l.stop();
  }
});

Deno.test("AdaptiveLimiter.pause holds every new call until its end, and a longer pause extends it", async () => {
  const clock = new SimulatedClock();
  const l = new AdaptiveLimiter({ ceiling: 0, clock });
  try {
    l.pause(20_000);
    assert.equal(l.paused, true);
    assert.ok(l.status().paused_until);
    let got = false;
    const p = (l.acquire() as Promise<Permit>).then((x) => {
      got = true;
      return x;
    });
    clock.increment(10_000);
    l.pause(5_000); // shorter: no change
    l.pause(15_000); // ends at 25 s
    clock.increment(14_000);
    await Promise.resolve();
    assert.equal(got, false, "still paused at 24 s");
    clock.increment(1_000);
    (await p).release({ caller: {}, kind: "ok", latencyMs: 1 });
    assert.equal(got, true);
    assert.equal(l.paused, false);
  } finally {
    l.stop();
  }
});

Deno.test("AdaptiveLimiter: a wait for the end of a pause, a token or a slot ends with the reason of the upstream client's CancelScope", async () => {
  const clock = new SimulatedClock();
  const l = new AdaptiveLimiter({ ceiling: 1, burst: 1, clock });
  try {
    // Pause.
    l.pause(20_000);
    let scope = new CancelScope();
    let p = l.acquire(scope) as Promise<Permit>;
    scope.abort(new Error("global timeout"));
    await assert.rejects(p, /global timeout/);
    clock.increment(20_000);
    // Token: the one of the burst is taken, the next waits a second.
    const first = l.acquire() as Permit;
    scope = new CancelScope();
    p = l.acquire(scope) as Promise<Permit>;
    assert.ok(p instanceof Promise);
    scope.abort(new Error("drain deadline"));
    await assert.rejects(p, /drain deadline/);
    first.release({ caller: {}, kind: "ok", latencyMs: 1 });
  } finally {
    l.stop();
  }
});

Deno.test("AdaptiveLimiter.judge: outage when the other records' calls fail too, poison when they succeed or are too few", () => {
  const clock = new SimulatedClock();
  const big = { ceiling: 100_000, burst: 100_000 };
  const l = new AdaptiveLimiter({ ...big, clock, judge: { volume: 10, errorPercent: 50 } });
  try {
    const me = {};
    // Many successes before this record's trouble, then others fail with it.
    for (let i = 0; i < 50; i++) call(l, clock, { kind: "ok" });
    const since = clock.now();
    call(l, clock, { kind: "http", status: 503 }, me);
    for (let i = 0; i < 4; i++) call(l, clock, { kind: "http", status: 503 });
    call(l, clock, { kind: "http", status: 503 }, me);
    assert.equal(l.judge(me, since), "outage");
    // Others succeed meanwhile: poison.
    const me2 = {};
    const since2 = clock.now();
    for (let i = 0; i < 5; i++) {
      call(l, clock, { kind: "http", status: 500 }, me2);
      call(l, clock, { kind: "ok" });
    }
    assert.equal(l.judge(me2, since2), "poison");
    // Its own failures are not evidence: alone, it is poison.
    const quiet = new AdaptiveLimiter({ ...big, clock });
    const me3 = {};
    for (let i = 0; i < 10; i++) call(quiet, clock, { kind: "http", status: 500 }, me3);
    assert.equal(quiet.judge(me3, 0), "poison");
    quiet.stop();
    // At 100 % the breaker's rule ("more than") never calls it an outage.
    const never = new AdaptiveLimiter({ ...big, clock, judge: { errorPercent: 100 } });
    for (let i = 0; i < 10; i++) call(never, clock, { kind: "timeout" });
    assert.equal(never.judge({}, 0), "poison");
    never.stop();
  } finally {
    l.stop();
  }
});

/**
 * Seen on the real parts (tests/infra/flow_control_kafka_test.ts, partition
 * ordering, 3 partitions): at the start of a 503 outage a record ran out of
 * retries while only one other call had ended since its first failure (a
 * 503); the judgement padded that with the successes from before the outage
 * and dead-lettered the record as poison.
 */
Deno.test("AdaptiveLimiter.judge at an outage's start: one or two other calls since the record's first failure decide; successes of calls started before it do not count", () => {
  const clock = new SimulatedClock();
  const big = { ceiling: 100_000, burst: 100_000 };
  const l = new AdaptiveLimiter({ ...big, clock, judge: { volume: 10, errorPercent: 50 } });
  try {
    for (let i = 0; i < 9; i++) call(l, clock, { kind: "ok" });
    call(l, clock, { kind: "http", status: 503 }); // the outage begins
    const me = {};
    const since = clock.now();
    call(l, clock, { kind: "http", status: 503 }, me);
    call(l, clock, { kind: "http", status: 503 }); // the only other call since
    for (let i = 0; i < 3; i++) call(l, clock, { kind: "http", status: 503 }, me, 60);
    assert.equal(l.judge(me, since), "outage", "one other call since, failed");

    // A success that started before the record's first failure, and ended after it.
    const me2 = {};
    for (let i = 0; i < 9; i++) call(l, clock, { kind: "ok" });
    const early = take(l);
    clock.increment(1);
    const since2 = clock.now();
    call(l, clock, { kind: "http", status: 503 }, me2);
    early.release({ caller: {}, kind: "ok", latencyMs: 3 });
    call(l, clock, { kind: "http", status: 503 });
    call(l, clock, { kind: "http", status: 503 }, me2, 60);
    assert.equal(l.judge(me2, since2), "outage", "the early success says nothing about now");

    // One of two others since succeeded: not more than 50 % failed, poison.
    const me3 = {};
    clock.increment(1);
    const since3 = clock.now();
    call(l, clock, { kind: "http", status: 500 }, me3);
    call(l, clock, { kind: "ok" });
    call(l, clock, { kind: "http", status: 503 });
    call(l, clock, { kind: "http", status: 500 }, me3, 60);
    assert.equal(l.judge(me3, since3), "poison");

    // Nobody else since: the calls before decide (here successes: poison).
    const me4 = {};
    for (let i = 0; i < 5; i++) call(l, clock, { kind: "ok" });
    const since4 = clock.now();
    for (let i = 0; i < 4; i++) call(l, clock, { kind: "http", status: 500 }, me4, 60);
    assert.equal(l.judge(me4, since4), "poison");
  } finally {
    l.stop();
  }
});

Deno.test("AdaptiveLimiter.judgeSoon waits (no call made) for 3 other calls since the record's first failure, at most waitMs; aborts with the signal", async () => {
  const clock = new SimulatedClock();
  const big = { ceiling: 100_000, burst: 100_000 };
  const l = new AdaptiveLimiter({ ...big, clock, judge: { volume: 10, errorPercent: 50 } });
  try {
    for (let i = 0; i < 10; i++) call(l, clock, { kind: "ok" });
    // An outage begins with this record; the others' failures are still on their way.
    const me = {};
    const since = clock.now();
    for (let i = 0; i < 4; i++) call(l, clock, { kind: "http", status: 503 }, me, 40);
    let verdict: string | undefined;
    const judged = l.judgeSoon(me, since).then((v) => (verdict = v));
    call(l, clock, { kind: "http", status: 503 });
    call(l, clock, { kind: "http", status: 503 });
    await Promise.resolve();
    assert.equal(verdict, undefined, "still waiting with 2 calls");
    call(l, clock, { kind: "http", status: 503 });
    await judged;
    assert.equal(verdict, "outage");

    // Transient errors on a thin stream: the first other call failed, the next two succeeded.
    const me2 = {};
    clock.increment(1);
    const since2 = clock.now();
    for (let i = 0; i < 4; i++) call(l, clock, { kind: "http", status: 503 }, me2, 40);
    const judged2 = l.judgeSoon(me2, since2);
    call(l, clock, { kind: "http", status: 503 });
    call(l, clock, { kind: "ok" });
    call(l, clock, { kind: "ok" });
    assert.equal(await judged2, "poison");

    // Nobody else calls: after waitMs (2 s) the calls before decide.
    const me3 = {};
    for (let i = 0; i < 5; i++) call(l, clock, { kind: "ok" });
    const since3 = clock.now();
    for (let i = 0; i < 4; i++) call(l, clock, { kind: "http", status: 500 }, me3, 40);
    let verdict3: string | undefined;
    const judged3 = l.judgeSoon(me3, since3).then((v) => (verdict3 = v));
    clock.increment(1999);
    await Promise.resolve();
    assert.equal(verdict3, undefined);
    clock.increment(1);
    await judged3;
    assert.equal(verdict3, "poison");

    // Aborted while waiting.
    const ac = new AbortController();
    const waiting = l.judgeSoon({}, clock.now(), ac.signal);
    ac.abort(new Error("shutdown"));
    await assert.rejects(waiting, /shutdown/);
  } finally {
    l.stop();
  }
});

const enc = new TextEncoder();

function record(offset: number): SourceRecord {
  return {
    topic: "orders",
    partition: 0,
    offset: String(offset),
    key: null,
    value: enc.encode(JSON.stringify({
      request_id: `req-${offset}`,
      timestamp: "2025-01-01T00:00:00Z",
      payload: { n: offset },
    })),
    headers: {},
    timestamp: "1735689600000",
  };
}

const fast = { retryBaseMs: 1, retryMaxMs: 200, random: () => 0.5 };

Deno.test("upstream with flow control: a record answered 429 past its retries is retried, never dead-lettered, and waits Retry-After", async () => {
  let n = 0;
  const times: number[] = [];
  const s = loopbackUpstream(() => {
    times.push(performance.now());
    return ++n <= 5
      ? new Response("slow down", { status: 429, headers: { "retry-after": "0" } })
      : new Response("ok");
  });
  const flow = new AdaptiveLimiter({ ceiling: 0 });
  const client = createUpstreamClient({ url: s.url, ...fast, maxRetries: 2, flow });
  try {
    const r = record(1);
    const res = await client.deliver(envelopeOf(r), r);
    assert.equal(res.outcome, "delivered");
    assert.equal(res.attempts, 6);
    assert.equal(res.retries, 5);
  } finally {
    flow.stop();
    await client.close();
    await s.close();
  }
});

Deno.test("upstream with flow control: a Retry-After above SLUICE_RETRY_MAX_MS pauses every call that long", async () => {
  const times: number[] = [];
  const s = loopbackUpstream(() => {
    times.push(performance.now());
    return times.length === 1
      ? new Response("maintenance", { status: 503, headers: { "retry-after": "1" } })
      : new Response("ok");
  });
  const flow = new AdaptiveLimiter({ ceiling: 0 });
  const client = createUpstreamClient({ url: s.url, ...fast, flow });
  try {
    const r = record(1);
    const res = await client.deliver(envelopeOf(r), r);
    assert.equal(res.outcome, "delivered");
    assert.ok(times[1] - times[0] >= 990, `waited the Retry-After: ${times[1] - times[0]} ms`);
    // Another record started meanwhile would have waited too: check the pause ended.
    assert.equal(flow.paused, false);
  } finally {
    flow.stop();
    await client.close();
    await s.close();
  }
});

/**
 * Seen on the real parts (ordering `partition`, one broker): at an outage's
 * start a record in its retries holds the next fetch of every partition, so
 * no other record makes a call and the evidence is empty; the record was
 * dead-lettered for a 503. A 503 (or a refused connection) is the upstream's
 * state: the record starts again. A lone record answered 500 is poison.
 */
Deno.test("upstream with flow control: a lone record answered 503 past its retries starts again (no evidence needed), one answered 500 is dead-lettered", async () => {
  let calls503 = 0;
  const s = loopbackUpstream((req) => {
    if (req.headers.get("idempotency-key") === "orders/0/500") {
      return new Response("bad", { status: 500 });
    }
    return ++calls503 <= 6 ? new Response("down", { status: 503 }) : new Response("ok");
  });
  const breaker = createCircuitBreaker({
    policy: "pause",
    volumeThreshold: 1000,
    errorThresholdPercentage: 50,
    id: "test-breaker-lone",
  });
  const flow = new AdaptiveLimiter({
    ceiling: 0,
    judge: { volume: 10, errorPercent: 50, waitMs: 50 },
  });
  const client = createUpstreamClient({ url: s.url, ...fast, maxRetries: 2, breaker, flow });
  try {
    // Earlier successes (of other records) are all the evidence there is.
    calls503 = 100;
    for (let i = 0; i < 5; i++) {
      const r = record(i + 40);
      assert.equal((await client.deliver(envelopeOf(r), r)).outcome, "delivered");
    }
    calls503 = 0;
    const r = record(1);
    const res = await client.deliver(envelopeOf(r), r);
    assert.equal(res.outcome, "delivered", JSON.stringify(res));
    assert.equal(res.attempts, 7, "two rounds of 3 attempts answered 503, then delivered");
    assert.equal(breaker.state, "closed", "thin evidence: the breaker is left to its own counts");
    for (let i = 0; i < 10; i++) {
      const ok = record(i + 60);
      assert.equal((await client.deliver(envelopeOf(ok), ok)).outcome, "delivered");
    }
    const poison = record(500);
    const bad = await client.deliver(envelopeOf(poison), poison);
    assert.equal(bad.outcome, "failed");
    assert.match(bad.message!, /500 Internal Server Error after 2 retries/);
  } finally {
    breaker.stop();
    flow.stop();
    await client.close();
    await s.close();
  }
});

Deno.test("upstream with flow control: an outage opens the breaker (policy pause) instead of dead-lettering; a poison record is dead-lettered", async () => {
  let down = true;
  const s = loopbackUpstream((req) => {
    const key = req.headers.get("idempotency-key");
    if (key === "orders/0/99") return new Response("bad", { status: 500 });
    return down ? new Response("down", { status: 503 }) : new Response("ok");
  });
  const breaker = createCircuitBreaker({
    policy: "pause",
    volumeThreshold: 1000,
    errorThresholdPercentage: 50,
    id: "test-breaker-flow",
  });
  const flow = new AdaptiveLimiter({ ceiling: 0, judge: { volume: 10, errorPercent: 50 } });
  const client = createUpstreamClient({ url: s.url, ...fast, maxRetries: 2, breaker, flow });
  try {
    const rs = Array.from({ length: 6 }, (_, i) => record(i + 1));
    const results = await Promise.all(rs.map((r) => client.deliver(envelopeOf(r), r)));
    // Every record waits for the breaker (the processor waits for its next state).
    assert.ok(
      results.every((x) => x.outcome === "circuit_open"),
      JSON.stringify(results.map((x) => x.outcome)),
    );
    assert.equal(breaker.state, "open");
    breaker.close();
    down = false;
    // Healthy again, with others succeeding: the poison record is dead-lettered.
    for (let i = 0; i < 12; i++) {
      const r = record(i + 30);
      assert.equal((await client.deliver(envelopeOf(r), r)).outcome, "delivered");
    }
    const healthy = Array.from({ length: 10 }, (_, i) => record(i + 10));
    const poison = record(99);
    const [bad] = await Promise.all([
      client.deliver(envelopeOf(poison), poison),
      ...healthy.map((r) => client.deliver(envelopeOf(r), r)),
    ]);
    assert.equal(bad.outcome, "failed");
    assert.equal(bad.reason, "PROCESSING_ERROR");
    assert.match(bad.message!, /500 Internal Server Error after 2 retries/);
    assert.equal(breaker.state, "closed");
  } finally {
    breaker.stop();
    flow.stop();
    await client.close();
    await s.close();
  }
});

Deno.test("AdaptiveLimiter publishes rate.adjusted at most once a second, and when a pause starts and ends", async () => {
  const { subscribeEvents } = await import("../../actors/runtime/events.ts");
  const seen: { type: string; data: Record<string, unknown> }[] = [];
  const off = subscribeEvents((e) => {
    if (e.type === "rate.adjusted") seen.push(e);
  });
  const clock = new SimulatedClock();
  const l = new AdaptiveLimiter({ ceiling: 1000, burst: 1000, clock, id: "adaptive-limiter-test" });
  try {
    // Twenty cuts within one second.
    for (let i = 0; i < 20; i++) {
      call(l, clock, { kind: "ok" });
      call(l, clock, { kind: "http", status: 429 });
    }
    for (let t = 0; t < 10; t++) clock.increment(100);
    assert.equal(seen.length, 1, JSON.stringify(seen));
    assert.equal(seen[0].data.reason, "429");
    assert.ok((seen[0].data.rate as number) < 200);
    l.pause(5000);
    for (let t = 0; t < 60; t++) clock.increment(100);
    const kinds = seen.map((e) => e.data.paused_until ? "paused" : "other");
    assert.deepEqual(kinds.slice(1, 3), ["paused", "other"]);
  } finally {
    l.stop();
    off();
  }
});
