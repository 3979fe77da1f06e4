/**
 * The embedded log of local mode (README, Quick start): an in-process,
 * partitioned, persistent log behind the same {@link LogClient} interface as
 * real Kafka (`actors/log/kafka.ts`), so partition actors, replay and
 * shutdown run unchanged on either.
 *
 * ```
 * <dir>/LOCK                                   one process at a time (flock)
 * <dir>/topics/<topic>/topic.json              {"partitions": 3}
 * <dir>/topics/<topic>/<p>/<base 20 digits>.jsonl       segment: one record per line
 * <dir>/topics/<topic>/<p>/<base 20 digits>.index.json  count and max timestamp of a sealed segment
 * <dir>/groups/<url-encoded group id>.json     committed offsets of one group
 * ```
 *
 * Durability
 *  - {@link LogProducer.send} resolves once every message is written and
 *    fsync'd. Sends arriving while a partition writes are committed together
 *    by its next write (group commit: one `write` and one `fdatasync`).
 *    Offsets are assigned at write time, and a record becomes visible to
 *    consumers (below the high watermark) only once it is on disk, so a
 *    committed offset never points past data that a crash could lose.
 *  - Committed offsets are written to a temporary file, fsync'd and renamed
 *    over the group's file (then the directory is fsync'd): a crash leaves
 *    the old or the new positions, never a torn file.
 *  - At open, a torn last line of a partition's last segment (crash in the
 *    middle of a write) is cut off; the lines before it are kept.
 *  - Retention: a partition keeps at least `retentionRecords` records. Older
 *    sealed segments are deleted, but only below the committed offset of
 *    every group that has committed on the topic (for a topic no group has
 *    committed on, the count alone applies).
 *
 * Consumption follows kafkajs `eachBatch` with manual resolution: the one
 * member of a group gets every partition of its topics (`onAssignment` once,
 * generation 1); each partition has one batch in flight at a time (up to
 * `maxBatchRecords`), partitions are fetched concurrently; the next batch of
 * a partition starts at the offset last passed to `resolve` (or the committed
 * offset, or the log start for a new group). New records wake waiting
 * fetchers. Topics are created on first use by a consumer or a producer
 * (like Kafka's `auto.create.topics.enable`), with `partitions` partitions.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { logger } from "../../runtime/logger.ts";
import type { SourceRecord } from "../../record/record.ts";
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
} from "../port.ts";
import { syncDir, writeAll } from "../../runtime/durable_fs.ts";
import { UnknownTopicError } from "../../runtime/errors.ts";

const log = logger("embedded-log");
const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Options of {@link createEmbeddedLog}. */
export interface EmbeddedLogOptions {
  /** Directory of the log (created when missing), e.g. `${dataDir}/log`. */
  dir: string;
  /** Partitions of a topic created by this log; default 3. Existing topics keep theirs. */
  partitions?: number;
  /** Records a partition keeps at least (see the module doc); default 1 000 000. */
  retentionRecords?: number;
  /** Records per segment file before a new one is started; default 10 000. */
  segmentRecords?: number;
  /** Largest batch handed to `eachBatch`; default 500. */
  maxBatchRecords?: number;
  /** A group with no committed offset starts at the log start (true) or at the end; default true. */
  fromBeginning?: boolean;
  /** Sealed segments kept parsed in memory for readers that lag behind; default 8. */
  cachedSegments?: number;
}

/** The error for a topic the log does not have (the port's typed error, `actors/runtime/errors.ts`). */
export { UnknownTopicError };

/** The error when another process holds the log directory. */
export class LogLockedError extends Error {
  override name = "LogLockedError";
}

/** Directory of the embedded log under sluice's data directory: `${dataDir}/log`. */
export function embeddedLogDir(dataDir: string): string {
  return `${dataDir.replace(/\/+$/, "")}/log`;
}

/**
 * Creates the embedded log. Nothing is opened until first use; the first
 * call that needs the directory locks it (an exclusive `flock` on
 * `<dir>/LOCK`) and fails with {@link LogLockedError} when another process
 * has it.
 */
export function createEmbeddedLog(opts: EmbeddedLogOptions): LogClient {
  const settings: Settings = {
    dir: opts.dir.replace(/\/+$/, "") || ".",
    partitions: positiveInt(opts.partitions ?? 3, "partitions"),
    retentionRecords: positiveInt(opts.retentionRecords ?? 1_000_000, "retentionRecords"),
    segmentRecords: positiveInt(opts.segmentRecords ?? 10_000, "segmentRecords"),
    maxBatchRecords: positiveInt(opts.maxBatchRecords ?? 500, "maxBatchRecords"),
    fromBeginning: opts.fromBeginning ?? true,
    cachedSegments: positiveInt(opts.cachedSegments ?? 8, "cachedSegments"),
  };
  let core: Promise<Core> | undefined;
  let closed = false;
  const open = (): Promise<Core> => {
    if (closed) return Promise.reject(new Error(`embedded log is closed: ${settings.dir}`));
    core ??= Core.open(settings).catch((e) => {
      core = undefined;
      throw e;
    });
    return core;
  };
  const consumers = new Set<EmbeddedConsumer>();

  const readRange: RangeReader = (tp, range) => readEmbeddedRange(open, tp, range);

  return {
    kind: "embedded",
    description: `embedded log at ${settings.dir}`,
    consumer(groupId) {
      const c = new EmbeddedConsumer(open, groupId, settings, () => consumers.delete(c));
      consumers.add(c);
      return c;
    },
    async producer() {
      const c = await open();
      let disconnected = false;
      return {
        async send(topic, messages) {
          if (disconnected) throw new Error("producer is disconnected");
          await c.send(topic, messages);
        },
        disconnect() {
          disconnected = true;
          return Promise.resolve();
        },
      } satisfies LogProducer;
    },
    async admin() {
      const c = await open();
      return new EmbeddedAdmin(c);
    },
    readRange,
    async ping() {
      if (closed) return false;
      try {
        await open();
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      if (closed) return;
      for (const c of [...consumers]) await c.disconnect();
      closed = true;
      const c = await core?.catch(() => undefined);
      await c?.close();
    },
  };
}

interface Settings {
  dir: string;
  partitions: number;
  retentionRecords: number;
  segmentRecords: number;
  maxBatchRecords: number;
  fromBeginning: boolean;
  cachedSegments: number;
}

function positiveInt(n: number, name: string): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name}: expected a positive integer`);
  return n;
}

const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;

function checkTopicName(topic: string): void {
  if (!TOPIC_NAME.test(topic) || topic === "." || topic === "..") {
    throw new Error(
      `invalid topic name: ${JSON.stringify(topic)} (letters, digits, '.', '_', '-')`,
    );
  }
}

/** Parses an offset given as a decimal string. */
function parseOffset(offset: string, what: string): number {
  if (typeof offset !== "string" || !/^\d{1,16}$/.test(offset)) {
    throw new RangeError(`invalid ${what}: ${JSON.stringify(offset)}`);
  }
  return Number(offset);
}

// ---------------------------------------------------------------------------
// Files

/** Writes `text` to `path` atomically: temporary file, fsync, rename, fsync of the directory. */
async function atomicWrite(path: string, text: string): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf("/")) || ".";
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, encoder.encode(text));
    await file.sync();
  } finally {
    file.close();
  }
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dir);
}

async function readJson(path: string): Promise<unknown | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Record encoding: one JSON object per line. Keys and values are stored as
// text when they are valid UTF-8 (`k`, `v`), else as base64 (`kb`, `vb`).

interface Line {
  o: number;
  t: number;
  k?: string | null;
  kb?: string;
  v?: string | null;
  vb?: string;
  h: Record<string, string>;
}

function encodeBytes(line: Line, field: "k" | "v", bytes: Uint8Array | null): void {
  if (bytes === null) {
    line[field] = null;
    return;
  }
  try {
    line[field] = strictUtf8.decode(bytes);
  } catch {
    line[`${field}b`] = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(
      "base64",
    );
  }
}

function decodeBytes(line: Line, field: "k" | "v"): Uint8Array | null {
  const b64 = line[`${field}b`];
  if (typeof b64 === "string") return new Uint8Array(Buffer.from(b64, "base64"));
  const text = line[field];
  return typeof text === "string" ? encoder.encode(text) : null;
}

function toRecord(topic: string, partition: number, line: Line): SourceRecord {
  return {
    topic,
    partition,
    offset: String(line.o),
    key: decodeBytes(line, "k"),
    value: decodeBytes(line, "v"),
    headers: line.h ?? {},
    timestamp: String(line.t),
  };
}

/**
 * Parses a segment's text: the records with contiguous offsets from `base`,
 * and the byte length of the valid prefix (a torn or invalid line ends it).
 */
function parseSegment(
  text: string,
  base: number,
  tp: TopicPartition,
): { records: SourceRecord[]; validBytes: number; maxTs: number; problem?: string } {
  const records: SourceRecord[] = [];
  let pos = 0, validBytes = 0, maxTs = -Infinity;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    if (nl < 0) return { records, validBytes, maxTs, problem: "torn last line" };
    const raw = text.slice(pos, nl);
    let line: Line;
    try {
      line = JSON.parse(raw);
    } catch {
      return {
        records,
        validBytes,
        maxTs,
        problem: `invalid line at offset ${base + records.length}`,
      };
    }
    if (line?.o !== base + records.length || typeof line.t !== "number") {
      return {
        records,
        validBytes,
        maxTs,
        problem: `unexpected line at offset ${base + records.length}`,
      };
    }
    records.push(toRecord(tp.topic, tp.partition, line));
    if (line.t > maxTs) maxTs = line.t;
    validBytes += encoder.encode(raw).length + 1;
    pos = nl + 1;
  }
  return { records, validBytes, maxTs };
}

// ---------------------------------------------------------------------------
// One partition

interface SegmentMeta {
  base: number;
  count: number;
  /** Largest record timestamp (ms); -Infinity when empty. */
  maxTs: number;
  bytes: number;
}

/** A message ready to append (bytes copied, partition chosen). */
interface Prepared {
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Record<string, string>;
  timestamp: number;
}

interface PendingAppend {
  messages: Prepared[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

const segmentName = (base: number) => String(base).padStart(20, "0");

class PartitionLog {
  readonly tp: TopicPartition;
  /** Sealed segments, oldest first, then the active one (always present). */
  readonly segments: SegmentMeta[];
  #activeFile: Deno.FsFile;
  /** Records of the active segment (the tail of the partition). */
  #activeRecords: SourceRecord[];
  #pending: PendingAppend[] = [];
  #flushing: Promise<void> | null = null;
  #waiters = new Set<() => void>();
  #closed = false;

  private constructor(
    readonly dir: string,
    tp: TopicPartition,
    segments: SegmentMeta[],
    activeFile: Deno.FsFile,
    activeRecords: SourceRecord[],
    private readonly core: Core,
  ) {
    this.tp = tp;
    this.segments = segments;
    this.#activeFile = activeFile;
    this.#activeRecords = activeRecords;
  }

  /** Opens (or creates) a partition directory and recovers its segments. */
  static async open(dir: string, tp: TopicPartition, core: Core): Promise<PartitionLog> {
    await Deno.mkdir(dir, { recursive: true });
    const bases: number[] = [];
    for await (const e of Deno.readDir(dir)) {
      const m = /^(\d{20})\.jsonl$/.exec(e.name);
      if (e.isFile && m) bases.push(Number(m[1]));
      else if (e.isFile && e.name.includes(".tmp-")) await Deno.remove(`${dir}/${e.name}`);
    }
    bases.sort((a, b) => a - b);
    const segments: SegmentMeta[] = [];
    for (const base of bases.slice(0, -1)) {
      const path = `${dir}/${segmentName(base)}`;
      const idx = await readJson(`${path}.index.json`).catch(() => undefined) as
        | Partial<SegmentMeta>
        | undefined;
      if (
        idx && idx.base === base && typeof idx.count === "number" &&
        typeof idx.bytes === "number"
      ) {
        segments.push({ base, count: idx.count, maxTs: idx.maxTs ?? -Infinity, bytes: idx.bytes });
        continue;
      }
      const parsed = parseSegment(await Deno.readTextFile(`${path}.jsonl`), base, tp);
      if (parsed.problem) {
        log.warn("sealed segment ends early", {
          segment: `${path}.jsonl`,
          problem: parsed.problem,
        });
      }
      const meta = {
        base,
        count: parsed.records.length,
        maxTs: parsed.maxTs,
        bytes: parsed.validBytes,
      };
      segments.push(meta);
      await atomicWrite(`${path}.index.json`, JSON.stringify(meta));
    }
    for (let i = 1; i < segments.length; i++) {
      const prev = segments[i - 1];
      if (prev.base + prev.count !== segments[i].base) {
        log.error("gap between segments", {
          partition: `${tp.topic}:${tp.partition}`,
          from: prev.base + prev.count,
          to: segments[i].base,
        });
      }
    }
    // The active segment: parse it, cut a torn tail, keep its records in memory.
    const lastBase = bases.length > 0 ? bases[bases.length - 1] : 0;
    const activePath = `${dir}/${segmentName(lastBase)}.jsonl`;
    let records: SourceRecord[] = [];
    let meta: SegmentMeta = { base: lastBase, count: 0, maxTs: -Infinity, bytes: 0 };
    if (bases.length > 0) {
      const text = await Deno.readTextFile(activePath);
      const parsed = parseSegment(text, lastBase, tp);
      records = parsed.records;
      meta = {
        base: lastBase,
        count: records.length,
        maxTs: parsed.maxTs,
        bytes: parsed.validBytes,
      };
      if (parsed.problem) {
        log.warn("cutting the end of a segment after a crash", {
          segment: activePath,
          problem: parsed.problem,
          keptRecords: records.length,
        });
        await Deno.truncate(activePath, parsed.validBytes);
      }
    }
    const file = await Deno.open(activePath, { create: true, append: true });
    if (bases.length === 0) await syncDir(dir);
    segments.push(meta);
    return new PartitionLog(dir, tp, segments, file, records, core);
  }

  get active(): SegmentMeta {
    return this.segments[this.segments.length - 1];
  }

  /** First offset still in the log. */
  get logStart(): number {
    return this.segments[0].base;
  }

  /** Offset of the next record to be written; records below it are durable. */
  get highWatermark(): number {
    return this.active.base + this.active.count;
  }

  /** Appends messages; resolves once they are on disk. */
  append(messages: Prepared[]): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("embedded log is closed"));
    if (messages.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ messages, resolve, reject });
      this.#flushing ??= this.#flush().finally(() => (this.#flushing = null));
    });
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0);
      let i = 0;
      try {
        while (i < batch.length) {
          if (this.active.count >= this.core.settings.segmentRecords) await this.#roll();
          // Appends going into the current segment: one write, one fdatasync.
          const group: PendingAppend[] = [];
          const lines: string[] = [];
          const records: SourceRecord[] = [];
          let next = this.highWatermark, maxTs = this.active.maxTs;
          let room = this.core.settings.segmentRecords - this.active.count;
          while (i < batch.length && (group.length === 0 || room >= batch[i].messages.length)) {
            for (const m of batch[i].messages) {
              const line: Line = { o: next++, t: m.timestamp, h: m.headers };
              encodeBytes(line, "k", m.key);
              encodeBytes(line, "v", m.value);
              lines.push(JSON.stringify(line) + "\n");
              records.push({
                ...this.tp,
                offset: String(line.o),
                key: m.key,
                value: m.value,
                headers: m.headers,
                timestamp: String(m.timestamp),
              });
              if (m.timestamp > maxTs) maxTs = m.timestamp;
            }
            room -= batch[i].messages.length;
            group.push(batch[i++]);
          }
          const data = encoder.encode(lines.join(""));
          try {
            await writeAll(this.#activeFile, data);
            await this.#activeFile.syncData();
          } catch (e) {
            // Cut what may have been written, so the next append starts on a clean line.
            await this.#activeFile.truncate(this.active.bytes).catch(() => {});
            i -= group.length;
            throw e;
          }
          const active = this.active;
          active.count += records.length;
          active.bytes += data.length;
          active.maxTs = maxTs;
          for (const r of records) this.#activeRecords.push(r);
          for (const p of group) p.resolve();
          this.#notify();
        }
      } catch (e) {
        log.error("append failed", {
          partition: `${this.tp.topic}:${this.tp.partition}`,
          error: e,
        });
        for (const p of batch.slice(i)) p.reject(e);
      }
    }
  }

  /** Seals the active segment and starts the next one. */
  async #roll(): Promise<void> {
    // Nothing changes in memory until the new file exists: a failure here
    // leaves the active segment as it was, and the next append tries again.
    const sealed = this.active;
    const path = `${this.dir}/${segmentName(sealed.base)}`;
    await atomicWrite(`${path}.index.json`, JSON.stringify(sealed));
    const base = sealed.base + sealed.count;
    const next = await Deno.open(`${this.dir}/${segmentName(base)}.jsonl`, {
      create: true,
      append: true,
    });
    await syncDir(this.dir);
    this.#activeFile.close();
    this.#activeFile = next;
    this.core.cacheSegment(`${path}.jsonl`, this.#activeRecords);
    this.#activeRecords = [];
    this.segments.push({ base, count: 0, maxTs: -Infinity, bytes: 0 });
    await this.applyRetention().catch((e) => log.warn("retention failed", { error: e }));
  }

  /** Deletes the oldest sealed segments allowed by the retention rule (module doc). */
  async applyRetention(): Promise<void> {
    const floor = this.core.retentionFloor(this.tp);
    while (this.segments.length > 1) {
      const oldest = this.segments[0];
      const end = oldest.base + oldest.count;
      if (this.highWatermark - end < this.core.settings.retentionRecords) return;
      if (floor !== null && end > floor) return;
      const path = `${this.dir}/${segmentName(oldest.base)}`;
      this.segments.shift();
      this.core.uncacheSegment(`${path}.jsonl`);
      await Deno.remove(`${path}.jsonl`).catch(() => {});
      await Deno.remove(`${path}.index.json`).catch(() => {});
      log.debug("segment deleted by retention", {
        segment: `${path}.jsonl`,
        records: oldest.count,
      });
    }
  }

  /** Records from `from` (raised to the log start), at most `max`, within one segment. */
  async read(from: number, max: number): Promise<SourceRecord[]> {
    const start = Math.max(from, this.logStart);
    if (start >= this.highWatermark) return [];
    const i = this.#segmentIndex(start);
    const seg = this.segments[i];
    const records = i === this.segments.length - 1
      ? this.#activeRecords
      : await this.core.loadSegment(
        `${this.dir}/${segmentName(seg.base)}.jsonl`,
        seg.base,
        this.tp,
      );
    const at = start - seg.base;
    return records.slice(at, at + max);
  }

  /** Index of the segment holding `offset` (which is within the log). */
  #segmentIndex(offset: number): number {
    let lo = 0, hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid].base <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Earliest offset with a timestamp ≥ `ts`, else the high watermark. */
  async offsetForTime(ts: number): Promise<number> {
    for (let i = 0; i < this.segments.length; i++) {
      const seg = this.segments[i];
      if (seg.count === 0 || seg.maxTs < ts) continue;
      const records = i === this.segments.length - 1
        ? this.#activeRecords
        : await this.core.loadSegment(
          `${this.dir}/${segmentName(seg.base)}.jsonl`,
          seg.base,
          this.tp,
        );
      const r = records.find((r) => Number(r.timestamp) >= ts);
      if (r) return Number(r.offset);
    }
    return this.highWatermark;
  }

  /**
   * Resolves when a record at `offset` or later is readable, after
   * `timeoutMs`, or when `wake` is called (whichever first).
   */
  waitForData(offset: number, timeoutMs: number, wakers: Set<() => void>): Promise<void> {
    if (this.highWatermark > offset || this.#closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#waiters.add(done);
      wakers.add(done);
    });
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Waits for pending appends, then closes the active file. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#flushing) await this.#flushing;
    this.#notify();
    this.#activeFile.close();
  }
}

// ---------------------------------------------------------------------------
// Committed offsets of one group

class GroupOffsets {
  /** topic → partition → next offset to read. */
  readonly offsets = new Map<string, Map<number, number>>();
  #version = 0;
  #written = 0;
  #writing: Promise<void> | null = null;
  #waiters: { version: number; resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(readonly groupId: string, readonly path: string) {}

  static async load(groupId: string, path: string): Promise<GroupOffsets> {
    const g = new GroupOffsets(groupId, path);
    const data = await readJson(path) as
      | { offsets?: Record<string, Record<string, string>> }
      | undefined;
    for (const [topic, parts] of Object.entries(data?.offsets ?? {})) {
      const m = new Map<number, number>();
      for (const [p, o] of Object.entries(parts)) m.set(Number(p), Number(o));
      g.offsets.set(topic, m);
    }
    return g;
  }

  get(topic: string, partition: number): number | undefined {
    return this.offsets.get(topic)?.get(partition);
  }

  /** Sets a committed offset; resolves once a write including it is durable. */
  commit(topic: string, partition: number, offset: number): Promise<void> {
    let m = this.offsets.get(topic);
    if (!m) this.offsets.set(topic, m = new Map());
    m.set(partition, offset);
    const version = ++this.#version;
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ version, resolve, reject });
      this.#writing ??= this.#writeLoop().finally(() => (this.#writing = null));
    });
  }

  async #writeLoop(): Promise<void> {
    while (this.#written < this.#version) {
      const target = this.#version;
      const snapshot: Record<string, Record<string, string>> = {};
      for (const [topic, parts] of this.offsets) {
        snapshot[topic] = Object.fromEntries([...parts].map(([p, o]) => [String(p), String(o)]));
      }
      const body = JSON.stringify({ group: this.groupId, offsets: snapshot }, null, 1) + "\n";
      const done = this.#waiters.filter((w) => w.version <= target);
      this.#waiters = this.#waiters.filter((w) => w.version > target);
      try {
        await atomicWrite(this.path, body);
        this.#written = target;
        for (const w of done) w.resolve();
      } catch (e) {
        log.error("offset commit failed", { group: this.groupId, error: e });
        // Retried by the next commit, which writes every offset again.
        this.#written = target;
        for (const w of done) w.reject(e);
      }
    }
  }

  async flushed(): Promise<void> {
    while (this.#writing) await this.#writing;
  }
}

// ---------------------------------------------------------------------------
// The open log

interface TopicState {
  partitions: PartitionLog[];
}

class Core {
  readonly topics = new Map<string, TopicState>();
  readonly groups = new Map<string, GroupOffsets>();
  /** Groups with a running member in this process. */
  readonly members = new Set<string>();
  #creating = new Map<string, Promise<TopicState>>();
  #segmentCache = new Map<string, SourceRecord[]>();
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
    await part.applyRetention();
  }

  cacheSegment(path: string, records: SourceRecord[]): void {
    this.#segmentCache.delete(path);
    this.#segmentCache.set(path, records);
    while (this.#segmentCache.size > this.settings.cachedSegments) {
      this.#segmentCache.delete(this.#segmentCache.keys().next().value!);
    }
  }

  uncacheSegment(path: string): void {
    this.#segmentCache.delete(path);
  }

  /** Records of a sealed segment (least recently used cache). */
  async loadSegment(path: string, base: number, tp: TopicPartition): Promise<SourceRecord[]> {
    const cached = this.#segmentCache.get(path);
    if (cached) {
      this.cacheSegment(path, cached);
      return cached;
    }
    const parsed = parseSegment(await Deno.readTextFile(path), base, tp);
    this.cacheSegment(path, parsed.records);
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

/**
 * Kafka's murmur2 hash (the Java client's `Utils.murmur2`, kafkajs' default
 * partitioner), so a key lands on the same partition as with real Kafka.
 */
export function murmur2(data: Uint8Array): number {
  const m = 0x5bd1e995;
  const len = data.length;
  let h = 0x9747b28c ^ len;
  const whole = len & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const rest = len & 3;
  if (rest === 3) h ^= data[whole + 2] << 16;
  if (rest >= 2) h ^= data[whole + 1] << 8;
  if (rest >= 1) h = Math.imul(h ^ data[whole], m);
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

// ---------------------------------------------------------------------------
// Consumer

class EmbeddedConsumer implements LogConsumer {
  #core: Core | null = null;
  #running = false;
  #generation = 0;
  #disconnected = false;
  #loops: Promise<void>[] = [];
  #paused = new Set<string>();
  #wakers = new Set<() => void>();

  constructor(
    private readonly open: () => Promise<Core>,
    readonly groupId: string,
    private readonly settings: Settings,
    private readonly onDisconnect: () => void,
  ) {}

  async run(topics: string[], handler: BatchHandler): Promise<void> {
    if (this.#disconnected) throw new Error("consumer is disconnected");
    if (this.#running || this.#loops.length > 0) throw new Error("consumer is already running");
    if (topics.length === 0) throw new Error("no topics to consume");
    const core = this.#core = await this.open();
    if (core.members.has(this.groupId)) {
      throw new Error(`group already has a member in this process: ${this.groupId}`);
    }
    core.members.add(this.groupId);
    try {
      const assignment: { tp: TopicPartition; part: PartitionLog }[] = [];
      for (const topic of [...new Set(topics)]) {
        const t = await core.ensureTopic(topic);
        t.partitions.forEach((part, partition) =>
          assignment.push({ tp: { topic, partition }, part })
        );
      }
      const generation = ++this.#generation;
      this.#running = true;
      handler.onAssignment(assignment.map((a) => a.tp), generation);
      const group = core.group(this.groupId);
      for (const { tp, part } of assignment) {
        const committed = group.get(tp.topic, tp.partition);
        let start = committed ?? (this.settings.fromBeginning ? part.logStart : part.highWatermark);
        if (start > part.highWatermark) {
          log.warn("committed offset past the end of the log; starting at the end", {
            group: this.groupId,
            partition: `${tp.topic}:${tp.partition}`,
            committed: start,
            highWatermark: part.highWatermark,
          });
          start = part.highWatermark;
        }
        this.#loops.push(this.#fetchLoop(core, tp, part, start, generation, handler));
      }
      log.info("consumer running", {
        group: this.groupId,
        generation,
        partitions: assignment.map((a) => `${a.tp.topic}:${a.tp.partition}`),
      });
    } catch (e) {
      this.#running = false;
      core.members.delete(this.groupId);
      throw e;
    }
  }

  async #fetchLoop(
    core: Core,
    tp: TopicPartition,
    part: PartitionLog,
    start: number,
    generation: number,
    handler: BatchHandler,
  ): Promise<void> {
    const key = `${tp.topic}:${tp.partition}`;
    let position = start;
    let failures = 0;
    const isRunning = () => this.#running && generation === this.#generation;
    while (isRunning()) {
      if (this.#paused.has(key)) {
        await this.#sleep(60_000);
        continue;
      }
      let records: SourceRecord[];
      try {
        records = await part.read(position, this.settings.maxBatchRecords);
      } catch (e) {
        log.error("fetch failed", { partition: key, error: e });
        await this.#sleep(1000);
        continue;
      }
      if (records.length === 0) {
        if (position < part.logStart) position = part.logStart;
        await part.waitForData(position, 1000, this.#wakers);
        continue;
      }
      const first = Number(records[0].offset);
      if (first > position) {
        log.warn("records below the log start were deleted by retention; skipping to it", {
          partition: key,
          from: position,
          to: first,
        });
      }
      let resolved: number | null = null;
      const isStale = () => generation !== this.#generation || this.#disconnected;
      const batch: Batch = {
        topic: tp.topic,
        partition: tp.partition,
        records,
        highWatermark: String(part.highWatermark),
        generation,
        isStale,
        isRunning: () => isRunning() && !isStale(),
        heartbeat: () => Promise.resolve(),
        resolve: (nextOffset) => {
          const n = parseOffset(nextOffset, "offset");
          if (!isStale()) resolved = n;
        },
        commit: async (nextOffset) => {
          const n = parseOffset(nextOffset, "offset");
          if (isStale()) return false;
          await core.commit(this.groupId, tp, n);
          return true;
        },
      };
      try {
        await handler.eachBatch(batch);
        failures = 0;
      } catch (e) {
        failures++;
        const delay = Math.min(30_000, 500 * 2 ** (failures - 1));
        log.error("batch handler failed; fetching again from the last resolved offset", {
          group: this.groupId,
          partition: key,
          error: e,
          retryInMs: delay,
        });
        if (resolved !== null) position = resolved;
        await this.#sleep(delay);
        continue;
      }
      if (resolved !== null && resolved !== position) {
        position = resolved;
      } else if (!this.#paused.has(key)) {
        // Nothing resolved: the same records come again; do not spin.
        await this.#sleep(50);
      }
    }
  }

  /** Sleeps up to `ms`; woken early by pause/resume/stop. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wakers.add(done);
    });
  }

  #wakeAll(): void {
    for (const w of [...this.#wakers]) w();
  }

  pause(tps: TopicPartition[]): void {
    for (const tp of tps) this.#paused.add(`${tp.topic}:${tp.partition}`);
  }

  resume(tps: TopicPartition[]): void {
    let changed = false;
    for (const tp of tps) changed = this.#paused.delete(`${tp.topic}:${tp.partition}`) || changed;
    if (changed) this.#wakeAll();
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#wakeAll();
    const loops = this.#loops;
    await Promise.all(loops);
    this.#loops = [];
    this.#paused.clear();
    this.#core?.members.delete(this.groupId);
  }

  async disconnect(): Promise<void> {
    await this.stop();
    this.#disconnected = true;
    await this.#core?.groups.get(this.groupId)?.flushed();
    this.onDisconnect();
  }
}

// ---------------------------------------------------------------------------
// Admin and range reads

class EmbeddedAdmin implements LogAdmin {
  constructor(private readonly core: Core) {}

  async ensureTopics(topics: { topic: string; partitions: number }[]): Promise<void> {
    for (const t of topics) {
      await this.core.ensureTopic(t.topic, positiveInt(t.partitions, "partitions"));
    }
  }

  partitions(topic: string): Promise<number[]> {
    return Promise.resolve().then(() => this.core.topic(topic).partitions.map((_, i) => i));
  }

  async offsetsForTimes(topic: string, timestamp: number): Promise<PartitionOffset[]> {
    return await Promise.all(
      this.core.topic(topic).partitions.map(async (p, partition) => ({
        partition,
        offset: String(await p.offsetForTime(timestamp)),
      })),
    );
  }

  highWatermarks(topic: string): Promise<PartitionOffset[]> {
    return Promise.resolve().then(() =>
      this.core.topic(topic).partitions.map((p, partition) => ({
        partition,
        offset: String(p.highWatermark),
      }))
    );
  }

  committed(groupId: string, topic: string): Promise<PartitionOffset[]> {
    const g = this.core.groups.get(groupId);
    return Promise.resolve().then(() =>
      this.core.topic(topic).partitions.map((_, partition) => ({
        partition,
        offset: String(g?.get(topic, partition) ?? -1),
      }))
    );
  }

  disconnect(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Reads `[from, to)` of one partition, up to the high watermark at the time
 * of the call. Stops quietly when `signal` aborts.
 */
async function* readEmbeddedRange(
  open: () => Promise<Core>,
  tp: TopicPartition,
  range: { from: string; to: string; signal?: AbortSignal },
): AsyncIterable<SourceRecord[]> {
  const core = await open();
  const part = core.partition(tp);
  let pos = parseOffset(range.from, "range start");
  const end = Math.min(parseOffset(range.to, "range end"), part.highWatermark);
  while (pos < end && !range.signal?.aborted) {
    const records = await part.read(
      pos,
      Math.min(core.settings.maxBatchRecords, end - Math.max(pos, part.logStart)),
    );
    if (records.length === 0) return;
    yield records;
    pos = Number(records[records.length - 1].offset) + 1;
  }
}
