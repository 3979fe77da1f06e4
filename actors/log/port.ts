/**
 * The log sluice consumes, behind one interface with three implementations:
 * real Kafka on kafkajs (`actors/log/kafka.ts`, the default) or on
 * `@platformatic/kafka` (`actors/log/platformatic.ts`), and the embedded
 * in-process partitioned log of local mode (`actors/log/embedded/`). Partition
 * actors, replay and shutdown run unchanged on either.
 *
 * The shape follows kafkajs `eachBatch` with manual offset resolution: the
 * log calls {@link BatchHandler.eachBatch} once per fetched batch of one
 * partition; the handler commits the next offset to read when the records
 * before it are finished, and may pause the partition.
 *
 * Both adapters throw {@link UnknownTopicError} (a domain error with a
 * `code` and `retriable`) for a topic the log does not have, so callers test
 * the type, never the message.
 *
 * @module
 */
import type { SourceRecord } from "../record/record.ts";
export { UnknownTopicError } from "../runtime/errors.ts";

/** A topic-partition. */
export interface TopicPartition {
  topic: string;
  partition: number;
}

/** One fetched batch of one partition. */
export interface Batch {
  topic: string;
  partition: number;
  /** Records in offset order. */
  records: SourceRecord[];
  /** Offset of the next record the log will write (high watermark). */
  highWatermark: string;
  /** Group generation the batch was fetched in. */
  generation: number;
  /** True once the partition was revoked or the group rebalanced: the batch must not commit. */
  isStale(): boolean;
  /** False once the consumer is stopping. */
  isRunning(): boolean;
  /** Keeps the group membership alive during long batches. */
  heartbeat(): Promise<void>;
  /**
   * Commits `nextOffset` (the offset of the next record to read) for this
   * partition. Does nothing and returns false when the batch is stale.
   */
  commit(nextOffset: string): Promise<boolean>;
  /**
   * Marks the records before `nextOffset` as handled, so that a later batch
   * of this consumer starts there (kafkajs `resolveOffset`).
   */
  resolve(nextOffset: string): void;
}

/** What the consumer calls back. */
export interface BatchHandler {
  /** Called for each batch; may return before every record finished only when it resolved what finished. */
  eachBatch(batch: Batch): Promise<void>;
  /** Called after each (re)join with the full assignment of this member. */
  onAssignment(assigned: TopicPartition[], generation: number): void;
}

/** A consumer group member. */
export interface LogConsumer {
  /** Subscribes and starts fetching; resolves once running. */
  run(topics: string[], handler: BatchHandler): Promise<void>;
  /** Stops fetching the given partitions (kafkajs pause). */
  pause(tps: TopicPartition[]): void;
  /** Resumes fetching the given partitions. */
  resume(tps: TopicPartition[]): void;
  /** Stops fetching and waits for running batch handlers to return. */
  stop(): Promise<void>;
  /** Leaves the group and closes connections. */
  disconnect(): Promise<void>;
}

/** A message to produce. */
export interface OutgoingMessage {
  key: Uint8Array | string | null;
  value: Uint8Array | string | null;
  headers?: Record<string, string>;
  partition?: number;
  timestamp?: string;
}

/** A producer; `send` resolves once the log acknowledged every message. */
export interface LogProducer {
  send(topic: string, messages: OutgoingMessage[]): Promise<void>;
  disconnect(): Promise<void>;
}

/** Per-partition offsets. */
export interface PartitionOffset {
  partition: number;
  offset: string;
}

/**
 * Administration and reads outside the group. Lists of {@link PartitionOffset}
 * are sorted by partition.
 */
export interface LogAdmin {
  /** Creates topics that do not exist yet. */
  ensureTopics(topics: { topic: string; partitions: number }[]): Promise<void>;
  /** Partitions of a topic; throws a clear error for an unknown topic. */
  partitions(topic: string): Promise<number[]>;
  /** Earliest offset whose timestamp is ≥ `timestamp` (ms), per partition; the high watermark when none. */
  offsetsForTimes(topic: string, timestamp: number): Promise<PartitionOffset[]>;
  /** High watermarks (next offset to be written) per partition. */
  highWatermarks(topic: string): Promise<PartitionOffset[]>;
  /** Committed offsets of a group, per partition (`-1` when none). */
  committed(groupId: string, topic: string): Promise<PartitionOffset[]>;
  /** The topic's time retention (ms; -1 = unlimited), or null when the log has none (embedded). */
  retentionMs?(topic: string): Promise<number | null>;
  disconnect(): Promise<void>;
}

/**
 * Reads a range of one partition outside any group (replay): yields batches
 * of records with `from ≤ offset < to`.
 */
export type RangeReader = (
  tp: TopicPartition,
  range: { from: string; to: string; signal?: AbortSignal },
) => AsyncIterable<SourceRecord[]>;

/** A log: real Kafka or the embedded one. */
export interface LogClient {
  /** `kafka` or `embedded`, and where: for the start banner and `/status`. */
  readonly kind: "kafka" | "embedded";
  readonly description: string;
  consumer(groupId: string): LogConsumer;
  producer(): Promise<LogProducer>;
  admin(): Promise<LogAdmin>;
  readRange: RangeReader;
  /** True when the log answers (readiness). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}
