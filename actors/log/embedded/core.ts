/**
 * The open embedded log: the directory lock, the topics and their
 * partitions, the consumer groups' committed offsets, the retention floor,
 * sends (partition choice) and the cache of parsed sealed segments.
 *
 * @module
 */
import { logger } from "../../runtime/logger.ts";
import type { SourceRecord } from "../../record/record.ts";
import type { OutgoingMessage, TopicPartition } from "../port.ts";
import { syncDir, writeAll } from "../../runtime/durable_fs.ts";
import { UnknownTopicError } from "../../runtime/errors.ts";
import { GroupOffsets } from "./offsets.ts";
import { PartitionLog, type Prepared } from "./partition.ts";
import { murmur2 } from "./partitioner.ts";
import { atomicWrite, parseSegment, readJson } from "./segment.ts";
import { checkTopicName, type Settings, TOPIC_NAME } from "./settings.ts";

const log = logger("embedded-log");
const encoder = new TextEncoder();

/** The error when another process holds the log directory. */
export class LogLockedError extends Error {
  override name = "LogLockedError";
}

export interface TopicState {
  partitions: PartitionLog[];
}

export class Core {
  readonly topics = new Map<string, TopicState>();
  readonly groups = new Map<string, GroupOffsets>();
  /** Groups with a running member in this process. */
  readonly members = new Set<string>();
  #creating = new Map<string, Promise<TopicState>>();
  /**
   * Sealed segments kept parsed, least recently used first. `forGroups`:
   * cached when sealed, or loaded, for consumer groups: dropped once every
   * group that committed on the topic is past its end. Loaded for a range
   * read: kept until evicted.
   */
  #segmentCache = new Map<string, { records: SourceRecord[]; forGroups: boolean }>();
  #roundRobin = new Map<string, number>();

  private constructor(readonly settings: Settings, private readonly lock: Deno.FsFile) {}

  static async open(settings: Settings): Promise<Core> {
    const dir = settings.dir;
    await Deno.mkdir(`${dir}/topics`, { recursive: true });
    await Deno.mkdir(`${dir}/groups`, { recursive: true });
    const lock = await Deno.open(`${dir}/LOCK`, { read: true, write: true, create: true });
    if (!(await lock.tryLock(true))) {
      lock.close();
      const pid = (await Deno.readTextFile(`${dir}/LOCK`).catch(() => "")).trim();
      throw new LogLockedError(
        `embedded log is in use by another process${pid ? ` (pid ${pid})` : ""}: ${dir}`,
      );
    }
    await lock.truncate(0);
    await writeAll(lock, encoder.encode(`${Deno.pid}\n`));
    const core = new Core(settings, lock);
    try {
      for await (const e of Deno.readDir(`${dir}/groups`)) {
        if (!e.isFile) continue;
        if (e.name.includes(".tmp-")) {
          await Deno.remove(`${dir}/groups/${e.name}`);
          continue;
        }
        if (!e.name.endsWith(".json")) continue;
        const groupId = decodeURIComponent(e.name.slice(0, -5));
        core.groups.set(groupId, await GroupOffsets.load(groupId, `${dir}/groups/${e.name}`));
      }
      for await (const e of Deno.readDir(`${dir}/topics`)) {
        if (e.isDirectory && TOPIC_NAME.test(e.name)) await core.#openTopic(e.name);
      }
    } catch (e) {
      await core.close();
      throw e;
    }
    log.info("embedded log open", { dir, topics: [...core.topics.keys()] });
    return core;
  }

  async #openTopic(topic: string, create?: number): Promise<TopicState | undefined> {
    const dir = `${this.settings.dir}/topics/${topic}`;
    let meta = await readJson(`${dir}/topic.json`) as { partitions?: number } | undefined;
    if (!meta?.partitions) {
      if (create === undefined) return undefined;
      await Deno.mkdir(dir, { recursive: true });
      meta = { partitions: create };
      await atomicWrite(`${dir}/topic.json`, JSON.stringify(meta) + "\n");
      await syncDir(`${this.settings.dir}/topics`);
      log.info("topic created", { topic, partitions: create });
    }
    const partitions: PartitionLog[] = [];
    const count = meta.partitions ?? 0;
    for (let p = 0; p < count; p++) {
      partitions.push(await PartitionLog.open(`${dir}/${p}`, { topic, partition: p }, this));
    }
    const state = { partitions };
    this.topics.set(topic, state);
    return state;
  }

  /** The topic, created with `partitions` (default: the log's) when missing. */
  ensureTopic(topic: string, partitions = this.settings.partitions): Promise<TopicState> {
    const existing = this.topics.get(topic);
    if (existing) return Promise.resolve(existing);
    checkTopicName(topic);
    let p = this.#creating.get(topic);
    if (!p) {
      p = this.#openTopic(topic, partitions).then((s) => s!).finally(() =>
        this.#creating.delete(topic)
      );
      this.#creating.set(topic, p);
    }
    return p;
  }

  /** The topic; throws {@link UnknownTopicError} when missing. */
  topic(topic: string): TopicState {
    const t = this.topics.get(topic);
    if (!t) throw new UnknownTopicError(topic);
    return t;
  }

  partition(tp: TopicPartition): PartitionLog {
    const p = this.topic(tp.topic).partitions[tp.partition];
    if (!p) {
      throw new RangeError(`unknown partition: ${tp.topic}:${tp.partition}`);
    }
    return p;
  }

  group(groupId: string): GroupOffsets {
    let g = this.groups.get(groupId);
    if (!g) {
      g = new GroupOffsets(
        groupId,
        `${this.settings.dir}/groups/${encodeURIComponent(groupId)}.json`,
      );
      this.groups.set(groupId, g);
    }
    return g;
  }

  /**
   * Lowest committed offset of `tp` over the groups that committed on its
   * topic (a group without an offset for this partition counts as 0), or
   * null when no group has.
   */
  retentionFloor(tp: TopicPartition): number | null {
    let floor: number | null = null;
    for (const g of this.groups.values()) {
      const parts = g.offsets.get(tp.topic);
      if (!parts) continue;
      const o = parts.get(tp.partition) ?? 0;
      floor = floor === null ? o : Math.min(floor, o);
    }
    return floor;
  }

  async send(topic: string, messages: OutgoingMessage[]): Promise<void> {
    const t = await this.ensureTopic(topic);
    const n = t.partitions.length;
    const byPartition = new Map<number, Prepared[]>();
    const now = Date.now();
    for (const m of messages) {
      const key = toBytes(m.key);
      let p: number;
      if (m.partition !== undefined && m.partition !== null) {
        if (!Number.isInteger(m.partition) || m.partition < 0 || m.partition >= n) {
          throw new RangeError(
            `partition out of range: ${m.partition} (topic ${topic} has ${n} partitions)`,
          );
        }
        p = m.partition;
      } else if (key !== null) {
        p = (murmur2(key) & 0x7fffffff) % n;
      } else {
        const rr = this.#roundRobin.get(topic) ?? 0;
        this.#roundRobin.set(topic, rr + 1);
        p = rr % n;
      }
      let timestamp = now;
      if (m.timestamp !== undefined) {
        timestamp = Number(m.timestamp);
        if (!Number.isFinite(timestamp)) {
          throw new RangeError(`invalid timestamp: ${JSON.stringify(m.timestamp)}`);
        }
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(m.headers ?? {})) {
        if (v !== undefined && v !== null) headers[k] = String(v);
      }
      let list = byPartition.get(p);
      if (!list) byPartition.set(p, list = []);
      list.push({ key, value: toBytes(m.value), headers, timestamp });
    }
    await Promise.all([...byPartition].map(([p, list]) => t.partitions[p].append(list)));
  }

  /** Commits an offset of a group, then applies retention to that partition. */
  async commit(groupId: string, tp: TopicPartition, offset: number): Promise<void> {
    const part = this.partition(tp);
    if (offset > part.highWatermark) {
      throw new RangeError(
        `offset past the end of ${tp.topic}:${tp.partition}: ${offset} > ${part.highWatermark}`,
      );
    }
    await this.group(groupId).commit(tp.topic, tp.partition, offset);
    this.#dropConsumed(tp);
    await part.applyRetention();
  }

  cacheSegment(path: string, records: SourceRecord[], forGroups: boolean): void {
    this.#segmentCache.delete(path);
    this.#segmentCache.set(path, { records, forGroups });
    while (this.#segmentCache.size > this.settings.cachedSegments) {
      this.#segmentCache.delete(this.#segmentCache.keys().next().value!);
    }
  }

  /** Drops the segments of `tp` cached for groups that every group is past. */
  #dropConsumed(tp: TopicPartition): void {
    const floor = this.retentionFloor(tp);
    if (floor === null) return;
    for (const [path, entry] of this.#segmentCache) {
      const last = entry.records[entry.records.length - 1];
      if (
        entry.forGroups && last !== undefined && last.topic === tp.topic &&
        last.partition === tp.partition && Number(last.offset) < floor
      ) this.#segmentCache.delete(path);
    }
  }

  uncacheSegment(path: string): void {
    this.#segmentCache.delete(path);
  }

  /** Records of a sealed segment (least recently used cache), read for groups or for a range read. */
  async loadSegment(
    path: string,
    base: number,
    tp: TopicPartition,
    forGroups: boolean,
  ): Promise<SourceRecord[]> {
    const cached = this.#segmentCache.get(path);
    if (cached) {
      this.cacheSegment(path, cached.records, cached.forGroups && forGroups);
      return cached.records;
    }
    const parsed = parseSegment(await Deno.readTextFile(path), base, tp);
    this.cacheSegment(path, parsed.records, forGroups);
    return parsed.records;
  }

  async close(): Promise<void> {
    for (const t of this.topics.values()) {
      for (const p of t.partitions) await p.close();
    }
    for (const g of this.groups.values()) await g.flushed();
    this.#segmentCache.clear();
    try {
      await this.lock.unlock();
    } finally {
      this.lock.close();
    }
  }
}

function toBytes(v: Uint8Array | string | null | undefined): Uint8Array | null {
  if (v === null || v === undefined) return null;
  if (typeof v === "string") return encoder.encode(v);
  return new Uint8Array(v); // a copy: the caller may reuse its buffer
}
