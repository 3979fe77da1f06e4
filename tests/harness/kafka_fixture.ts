/**
 * Kafka-side helpers shared by the integration tests that run sluice as a
 * process against the runner's real Kafka and RGW: topic creation, producing
 * envelopes (or raw values), offsets, reading dead letters back, the sluice
 * environment, sampling `/metrics`, and the ledger check against RGW.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import type { DeadLetter } from "../../actors/record/dead_letter.ts";
import { checkLedger, type LedgerResult, readAllAuditEvents, rgwStore } from "./ledger.ts";
import { infra, sleep, waitFor } from "./mod.ts";
import type { UpstreamStub } from "./upstream_stub.ts";

/** A kafkajs client on the run's broker (quiet). */
export function kafka(clientId = "it-fixture"): Kafka {
  return new Kafka({
    clientId,
    brokers: infra().kafka.brokers,
    logLevel: logLevel.NOTHING,
    retry: { retries: 20, initialRetryTime: 200, maxRetryTime: 2000 },
  });
}

/** Creates a topic (3 partitions by default), optionally with topic configs. */
export async function createTopic(
  topic: string,
  opts: { partitions?: number; configs?: Record<string, string> } = {},
): Promise<void> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [{
        topic,
        numPartitions: opts.partitions ?? 3,
        configEntries: Object.entries(opts.configs ?? {}).map(([name, value]) => ({
          name,
          value,
        })),
      }],
      waitForLeaders: true,
    });
  } finally {
    await admin.disconnect();
  }
}

/** A valid envelope (JSON text) for record number `seq` of `topic`. */
export function envelope(topic: string, seq: number, key = `key-${seq % 50}`): string {
  return JSON.stringify({
    request_id: `req-${seq}`,
    idempotency_key: `${topic}-${seq}`,
    timestamp: new Date().toISOString(),
    payload: { key, seq },
  });
}

/** One message to produce. */
export interface Message {
  key: string | null;
  value: string | Uint8Array | null;
  partition?: number;
}

function toBuffer(v: string | Uint8Array | null): Buffer | string | null {
  if (v === null || typeof v === "string") return v;
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/**
 * Produces `messages` (in chunks of 500, acks all). Idempotent, so that a
 * retry across a broker restart does not write a record twice.
 */
export async function produceMessages(topic: string, messages: Message[]): Promise<void> {
  const producer = kafka().producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  try {
    for (let i = 0; i < messages.length; i += 500) {
      await producer.send({
        topic,
        acks: -1,
        messages: messages.slice(i, i + 500).map((m) => ({
          key: m.key,
          value: toBuffer(m.value),
          partition: m.partition,
        })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

/** Produces envelopes `from … from+count-1` to `topic` (keys `key-<seq % keys>`). */
export function produceEnvelopes(topic: string, count: number, from = 0, keys = 50): Promise<void> {
  const messages: Message[] = [];
  for (let s = from; s < from + count; s++) {
    const key = `key-${s % keys}`;
    messages.push({ key, value: envelope(topic, s, key) });
  }
  return produceMessages(topic, messages);
}

/** High watermark per partition. */
export async function highWatermarks(topic: string): Promise<Map<number, string>> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, o.high]));
  } finally {
    await admin.disconnect();
  }
}

/** Committed offset per partition of `group` on `topic` (`-1` when none). */
export async function committedOffsets(group: string, topic: string): Promise<Map<number, string>> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    const r = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return new Map(r[0].partitions.map((p) => [p.partition, p.offset]));
  } finally {
    await admin.disconnect();
  }
}

/** Sum over partitions of (high watermark − committed offset). */
export async function groupLag(group: string, topic: string): Promise<number> {
  const [high, done] = await Promise.all([highWatermarks(topic), committedOffsets(group, topic)]);
  let lag = 0;
  for (const [p, h] of high) {
    const c = BigInt(done.get(p) ?? "-1");
    lag += Number(BigInt(h) - (c < 0n ? 0n : c));
  }
  return lag;
}

/** True once every partition's committed offset is its high watermark. */
export async function fullyCommitted(group: string, topic: string): Promise<boolean> {
  return (await groupLag(group, topic)) === 0;
}

/** Every `topic/partition/offset` below the high watermarks. */
export function allPositions(topic: string, high: Map<number, string>): string[] {
  const out: string[] = [];
  for (const [p, h] of high) for (let o = 0n; o < BigInt(h); o++) out.push(`${topic}/${p}/${o}`);
  return out;
}

/** Reads every message of `topic` from the beginning until `count` were seen (or the timeout). */
export async function readDeadLetters(
  topic: string,
  count: number,
  timeoutMs = 30_000,
): Promise<DeadLetter[]> {
  const consumer = kafka().consumer({
    groupId: `reader-${crypto.randomUUID()}`,
    maxBytesPerPartition: 16 * 1024 * 1024,
  });
  const out: DeadLetter[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: ({ message }) => {
        out.push(JSON.parse(message.value!.toString("utf8")));
        return Promise.resolve();
      },
    });
    await waitFor(() => out.length >= count, {
      timeoutMs,
      message: `${count} dead letters in ${topic} (have ${out.length})`,
    }).catch((e) => {
      throw new Error(`${e.message}; got ${out.length}`);
    });
    // Give a little time for any unexpected extra message to show up.
    await sleep(300);
  } finally {
    await consumer.disconnect();
  }
  return out;
}

/** The sluice environment for one test: real Kafka, RGW, the stub upstream. */
export function sluiceEnv(
  topic: string,
  group: string,
  bucket: string,
  stub: UpstreamStub,
  extra: Record<string, string> = {},
): Record<string, string> {
  const { kafka, s3 } = infra();
  return {
    SLUICE_KAFKA_BROKERS: kafka.brokers.join(","),
    SLUICE_TOPICS: topic,
    SLUICE_GROUP_ID: group,
    SLUICE_UPSTREAM_URL: stub.url,
    SLUICE_S3_ENDPOINT: s3.endpoint,
    SLUICE_S3_ACCESS_KEY: s3.accessKey,
    SLUICE_S3_SECRET_KEY: s3.secretKey,
    SLUICE_S3_BUCKET: bucket,
    SLUICE_RATE_LIMIT: "0",
    SLUICE_AUDIT_BATCH_AGE_MS: "300",
    ...extra,
  };
}

/** Samples `fn` every `everyMs` until `stop()` is called; returns the samples. */
export function sampler<T>(
  fn: () => Promise<T>,
  everyMs: number,
): { samples: T[]; stop(): Promise<T[]> } {
  const samples: T[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        samples.push(await fn());
      } catch {
        // The process may be between restarts: skip the sample.
      }
      await sleep(everyMs);
    }
  })();
  return {
    samples,
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}

/** Reads the audit trail of `bucket` back from RGW and checks it against `positions`. */
export async function ledgerOf(bucket: string, positions: string[]): Promise<LedgerResult> {
  const store = rgwStore(bucket);
  try {
    return checkLedger(positions, await readAllAuditEvents(store));
  } finally {
    store.close();
  }
}

/** Waits until every one of `positions` has a final audit outcome in `bucket`. */
export async function waitLedgerComplete(
  bucket: string,
  positions: string[],
  timeoutMs = 60_000,
): Promise<LedgerResult> {
  let last: LedgerResult | undefined;
  await waitFor(async () => {
    last = await ledgerOf(bucket, positions);
    return last.missing.length === 0;
  }, {
    timeoutMs,
    intervalMs: 1000,
    message: `a complete ledger in ${bucket}`,
  }).catch((e) => {
    throw new Error(
      `${e.message}: ${last?.missing.length} missing (first ${last?.missing.slice(0, 5)})`,
    );
  });
  return last!;
}

/** Asserts that sluice's output shows `lines` in this order. */
export function assertInOrder(output: string, lines: string[]): void {
  let at = 0;
  for (const l of lines) {
    const i = output.indexOf(l, at);
    assert.ok(i >= 0, `"${l}" in the output after position ${at}`);
    at = i + l.length;
  }
}
