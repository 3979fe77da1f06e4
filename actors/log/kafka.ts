/**
 * The real-Kafka {@link LogClient}, on kafkajs 2.2.4.
 *
 * Consumption uses `eachBatch` with manual offset resolution
 * (`eachBatchAutoResolve: false`, `autoCommit: false`): a batch resolves and
 * commits only the offsets whose records are finished. Group generations are
 * counted on every join; a batch fetched in an older generation, or for a
 * partition no longer assigned, is stale and never commits (fencing).
 *
 * @module
 */
import {
  type Admin,
  ConfigResourceTypes,
  type Consumer,
  type EachBatchPayload,
  Kafka,
  type KafkaMessage,
  logLevel,
  Partitioners,
  type Producer,
} from "kafkajs";
import process from "node:process";
import { patchKafkajsEncoder } from "./kafkajs_encoder.ts";
import { patchKafkajsRequestQueue } from "./kafkajs_request_queue.ts";
import { logger } from "../runtime/logger.ts";
import { closeAll } from "./close_all.ts";
import type { SourceRecord } from "../record/record.ts";
import { kafkaRebalancesTotal } from "../runtime/metrics.ts";
import { UnknownTopicError } from "../runtime/errors.ts";
import type {
  Batch,
  BatchHandler,
  LogAdmin,
  LogClient,
  LogConsumer,
  LogProducer,
  OutgoingMessage,
  PartitionOffset,
  RangeReader,
  TopicPartition,
} from "./port.ts";

const log = logger("kafka");

// Varints written in place: same bytes, no Buffer per varint (module doc there).
patchKafkajsEncoder();
patchKafkajsRequestQueue();

/** Options of {@link createKafkaLog}. */
export interface KafkaLogOptions {
  brokers: string[];
  /** Default `sluice`. */
  clientId?: string;
  /** Consumer session timeout (ms); default 30 000. */
  sessionTimeoutMs?: number;
  /** Largest fetch per partition (bytes); default 1 MiB (`actors/log/memory_budget.ts`). */
  maxBytesPerPartition?: number;
  /** Largest fetch in all (bytes); default kafkajs' 10 MiB (`actors/log/memory_budget.ts`). */
  maxBytes?: number;
}

const LEVELS: Record<number, "error" | "warn" | "info" | "debug"> = {
  [logLevel.ERROR]: "error",
  [logLevel.WARN]: "warn",
  [logLevel.INFO]: "info",
  [logLevel.DEBUG]: "debug",
};

/**
 * kafkajs 2.2.4's request queue arms `setTimeout` with a negative delay when
 * it is not throttled (requestQueue `scheduleCheckPendingRequests`), which
 * Node's timers (and Deno's) report as a `TimeoutNegativeWarning` on every
 * start. The delay is harmless (clamped to 1 ms); only that warning is
 * dropped, every other process warning still prints.
 */
function silenceKafkajsTimeoutWarning(): void {
  const p = process as unknown as {
    emitWarning: (w: unknown, ...rest: unknown[]) => void;
    __sluiceTimeoutFilter?: boolean;
  };
  if (p.__sluiceTimeoutFilter) return;
  p.__sluiceTimeoutFilter = true;
  const original = p.emitWarning;
  p.emitWarning = function (warning: unknown, ...rest: unknown[]) {
    const type = warning instanceof Error
      ? warning.name
      : typeof rest[0] === "string"
      ? rest[0]
      : (rest[0] as { type?: string } | undefined)?.type;
    if (type === "TimeoutNegativeWarning") return;
    return original.call(process, warning, ...rest);
  };
}
silenceKafkajsTimeoutWarning();

function toRecord(topic: string, partition: number, m: KafkaMessage): SourceRecord {
  const headers: Record<string, string> = {};
  const raw = m.headers;
  // for…in, not Object.entries: no array per record (most records have no headers).
  if (raw) {
    for (const k in raw) {
      const v = raw[k];
      if (v === undefined) continue;
      const one = Array.isArray(v) ? v[v.length - 1] : v;
      headers[k] = typeof one === "string" ? one : one.toString("utf8");
    }
  }
  return {
    topic,
    partition,
    offset: m.offset,
    key: m.key ? new Uint8Array(m.key.buffer, m.key.byteOffset, m.key.byteLength) : null,
    value: m.value ? new Uint8Array(m.value.buffer, m.value.byteOffset, m.value.byteLength) : null,
    headers,
    timestamp: m.timestamp,
  };
}

function toBuffer(v: Uint8Array | string | null): Buffer | string | null {
  if (v === null || typeof v === "string") return v;
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** Creates the kafkajs-backed log. Nothing connects until used. */
export function createKafkaLog(opts: KafkaLogOptions): LogClient {
  const clientId = opts.clientId ?? "sluice";
  const kafka = new Kafka({
    clientId,
    brokers: opts.brokers,
    logLevel: logLevel.WARN,
    // Waits between retries grow from 300 ms to at most 5 s: after an outage the
    // client tries the broker again within 5 s of its return. Measured after broker
    // restarts (tests/infra/outage_kafka_test.ts, 4 each): consumption resumed
    // 2.3-4.6 s after the broker's start, against 4.8-9.6 s with a 10 s cap. 11
    // retries keep about the ~40 s before an operation fails that 8 capped at 10 s gave.
    retry: { initialRetryTime: 300, retries: 11, maxRetryTime: 5_000 },
    logCreator: () => ({ namespace, level, log: entry }) => {
      const { message, ...rest } = entry;
      // kafkajs logs every retried request at ERROR; they are warnings until a crash.
      const lvl = LEVELS[level] === "error" ? "warn" : LEVELS[level] ?? "info";
      // Some kafkajs lines have no namespace (they printed as `undefined: ...`).
      log[lvl](namespace ? `${namespace}: ${message}` : String(message), rest);
    },
  });
  const open = new Set<{ disconnect(): Promise<void> }>();

  let sharedAdmin: Promise<Admin> | undefined;
  function adminClient(): Promise<Admin> {
    sharedAdmin ??= (async () => {
      const a = kafka.admin();
      await a.connect();
      open.add(a);
      return a;
    })().catch((e) => {
      sharedAdmin = undefined;
      throw e;
    });
    return sharedAdmin;
  }

  const readRange: RangeReader = (tp, range) => readKafkaRange(kafka, clientId, tp, range);

  return {
    kind: "kafka",
    description: `Kafka ${opts.brokers.join(",")}`,
    consumer(groupId) {
      const c = new KafkaGroupConsumer(kafka, groupId, opts);
      open.add(c);
      return c;
    },
    async producer() {
      const p = kafka.producer({
        allowAutoTopicCreation: false,
        // Named explicitly: kafkajs warns on every start when it is left to the default.
        createPartitioner: Partitioners.DefaultPartitioner,
        idempotent: true,
        maxInFlightRequests: 1,
      });
      await p.connect();
      const wrapped = new KafkaProducer(p);
      open.add(wrapped);
      return wrapped;
    },
    async admin() {
      return new KafkaAdmin(await adminClient());
    },
    readRange,
    async ping() {
      try {
        const a = await adminClient();
        await a.describeCluster();
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      // A client stuck on a broker that does not answer must not hold the exit.
      await closeAll(open, (c) => c.disconnect(), {
        timeoutMs: 3000,
        onLate: () => log.warn("a Kafka client did not disconnect in 3 s; leaving it"),
      });
      open.clear();
      sharedAdmin = undefined;
    },
  };
}

class KafkaProducer implements LogProducer {
  constructor(private readonly p: Producer) {}
  async send(topic: string, messages: OutgoingMessage[]): Promise<void> {
    await this.p.send({
      topic,
      acks: -1,
      messages: messages.map((m) => ({
        key: toBuffer(m.key),
        value: toBuffer(m.value),
        headers: m.headers,
        partition: m.partition,
        timestamp: m.timestamp,
      })),
    });
  }
  disconnect(): Promise<void> {
    return this.p.disconnect();
  }
}

class KafkaAdmin implements LogAdmin {
  constructor(private readonly a: Admin) {}
  async ensureTopics(topics: { topic: string; partitions: number }[]): Promise<void> {
    const existing = new Set(await this.a.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    if (missing.length === 0) return;
    await this.a.createTopics({
      topics: missing.map((t) => ({ topic: t.topic, numPartitions: t.partitions })),
      waitForLeaders: true,
    });
  }
  /**
   * The error to throw for a failed call on `topic`: {@link UnknownTopicError}
   * when the broker says the topic is unknown (kafkajs error type
   * `UNKNOWN_TOPIC_OR_PARTITION`) or the topic is not listed, else `e`.
   */
  async #typed(topic: string, e: unknown): Promise<unknown> {
    if (e instanceof UnknownTopicError) return e;
    if ((e as { type?: unknown })?.type === "UNKNOWN_TOPIC_OR_PARTITION") {
      return new UnknownTopicError(topic, { cause: e });
    }
    try {
      if (!(await this.a.listTopics()).includes(topic)) {
        return new UnknownTopicError(topic, { cause: e });
      }
    } catch {
      // The broker is unreachable: the original error says more.
    }
    return e;
  }
  async partitions(topic: string): Promise<number[]> {
    const existing = await this.a.listTopics();
    if (!existing.includes(topic)) throw new UnknownTopicError(topic);
    try {
      const md = await this.a.fetchTopicMetadata({ topics: [topic] });
      return md.topics[0].partitions.map((p) => p.partitionId).sort((a, b) => a - b);
    } catch (e) {
      throw await this.#typed(topic, e);
    }
  }
  async offsetsForTimes(topic: string, timestamp: number): Promise<PartitionOffset[]> {
    const [at, high] = await Promise.all([
      this.a.fetchTopicOffsetsByTimestamp(topic, timestamp),
      this.highWatermarks(topic),
    ]).catch(async (e) => {
      throw await this.#typed(topic, e);
    });
    const highBy = new Map(high.map((h) => [h.partition, h.offset]));
    return sortByPartition(at.map((o) => ({
      partition: o.partition,
      offset: Number(o.offset) < 0 ? highBy.get(o.partition) ?? "0" : o.offset,
    })));
  }
  async highWatermarks(topic: string): Promise<PartitionOffset[]> {
    let offs;
    try {
      offs = await this.a.fetchTopicOffsets(topic);
    } catch (e) {
      throw await this.#typed(topic, e);
    }
    return sortByPartition(offs.map((o) => ({ partition: o.partition, offset: o.high })));
  }
  async committed(groupId: string, topic: string): Promise<PartitionOffset[]> {
    const res = await this.a.fetchOffsets({ groupId, topics: [topic] });
    return sortByPartition(
      (res[0]?.partitions ?? []).map((p) => ({ partition: p.partition, offset: p.offset })),
    );
  }
  async retentionMs(topic: string): Promise<number | null> {
    const res = await this.a.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ["retention.ms"] }],
    });
    const v = res.resources[0]?.configEntries.find((e) => e.configName === "retention.ms");
    return v ? Number(v.configValue) : null;
  }
  disconnect(): Promise<void> {
    // The admin client is shared by the LogClient and closed with it.
    return Promise.resolve();
  }
}

/**
 * The broker lists partitions in its own order (the group coordinator's
 * offsets come from a hash map, so the order depends on the topic's name):
 * the port gives them sorted by partition.
 */
function sortByPartition(offsets: PartitionOffset[]): PartitionOffset[] {
  return offsets.sort((a, b) => a.partition - b.partition);
}

/** True for the heartbeat answers that mean the group is rebalancing. */
export function rebalanceError(e: unknown): boolean {
  const type = (e as { type?: unknown })?.type;
  return type === "REBALANCE_IN_PROGRESS";
}

/** Groups whose first consumer got the hanging-commit test hook. */
const hungGroups = new Set<string>();

/**
 * A consumer group member on kafkajs (exported for its unit test; the
 * adapter's `consumer()` creates it).
 */
export class KafkaGroupConsumer implements LogConsumer {
  private consumer: Consumer;
  private generation = 0;
  private assigned = new Set<string>();
  private running = false;
  private rebalancing = false;
  /**
   * Set by `stop()`/`disconnect()`: a crash after it is not restarted. Seen in
   * a broker-restart test: the audit uploader's watchdog gave up on a consumer
   * whose stop did not answer within its bound and started a new one; the old
   * one crashed later, was restarted, and rejoined the group beside the new
   * one, holding half the partitions with a handler that no longer ran.
   */
  private closed = false;

  /**
   * Test hook (`SLUICE_TEST_HANG_COMMITS=<group id>`): the first consumer of
   * that group in this process never gets an answer to its commits, like a
   * coordinator that keeps the connection open and stops answering. Tests use
   * it to prove that a hanging commit is bounded and the watchdog recovers.
   */
  private hangCommits = false;

  constructor(kafka: Kafka, private readonly groupId: string, opts: KafkaLogOptions) {
    const hang = Deno.env.get("SLUICE_TEST_HANG_COMMITS");
    if (hang && hang === groupId && !hungGroups.has(groupId)) {
      hungGroups.add(groupId);
      this.hangCommits = true;
      log.warn("test hook: this consumer's commits will never be answered", { group: groupId });
    }
    const sessionTimeout = opts.sessionTimeoutMs ?? 30_000;
    this.consumer = kafka.consumer({
      groupId,
      sessionTimeout,
      // At most a third of the session, so one lost heartbeat does not evict the member.
      heartbeatInterval: Math.min(3_000, Math.floor(sessionTimeout / 3)),
      maxBytesPerPartition: opts.maxBytesPerPartition ?? 1024 * 1024,
      // How long an empty fetch waits at the broker (kafkajs: 5 s). Stopping the
      // consumer waits for the fetch in flight, and the shutdown gives closing
      // the consumer 5 s (`SLUICE_SHUTDOWN_COMMIT_MS`): with the load stopped a
      // 5 s fetch made that phase time out (exit 1) now and then.
      maxWaitTimeInMs: 1_000,
      ...(opts.maxBytes !== undefined ? { maxBytes: opts.maxBytes } : {}),
      allowAutoTopicCreation: false,
      retry: {
        // As the client's (above): at most 5 s between tries, about a minute in all.
        retries: 15,
        initialRetryTime: 300,
        maxRetryTime: 5_000,
        // A broker outage outlasting the retries crashes the runner: start it again.
        restartOnFailure: (e: Error) => {
          if (this.closed) {
            log.info("stopped consumer crashed; not restarted", {
              error: e.message,
              group: groupId,
            });
            return Promise.resolve(false);
          }
          log.warn("consumer crashed; restarting", { error: e.message, group: groupId });
          return Promise.resolve(true);
        },
      },
    });
  }

  async run(topics: string[], handler: BatchHandler): Promise<void> {
    const { GROUP_JOIN, REBALANCING, CRASH } = this.consumer.events;
    this.consumer.on(GROUP_JOIN, (e) => {
      this.generation++;
      this.rebalancing = false;
      const assignment: TopicPartition[] = [];
      for (const [topic, partitions] of Object.entries(e.payload.memberAssignment)) {
        for (const partition of partitions) assignment.push({ topic, partition });
      }
      this.assigned = new Set(assignment.map((tp) => `${tp.topic}:${tp.partition}`));
      kafkaRebalancesTotal.inc();
      log.info("joined group", {
        group: this.groupId,
        generation: this.generation,
        partitions: assignment.map((tp) => `${tp.topic}:${tp.partition}`),
      });
      handler.onAssignment(assignment, this.generation);
    });
    this.consumer.on(REBALANCING, () => {
      // Batches in flight drain and commit now (the coordinator still takes
      // commits of this generation); from the next join on they are stale.
      this.rebalancing = true;
    });
    this.consumer.on(CRASH, (e) => {
      log.error("consumer crashed", {
        error: e.payload.error?.message,
        restart: e.payload.restart,
      });
      if (e.payload.restart) {
        this.generation++;
        this.assigned = new Set();
      }
    });
    await this.consumer.connect();
    await this.consumer.subscribe({ topics, fromBeginning: true });
    this.running = true;
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 64,
      eachBatch: (payload) => handler.eachBatch(this.toBatch(payload)),
    });
  }

  private toBatch(p: EachBatchPayload): Batch {
    const { topic, partition } = p.batch;
    const generation = this.generation;
    const key = `${topic}:${partition}`;
    const isStale = () => generation !== this.generation || !this.assigned.has(key) || p.isStale();
    return {
      topic,
      partition,
      records: p.batch.messages.map((m) => toRecord(topic, partition, m)),
      highWatermark: p.batch.highWatermark,
      generation,
      isStale,
      isRunning: () => this.running && !this.rebalancing && !isStale() && p.isRunning(),
      heartbeat: async () => {
        try {
          await p.heartbeat();
        } catch (e) {
          // Only a rebalance in progress stops admission until the next join
          // (GROUP_JOIN clears the flag). Any other refusal — the coordinator
          // moved or restarted (NOT_COORDINATOR), a connection error — is not
          // followed by a join: flagging it would stop admission for good
          // while the partitions still show `running` (a silent stall).
          if (rebalanceError(e)) this.rebalancing = true;
          log.debug("heartbeat refused", {
            error: e instanceof Error ? e.message : String(e),
            rebalance: rebalanceError(e),
          });
        }
      },
      resolve: (nextOffset) => {
        if (!isStale()) p.resolveOffset((BigInt(nextOffset) - 1n).toString());
      },
      commit: async (nextOffset) => {
        if (isStale()) return false;
        if (this.hangCommits) return await new Promise<boolean>(() => {});
        p.resolveOffset((BigInt(nextOffset) - 1n).toString());
        try {
          await p.commitOffsetsIfNecessary({
            topics: [{ topic, partitions: [{ partition, offset: nextOffset }] }],
          });
          return true;
        } catch (e) {
          if (isStale()) return false;
          throw e;
        }
      },
    };
  }

  pause(tps: TopicPartition[]): void {
    for (const [topic, partitions] of groupByTopic(tps)) {
      this.consumer.pause([{ topic, partitions }]);
    }
  }

  resume(tps: TopicPartition[]): void {
    for (const [topic, partitions] of groupByTopic(tps)) {
      this.consumer.resume([{ topic, partitions }]);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    this.closed = true;
    await this.consumer.stop();
  }

  async disconnect(): Promise<void> {
    this.running = false;
    this.closed = true;
    await this.consumer.disconnect();
  }
}

function groupByTopic(tps: TopicPartition[]): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const tp of tps) m.set(tp.topic, [...(m.get(tp.topic) ?? []), tp.partition]);
  return m;
}

/**
 * Reads `[from, to)` of one partition with a throwaway group that never
 * commits, so the live group's offsets are untouched.
 */
async function* readKafkaRange(
  kafka: Kafka,
  clientId: string,
  tp: TopicPartition,
  range: { from: string; to: string; signal?: AbortSignal },
): AsyncIterable<SourceRecord[]> {
  const from = BigInt(range.from), to = BigInt(range.to);
  if (from >= to) return;
  const consumer = kafka.consumer({
    groupId: `${clientId}-range-${crypto.randomUUID()}`,
    allowAutoTopicCreation: false,
    maxBytesPerPartition: 512 * 1024,
  });
  const queue: SourceRecord[][] = [];
  let done = false, failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const onAbort = () => {
    done = true;
    notify();
  };
  range.signal?.addEventListener("abort", onAbort);
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [tp.topic], fromBeginning: true });
    consumer.on(consumer.events.GROUP_JOIN, () => consumer.seek({ ...tp, offset: range.from }));
    consumer.on(consumer.events.CRASH, (e) => {
      failure = e.payload.error;
      done = true;
      notify();
    });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, pause, isRunning }) => {
        if (batch.partition !== tp.partition || done) return;
        const records: SourceRecord[] = [];
        const end = BigInt(batch.highWatermark) < to ? BigInt(batch.highWatermark) : to;
        for (const m of batch.messages) {
          const o = BigInt(m.offset);
          if (o < from) continue;
          if (o >= to) {
            done = true;
            break;
          }
          records.push(toRecord(tp.topic, tp.partition, m));
          resolveOffset(m.offset);
          if (o >= end - 1n) done = true;
        }
        if (records.length > 0) queue.push(records);
        notify();
        // Backpressure: wait while the reader has enough queued.
        while (queue.length > 4 && !done && isRunning()) {
          await new Promise<void>((r) => setTimeout(r, 20));
        }
        if (done) pause();
      },
    });
    while (true) {
      if (queue.length > 0) {
        yield queue.shift()!;
        continue;
      }
      if (done) break;
      await new Promise<void>((r) => (wake = r));
    }
    if (failure) throw failure;
  } finally {
    range.signal?.removeEventListener("abort", onAbort);
    await consumer.disconnect().catch(() => {});
  }
}
