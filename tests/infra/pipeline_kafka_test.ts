/**
 * The pipeline end to end on the real parts: Kafka 4.1 from the harness,
 * audit on the harness's Ceph RGW, sluice as a real process, and a loopback
 * upstream stub.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import { infra, uniqueName, waitFor } from "../harness/mod.ts";
import { startUpstreamStub, type UpstreamStub } from "../harness/upstream_stub.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import { checkLedger, readAllAuditEvents, rgwStore } from "../harness/ledger.ts";
import {
  allPositions,
  committedOffsets as committed,
  highWatermarks,
  sluiceEnv,
} from "../harness/kafka_fixture.ts";

const kafka = () =>
  new Kafka({
    clientId: "pipeline-test",
    brokers: infra().kafka.brokers,
    logLevel: logLevel.NOTHING,
  });

/** Creates a 3-partition topic and produces `count` envelopes with `keys` distinct keys. */
async function produce(topic: string, count: number, keys: number): Promise<void> {
  const k = kafka();
  const admin = k.admin();
  const producer = k.producer();
  await admin.connect();
  await producer.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
    for (let i = 0; i < count; i += 1000) {
      const messages = [];
      for (let j = i; j < Math.min(count, i + 1000); j++) {
        const key = `key-${j % keys}`;
        messages.push({
          key,
          value: JSON.stringify({
            request_id: `req-${j}`,
            idempotency_key: `${topic}-${j}`,
            timestamp: new Date().toISOString(),
            payload: { key, seq: j },
          }),
        });
      }
      await producer.send({ topic, messages });
    }
  } finally {
    await producer.disconnect();
    await admin.disconnect();
  }
}

/** Per key, the sequence numbers the upstream saw must increase. */
function assertOrderedPerKey(stub: UpstreamStub): number {
  const last = new Map<string, number>();
  let keys = 0;
  for (const r of stub.requests) {
    const { payload } = JSON.parse(r.body);
    const prev = last.get(payload.key);
    if (prev === undefined) keys++;
    else assert.ok(payload.seq > prev, `key ${payload.key}: seq ${payload.seq} after ${prev}`);
    last.set(payload.key, payload.seq);
  }
  return keys;
}

for (const ordering of ["partition", "key"] as const) {
  Deno.test(`pipeline (ordering ${ordering}) delivers 10,000 keyed records once each, in order, commits and audits every one`, async () => {
    const topic = uniqueName(`orders-${ordering}`);
    const group = uniqueName("group");
    const bucket = uniqueName("audit");
    await produce(topic, 10_000, 100);
    const high = await highWatermarks(topic);
    const positions = allPositions(topic, high);
    assert.equal(positions.length, 10_000);
    const stub = startUpstreamStub({ latencyMs: 1 });
    try {
      const sluice = await startSluiceProcess({
        env: sluiceEnv(topic, group, bucket, stub, {
          SLUICE_ORDERING: ordering,
          SLUICE_MAX_INFLIGHT: "32",
        }),
      });
      await withSluice(sluice, async () => {
        await waitFor(() => stub.delivered.size === 10_000, {
          timeoutMs: 120_000,
          message: "10,000 deliveries",
        });
        await waitFor(async () => {
          const c = await committed(group, topic);
          return [...high].every(([p, h]) => c.get(p) === h);
        }, { timeoutMs: 30_000, message: "committed offsets at the high watermarks" });
        assert.equal(await sluice.metric("requests_total", { outcome: "delivered" }), 10_000);
        assert.equal(await sluice.metric("kafka_dlq_messages_total"), 0);
        if (ordering === "key") {
          assert.ok(
            stub.maxInflight() > 3,
            `key mode runs keys in parallel (max in flight ${stub.maxInflight()})`,
          );
        } else {assert.ok(
            stub.maxInflight() <= 3,
            `partition mode: at most one call per partition (max ${stub.maxInflight()})`,
          );}
      });
      assert.equal(await sluice.status.then((s) => s.code), 0, "graceful exit 0");
      assert.equal(stub.requests.length, 10_000, "no record was sent twice");
      assert.equal([...stub.delivered.values()].filter((n) => n > 1).length, 0);
      assert.equal(assertOrderedPerKey(stub), 100);
      for (const r of stub.requests) {
        assert.ok(r.idempotencyKey?.startsWith(topic));
        assert.match(r.traceparent ?? "", /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
        assert.ok(r.requestId?.startsWith("req-"));
      }

      // The audit trail on RGW holds one delivered event per record.
      const store = rgwStore(bucket);
      try {
        const events = await readAllAuditEvents(store);
        const ledger = checkLedger(positions, events);
        assert.deepEqual(ledger.missing, []);
        assert.equal(ledger.duplicates.size, 0);
        assert.deepEqual(ledger.outcomes, { delivered: 10_000 });
      } finally {
        store.close();
      }

      // A restarted consumer in the same group reads nothing again.
      const before = stub.requests.length;
      const again = await startSluiceProcess({
        env: sluiceEnv(topic, group, bucket, stub, { SLUICE_ORDERING: ordering }),
      });
      await withSluice(again, async () => {
        await waitFor(async () => {
          const s = await again.json("/status") as { partitions: { lag?: number }[] };
          return s.partitions.length === 3 && s.partitions.every((p) => p.lag === 0);
        }, { timeoutMs: 30_000, message: "the restarted consumer to own 3 partitions with lag 0" });
        assert.equal(stub.requests.length, before);
      });
    } finally {
      await stub.stop();
    }
  });
}
