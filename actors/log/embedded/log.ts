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
 * Memory
 *  - Each partition keeps its active segment parsed in memory (readers at
 *    the tail are served from it), and up to `cachedSegments` sealed
 *    segments are kept parsed for readers that lag behind (least recently
 *    used). A segment is sealed at `segmentRecords` records or
 *    `segmentBytes` bytes (default 1 MiB), whichever comes first, so what
 *    the log holds is bounded by (partitions + `cachedSegments`) ×
 *    `segmentBytes`, about twice that once parsed, whatever has been
 *    written. A sealed segment kept for consumer groups (sealed while a
 *    group that committed on its topic is before its end, or read back from
 *    disk by a group's fetch) is dropped once every such group has committed
 *    past it; one sealed while none is behind is not kept. A range read
 *    (replay, `readRange`) loads what it needs, kept until evicted.
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
 * Files, by role: `segment.ts` (the on-disk line format, parsing, atomic
 * writes), `partition.ts` (one partition), `offsets.ts` (committed offsets
 * of a group), `core.ts` (the open log: lock, topics, groups, sends),
 * `consumer.ts`, `admin.ts` (admin and range reads), `partitioner.ts`
 * (murmur2), `settings.ts`; this file creates the log.
 *
 * @module
 */
import type { LogClient, LogProducer, RangeReader } from "../port.ts";
import { UnknownTopicError } from "../../runtime/errors.ts";
import { EmbeddedAdmin, readEmbeddedRange } from "./admin.ts";
import { EmbeddedConsumer } from "./consumer.ts";
import { Core } from "./core.ts";
import { positiveInt, type Settings } from "./settings.ts";

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
  /**
   * Bytes of a segment file before a new one is started; default 1 MiB. The
   * active segment of each partition is kept parsed in memory, so this bounds
   * the memory of the log (see "Memory" in the module doc).
   */
  segmentBytes?: number;
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
export { LogLockedError } from "./core.ts";

export { murmur2 } from "./partitioner.ts";

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
    segmentBytes: positiveInt(opts.segmentBytes ?? 1024 * 1024, "segmentBytes"),
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
