/**
 * Traces on the real parts: sluice as a process with `SLUICE_OTLP_ENDPOINT`
 * pointing at a real OTLP/HTTP receiver (`tests/harness/otlp_receiver.ts`,
 * protobuf decoded with the official opentelemetry-proto definitions), Kafka
 * 4.1 and Ceph RGW from the runner, a loopback upstream stub. Records with a
 * `traceparent` header continue that trace; the others get their derived
 * trace id; every record span has an attempt child whose traceparent is the
 * one the upstream received; spans still buffered at SIGTERM are exported
 * during the shutdown.
 */
import assert from "node:assert/strict";
import { uniqueName, waitFor } from "../harness/mod.ts";
import { createTopic, kafka, sluiceEnv } from "../harness/kafka_fixture.ts";
import { type ReceivedSpan, startOtlpReceiver } from "../harness/otlp_receiver.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import { startUpstreamStub } from "../harness/upstream_stub.ts";

Deno.test("traces on Kafka: record spans child of the producer's traceparent, attempts carry theirs upstream", async () => {
  const topic = uniqueName("traced");
  const group = uniqueName("traced-group");
  const bucket = uniqueName("traced-audit");
  await createTopic(topic);
  const N = 12;
  const parents = new Map<string, { trace: string; span: string }>(); // request_id -> parent
  const messages = [];
  for (let i = 0; i < N; i++) {
    const headers: Record<string, string> = {};
    if (i % 2 === 0) {
      const trace = crypto.randomUUID().replaceAll("-", "");
      const span = trace.slice(0, 16);
      parents.set(`req-${i}`, { trace, span });
      headers.traceparent = `00-${trace}-${span}-01`;
    }
    messages.push({
      key: `key-${i % 4}`,
      headers,
      value: JSON.stringify({
        request_id: `req-${i}`,
        idempotency_key: `${topic}-${i}`,
        timestamp: new Date().toISOString(),
        payload: { i },
      }),
    });
  }
  const producer = kafka().producer();
  await producer.connect();
  try {
    await producer.send({ topic, messages });
  } finally {
    await producer.disconnect();
  }

  const receiver = startOtlpReceiver();
  const stub = startUpstreamStub({});
  let spans: ReceivedSpan[] = [];
  try {
    const sluice = await startSluiceProcess({
      env: sluiceEnv(topic, group, bucket, stub, {
        SLUICE_OTLP_ENDPOINT: receiver.url,
        SLUICE_TRACE_SAMPLE_RATIO: "1",
      }),
    });
    await withSluice(sluice, async () => {
      await waitFor(() => stub.delivered.size === N, {
        timeoutMs: 30_000,
        message: `${N} deliveries`,
      });
    });
    const { code } = await sluice.status;
    assert.equal(code, 0, `graceful exit 0; output:\n${sluice.output().slice(-6000)}`);
    // The batch processor exports every second; the rest is flushed at shutdown.
    spans = receiver.spans;
  } finally {
    await stub.stop();
    await receiver.stop();
  }
  assert.deepEqual(receiver.errors, []);
  const records = spans.filter((s) => s.name === `process ${topic}`);
  assert.equal(records.length, N, `one record span per record (${spans.length} spans)`);
  const children = new Map<string, ReceivedSpan[]>();
  for (const s of spans) {
    if (!children.has(s.parentSpanId)) children.set(s.parentSpanId, []);
    children.get(s.parentSpanId)!.push(s);
  }
  const sentBy = new Map(stub.requests.map((r) => [JSON.parse(r.body).request_id, r]));
  for (const rec of records) {
    assert.equal(rec.service, "sluice");
    assert.equal(rec.attributes["messaging.destination.name"], topic);
    assert.equal(rec.attributes["messaging.consumer.group.name"], group);
    assert.equal(rec.attributes["sluice.outcome"], "delivered");
    assert.equal(rec.attributes["sluice.retry_count"], 0);
    const requestId = String(rec.attributes["sluice.request_id"]);
    const i = Number(requestId.slice(4));
    assert.equal(rec.attributes["sluice.idempotency_key"], `${topic}-${i}`);
    assert.equal(typeof rec.attributes["messaging.kafka.offset"], "number");
    const parent = parents.get(requestId);
    if (parent) {
      assert.equal(rec.traceId, parent.trace);
      assert.equal(rec.parentSpanId, parent.span, `${requestId}: child of its traceparent`);
    } else {
      assert.equal(rec.parentSpanId, "", `${requestId}: root span`);
    }
    const kids = children.get(rec.spanId) ?? [];
    const posts = kids.filter((k) => k.name === "POST");
    assert.equal(posts.length, 1, `${requestId}: one attempt`);
    assert.equal(posts[0].attributes["http.response.status_code"], 200);
    assert.ok(kids.some((k) => k.name === "sluice.audit.append"), `${requestId}: audit span`);
    assert.equal(
      sentBy.get(requestId)?.traceparent,
      `00-${rec.traceId}-${posts[0].spanId}-01`,
      `${requestId}: the upstream got the attempt span's traceparent`,
    );
  }
});
