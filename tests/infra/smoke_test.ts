/**
 * Smoke tests on the real parts: kafkajs (from Deno) against Kafka 4.x,
 * kcat as an independent producer, and @aws-sdk/client-s3 against Ceph RGW.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { infra, s3Client, uniqueName, waitFor } from "../harness/mod.ts";

function kafka() {
  return new Kafka({
    clientId: "sluice-smoke",
    brokers: infra().kafka.brokers,
    logLevel: logLevel.ERROR,
  });
}

Deno.test("infrastructure versions are the expected ones", () => {
  const { kafka, s3 } = infra();
  console.log(`Kafka ${kafka.version}; ${s3.version}`);
  assert.match(kafka.version, /^4\.1\./);
  assert.match(s3.version, /^ceph version \d+\./);
});

Deno.test("kafkajs produces 1,000 records to a 3-partition topic and a group reads and commits them all", async () => {
  const k = kafka();
  const admin = k.admin();
  const producer = k.producer();
  const topic = uniqueName("smoke");
  const groupId = uniqueName("smoke-group");
  const consumer = k.consumer({ groupId });
  await admin.connect();
  try {
    assert.equal(
      await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true }),
      true,
    );
    await producer.connect();
    const messages = Array.from(
      { length: 1000 },
      (_, i) => ({ key: `k${i % 17}`, value: `v${i}` }),
    );
    for (let i = 0; i < messages.length; i += 250) {
      await producer.send({ topic, messages: messages.slice(i, i + 250) });
    }
    const seen = new Set<string>();
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachBatchAutoResolve: false,
      autoCommit: false,
      eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary, uncommittedOffsets }) => {
        for (const m of batch.messages) {
          seen.add(m.value!.toString());
          resolveOffset(m.offset);
        }
        await commitOffsetsIfNecessary(uncommittedOffsets());
      },
    });
    await waitFor(() => seen.size === 1000, {
      timeoutMs: 30_000,
      message: "1,000 records consumed",
    });
    await consumer.stop();
    const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
    const total = committed[0].partitions.reduce((n, p) => n + Number(p.offset), 0);
    assert.equal(total, 1000, `committed offsets sum to 1000: ${JSON.stringify(committed)}`);
    assert.equal(committed[0].partitions.length, 3);
  } finally {
    await consumer.disconnect();
    await producer.disconnect();
    await admin.disconnect();
  }
});

Deno.test("a record produced by kcat is consumed by kafkajs", async () => {
  const k = kafka();
  const admin = k.admin();
  const topic = uniqueName("kcat");
  const consumer = k.consumer({ groupId: uniqueName("kcat-group") });
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    const value = JSON.stringify({ request_id: "r-1", payload: { hello: "from kcat" } });
    const child = new Deno.Command("kcat", {
      args: ["-P", "-b", infra().kafka.brokers[0], "-t", topic, "-k", "key-1", "-H", "origin=kcat"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(value + "\n"));
    await w.close();
    const out = await child.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    let got: { key?: string; value?: string; origin?: string } | undefined;
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: ({ message }) => {
        got = {
          key: message.key?.toString(),
          value: message.value?.toString(),
          origin: message.headers?.origin?.toString(),
        };
        return Promise.resolve();
      },
    });
    await waitFor(() => got, { timeoutMs: 30_000, message: "the kcat record" });
    assert.deepEqual(got, { key: "key-1", value, origin: "kcat" });
  } finally {
    await consumer.disconnect();
    await admin.disconnect();
  }
});

Deno.test("the S3 client creates a bucket, puts, lists and gets an object on Ceph RGW", async () => {
  const s3 = s3Client();
  try {
    const Bucket = uniqueName("smoke");
    await s3.send(new CreateBucketCommand({ Bucket }));
    const Key = "audit/2026/11/24/13/events-0-0-9.jsonl";
    const Body = '{"hello":"rgw"}\n';
    await s3.send(new PutObjectCommand({ Bucket, Key, Body, ContentType: "application/x-ndjson" }));
    const list = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: "audit/2026/" }));
    assert.deepEqual(list.Contents?.map((o) => o.Key), [Key]);
    const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
    assert.equal(await got.Body?.transformToString(), Body);
  } finally {
    s3.destroy();
  }
});
