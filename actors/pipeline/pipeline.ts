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
import { logger } from "../runtime/logger.ts";
import { kafkaConsumerLag, pipelineStallsTotal, queueDepth } from "../runtime/metrics.ts";
import { spawnActor, stopActor } from "../runtime/registry.ts";
import type { SourceRecord } from "../record/record.ts";
import type { Batch, LogClient, LogConsumer, TopicPartition } from "../log/port.ts";
import { partitionConsumerMachine } from "../../machines/partition_consumer.ts";
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
  /**
   * Parent id of a partition actor (by its id, `partition:<topic>:<n>`) in
   * the inspector tree; default {@link PipelineOptions.parentId}. The tree
   * (supervisors/tree.ts) makes each partition a child of the pipeline
   * supervisor, so its actor sits under `pipeline/<actor id>`.
   */
  partitionParent?: (actorId: string) => string;
  /**
   * Called once a partition actor runs (on assignment), with its id; the
   * actor stops on revocation or close. Default none.
   */
  onPartition?: (actorId: string) => void;
  /**
   * On assignment: the offsets (at or above the committed one) of the
   * partition whose outcome is already audited (an instance died after
   * auditing them and before committing). Those records are not processed
   * again but passed to `skip`. Default none (every record is processed).
   */
  audited?: (tp: TopicPartition, signal: AbortSignal) => Promise<Set<string>>;
  /** Finishes a record found by `audited` (audits it `skipped_duplicate`). Required with `audited`. */
  skip?: (record: SourceRecord, signal: AbortSignal) => Promise<unknown>;
  /** A commit that does not answer within this time counts as failed (ms); default 10 000. */
  commitTimeoutMs?: number;
  /**
   * Progress watchdog (ms): when partitions are assigned and not paused, the
   * lag is above 0 and no record finished for this long, the pipeline fails
   * with a `stalled` reason (the supervisor restarts it). 0 turns it off;
   * default 60 000.
   */
  watchdogMs?: number;
  /**
   * A known reason the pipeline cannot progress (e.g. the log does not
   * answer), or null: the watchdog does not fire while it holds.
   */
  blocked?: () => string | null;
  /** How long closing may wait for running batches and the consumer (ms); default 10 000. */
  closeTimeoutMs?: number;
}

interface PartitionRun {
  tp: TopicPartition;
  key: string;
  actorId: string;
  actor: AnyActorRef;
  worker: PartitionWorker;
  committed: string | null;
  batches: number;
  /** Offsets already audited (see {@link PipelineOptions.audited}); null until known. */
  audited: Promise<Set<string>> | null;
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
  private lagRefresh?: Promise<void>;
  private failure?: Error;
  private failureListeners = new Set<(e: Error) => void>();
  private watchdogTimer?: ReturnType<typeof setInterval>;
  private lastProgress = performance.now();
  private stalled: string | null = null;
  private closing?: Promise<void>;
  /** Aborted when the pipeline fails or closes: audit scans and pending commits stop waiting. */
  private scanAbort = new AbortController();
  /** Records finished since start (progress). */
  finished = 0;
  /** Records skipped because their outcome was already audited. */
  skipped = 0;

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
    const watchdogMs = this.opts.watchdogMs ?? 60_000;
    if (watchdogMs > 0) {
      this.watchdogTimer = setInterval(
        () => this.checkProgress(watchdogMs),
        Math.min(5000, Math.max(100, watchdogMs / 4)),
      );
    }
  }

  /** Why the pipeline is stalled (the watchdog fired), or null. */
  stallReason(): string | null {
    return this.stalled;
  }

  private checkProgress(watchdogMs: number): void {
    if (
      this.failure || this.draining || this.reasons.size > 0 || this.parts.size === 0 ||
      this.opts.blocked?.()
    ) {
      // Paused, or waiting on a part known to be down: not a silent stall.
      this.lastProgress = performance.now();
      return;
    }
    const idleMs = performance.now() - this.lastProgress;
    if (idleMs < watchdogMs) return;
    const lagging = [...this.parts.values()].filter((r) => (this.lags.get(r.key) ?? 0) > 0);
    if (lagging.length === 0) {
      this.lastProgress = performance.now();
      return;
    }
    const lag = lagging.reduce((n, r) => n + (this.lags.get(r.key) ?? 0), 0);
    this.stalled = `no record finished for ${Math.round(idleMs / 1000)} s with a lag of ${lag} ` +
      `on ${lagging.length} unpaused partitions (${lagging.map((r) => r.key).join(", ")})`;
    pipelineStallsTotal.inc();
    log.error("pipeline stalled; restarting it", { reason: this.stalled });
    this.fail(new Error(`Pipeline stalled: ${this.stalled}`));
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
        parentId: this.opts.partitionParent?.(actorId) ?? this.opts.parentId ?? "pipeline",
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
        process: (record, signal) => this.processOne(run, record, signal),
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
      const run: PartitionRun = {
        tp,
        key,
        actorId,
        actor,
        worker,
        committed: null,
        batches: 0,
        audited: this.opts.audited ? this.findAudited(tp) : null,
      };
      this.parts.set(key, run);
      actor.send({ type: "START" });
      this.opts.onPartition?.(actorId);
      if (this.reasons.size > 0 || this.draining) {
        for (const reason of this.reasons) actor.send({ type: "PAUSE", reason });
        this.consumer?.pause([tp]);
      }
    }
    log.info("assignment", { generation, partitions: [...keep] });
    // Lag is known from the assignment on, not only after the first period.
    void this.refreshLag();
  }

  /** The audited offsets of `tp`; an empty set (and a warning) when they cannot be read. */
  private findAudited(tp: TopicPartition): Promise<Set<string>> {
    const started = performance.now();
    return this.opts.audited!(tp, this.scanAbort.signal).then((set) => {
      if (set.size > 0) {
        log.info("records already audited will not be sent again", {
          partition: `${tp.topic}:${tp.partition}`,
          records: set.size,
          ms: Math.round(performance.now() - started),
        });
      }
      return set;
    }, (e) => {
      log.warn("cannot read the audit topic to skip audited records; processing them", {
        partition: `${tp.topic}:${tp.partition}`,
        error: e instanceof Error ? e.message : String(e),
      });
      return new Set<string>();
    });
  }

  /** One record: skipped when already audited, else processed; progress is noted. */
  private processOne(run: PartitionRun, record: SourceRecord, signal: AbortSignal) {
    const done = run.audited === null ? null : auditedNow.get(run);
    let p: Promise<unknown>;
    if (done?.delete(record.offset)) {
      this.skipped++;
      p = this.opts.skip!(record, signal);
    } else {
      p = this.opts.process(record, signal);
    }
    return p.then((v) => {
      this.finished++;
      this.lastProgress = performance.now();
      if (this.stalled) this.stalled = null;
      return v;
    });
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
    if (run.audited && !auditedNow.has(run)) {
      auditedNow.set(run, await run.audited);
      if (batch.isStale() || !this.parts.has(key)) return;
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
    // A commit can hang rather than fail (a broker that went away without
    // closing its connections): bound it, so the batch and then the child end.
    const ms = this.opts.commitTimeoutMs ?? 10_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Offset commit did not answer in ${ms} ms`)),
        ms,
      );
    });
    // A failed pipeline does not wait for it either.
    const gone = this.scanAbort.signal;
    let onAbort: (() => void) | undefined;
    const abandoned = new Promise<never>((_, reject) => {
      onAbort = () => reject(new Error("Offset commit abandoned: the pipeline failed or closed"));
      if (gone.aborted) onAbort();
      else gone.addEventListener("abort", onAbort, { once: true });
    });
    try {
      if (await Promise.race([batch.commit(next), late, abandoned])) run.committed = next;
    } finally {
      clearTimeout(timer);
      gone.removeEventListener("abort", onAbort!);
    }
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    log.error("record processing failed for an infrastructure reason", { error: e.message });
    // Abort what runs (not committed: consumed again), so batches end and the
    // child can be restarted without waiting on a broker that does not answer.
    this.scanAbort.abort();
    for (const run of this.parts.values()) void run.worker.drain(0);
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

  /**
   * Shutdown phase `close_consumer`: stops fetching and leaves the group.
   * Each step is bounded by `closeTimeoutMs`: a broker that does not answer
   * cannot hold the close (what was not committed is consumed again).
   * Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    clearInterval(this.lagTimer);
    clearInterval(this.watchdogTimer);
    this.draining = true;
    const ms = this.opts.closeTimeoutMs ?? 10_000;
    // Let the batches commit what finished (bounded), then stop waiting on anything.
    await bounded(Promise.allSettled([...this.active]), ms, "running batches");
    this.scanAbort.abort();
    if (this.consumer) {
      const c = this.consumer;
      await bounded(c.stop(), ms, "consumer stop").catch((e) =>
        log.warn("consumer stop failed", { error: String(e) })
      );
      await bounded(c.disconnect(), ms, "consumer disconnect").catch((e) =>
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

  private refreshLag(): Promise<void> {
    // One refresh at a time: while the broker is away they would pile up.
    this.lagRefresh ??= this.refreshLagOnce().finally(() => (this.lagRefresh = undefined));
    return this.lagRefresh;
  }

  private async refreshLagOnce(): Promise<void> {
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

/** Audited offsets per partition run, once the scan answered (consumed as records pass). */
const auditedNow = new WeakMap<PartitionRun, Set<string>>();

/** Waits for `p` at most `ms`; rejects naming `what` when it took longer. */
async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      log.warn(`${what} did not end in ${ms} ms; going on`);
      resolve(undefined);
    }, ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
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
