/**
 * Traces of the record path (`actors/runtime/tracing.ts`) received by a real OTLP/HTTP
 * receiver (`tests/harness/otlp_receiver.ts`, protobuf decoded with the
 * official opentelemetry-proto definitions): the processor, the real upstream
 * client (undici) against a loopback server, the real OTLP exporter. Checks
 * the parent/child links, the attributes, the `traceparent` the upstream
 * receives, and sampling. No Kafka needed; the same path through a sluice
 * process on Kafka is in `tests/infra/tracing_kafka_test.ts`.
 */
import assert from "node:assert/strict";
import type { DeadLetter } from "../../actors/record/dead_letter.ts";
import { createProcessor } from "../../actors/pipeline/processor.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import { createTracing, otlpTracesUrl, type RecordTracing } from "../../actors/runtime/tracing.ts";
import { createUpstreamClient } from "../../actors/pipeline/upstream.ts";
import { type ReceivedSpan, startOtlpReceiver } from "../harness/otlp_receiver.ts";

const PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN = "00f067aa0ba902b7";

function record(offset: number, headers: Record<string, string> = {}): SourceRecord {
  return {
    topic: "orders",
    partition: 2,
    offset: String(offset),
    key: null,
    value: new TextEncoder().encode(JSON.stringify({
      request_id: `r-${offset}`,
      idempotency_key: `order-${offset}`,
      timestamp: "2026-11-30T10:00:00Z",
      payload: { n: offset },
    })),
    headers,
    timestamp: "0",
  } as SourceRecord;
}

/** A loopback upstream answering `statuses` in turn (then 200), or hanging when `hang`. */
function upstream(statuses: number[], hang = false) {
  const seen: { traceparent: string | null }[] = [];
  const held: (() => void)[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    await req.arrayBuffer();
    seen.push({ traceparent: req.headers.get("traceparent") });
    if (hang) await new Promise<void>((r) => held.push(r)); // released on stop
    return new Response("{}", { status: statuses.shift() ?? 200 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/ingest`,
    seen,
    stop: () => {
      held.forEach((r) => r());
      return server.shutdown();
    },
  };
}

async function run(
  opts: {
    statuses?: number[];
    hang?: boolean;
    sampleRatio?: number;
    rateWaitMs?: number;
  },
  fn: (p: ReturnType<typeof createProcessor>) => Promise<void>,
) {
  const receiver = startOtlpReceiver();
  const up = upstream(opts.statuses ?? [], opts.hang);
  const client = createUpstreamClient({
    url: up.url,
    readTimeoutMs: 150,
    maxRetries: 2,
    retryBaseMs: 1,
    retryMaxMs: 2,
  });
  const tracing: RecordTracing = createTracing({
    url: otlpTracesUrl(receiver.url, {}),
    sampleRatio: opts.sampleRatio ?? 1,
    upstreamHost: client.host,
    consumerGroup: "g1",
    serviceName: "sluice-test",
  });
  const dlq: DeadLetter[] = [];
  const p = createProcessor({
    consumerGroup: "g1",
    upstream: client,
    tracing,
    rateLimiter: opts.rateWaitMs
      ? { acquire: () => new Promise<void>((r) => setTimeout(r, opts.rateWaitMs)) }
      : undefined,
    publishDeadLetter: (dl) => {
      dlq.push(dl);
      return Promise.resolve();
    },
    audit: { append: () => Promise.resolve() },
  });
  try {
    await fn(p);
    await tracing.shutdown(5000); // flushes the batch to the receiver
  } finally {
    await client.close();
    await up.stop();
    await receiver.stop();
  }
  assert.deepEqual(receiver.errors, []);
  return { spans: receiver.spans, seen: up.seen, dlq, requests: receiver.requests };
}

const byName = (spans: ReceivedSpan[], name: string) => spans.filter((s) => s.name === name);

Deno.test("tracing: record span is a child of the record's traceparent; one child span per attempt, rate wait and audit", async () => {
  const r = await run({ statuses: [503], rateWaitMs: 30 }, async (p) => {
    const out = await p.process(
      record(41, { traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01` }),
    );
    assert.equal(out.outcome, "delivered");
    assert.equal(out.retries, 1);
  });
  assert.ok(r.requests >= 1, "the exporter posted to the receiver");
  const [rec] = byName(r.spans, "process orders");
  assert.ok(rec, `record span received: ${r.spans.map((s) => s.name)}`);
  assert.equal(rec.traceId, PARENT_TRACE);
  assert.equal(rec.parentSpanId, PARENT_SPAN, "child of the record's traceparent");
  assert.equal(rec.kind, 5, "CONSUMER");
  assert.equal(rec.service, "sluice-test");
  assert.equal(rec.scope, "sluice");
  assert.deepEqual(
    {
      topic: rec.attributes["messaging.destination.name"],
      partition: rec.attributes["messaging.destination.partition.id"],
      offset: rec.attributes["messaging.kafka.offset"],
      group: rec.attributes["messaging.consumer.group.name"],
      key: rec.attributes["sluice.idempotency_key"],
      request: rec.attributes["sluice.request_id"],
      outcome: rec.attributes["sluice.outcome"],
      retries: rec.attributes["sluice.retry_count"],
      status: rec.attributes["http.response.status_code"],
    },
    {
      topic: "orders",
      partition: "2",
      offset: 41,
      group: "g1",
      key: "order-41",
      request: "r-41",
      outcome: "delivered",
      retries: 1,
      status: 200,
    },
  );
  assert.equal(rec.statusCode, 0);

  const attempts = byName(r.spans, "POST").sort((a, b) => Number(a.startNs - b.startNs));
  assert.equal(attempts.length, 2, "one span per upstream attempt");
  for (const [i, a] of attempts.entries()) {
    assert.equal(a.traceId, PARENT_TRACE);
    assert.equal(a.parentSpanId, rec.spanId, "attempt is a child of the record span");
    assert.equal(a.kind, 3, "CLIENT");
    assert.equal(a.attributes["sluice.attempt"], i + 1);
    assert.equal(a.attributes["http.request.method"], "POST");
    assert.equal(a.attributes["server.address"], "127.0.0.1");
  }
  assert.equal(attempts[0].attributes["http.response.status_code"], 503);
  assert.equal(attempts[0].statusCode, 2);
  assert.equal(attempts[0].attributes["error.type"], "503");
  assert.equal(attempts[1].attributes["http.response.status_code"], 200);
  // The upstream got each attempt span's own traceparent.
  assert.deepEqual(
    r.seen.map((s) => s.traceparent),
    attempts.map((a) => `00-${PARENT_TRACE}-${a.spanId}-01`),
  );

  const [wait] = byName(r.spans, "sluice.rate_limit.wait");
  assert.equal(wait?.parentSpanId, rec.spanId);
  assert.ok(wait.endNs - wait.startNs >= 20_000_000n, "the wait span covers the limiter's wait");
  const [audit] = byName(r.spans, "sluice.audit.append");
  assert.equal(audit?.parentSpanId, rec.spanId);
  assert.equal(byName(r.spans, "sluice.dead_letter.publish").length, 0);
  // Children inside the record span.
  for (const c of [wait, ...attempts, audit]) {
    assert.ok(c.startNs >= rec.startNs && c.endNs <= rec.endNs, `${c.name} within the record span`);
  }
});

Deno.test("tracing: a timed-out record without traceparent is a root span in its derived trace, with the dead letter", async () => {
  let traceId = "";
  const r = await run({ hang: true }, async (p) => {
    const out = await p.process(record(7));
    assert.equal(out.outcome, "dead_lettered");
    traceId = out.traceId;
  });
  const [rec] = byName(r.spans, "process orders");
  assert.equal(rec.traceId, traceId, "the trace id of the audit event and the dead letter");
  assert.equal(r.dlq[0].trace_id, traceId);
  assert.equal(rec.parentSpanId, "", "root span");
  assert.equal(rec.attributes["sluice.outcome"], "dead_lettered");
  assert.equal(rec.attributes["sluice.failure_reason"], "TIMEOUT_ERROR");
  assert.equal(rec.attributes["sluice.timeout_type"], "read");
  assert.equal(rec.attributes["sluice.retry_count"], 2);
  assert.equal(rec.attributes["sluice.timeout_count"], 3);
  assert.equal(rec.statusCode, 2);
  assert.match(rec.statusMessage, /Upstream read timeout after 150 ms/);
  const attempts = byName(r.spans, "POST");
  assert.equal(attempts.length, 3);
  for (const a of attempts) {
    assert.equal(a.parentSpanId, rec.spanId);
    assert.equal(a.attributes["sluice.timeout_type"], "read");
    assert.equal(a.attributes["error.type"], "read");
  }
  const [dl] = byName(r.spans, "sluice.dead_letter.publish");
  assert.equal(dl?.parentSpanId, rec.spanId);
  assert.equal(dl.kind, 4, "PRODUCER");
  assert.equal(byName(r.spans, "sluice.audit.append")[0]?.parentSpanId, rec.spanId);
});

Deno.test("tracing: sampling by ratio; a sampled traceparent is always followed; unsampled records still send traceparent", async () => {
  const r = await run({ sampleRatio: 0 }, async (p) => {
    await p.process(record(1));
    await p.process(record(2, { traceparent: `00-${PARENT_TRACE}-${PARENT_SPAN}-01` }));
    await p.process(record(3, { traceparent: `00-${"ab".repeat(16)}-${PARENT_SPAN}-00` }));
  });
  const recs = byName(r.spans, "process orders");
  assert.deepEqual(recs.map((s) => s.attributes["messaging.kafka.offset"]), [2]);
  assert.equal(r.seen.length, 3);
  assert.match(r.seen[0].traceparent!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, "unsampled: flags 00");
  assert.match(r.seen[1].traceparent!, new RegExp(`^00-${PARENT_TRACE}-[0-9a-f]{16}-01$`));
  assert.match(r.seen[2].traceparent!, new RegExp(`^00-${"ab".repeat(16)}-[0-9a-f]{16}-00$`));
  assert.notEqual(r.seen[2].traceparent!.split("-")[2], PARENT_SPAN, "a new span id");

  // Ratio 0.1 over 2,000 root records traces about 10 %, the same records each time.
  const receiver = startOtlpReceiver();
  const tracing = createTracing({ url: `${receiver.url}/v1/traces`, sampleRatio: 0.1 });
  try {
    const sampled = (n: number) => {
      let k = 0;
      for (let i = 0; i < n; i++) {
        const t = tracing.start(record(i), {
          traceId: crypto.randomUUID().replaceAll("-", ""),
          idempotencyKey: `k-${i}`,
          requestId: null,
        }, Date.now());
        const on = t.upstream.attempt(0).traceparent.endsWith("-01");
        t.abort("test");
        if (on) k++;
      }
      return k;
    };
    const k = sampled(2000);
    assert.ok(k > 140 && k < 260, `about 200 of 2000 sampled, got ${k}`);
  } finally {
    await tracing.shutdown(5000);
    await receiver.stop();
  }
});

Deno.test("otlpTracesUrl: SLUICE_OTLP_ENDPOINT, then the OTEL_ variables; none = off", () => {
  assert.equal(otlpTracesUrl(undefined, {}), undefined);
  assert.equal(otlpTracesUrl("http://c:4318/", {}), "http://c:4318/v1/traces");
  assert.equal(
    otlpTracesUrl(undefined, { OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel:4318" }),
    "http://otel:4318/v1/traces",
  );
  assert.equal(
    otlpTracesUrl(undefined, {
      OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel:4318",
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://jaeger:4318/v1/traces",
    }),
    "http://jaeger:4318/v1/traces",
  );
  assert.equal(
    otlpTracesUrl("http://mine:4318", { OTEL_EXPORTER_OTLP_ENDPOINT: "http://otel:4318" }),
    "http://mine:4318/v1/traces",
  );
});
