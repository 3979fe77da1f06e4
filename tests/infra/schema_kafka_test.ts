/**
 * Payload JSON Schemas on the real parts: sluice as a process with
 * `SLUICE_SCHEMA_DIR`, Kafka 4.1 and Ceph RGW from the runner, a loopback
 * upstream stub. Records whose payload fails the topic's schema become
 * `VALIDATION_ERROR` dead letters naming the path and the rule, and never
 * reach the upstream; the others are delivered; every offset commits with
 * one audit outcome per record.
 */
import assert from "node:assert/strict";
import { uniqueName, waitFor } from "../harness/mod.ts";
import {
  allPositions,
  createTopic,
  fullyCommitted,
  highWatermarks,
  type Message,
  produceMessages,
  readDeadLetters,
  sluiceEnv,
  waitLedgerComplete,
} from "../harness/kafka_fixture.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import { startUpstreamStub } from "../harness/upstream_stub.ts";

Deno.test("schema on Kafka: failing payloads are VALIDATION_ERROR dead letters with path and rule, the rest delivered", async () => {
  const topic = uniqueName("schema");
  const group = uniqueName("schema-group");
  const bucket = uniqueName("schema-audit");
  const dir = await Deno.makeTempDir({ prefix: "sluice-schema-it-" });
  await Deno.writeTextFile(
    `${dir}/${topic}.schema.json`,
    JSON.stringify({
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      required: ["seq", "amount"],
      properties: {
        seq: { type: "integer" },
        amount: { type: "number", minimum: 0 },
        currency: { enum: ["EUR", "USD"] },
      },
    }),
  );
  await createTopic(topic);
  const N = 60;
  const messages: Message[] = [];
  const bad = new Map<string, string>(); // request_id -> expected message tail
  for (let seq = 0; seq < N; seq++) {
    let payload: Record<string, unknown> = { seq, amount: seq, currency: "EUR" };
    if (seq % 10 === 3) {
      payload = { seq, amount: -seq };
      bad.set(
        `req-${seq}`,
        "/payload/amount must be >= 0 (rule minimum at #/properties/amount/minimum)",
      );
    } else if (seq % 10 === 7) {
      payload = { seq, amount: 1, currency: "GBP" };
      bad.set(
        `req-${seq}`,
        "/payload/currency must be equal to one of the allowed values (rule enum at #/properties/currency/enum)",
      );
    }
    messages.push({
      key: `key-${seq % 5}`,
      value: JSON.stringify({
        request_id: `req-${seq}`,
        idempotency_key: `${topic}-${seq}`,
        timestamp: new Date().toISOString(),
        payload,
      }),
    });
  }
  await produceMessages(topic, messages);
  const stub = startUpstreamStub({});
  try {
    const sluice = await startSluiceProcess({
      env: sluiceEnv(topic, group, bucket, stub, { SLUICE_SCHEMA_DIR: dir }),
    });
    await withSluice(sluice, async () => {
      const dls = await readDeadLetters(`${topic}-dlq`, bad.size);
      assert.equal(dls.length, bad.size);
      for (const dl of dls) {
        assert.equal(dl.failure_reason, "VALIDATION_ERROR");
        const original = JSON.parse(dl.original_payload!);
        const expected = bad.get(original.request_id);
        assert.ok(expected, `unexpected dead letter ${original.request_id}`);
        assert.equal(dl.error_message, `Payload does not match ${topic}.schema.json: ${expected}`);
      }
      await waitFor(() => stub.delivered.size === N - bad.size, {
        timeoutMs: 30_000,
        message: `${N - bad.size} deliveries`,
      });
      for (const r of stub.requests) {
        const { request_id } = JSON.parse(r.body);
        assert.ok(!bad.has(request_id), `${request_id} failed its schema but reached the upstream`);
      }
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 30_000,
        message: "every offset committed",
      });
      assert.equal(
        await sluice.metric("kafka_dlq_messages_total", { failure_reason: "VALIDATION_ERROR" }),
        bad.size,
      );
      assert.equal(await sluice.metric("errors_total", { kind: "validation" }), bad.size);
    });
    assert.equal((await sluice.status).code, 0, "graceful exit 0");
    const ledger = await waitLedgerComplete(
      bucket,
      allPositions(topic, await highWatermarks(topic)),
    );
    assert.equal(ledger.duplicates.size, 0);
    assert.deepEqual(ledger.outcomes, { delivered: N - bad.size, dead_lettered: bad.size });
  } finally {
    await stub.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
