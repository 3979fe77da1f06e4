/**
 * The consuming side of the pipeline: binds a {@link LogClient} consumer
 * (kafkajs or the embedded log) to one partition actor and one partition
 * worker per assigned topic-partition.
 *
 * Per batch (plain code, no per-record XState event): records are admitted
 * into the partition worker (ordering mode, bounded in-flight), each runs
 * through `process` to a durable outcome, and the low watermark of finished
 * records is resolved and committed (periodically during the batch and at its
 * end). A batch stops admitting when the partition is paused (circuit open,
 * audit backpressure, operator drain), when the consumer stops, or when a
 * rebalance revokes it; what was not admitted is fetched again later, so
 * nothing is skipped. The partition actor mirrors the lifecycle
 * (`assigned → running ⇄ paused → draining → stopped`) with one event per
 * state change.
 *
 * @module
 */
import type { AnyActorRef } from "xstate";
import { logger } from "./log.ts";
import { kafkaConsumerLag, queueDepth } from "./metrics.ts";
import { spawnActor, stopActor } from "./registry.ts";
import type { SourceRecord } from "./record.ts";
import type { Batch, LogClient, LogConsumer, TopicPartition } from "./source.ts";
import { partitionConsumerMachine } from "../machines/partition_consumer.ts";
import { type OrderingMode, PartitionWorker } from "./partition_worker.ts";

const log = logger("pipeline");

/** Why a partition is paused; it runs again only when no reason is left. */
export type PauseReason = "circuit" | "backpressure" | "operator";

/** Options of {@link Pipeline}. */
export interface PipelineOptions {
  log: LogClient;
  topics: string[];
  groupId: string;
  /** Runs one record to a durable outcome; rejects only when `signal` aborts. */
  process: (record: SourceRecord, signal: AbortSignal) => Promise<unknown>;
  /** Default `partition`. */
  orderingMode?: OrderingMode;
  /** In-flight records per partition; default 64. */
  maxInflight?: number;
  /** Commit at least this often during a long batch (ms); default 1000. */
  commitIntervalMs?: number;
  /**
   * How often a long batch asks the client to heartbeat (ms); default 1000. The
   * client sends one only when its own heartbeat interval has passed.
   */
  heartbeatMs?: number;
  /** Lag metric refresh period (ms); default 5000. */
  lagIntervalMs?: number;
  /** Parent actor id in the inspector tree; default `pipeline`. */
  parentId?: string;
}

interface PartitionRun {
  tp: TopicPartition;
  key: string;
  actorId: string;
  actor: AnyActorRef;
  worker: PartitionWorker;
  committed: string | null;
  batches: number;
}

/** Status of one partition, for `/status` and the dashboard. */
export interface PartitionStatus {
  topic: string;
  partition: number;
  state: string;
  inflight: number;
  committed: string | null;
  lag?: number;
}

/** The consuming side of the pipeline. */
export class Pipeline {
  private consumer?: LogConsumer;
  private parts = new Map<string, PartitionRun>();
  private reasons = new Set<PauseReason>();
  private active = new Set<Promise<void>>();
  private draining = false;
  private lagTimer?: ReturnType<typeof setInterval>;
  private lags = new Map<string, number>();
  private failure?: Error;
  private failureListeners = new Set<(e: Error) => void>();

  /** True once the consumer received its first assignment. */
  joined = false;

  constructor(private readonly opts: PipelineOptions) {}

  /** Joins the group and starts consuming. */
  async start(): Promise<void> {
    this.consumer = this.opts.log.consumer(this.opts.groupId);
    await this.consumer.run(this.opts.topics, {
      onAssignment: (assigned, generation) => this.onAssignment(assigned, generation),
      eachBatch: (batch) => this.track(this.eachBatch(batch)),
    });
    const every = this.opts.lagIntervalMs ?? 5000;
    this.lagTimer = setInterval(() => void this.refreshLag(), every);
  }

  /** Calls `fn` when processing fails for an infrastructure reason (the supervisor restarts). */
  onFailure(fn: (e: Error) => void): () => void {
    this.failureListeners.add(fn);
    if (this.failure) fn(this.failure);
    return () => this.failureListeners.delete(fn);
  }

  private track(p: Promise<void>): Promise<void> {
    this.active.add(p);
    return p.finally(() => this.active.delete(p));
  }

  private onAssignment(assigned: TopicPartition[], generation: number): void {
    this.joined = true;
    const keep = new Set(assigned.map((tp) => `${tp.topic}:${tp.partition}`));
    for (const [key, run] of this.parts) {
      if (!keep.has(key)) this.retire(run, "revoked");
    }
    for (const tp of assigned) {
      const key = `${tp.topic}:${tp.partition}`;
      const existing = this.parts.get(key);
      if (existing) continue;
      const actorId = `partition:${key}`;
      const actor = spawnActor(partitionConsumerMachine, {
        id: actorId,
        kind: "partition",
        parentId: this.opts.parentId ?? "pipeline",
        input: { topic: tp.topic, partition: tp.partition, generation },
        summary: (s) => {
          const run = this.parts.get(key);
          return {
            generation: s.context.generation,
            pauseReasons: s.context.pauseReasons,
            inflight: run?.worker.pending ?? 0,
            committed: run?.committed ?? null,
          };
        },
      });
      const worker = new PartitionWorker({
        topic: tp.topic,
        partition: tp.partition,
        ordering: this.opts.orderingMode ?? "partition",
        maxInflight: this.opts.maxInflight ?? 64,
        process: this.opts.process,
        generation,
      });
      worker.on("full", () => actor.send({ type: "PAUSE", reason: "inflight" }));
      worker.on("ready", () => actor.send({ type: "RESUME", reason: "inflight" }));
      // A record that ended with neither outcome holds the watermark: restart
      // the pipeline (supervisor) so the record is consumed again from the
      // committed offset, instead of stalling the partition.
      worker.on("error", (e, record) => {
        log.error("record failed without an outcome; restarting to consume it again", {
          partition: key,
          offset: record.offset,
          error: e instanceof Error ? e.message : String(e),
        });
        this.fail(e instanceof Error ? e : new Error(String(e)));
      });
      const run: PartitionRun = { tp, key, actorId, actor, worker, committed: null, batches: 0 };
      this.parts.set(key, run);
      actor.send({ type: "START" });
      if (this.reasons.size > 0 || this.draining) {
        for (const reason of this.reasons) actor.send({ type: "PAUSE", reason });
        this.consumer?.pause([tp]);
      }
    }
    log.info("assignment", { generation, partitions: [...keep] });
    // Lag is known from the assignment on, not only after the first period.
    void this.refreshLag();
  }

  private retire(run: PartitionRun, why: string): void {
    this.parts.delete(run.key);
    run.actor.send({ type: "REVOKE" });
    run.worker.dispose();
    queueDepth.remove({ topic: run.tp.topic, partition: String(run.tp.partition) });
    kafkaConsumerLag.remove({ topic: run.tp.topic, partition: String(run.tp.partition) });
    stopActor(run.actorId);
    log.info("partition released", { partition: run.key, why });
  }

  private paused(): boolean {
    return this.reasons.size > 0 || this.draining;
  }

  private async eachBatch(batch: Batch): Promise<void> {
    const key = `${batch.topic}:${batch.partition}`;
    const run = this.parts.get(key);
    if (!run || batch.isStale() || batch.records.length === 0) return;
    if (this.paused()) {
      this.consumer?.pause([run.tp]);
      return;
    }
    run.batches++;
    const heartbeatMs = this.opts.heartbeatMs ?? 1000;
    const commitEvery = this.opts.commitIntervalMs ?? 1000;
    const hb = setInterval(() => void batch.heartbeat(), heartbeatMs);
    // A periodic commit that fails or hangs (broker or coordinator away; the
    // client retries for up to a minute) stops admission: finished records
    // that are not committed are consumed again after a restart, so the batch
    // must not run ahead of its last commit. One periodic commit at a time.
    let commitFailing = false;
    let committing: Promise<void> | undefined;
    let commitSince = 0;
    const stopAdmitting = (why: string) => {
      if (!commitFailing) {
        log.warn("offset commit failing; admitting no more records from this batch", {
          partition: key,
          error: why,
        });
      }
      commitFailing = true;
    };
    const timer = setInterval(() => {
      if (committing) {
        if (performance.now() - commitSince > 2 * commitEvery) {
          stopAdmitting(`no answer for ${Math.round(performance.now() - commitSince)} ms`);
        }
        return;
      }
      commitSince = performance.now();
      committing = this.commit(run, batch)
        .then(
          () => void (commitFailing = false),
          (e) => stopAdmitting(e instanceof Error ? e.message : String(e)),
        )
        .finally(() => (committing = undefined));
    }, commitEvery);
    const w = run.worker;
    try {
      let i = 0;
      while (i < batch.records.length) {
        if (
          this.paused() || !batch.isRunning() || batch.isStale() || this.failure || w.closed ||
          commitFailing
        ) {
          break;
        }
        const room = w.maxInflight - w.pending;
        if (room <= 0) {
          await waitFor(w, w.pending > 0 ? "ready" : "idle", () => w.pending < w.maxInflight);
          continue;
        }
        i += w.push(batch.records.slice(i, i + room)) || room;
      }
      await waitFor(w, "idle", () => w.pending === 0);
      await this.commit(run, batch);
    } catch (e) {
      this.fail(e instanceof Error ? e : new Error(String(e)));
    } finally {
      clearInterval(hb);
      clearInterval(timer);
    }
    if (this.paused() && this.parts.has(key)) this.consumer?.pause([run.tp]);
  }

  private async commit(run: PartitionRun, batch: Batch): Promise<void> {
    const next = run.worker.committableOffset();
    if (next === null || next === run.committed) return;
    batch.resolve(next);
    if (await batch.commit(next)) run.committed = next;
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    log.error("record processing failed for an infrastructure reason", { error: e.message });
    for (const fn of this.failureListeners) fn(e);
  }

  /** Pauses every partition for `reason` (composes with other reasons). */
  pause(reason: PauseReason): void {
    if (this.reasons.has(reason)) return;
    this.reasons.add(reason);
    for (const run of this.parts.values()) run.actor.send({ type: "PAUSE", reason });
    this.consumer?.pause([...this.parts.values()].map((r) => r.tp));
    log.info("partitions paused", { reason, reasons: [...this.reasons] });
  }

  /** Lifts `reason`; partitions fetch again when no reason is left. */
  resume(reason: PauseReason): void {
    if (!this.reasons.delete(reason)) return;
    for (const run of this.parts.values()) run.actor.send({ type: "RESUME", reason });
    if (!this.paused()) this.consumer?.resume([...this.parts.values()].map((r) => r.tp));
    log.info("partitions resume", { reason, reasons: [...this.reasons] });
  }

  /** Current pause reasons. */
  pauseReasons(): PauseReason[] {
    return [...this.reasons];
  }

  /**
   * Shutdown phase `drain`: stops admitting records, waits (until `signal`
   * aborts) for in-flight records to finish and commits their offsets.
   * Returns the records still in flight when it gave up.
   */
  async drain(signal?: AbortSignal): Promise<number> {
    this.draining = true;
    for (const run of this.parts.values()) run.actor.send({ type: "DRAIN" });
    // Drained = every record admitted has its outcome. The batches' final
    // commits belong to `close()`: a commit stuck in Kafka retries must not
    // make the drain look unfinished (uncommitted records are re-read anyway).
    const all = Promise.all(
      [...this.parts.values()].map((r) => waitFor(r.worker, "idle", () => r.worker.pending === 0)),
    );
    const aborted = new Promise<void>((r) => {
      if (signal?.aborted) r();
      signal?.addEventListener("abort", () => r(), { once: true });
    });
    await Promise.race([all, aborted]);
    const left = [...this.parts.values()].reduce((n, r) => n + r.worker.pending, 0);
    if (left > 0) {
      // Past the deadline: abort what still runs; it is not committed and will be consumed again.
      await Promise.all([...this.parts.values()].map((r) => r.worker.drain(0)));
    }
    for (const run of this.parts.values()) {
      run.actor.send({ type: left === 0 ? "DRAINED" : "DRAIN_TIMEOUT" });
    }
    return left;
  }

  /** Shutdown phase `close_consumer`: stops fetching and leaves the group. */
  async close(): Promise<void> {
    clearInterval(this.lagTimer);
    this.draining = true;
    // Let the batches commit what finished (bounded by the phase deadline).
    await Promise.allSettled([...this.active]);
    if (this.consumer) {
      await this.consumer.stop().catch((e) =>
        log.warn("consumer stop failed", { error: String(e) })
      );
      await this.consumer.disconnect().catch((e) =>
        log.warn("consumer disconnect failed", { error: String(e) })
      );
    }
    for (const run of [...this.parts.values()]) this.retire(run, "closed");
  }

  /** Per-partition status. */
  status(): PartitionStatus[] {
    return [...this.parts.values()].map((r) => ({
      topic: r.tp.topic,
      partition: r.tp.partition,
      state: String(r.actor.getSnapshot().value),
      inflight: r.worker.pending,
      committed: r.committed,
      lag: this.lags.get(r.key),
    }));
  }

  private async refreshLag(): Promise<void> {
    if (this.parts.size === 0) return;
    try {
      const admin = await this.opts.log.admin();
      for (const topic of new Set([...this.parts.values()].map((r) => r.tp.topic))) {
        const [high, committed] = await Promise.all([
          admin.highWatermarks(topic),
          admin.committed(this.opts.groupId, topic),
        ]);
        const c = new Map(committed.map((p) => [p.partition, BigInt(p.offset)]));
        for (const h of high) {
          const key = `${topic}:${h.partition}`;
          if (!this.parts.has(key)) continue;
          const done = c.get(h.partition) ?? -1n;
          const lag = Number(BigInt(h.offset) - (done < 0n ? 0n : done));
          this.lags.set(key, lag);
          kafkaConsumerLag.set({ topic, partition: String(h.partition) }, lag);
        }
      }
    } catch (e) {
      log.debug("lag refresh failed", { error: e instanceof Error ? e.message : String(e) });
    }
  }
}

/** Resolves at the worker's next `event`, or at once when `done()` holds. */
function waitFor(w: PartitionWorker, event: "ready" | "idle", done: () => boolean): Promise<void> {
  if (done()) return Promise.resolve();
  return new Promise((resolve) => {
    const offs = [
      w.on(event, () => finish()),
      w.on("idle", () => finish()),
    ];
    const finish = () => {
      for (const off of offs) off();
      resolve();
    };
  });
}
