/**
 * Upstream client and circuit breaker against loopback `Deno.serve` stubs:
 * 2xx, 4xx, retries, read/connect/global timeouts, network errors, breaker
 * open and half-open probe, throughput vs plain fetch.
 */
import assert from "node:assert/strict";
import { createCircuitBreaker } from "../../actors/pipeline/circuit_breaker.ts";
import { registry } from "../../actors/runtime/metrics.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import {
  createUpstreamClient,
  parseRetryAfter,
  post,
  ResponseSink,
  type SinkController,
  type UpstreamOptions,
} from "../../actors/pipeline/upstream.ts";
import { createProcessor } from "../../actors/pipeline/processor.ts";
import type { AuditEvent } from "../../actors/audit/event.ts";
import type { DeadLetter } from "../../actors/record/dead_letter.ts";
import { envelopeOf, loopbackUpstream } from "../harness/loopback_upstream.ts";
import { waitFor } from "../harness/procs.ts";

const enc = new TextEncoder();

function record(offset = 1, headers: Record<string, string> = {}): SourceRecord {
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
    headers,
    timestamp: "1735689600000",
  };
}

async function counter(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await registry.getSingleMetric(name)!.get();
  let sum = 0;
  for (const v of m.values) {
    if (Object.entries(labels).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x)) {
      if (!("metricName" in v) || v.metricName === name) sum += v.value;
    }
  }
  return sum;
}

const fast: Partial<UpstreamOptions> = { retryBaseMs: 1, retryMaxMs: 5, random: () => 0.5 };

Deno.test("upstream delivers on 2xx with the idempotency, trace and request id headers", async () => {
  const s = loopbackUpstream(() => new Response(null, { status: 204 }));
  const client = createUpstreamClient({ url: s.url, ...fast });
  try {
    const r = record(3, { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" });
    const res = await client.deliver(envelopeOf(r), r);
    assert.equal(res.outcome, "delivered");
    assert.equal(res.status, 204);
    assert.equal(res.attempts, 1);
    assert.equal(res.retries, 0);
    const h = s.seen[0].headers;
    assert.equal(h.get("idempotency-key"), "orders/0/3");
    assert.equal(h.get("x-request-id"), "req-3");
    assert.match(h.get("traceparent")!, /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    assert.equal(h.get("content-type"), "application/json");
    assert.equal(s.seen[0].body, new TextDecoder().decode(r.value!));
    assert.equal(client.host, new URL(s.url).host);
  } finally {
    await client.close();
    await s.close();
  }
});

Deno.test("upstream does not retry a 400 and names the status in the message", async () => {
  const s = loopbackUpstream(() => new Response("bad", { status: 400 }));
  const client = createUpstreamClient({ url: s.url, ...fast });
  try {
    const before = await counter("errors_total", { kind: "http_4xx" });
    const res = await client.deliver(envelopeOf(record()), record());
    assert.equal(res.outcome, "failed");
    assert.equal(res.reason, "PROCESSING_ERROR");
    assert.equal(res.message, "Upstream answered 400 Bad Request");
    assert.equal(res.attempts, 1);
    assert.equal(s.seen.length, 1);
    assert.equal(await counter("errors_total", { kind: "http_4xx" }), before + 1);
  } finally {
    await client.close();
    await s.close();
  }
});

Deno.test("upstream retries a 503 then delivers on 200, counting the retry", async () => {
  let n = 0;
  const s = loopbackUpstream(() =>
    n++ === 0 ? new Response("busy", { status: 503 }) : new Response("ok")
  );
  const client = createUpstreamClient({ url: s.url, ...fast });
  try {
    const before = await counter("retries_total");
    const res = await client.deliver(envelopeOf(record()), record());
    assert.equal(res.outcome, "delivered");
    assert.equal(res.retries, 1);
    assert.equal(res.attempts, 2);
    assert.ok(res.firstFailureAt instanceof Date);
    assert.equal(await counter("retries_total"), before + 1);
  } finally {
    await client.close();
    await s.close();
  }
});

Deno.test("upstream retries 429 with Retry-After, capped at retryMaxMs, then gives up with PROCESSING_ERROR", async () => {
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter(new Date(Date.now() + 60_000).toUTCString())! > 50_000, true);
  assert.equal(parseRetryAfter("soon"), null);
  const s = loopbackUpstream(() =>
    new Response("slow down", { status: 429, headers: { "retry-after": "120" } })
  );
  const client = createUpstreamClient({
    url: s.url,
    maxRetries: 2,
    retryBaseMs: 1,
    retryMaxMs: 10,
  });
  try {
    const t0 = performance.now();
    const res = await client.deliver(envelopeOf(record()), record());
    assert.ok(performance.now() - t0 < 5_000, "Retry-After of 120 s was capped");
    assert.equal(res.reason, "PROCESSING_ERROR");
    assert.equal(res.message, "Upstream answered 429 Too Many Requests after 2 retries");
    assert.equal(s.seen.length, 3);
  } finally {
    await client.close();
    await s.close();
  }
});

Deno.test("upstream read timeout on a hanging upstream ends in TIMEOUT_ERROR after the retries", async () => {
  const s = loopbackUpstream(() => new Response());
  s.set(s.hang);
  const client = createUpstreamClient({ url: s.url, readTimeoutMs: 100, maxRetries: 2, ...fast });
  try {
    const before = await counter("timeouts_total", { timeout_type: "read" });
    const res = await client.deliver(envelopeOf(record()), record());
    assert.equal(res.outcome, "failed");
    assert.equal(res.reason, "TIMEOUT_ERROR");
    assert.equal(res.timeoutType, "read");
    assert.equal(res.timeouts, 3);
    assert.equal(res.retries, 2);
    assert.equal(res.message, "Upstream read timeout after 100 ms after 2 retries");
    assert.equal(await counter("timeouts_total", { timeout_type: "read" }), before + 3);
  } finally {
    await client.close().catch(() => {});
    await s.close();
  }
});

Deno.test("upstream read timeout also covers a response body that stalls", async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const s = loopbackUpstream(() =>
    new Response(
      new ReadableStream({
        async start(c) {
          c.enqueue(enc.encode("partial"));
          await gate;
          c.close();
        },
      }),
    )
  );
  const client = createUpstreamClient({ url: s.url, readTimeoutMs: 100, maxRetries: 0, ...fast });
  try {
    const res = await client.deliver(envelopeOf(record()), record());
    assert.equal(res.reason, "TIMEOUT_ERROR");
    assert.equal(res.timeoutType, "read");
    assert.equal(res.status, null);
  } finally {
    release();
    await client.close().catch(() => {});
    await s.close();
  }
});

Deno.test("upstream delivers on a 2xx whose body is larger than the 64 KiB it reads", async () => {
  const big = "x".repeat(300 * 1024);
  const s = loopbackUpstream(() => new Response(big));
  const client = createUpstreamClient({ url: s.url, maxRetries: 0, ...fast });
  try {
    for (let i = 1; i <= 3; i++) {
      const res = await client.deliver(envelopeOf(record(i)), record(i));
      assert.equal(res.outcome, "delivered");
      assert.equal(res.status, 200);
    }
    assert.equal(s.seen.length, 3);
  } finally {
    await client.close().catch(() => {});
    await s.close();
  }
});

Deno.test("ResponseSink resolves at the body's end, stops past its limit, rejects on error or abort", async () => {
  const controller = () => {
    const aborted: Error[] = [];
    return { aborted, abort: (e: Error) => void aborted.push(e) } satisfies SinkController & {
      aborted: Error[];
    };
  };
  // To the end: the status and the first Retry-After.
  let c = controller();
  let sink = new ResponseSink(100);
  sink.onRequestStart(c);
  sink.onResponseStart(c, 100, {}); // informational: not the answer
  sink.onResponseStart(c, 429, { "retry-after": ["7", "9"] });
  for (let i = 0; i < 3; i++) sink.onResponseData(c, new Uint8Array(10));
  sink.onResponseEnd();
  assert.deepEqual(await sink.answer, { status: 429, retryAfter: "7" });
  assert.equal(c.aborted.length, 0);
  // Past the limit: resolved at once, and the request aborted (its socket not reused).
  c = controller();
  sink = new ResponseSink(4 * 1024);
  sink.onRequestStart(c);
  sink.onResponseStart(c, 200, null);
  for (let i = 0; i < 10; i++) sink.onResponseData(c, new Uint8Array(1024));
  assert.deepEqual(await sink.answer, { status: 200, retryAfter: undefined });
  assert.equal(c.aborted.length, 1, "aborted once past the limit");
  sink.onResponseError(c, c.aborted[0]); // what undici then reports: ignored
  // An error (a body timeout, a socket closed early) rejects with it.
  c = controller();
  sink = new ResponseSink(1024);
  sink.onRequestStart(c);
  sink.onResponseStart(c, 200, {});
  sink.onResponseData(c, new Uint8Array(10));
  sink.onResponseError(c, new Error("body timeout"));
  sink.onResponseEnd();
  await assert.rejects(sink.answer, /body timeout/);
  // post(): the caller's signal aborts the started request with its reason;
  // an aborted signal fails before anything is dispatched.
  const dispatched: ResponseSink[] = [];
  const dispatcher = {
    dispatch: (_opts: unknown, handler: ResponseSink) => {
      dispatched.push(handler);
      return true;
    },
  } as unknown as Parameters<typeof post>[0];
  const ctl = new AbortController();
  const p = post(dispatcher, "/", {}, "x", ctl.signal, 1024);
  c = controller();
  dispatched[0].onRequestStart(c);
  ctl.abort(new Error("drain deadline"));
  assert.equal(c.aborted[0]?.message, "drain deadline");
  dispatched[0].onResponseError(c, c.aborted[0]);
  await assert.rejects(p, /drain deadline/);
  await assert.rejects(post(dispatcher, "/", {}, "x", ctl.signal, 1024), /drain deadline/);
  assert.equal(dispatched.length, 1, "nothing dispatched once aborted");
});

Deno.test("upstream global timeout stops the delivery without retrying", async () => {
  const s = loopbackUpstream(() => new Response());
  s.set(s.hang);
  const client = createUpstreamClient({
    url: s.url,
    readTimeoutMs: 10_000,
    globalTimeoutMs: 150,
    maxRetries: 5,
    ...fast,
  });
  try {
    const before = await counter("timeouts_total", { timeout_type: "global" });
    const res = await client.deliver(envelopeOf(record()), record());
    assert.equal(res.reason, "TIMEOUT_ERROR");
    assert.equal(res.timeoutType, "global");
    assert.equal(res.message, "Upstream delivery exceeded the global timeout of 150 ms");
    assert.equal(s.seen.length, 1);
    assert.equal(await counter("timeouts_total", { timeout_type: "global" }), before + 1);
  } finally {
    await client.close().catch(() => {});
    await s.close();
  }
});

Deno.test("upstream rejects with the caller's reason when its signal aborts", async () => {
  const s = loopbackUpstream(() => new Response());
  s.set(s.hang);
  const client = createUpstreamClient({ url: s.url, readTimeoutMs: 10_000, ...fast });
  try {
    const ac = new AbortController();
    const p = client.deliver(envelopeOf(record()), record(), { signal: ac.signal });
    setTimeout(() => ac.abort(new DOMException("drain", "AbortError")), 30);
    await assert.rejects(p, { name: "AbortError", message: "drain" });
  } finally {
    await client.close().catch(() => {});
    await s.close();
  }
});

Deno.test("upstream: a delivery aborted while its request waits for a pool connection never reaches the upstream", async () => {
  // One connection: A holds it (the upstream hangs), B waits in the pool's
  // queue. B's caller aborts, then A's (its socket is closed): if B were still
  // queued, the pool would send it next, before C.
  const s = loopbackUpstream(() => new Response());
  s.set((req) => req.headers.get("x-request-id") === "req-3" ? new Response() : s.hang());
  const client = createUpstreamClient({
    url: s.url,
    maxConnections: 1,
    readTimeoutMs: 10_000,
    maxRetries: 0,
    ...fast,
  });
  try {
    const a = new AbortController(), b = new AbortController();
    const pa = client.deliver(envelopeOf(record(1)), record(1), { signal: a.signal });
    const pb = client.deliver(envelopeOf(record(2)), record(2), { signal: b.signal });
    await waitFor(() => s.seen.length === 1, { timeoutMs: 5000, message: "A at the upstream" });
    b.abort(new Error("B cancelled"));
    await assert.rejects(pb, /B cancelled/);
    a.abort(new Error("A cancelled"));
    await assert.rejects(pa, /A cancelled/);
    const c = await client.deliver(envelopeOf(record(3)), record(3));
    assert.equal(c.outcome, "delivered");
    assert.deepEqual(s.seen.map((r) => r.headers.get("x-request-id")), ["req-1", "req-3"]);
  } finally {
    await client.close().catch(() => {});
    await s.close();
  }
});

Deno.test("upstream network error (connection refused) is retried, then PROCESSING_ERROR", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const client = createUpstreamClient({
    url: `http://127.0.0.1:${port}/x`,
    maxRetries: 1,
    ...fast,
  });
  try {
    const res = await client.deliver(envelopeOf(record()), record());
    assert.equal(res.reason, "PROCESSING_ERROR");
    assert.match(res.message!, /^Upstream network error: .*ECONNREFUSED.* after 1 retries$/);
    assert.equal(res.timeouts, 0);
  } finally {
    await client.close();
  }
});

Deno.test("upstream connect timeout against a listener whose accept backlog is full", async () => {
  // Deno.listen's backlog holds ~512 connections that are never accepted;
  // past that, the kernel drops SYNs and connect() hangs: a connect timeout.
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const held: Deno.TcpConn[] = [];
  let pending: Promise<unknown> | undefined;
  for (let i = 0; i < 10_000 && !pending; i++) {
    const p = Deno.connect({ hostname: "127.0.0.1", port });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const r = await Promise.race([
      p,
      new Promise<"hang">((res) => timer = setTimeout(() => res("hang"), 200)),
    ]);
    clearTimeout(timer);
    if (r === "hang") pending = p.then((c) => c.close(), () => {});
    else held.push(r);
  }
  assert.ok(pending, "the backlog never filled");
  const client = createUpstreamClient({
    url: `http://127.0.0.1:${port}/x`,
    connectTimeoutMs: 150,
    maxRetries: 1,
    ...fast,
  });
  try {
    const before = await counter("timeouts_total", { timeout_type: "connect" });
    const res = await client.deliver(envelopeOf(record()), record());
    assert.equal(res.reason, "TIMEOUT_ERROR");
    assert.equal(res.timeoutType, "connect");
    assert.equal(res.timeouts, 2);
    assert.equal(res.message, "Upstream connect timeout after 150 ms after 1 retries");
    assert.equal(await counter("timeouts_total", { timeout_type: "connect" }), before + 2);
  } finally {
    await client.close();
    for (const c of held) c.close();
    l.close();
    await pending;
  }
});

Deno.test("breaker opens after failures, refuses calls, and a successful half-open probe closes it", async () => {
  let status = 503;
  const s = loopbackUpstream(() => new Response("x", { status }));
  const breaker = createCircuitBreaker({
    id: "breaker-test",
    volumeThreshold: 3,
    errorThresholdPercentage: 50,
    resetTimeout: 100,
  });
  const changes: string[] = [];
  breaker.onStateChange((to, from) => changes.push(`${from}>${to}`));
  const client = createUpstreamClient({ url: s.url, maxRetries: 0, breaker, ...fast });
  try {
    // 4xx answers do not count as failures.
    status = 404;
    for (let i = 0; i < 5; i++) {
      assert.equal(
        (await client.deliver(envelopeOf(record(i)), record(i))).reason,
        "PROCESSING_ERROR",
      );
    }
    assert.equal(breaker.state, "closed");
    status = 503;
    for (let i = 0; i < 6 && breaker.state === "closed"; i++) {
      await client.deliver(envelopeOf(record(i)), record(i));
    }
    assert.equal(breaker.state, "open");
    assert.equal(breaker.actor.getSnapshot().value, "open");
    const calls = s.seen.length;
    const refused = await client.deliver(envelopeOf(record(99)), record(99));
    assert.equal(refused.outcome, "circuit_open");
    assert.equal(refused.reason, "CIRCUIT_OPEN");
    assert.equal(refused.attempts, 0);
    assert.equal(s.seen.length, calls, "an open breaker sent a request");
    // Wait for half-open, then the probe succeeds.
    assert.equal(await breaker.nextChange(AbortSignal.timeout(5_000)), "halfOpen");
    status = 200;
    const probe = await client.deliver(envelopeOf(record(100)), record(100));
    assert.equal(probe.outcome, "delivered");
    assert.equal(breaker.state, "closed");
    assert.equal(breaker.actor.getSnapshot().value, "closed");
    assert.deepEqual(changes, ["closed>open", "open>halfOpen", "halfOpen>closed"]);
  } finally {
    breaker.stop();
    await client.close();
    await s.close();
  }
});

Deno.test("processor with a real breaker (pause policy) holds records while open and delivers them after", async () => {
  let status = 503;
  const s = loopbackUpstream(() => new Response("x", { status }));
  const breaker = createCircuitBreaker({
    id: "breaker-test-2",
    volumeThreshold: 2,
    resetTimeout: 150,
  });
  const client = createUpstreamClient({ url: s.url, maxRetries: 0, breaker, ...fast });
  const dlq: DeadLetter[] = [];
  const audit: AuditEvent[] = [];
  const processor = createProcessor({
    upstream: client,
    breaker,
    consumerGroup: "g",
    publishDeadLetter: (dl) => (dlq.push(dl), Promise.resolve()),
    audit: { append: (e) => (audit.push(e), Promise.resolve()) },
  });
  try {
    // Two 503s (maxRetries 0) are dead-lettered and open the breaker.
    await processor.process(record(1));
    await processor.process(record(2));
    assert.equal(breaker.state, "open");
    assert.equal(dlq.length, 2);
    // Records arriving now wait; the upstream recovers; the probe closes the breaker.
    const waiting = [3, 4, 5].map((o) => processor.process(record(o)));
    status = 200;
    const outs = await Promise.all(waiting);
    assert.deepEqual(outs.map((o) => o.outcome), ["delivered", "delivered", "delivered"]);
    assert.equal(dlq.length, 2);
    assert.equal(breaker.state, "closed");
    assert.equal(audit.length, 5);
  } finally {
    breaker.stop();
    await client.close();
    await s.close();
  }
});

Deno.test("upstream client sustains thousands of requests per second on loopback (vs plain fetch)", async () => {
  const s = loopbackUpstream(() => new Response("ok"));
  const client = createUpstreamClient({ url: s.url, maxConnections: 64 });
  const r = record(1);
  const env = envelopeOf(r);
  const body = r.value! as Uint8Array<ArrayBuffer>;
  const N = 10_000;
  const C = 64;
  async function run(one: () => Promise<void>): Promise<number> {
    for (let i = 0; i < 200; i++) await one();
    let next = 0;
    const t0 = performance.now();
    await Promise.all(Array.from({ length: C }, async () => {
      while (next++ < N) await one();
    }));
    return N / ((performance.now() - t0) / 1000);
  }
  try {
    const viaClient = await run(async () => {
      const res = await client.deliver(env, r);
      if (res.outcome !== "delivered") throw new Error(res.message ?? "not delivered");
    });
    const viaFetch = await run(async () => {
      const res = await fetch(s.url, {
        method: "POST",
        body,
        headers: { "content-type": "application/json" },
      });
      await res.arrayBuffer();
    });
    console.log(
      `upstream client: ${viaClient.toFixed(0)} req/s; plain fetch: ${
        viaFetch.toFixed(0)
      } req/s (${N} requests, ${C} concurrent)`,
    );
    assert.ok(viaClient > 1000, `only ${viaClient.toFixed(0)} req/s`);
  } finally {
    await client.close();
    await s.close();
  }
});
