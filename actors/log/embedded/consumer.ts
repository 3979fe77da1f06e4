/**
 * A consumer of the embedded log: the kafkajs `eachBatch` shape with manual
 * resolution (see the consumption notes of `log.ts`), one fetch loop per
 * assigned partition, pause/resume, stop.
 *
 * @module
 */
import { logger } from "../../runtime/logger.ts";
import type { SourceRecord } from "../../record/record.ts";
import type { Batch, BatchHandler, LogConsumer, TopicPartition } from "../port.ts";
import type { Core } from "./core.ts";
import type { PartitionLog } from "./partition.ts";
import { parseOffset, type Settings } from "./settings.ts";

const log = logger("embedded-log");

export class EmbeddedConsumer implements LogConsumer {
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
        records = await part.read(position, this.settings.maxBatchRecords, true);
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
