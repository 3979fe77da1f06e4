/**
 * The admin side of the embedded log (topics, partitions, offsets by time,
 * high watermarks, committed offsets) and range reads of one partition.
 *
 * @module
 */
import type { SourceRecord } from "../../record/record.ts";
import type { LogAdmin, PartitionOffset, TopicPartition } from "../port.ts";
import type { Core } from "./core.ts";
import { parseOffset, positiveInt } from "./settings.ts";

export class EmbeddedAdmin implements LogAdmin {
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
export async function* readEmbeddedRange(
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
