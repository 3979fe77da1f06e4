/**
 * A second real-Kafka {@link LogClient}, on `@platformatic/kafka` (selected
 * with `SLUICE_KAFKA_CLIENT=platformatic`; kafkajs in `actors/log/kafka.ts`
 * stays the default — README "Kafka client choice" gives the measurements).
 *
 * The library's consumer offers a group member (join, sync, heartbeats and
 * rejoins in the background) and a `MessagesStream` that merges every
 * assigned partition into one Node stream, paused and resumed as a whole.
 * The port needs per-partition batches, per-partition pause and resume, and
 * "the next batch starts where the last one resolved" (kafkajs `eachBatch`
 * with manual resolution), which that stream does not offer. So this adapter
 * keeps the library's group membership, fetch requests (leader routing,
 * fetch sessions, retries) and commits, and runs its own fetch loop on top:
 *
 * - Each assigned partition has a next offset (the committed one at join,
 *   the earliest when none), moved by {@link Batch.resolve} /
 *   {@link Batch.commit} when a batch ends. A batch that ended before its
 *   last record is fetched again from what was resolved.
 * - A partition is fetched only when it is assigned, not paused and has no
 *   batch in its handler: one batch per partition at a time, like kafkajs,
 *   and memory bounded by the fetch sizes.
 * - Group generations are counted on every join (the library rejoins on its
 *   own when a heartbeat reports a rebalance); a batch from an older
 *   generation or for a partition no longer assigned is stale and never
 *   commits (the same fencing as the kafkajs adapter).
 *
 * Producer: idempotent, `acks=all`, Java-compatible murmur2 partitioner
 * (the kafkajs default partitioner's placement of keyed records).
 *
 * @module
 */
import {
  Admin,
  compatibilityPartitioner,
  ConfigResourceTypes,
  Consumer,
  type GroupAssignment,
  type KafkaRecord,
  type MessageToProduce,
  ProduceAcks,
  Producer,
} from "@platformatic/kafka";
import { Buffer } from "node:buffer";
import { logger } from "../runtime/logger.ts";
import { closeAll } from "./close_all.ts";
import type { SourceRecord } from "../record/record.ts";
import { kafkaRebalancesTotal } from "../runtime/metrics.ts";
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
import type { KafkaLogOptions } from "./kafka.ts";
import { UnknownTopicError } from "../runtime/errors.ts";

const log = logger("kafka");

/** The library's fetch request and response types (not exported by name). */
type FetchRequestTopic = Parameters<Consumer["fetch"]>[0]["topics"][number];
type FetchResponse = Awaited<ReturnType<Consumer["fetch"]>>;

/** Control batches (transaction markers) carry no records for the handler. */
const IS_CONTROL = 0x20;
/** Kafka error code of OFFSET_OUT_OF_RANGE. */
const OFFSET_OUT_OF_RANGE = 1;
/** Longest a fetch waits for data (ms): short, so a partition freed by its handler is fetched soon. */
const FETCH_WAIT_MS = 100;

/** Retry settings shared by every client: up to 10 retries, backing off to 10 s. */
function baseOptions(clientId: string, brokers: string[]) {
  return {
    clientId,
    bootstrapBrokers: brokers,
    retries: 10,
    retryDelay: (_c: unknown, _op: string, attempt: number) =>
      Math.min(10_000, 300 * 2 ** Math.min(attempt, 6)),
    connectTimeout: 5_000,
    timeout: 30_000,
  };
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function u8(b: Buffer | null): Uint8Array | null {
  return b ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : null;
}

function toBuffer(v: Uint8Array | string | null): Buffer | undefined {
  if (v === null) return undefined;
  if (typeof v === "string") return Buffer.from(v, "utf8");
  return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

/** The records of one fetched partition with `offset ≥ from`, as sluice records. */
function toRecords(
  topic: string,
  partition: number,
  p: FetchResponse["responses"][number]["partitions"][number],
  from: bigint,
): { records: SourceRecord[]; end: bigint | null; epoch: number } {
  const records: SourceRecord[] = [];
  let end: bigint | null = null;
  let epoch = -1;
  for (const batch of p.records ?? []) {
    const last = batch.firstOffset + BigInt(batch.lastOffsetDelta);
    if (end === null || last + 1n > end) end = last + 1n;
    epoch = batch.partitionLeaderEpoch;
    if (batch.attributes & IS_CONTROL) continue;
    for (const r of batch.records as KafkaRecord[]) {
      const offset = batch.firstOffset + BigInt(r.offsetDelta);
      if (offset < from) continue;
      const headers: Record<string, string> = {};
      for (const [k, v] of r.headers) {
        if (k === null) continue;
        headers[k.toString("utf8")] = v === null ? "" : v.toString("utf8");
      }
      records.push({
        topic,
        partition,
        offset: offset.toString(),
        key: u8(r.key),
        value: u8(r.value),
        headers,
        timestamp: (batch.firstTimestamp + r.timestampDelta).toString(),
      });
    }
  }
  return { records, end, epoch };
}

/** Creates the `@platformatic/kafka`-backed log. Nothing connects until used. */
export function createPlatformaticLog(opts: KafkaLogOptions): LogClient {
  const clientId = opts.clientId ?? "sluice";
  const open = new Set<{ close(): Promise<void> }>();
  let sharedAdmin: PlatformaticAdmin | undefined;
  function adminClient(): PlatformaticAdmin {
    if (!sharedAdmin) {
      sharedAdmin = new PlatformaticAdmin(clientId, opts.brokers);
      open.add(sharedAdmin);
    }
    return sharedAdmin;
  }
  const readRange: RangeReader = (tp, range) =>
    readPlatformaticRange(clientId, opts.brokers, opts, tp, range);
  return {
    kind: "kafka",
    description: `Kafka ${opts.brokers.join(",")} (@platformatic/kafka)`,
    consumer(groupId) {
      const c = new PlatformaticGroupConsumer(clientId, groupId, opts);
      open.add(c);
      return c;
    },
    async producer() {
      const p = new PlatformaticProducer(clientId, opts.brokers);
      // Connect now (kafkajs `connect()` does): a producer that cannot reach the broker fails here.
      await p.connect();
      open.add(p);
      return p;
    },
    admin() {
      return Promise.resolve(adminClient());
    },
    readRange,
    async ping() {
      try {
        await adminClient().admin.metadata({ topics: [], forceUpdate: true });
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await closeAll(open, (c) => c.close(), {
        timeoutMs: 3000,
        onLate: () => log.warn("a Kafka client did not close in 3 s; leaving it"),
      });
      open.clear();
      sharedAdmin = undefined;
    },
  };
}

class PlatformaticProducer implements LogProducer {
  readonly #p: Producer;
  constructor(clientId: string, brokers: string[]) {
    this.#p = new Producer({
      ...baseOptions(clientId, brokers),
      idempotent: true,
      acks: ProduceAcks.ALL,
      autocreateTopics: false,
      partitioner: compatibilityPartitioner,
    });
  }
  async connect(): Promise<void> {
    await this.#p.metadata({ topics: [] });
  }
  async send(topic: string, messages: OutgoingMessage[]): Promise<void> {
    if (messages.length === 0) return;
    try {
      await this.#send(topic, messages);
    } catch (e) {
      // The library nests the broker's answer in an AggregateError; callers
      // (the audit writer trims an event the log refused for its size) read
      // the Kafka error name from `type`, as kafkajs gives it.
      const type = apiId(e, ["MESSAGE_TOO_LARGE", "RECORD_LIST_TOO_LARGE"]);
      if (type) {
        throw Object.assign(new Error(`Produce refused by the broker: ${type} (too large)`), {
          type,
          cause: e,
        });
      }
      throw e;
    }
  }
  async #send(topic: string, messages: OutgoingMessage[]): Promise<void> {
    await this.#p.send({
      acks: ProduceAcks.ALL,
      messages: messages.map((m): MessageToProduce => {
        const out: MessageToProduce = { topic, key: toBuffer(m.key), value: toBuffer(m.value) };
        if (m.headers) {
          // Without serializers every part is a Buffer, header keys included.
          const h = new Map<Buffer, Buffer>();
          for (const [k, v] of Object.entries(m.headers)) {
            h.set(Buffer.from(k, "utf8"), Buffer.from(v, "utf8"));
          }
          out.headers = h;
        }
        if (m.partition !== undefined) out.partition = m.partition;
        if (m.timestamp !== undefined) out.timestamp = BigInt(m.timestamp);
        return out;
      }),
    });
  }
  disconnect(): Promise<void> {
    return this.close();
  }
  close(): Promise<void> {
    return this.#p.close();
  }
}

class PlatformaticAdmin implements LogAdmin {
  readonly admin: Admin;
  /** A group-less consumer: the library lists offsets (and by time) on the consumer. */
  readonly #offsets: Consumer;
  constructor(clientId: string, brokers: string[]) {
    this.admin = new Admin(baseOptions(clientId, brokers));
    this.#offsets = new Consumer({
      ...baseOptions(clientId, brokers),
      groupId: `${clientId}-offsets-${crypto.randomUUID()}`,
      autocommit: false,
    });
  }
  async ensureTopics(topics: { topic: string; partitions: number }[]): Promise<void> {
    const existing = new Set(await this.admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t.topic));
    if (missing.length === 0) return;
    try {
      await this.admin.createTopics({
        // -1: the broker's default replication factor (what kafkajs asks for).
        topics: missing.map((t) => ({ topic: t.topic, partitions: t.partitions, replicas: -1 })),
      });
    } catch (e) {
      // Another member created it meanwhile: fine when it exists now.
      const now = new Set(await this.admin.listTopics());
      if (!missing.every((t) => now.has(t.topic))) throw e;
    }
    // Wait for leaders (kafkajs `waitForLeaders`), at most 30 s.
    const until = Date.now() + 30_000;
    for (;;) {
      const md = await this.admin.metadata({
        topics: missing.map((t) => t.topic),
        forceUpdate: true,
      })
        .catch(() => undefined);
      const ready = md && missing.every((t) => {
        const tm = md.topics.get(t.topic);
        return tm && tm.partitions.length >= t.partitions &&
          tm.partitions.every((p) => p.leader >= 0);
      });
      if (ready) return;
      if (Date.now() > until) throw new Error("Created topics have no leader after 30 s");
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  /**
   * What to throw for a failed call on `topic`: {@link UnknownTopicError}
   * when the topic is not listed (as the kafkajs adapter does), else `e`.
   */
  async #typed(topic: string, e: unknown): Promise<unknown> {
    if (e instanceof UnknownTopicError) return e;
    try {
      if (!(await this.admin.listTopics()).includes(topic)) {
        return new UnknownTopicError(topic, { cause: e });
      }
    } catch {
      // The broker is unreachable: the original error says more.
    }
    return e;
  }
  async partitions(topic: string): Promise<number[]> {
    const existing = await this.admin.listTopics();
    if (!existing.includes(topic)) throw new UnknownTopicError(topic);
    const md = await this.admin.metadata({ topics: [topic], forceUpdate: true });
    const tm = md.topics.get(topic);
    if (!tm) throw new UnknownTopicError(topic);
    return tm.partitions.map((_, i) => i);
  }
  async offsetsForTimes(topic: string, timestamp: number): Promise<PartitionOffset[]> {
    try {
      return await this.#offsetsForTimes(topic, timestamp);
    } catch (e) {
      throw await this.#typed(topic, e);
    }
  }
  async #offsetsForTimes(topic: string, timestamp: number): Promise<PartitionOffset[]> {
    const [at, high] = await Promise.all([
      this.#offsets.listOffsetsWithTimestamps({ topics: [topic], timestamp: BigInt(timestamp) }),
      this.highWatermarks(topic),
    ]);
    const byPartition = at.get(topic) ?? new Map();
    return high.map((h) => {
      const o = byPartition.get(h.partition)?.offset;
      return {
        partition: h.partition,
        offset: o === undefined || o < 0n ? h.offset : o.toString(),
      };
    });
  }
  async highWatermarks(topic: string): Promise<PartitionOffset[]> {
    let offs;
    try {
      offs = await this.#offsets.listOffsets({ topics: [topic], timestamp: -1n });
    } catch (e) {
      throw await this.#typed(topic, e);
    }
    const list = offs.get(topic);
    if (!list) throw await this.#typed(topic, new Error(`No offsets for topic ${topic}`));
    return list.map((o, partition) => ({ partition, offset: o.toString() }));
  }
  async committed(groupId: string, topic: string): Promise<PartitionOffset[]> {
    const partitions = await this.partitions(topic);
    const res = await this.admin.listConsumerGroupOffsets({
      groups: [{ groupId, topics: [{ name: topic, partitionIndexes: partitions }] }],
    });
    const t = res[0]?.topics.find((x) => x.name === topic);
    const got = new Map((t?.partitions ?? []).map((p) => [p.partitionIndex, p.committedOffset]));
    return partitions.map((p) => ({ partition: p, offset: (got.get(p) ?? -1n).toString() }));
  }
  async retentionMs(topic: string): Promise<number | null> {
    const res = await this.admin.describeConfigs({
      resources: [{
        resourceType: ConfigResourceTypes.TOPIC,
        resourceName: topic,
        configurationKeys: ["retention.ms"],
      }],
    });
    const v = res[0]?.configs.find((c) => c.name === "retention.ms")?.value;
    return v == null ? null : Number(v);
  }
  disconnect(): Promise<void> {
    // Shared by the LogClient and closed with it.
    return Promise.resolve();
  }
  async close(): Promise<void> {
    await Promise.allSettled([this.admin.close(), this.#offsets.close()]);
  }
}

/** Groups whose first consumer got the hanging-commit test hook. */
const hungGroups = new Set<string>();

interface PartState {
  tp: TopicPartition;
  /** Next offset to fetch; undefined until the committed offset is known. */
  next?: bigint;
  /** Leader epoch of the last fetched batch (sent with commits). */
  epoch: number;
}

/**
 * Fetch requests for `parts`, one list per leader node; partitions whose
 * topic or leader is unknown are left out.
 */
async function fetchPlan(
  c: Consumer,
  topics: string[],
  parts: { tp: TopicPartition; next: bigint }[],
  maxBytesPerPartition: number,
): Promise<Map<number, FetchRequestTopic[]>> {
  const md = await c.metadata({ topics });
  const plan = new Map<number, FetchRequestTopic[]>();
  for (const { tp, next } of parts) {
    const tm = md.topics.get(tp.topic);
    const pm = tm?.partitions[tp.partition];
    if (!tm || !pm || pm.leader < 0) continue;
    let reqs = plan.get(pm.leader);
    if (!reqs) plan.set(pm.leader, reqs = []);
    let t = reqs.find((r) => r.topicId === tm.id);
    if (!t) reqs.push(t = { topicId: tm.id, partitions: [] });
    t.partitions.push({
      partition: tp.partition,
      fetchOffset: next,
      partitionMaxBytes: maxBytesPerPartition,
      currentLeaderEpoch: -1,
      lastFetchedEpoch: -1,
    });
  }
  return plan;
}

/** Topic names by id, from the consumer's metadata cache. */
async function topicNames(c: Consumer, topics: string[]): Promise<Map<string, string>> {
  const md = await c.metadata({ topics });
  const names = new Map<string, string>();
  for (const [name, tm] of md.topics) names.set(tm.id, name);
  return names;
}

/** The first of `ids` found as a Kafka error name (`apiId`) in `e` or the errors it nests. */
function apiId(e: unknown, ids: string[], depth = 0): string | undefined {
  if (!e || typeof e !== "object" || depth > 8) return undefined;
  const id = (e as { apiId?: unknown }).apiId;
  if (typeof id === "string" && ids.includes(id)) return id;
  for (const inner of (e as { errors?: unknown[] }).errors ?? []) {
    const found = apiId(inner, ids, depth + 1);
    if (found) return found;
  }
  return apiId((e as { cause?: unknown }).cause, ids, depth + 1);
}

/** The per-partition error codes of a failed fetch, when the library attached the response. */
function partitionErrors(e: unknown): FetchResponse | undefined {
  const r = (e as { response?: FetchResponse })?.response;
  if (r && Array.isArray(r.responses)) return r;
  const errors = (e as { errors?: unknown[] })?.errors;
  if (Array.isArray(errors)) {
    for (const inner of errors) {
      const found = partitionErrors(inner);
      if (found) return found;
    }
  }
  return undefined;
}

/** A consumer group member on `@platformatic/kafka`, with its own per-partition fetch loop. */
class PlatformaticGroupConsumer implements LogConsumer {
  readonly #c: Consumer;
  readonly #groupId: string;
  readonly #maxBytesPerPartition: number;
  #topics: string[] = [];
  #handler?: BatchHandler;
  #generation = 0;
  #parts = new Map<string, PartState>();
  #paused = new Set<string>();
  #busy = new Set<string>();
  #deliveries = new Set<Promise<void>>();
  #running = false;
  #loop?: Promise<void>;
  #wake?: () => void;
  #rejoining = false;
  /** Test hook `SLUICE_TEST_HANG_COMMITS=<group id>` (as in the kafkajs adapter). */
  #hangCommits = false;

  constructor(clientId: string, groupId: string, opts: KafkaLogOptions) {
    this.#groupId = groupId;
    this.#maxBytesPerPartition = opts.maxBytesPerPartition ?? 1024 * 1024;
    const hang = Deno.env.get("SLUICE_TEST_HANG_COMMITS");
    if (hang && hang === groupId && !hungGroups.has(groupId)) {
      hungGroups.add(groupId);
      this.#hangCommits = true;
      log.warn("test hook: this consumer's commits will never be answered", { group: groupId });
    }
    const sessionTimeout = opts.sessionTimeoutMs ?? 30_000;
    this.#c = new Consumer({
      ...baseOptions(clientId, opts.brokers),
      groupId,
      autocommit: false,
      sessionTimeout,
      rebalanceTimeout: Math.max(60_000, sessionTimeout),
      heartbeatInterval: Math.min(3_000, Math.floor(sessionTimeout / 3)),
      maxWaitTime: FETCH_WAIT_MS,
      maxBytes: 50 * 1024 * 1024,
    });
  }

  async run(topics: string[], handler: BatchHandler): Promise<void> {
    this.#topics = topics;
    this.#handler = handler;
    this.#c.on("consumer:group:join", (p) => this.#onJoin(p.assignments ?? []));
    // The library emits `error` when a background rejoin failed: the member
    // is out of the group until it joins again.
    this.#c.on("error", (e: Error) => {
      log.warn("consumer group error; joining again", { group: this.#groupId, error: e.message });
      this.#lose();
      this.#scheduleRejoin();
    });
    for (const t of topics) this.#c.topics.track(t);
    await this.#c.joinGroup({});
    this.#running = true;
    this.#loop = this.#fetchLoop();
  }

  #lose(): void {
    this.#generation++;
    this.#parts = new Map();
  }

  #scheduleRejoin(): void {
    if (this.#rejoining || !this.#running) return;
    this.#rejoining = true;
    const t = setTimeout(() => {
      this.#rejoining = false;
      if (!this.#running) return;
      this.#c.joinGroup({}).catch((e) => {
        log.warn("joining the group failed; retrying", { group: this.#groupId, error: message(e) });
        this.#scheduleRejoin();
      });
    }, 1000);
    Deno.unrefTimer(t);
  }

  #onJoin(assignments: GroupAssignment[]): void {
    this.#generation++;
    const generation = this.#generation;
    const assignment: TopicPartition[] = [];
    for (const a of assignments) {
      for (const partition of a.partitions) assignment.push({ topic: a.topic, partition });
    }
    this.#parts = new Map(
      assignment.map((tp) => [`${tp.topic}:${tp.partition}`, { tp, epoch: -1 }]),
    );
    kafkaRebalancesTotal.inc();
    log.info("joined group", {
      group: this.#groupId,
      generation,
      partitions: assignment.map((tp) => `${tp.topic}:${tp.partition}`),
    });
    this.#handler?.onAssignment(assignment, generation);
    void this.#startOffsets(generation, assignments);
  }

  /** Committed offsets of a new assignment (the earliest where none), retried while it is current. */
  async #startOffsets(generation: number, assignments: GroupAssignment[]): Promise<void> {
    const wanted = assignments.filter((a) => a.partitions.length > 0);
    while (generation === this.#generation && wanted.length > 0) {
      try {
        const committed = await this.#c.listCommittedOffsets({ topics: wanted });
        const missing = new Map<string, number[]>();
        for (const a of wanted) {
          const offs = committed.get(a.topic) ?? [];
          for (const p of a.partitions) {
            const o = offs[p];
            if (o === undefined || o < 0n) {
              missing.set(a.topic, [...(missing.get(a.topic) ?? []), p]);
            }
          }
        }
        const earliest = missing.size > 0
          ? await this.#c.listOffsets({
            topics: [...missing.keys()],
            partitions: Object.fromEntries(missing),
            timestamp: -2n,
          })
          : new Map<string, bigint[]>();
        if (generation !== this.#generation) return;
        for (const a of wanted) {
          for (const p of a.partitions) {
            const st = this.#parts.get(`${a.topic}:${p}`);
            if (!st) continue;
            const c = committed.get(a.topic)?.[p];
            st.next = c !== undefined && c >= 0n ? c : earliest.get(a.topic)?.[p] ?? 0n;
          }
        }
        this.#wake?.();
        return;
      } catch (e) {
        log.warn("reading committed offsets failed; retrying", {
          group: this.#groupId,
          error: message(e),
        });
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  async #fetchLoop(): Promise<void> {
    while (this.#running) {
      const want: { tp: TopicPartition; next: bigint }[] = [];
      for (const [key, st] of this.#parts) {
        if (st.next === undefined || this.#paused.has(key) || this.#busy.has(key)) continue;
        want.push({ tp: st.tp, next: st.next });
      }
      if (want.length === 0) {
        await this.#sleep(500);
        continue;
      }
      const generation = this.#generation;
      try {
        const plan = await fetchPlan(this.#c, this.#topics, want, this.#maxBytesPerPartition);
        const names = await topicNames(this.#c, this.#topics);
        await Promise.all(
          [...plan].map(([node, topics]) =>
            this.#c.fetch({ node, topics, maxWaitTime: FETCH_WAIT_MS, minBytes: 1 }).then(
              (res) => this.#onFetched(generation, names, want, res),
              (e) => this.#onFetchError(generation, names, e),
            )
          ),
        );
      } catch (e) {
        if (!this.#running) break;
        log.warn("fetch failed; retrying", { group: this.#groupId, error: message(e) });
        await this.#sleep(1000);
      }
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(t);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  #onFetched(
    generation: number,
    names: Map<string, string>,
    want: { tp: TopicPartition; next: bigint }[],
    res: FetchResponse,
  ): void {
    if (generation !== this.#generation || !this.#running) return;
    const asked = new Map(want.map((w) => [`${w.tp.topic}:${w.tp.partition}`, w.next]));
    for (const t of res.responses) {
      const topic = names.get(t.topicId) ?? t.topicId;
      for (const p of t.partitions) {
        const key = `${topic}:${p.partitionIndex}`;
        const from = asked.get(key);
        const st = this.#parts.get(key);
        // Not asked in this round (a fetch session may repeat one), moved, paused or busy: drop it.
        if (from === undefined || !st || st.next !== from) continue;
        if (this.#paused.has(key) || this.#busy.has(key)) continue;
        if (p.errorCode === OFFSET_OUT_OF_RANGE) {
          st.next = p.logStartOffset >= 0n ? p.logStartOffset : 0n;
          log.warn("offset out of range; starting at the log start", {
            partition: key,
            offset: String(st.next),
          });
          continue;
        }
        if (p.errorCode !== 0) continue;
        const { records, end, epoch } = toRecords(topic, p.partitionIndex, p, from);
        if (epoch >= 0) st.epoch = epoch;
        if (records.length === 0) {
          // Only control records (or nothing): move past them.
          if (end !== null && end > from) st.next = end;
          continue;
        }
        this.#deliver(st, generation, records, p.highWatermark.toString());
      }
    }
  }

  async #onFetchError(generation: number, names: Map<string, string>, e: unknown): Promise<void> {
    const res = partitionErrors(e);
    if (res && generation === this.#generation) {
      for (const t of res.responses) {
        const topic = names.get(t.topicId) ?? t.topicId;
        for (const p of t.partitions) {
          const st = this.#parts.get(`${topic}:${p.partitionIndex}`);
          if (st && p.errorCode === OFFSET_OUT_OF_RANGE) {
            const offs = await this.#c.listOffsets({
              topics: [topic],
              partitions: { [topic]: [p.partitionIndex] },
              timestamp: -2n,
            }).catch(() => undefined);
            const start = offs?.get(topic)?.[p.partitionIndex];
            if (start !== undefined) {
              log.warn("offset out of range; starting at the log start", {
                partition: `${topic}:${p.partitionIndex}`,
                offset: String(start),
              });
              st.next = start;
            }
          }
        }
      }
      return;
    }
    if (!this.#running) return;
    log.warn("fetch failed; retrying", { group: this.#groupId, error: message(e) });
    await new Promise((r) => setTimeout(r, 500));
  }

  #deliver(
    st: PartState,
    generation: number,
    records: SourceRecord[],
    highWatermark: string,
  ): void {
    const { topic, partition } = st.tp;
    const key = `${topic}:${partition}`;
    const first = BigInt(records[0].offset);
    let resolved: bigint | undefined;
    const isStale = () => generation !== this.#generation || this.#parts.get(key) !== st;
    const resolve = (nextOffset: string) => {
      if (!isStale()) resolved = BigInt(nextOffset);
    };
    const batch: Batch = {
      topic,
      partition,
      records,
      highWatermark,
      generation,
      isStale,
      isRunning: () => this.#running && !isStale(),
      // The library heartbeats on its own timer.
      heartbeat: () => Promise.resolve(),
      resolve,
      commit: async (nextOffset) => {
        if (isStale()) return false;
        if (this.#hangCommits) return await new Promise<boolean>(() => {});
        resolve(nextOffset);
        try {
          await this.#c.commit({
            offsets: [{ topic, partition, offset: BigInt(nextOffset), leaderEpoch: st.epoch }],
          });
          return true;
        } catch (e) {
          if (isStale()) return false;
          throw e;
        }
      },
    };
    this.#busy.add(key);
    let run: Promise<void> | undefined = undefined;
    run = (async () => {
      try {
        await this.#handler!.eachBatch(batch);
      } catch (e) {
        log.error("batch handler failed; the batch is fetched again", {
          partition: key,
          error: message(e),
        });
      } finally {
        this.#busy.delete(key);
        if (!isStale()) st.next = resolved ?? first;
        if (run) this.#deliveries.delete(run);
        this.#wake?.();
      }
    })();
    this.#deliveries.add(run);
  }

  pause(tps: TopicPartition[]): void {
    for (const tp of tps) this.#paused.add(`${tp.topic}:${tp.partition}`);
  }

  resume(tps: TopicPartition[]): void {
    for (const tp of tps) this.#paused.delete(`${tp.topic}:${tp.partition}`);
    this.#wake?.();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#loop;
    await Promise.allSettled([...this.#deliveries]);
  }

  async disconnect(): Promise<void> {
    await this.stop();
    await this.close();
  }

  async close(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#c.close().catch((e) => log.warn("leaving the group failed", { error: message(e) }));
  }
}

/**
 * Reads `[from, to)` of one partition outside any group (no join, no
 * commit), with plain fetch requests.
 */
async function* readPlatformaticRange(
  clientId: string,
  brokers: string[],
  opts: KafkaLogOptions,
  tp: TopicPartition,
  range: { from: string; to: string; signal?: AbortSignal },
): AsyncIterable<SourceRecord[]> {
  let next = BigInt(range.from);
  const to = BigInt(range.to);
  if (next >= to) return;
  const c = new Consumer({
    ...baseOptions(clientId, brokers),
    groupId: `${clientId}-range-${crypto.randomUUID()}`,
    autocommit: false,
    maxWaitTime: 500,
  });
  try {
    c.topics.track(tp.topic);
    while (next < to && !range.signal?.aborted) {
      const plan = await fetchPlan(
        c,
        [tp.topic],
        [{ tp, next }],
        opts.maxBytesPerPartition ?? 512 * 1024,
      );
      const [entry] = plan;
      if (!entry) throw new Error(`No leader for ${tp.topic}:${tp.partition}`);
      const res = await c.fetch({ node: entry[0], topics: entry[1] });
      const p = res.responses[0]?.partitions.find((x) => x.partitionIndex === tp.partition);
      if (!p || !p.records?.length) {
        // No data: an incremental fetch session leaves the partition out of
        // the answer altogether; done when nothing is left before the end.
        const hw = p ? p.highWatermark : (await c.listOffsets({
          topics: [tp.topic],
          partitions: { [tp.topic]: [tp.partition] },
          timestamp: -1n,
        })).get(tp.topic)?.[tp.partition] ?? 0n;
        if (hw <= next) break;
        if (!p) continue;
      }
      if (p.errorCode !== 0) {
        throw new Error(`Fetch of ${tp.topic}:${tp.partition} failed (error code ${p.errorCode})`);
      }
      const { records, end } = toRecords(tp.topic, tp.partition, p, next);
      const inRange = records.filter((r) => BigInt(r.offset) < to);
      if (end !== null && end > next) next = end;
      else if (p.highWatermark <= next) break; // nothing more to read before `to`
      if (inRange.length > 0) yield inRange;
    }
  } finally {
    await c.close().catch(() => {});
  }
}
