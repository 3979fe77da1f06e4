/**
 * The replay driver (README, Architecture): replays `[from, to)` of a topic,
 * by record timestamp, or a selection of dead letters (`actors/replay/dlq.ts`),
 * through the same circuit breaker, upstream client and audit trail as the
 * live pipeline, at a controlled rate, skipping idempotency keys already
 * delivered. Behind `POST /control/replay`, `GET|DELETE /control/replay/:id`
 * and `sluice replay`.
 *
 * ```ts
 * const replays = new ReplayManager({ log, store, audit, processor: (replay) =>
 *   createProcessor({ ...liveDeps, replay }) });
 * const r = await replays.start({ topic: "orders", from, to, rate: 100 });
 * replays.get(r.id);     // progress
 * await replays.cancel(r.id);
 * await replays.stopAll(); // shutdown phase `stop_load`
 * ```
 *
 * **How a window is replayed.**
 *  1. Planning: `offsetsForTimes(from)` and `offsetsForTimes(to)` per
 *     partition (all, or the requested subset) give `[start, end)` offsets;
 *     the total is the sum of `end - start`.
 *  2. Each partition is read with `LogClient.readRange` (outside the consumer
 *     group: nothing is committed, the live group's offsets never move), in
 *     offset order; partitions run in parallel and share one token bucket of
 *     `rate` records/s (bucket size 50 ms of records, at least 1: enough to
 *     absorb timer lateness, small enough that the rate holds from the first
 *     second).
 *     Records start in offset order; up to `maxInflight` (default 256) are in
 *     flight at once so a slow upstream or audit fsync does not hold the rate
 *     back, but records with the same Kafka key never overlap (per-key order,
 *     like the live `key` ordering mode).
 *  3. A record whose timestamp is outside `[from, to)` (timestamps that go
 *     back in time inside a partition) is counted `outside_window` and not
 *     replayed.
 *  4. Idempotency keys are looked up per fetched batch in the idempotency
 *     store: a key already delivered (by the live pipeline, a previous replay
 *     or a DLQ replay, within the TTL) is skipped, counted
 *     `skipped_duplicate`, and audited (`replay.record.skipped_duplicate`);
 *     no token is spent on it. Other records go through a processor made
 *     with `replay: {replay_id, source}` (audit `replay.record.*`) and carry
 *     the header `x-sluice-reprocessed: true` (so a new dead letter has
 *     `is_reprocessed: true`); delivered keys are recorded in the store, so
 *     a second identical replay delivers nothing.
 *  5. The replay's own token bucket replaces the live rate limiter (the
 *     requested rate is what the operator asked for); the breaker is shared:
 *     while it is open the replay is `paused` (reason `circuit`).
 *
 * **One replay per topic** at a time (`conflict` → 409); finished replays
 * stay queryable (the last {@link ReplayManagerOptions.retain}).
 *
 * **Progress and events.** States come from `machines/replay_driver.ts`
 * (`planning → running ⇄ paused → done | cancelled | failed`). Every state
 * change and a progress tick at most once a second (only when something
 * changed) publish a `replay.progress` event with the {@link ReplayProgress}
 * fields; nothing is published per record. `replay_records_total{result}`
 * counts `delivered`, `dead_lettered`, `skipped_duplicate`.
 *
 * **Cancel** stops the reads and the token waits at once: no record starts
 * after it. Records already in flight get `cancelGraceMs` (500 ms) to finish
 * (counted and audited); any still running then is abandoned (its upstream
 * call aborted; not finished: no audit event, not counted).
 * {@link ReplayManager.cancel} resolves with the partial counts once the
 * workers stopped (within 1 s).
 *
 * @module
 */
import { AUDIT_EVENT_VERSION, type AuditEvent } from "../audit/event.ts";
import { REPROCESSED_HEADER } from "../record/dead_letter.ts";
import { parseEnvelope } from "../record/envelope.ts";
import { publishEvent } from "../runtime/events.ts";
import type { IdempotencyStore } from "../pipeline/idempotency.ts";
import { logger } from "../runtime/logger.ts";
import { replayRecordsTotal, requestsTotal } from "../runtime/metrics.ts";
import type { Processor } from "../pipeline/processor.ts";
import { type Clock, TokenBucket } from "../pipeline/rate_limiter.ts";
import type { SourceRecord } from "../record/record.ts";
import { spawnActor, stopActor } from "../runtime/registry.ts";
import type { LogClient } from "../log/port.ts";
import {
  type ReplayCounts,
  replayDriverMachine,
  type ReplayPauseReason,
  type ReplayStateName,
  replayStateName,
  zeroCounts,
} from "../../machines/replay_driver.ts";
import {
  SluiceError,
  UnavailableError,
  UnknownTopicError,
  ValidationError,
} from "../runtime/errors.ts";
import type { ReplayRequest, ReplayStart } from "./types.ts";

const log = logger("replay");
const decoder = new TextDecoder();

/** Default replay rate (records/s) when the request has none. */
export const DEFAULT_REPLAY_RATE = 100;

/**
 * The audit event of a record a replay did not send because its idempotency
 * key was already delivered (`replay.record.skipped_duplicate`).
 */
export function skippedDuplicateEvent(
  record: SourceRecord,
  key: string,
  replay: { replay_id: string; source: ReplaySource },
  maxRecordBytes?: number,
): AuditEvent {
  const env = parseEnvelope(record, { maxBytes: maxRecordBytes });
  return {
    event_version: AUDIT_EVENT_VERSION,
    event_type: "replay.record.skipped_duplicate",
    timestamp: new Date().toISOString(),
    trace_id: env.ok ? env.envelope.trace_id : env.traceId,
    request_id: env.ok ? env.envelope.request_id : env.requestId,
    idempotency_key: key,
    topic: record.topic,
    partition: record.partition,
    offset: record.offset,
    upstream: { host: null, status_code: null, latency_ms: null },
    resilience: { retry_count: 0, timeout_count: 0, timeout_type: null, circuit_state: "closed" },
    result: {
      outcome: "skipped_duplicate",
      error_code: null,
      error_message: "Idempotency key already delivered",
    },
    replay,
  };
}

/** Where the replayed records come from. */
export type ReplaySource = "window" | "dlq";

/** Progress of one replay (`GET /control/replay/:id`, `replay.progress` events). */
export interface ReplayProgress extends ReplayCounts {
  [key: string]: unknown;
  id: string;
  /** `window` (a time window of a topic) or `dlq` (dead letters). */
  source: ReplaySource;
  /** The topic (for `dlq`: the original topic, or `*`). */
  topic: string;
  state: ReplayStateName;
  /** Window start (inclusive) and end (exclusive), ISO 8601; null when not a window. */
  from: string | null;
  to: string | null;
  /** Partitions replayed (window replays). */
  partitions: number[];
  /** Requested records/s. */
  rate: number;
  /** Records planned; null while planning. */
  total: number | null;
  /** Observed records/s over the last seconds (delivered + dead-lettered). */
  rate_actual: number;
  /** Estimated seconds left; null when unknown. */
  eta_s: number | null;
  pause_reasons: ReplayPauseReason[];
  started_at: string;
  finished_at: string | null;
  elapsed_s: number;
  error: string | null;
}

/** A prepared replay: where its records come from. */
export interface ReplayPlan {
  /** Records planned. */
  total: number;
  /**
   * Independent lanes, run in parallel; records of one lane go one at a time,
   * in order. Each yields batches (one idempotency lookup per batch).
   */
  lanes: Array<(signal: AbortSignal) => AsyncIterable<SourceRecord[]>>;
  /** Keep only records with `from <= timestamp < to` (window replays). */
  window?: { from: number; to: number };
}

/** What a replay needs besides its plan. */
export interface ReplayManagerOptions {
  log: Pick<LogClient, "admin" | "readRange">;
  /** Idempotency store (lookups; delivered keys are recorded in it). */
  store: Pick<IdempotencyStore, "has" | "record" | "flush">;
  /** The audit trail (skipped duplicates are audited here; the processor audits the rest). */
  audit: { append(event: AuditEvent): Promise<void> };
  /** Creates the processor of one replay: the live deps plus `replay`. */
  processor(replay: { replay_id: string; source: ReplaySource }): Pick<Processor, "process">;
  /** The shared breaker: the replay pauses while it is open. Default none. */
  breaker?: {
    readonly state: string;
    onStateChange(listener: (to: string) => void): () => void;
  };
  /** Records/s when a request has none. Default {@link DEFAULT_REPLAY_RATE}. */
  defaultRate?: number;
  /**
   * Records of one replay in flight at once (records of one Kafka key never
   * overlap). A record is in flight until its audit event is durable, so
   * this bounds rate × (upstream + audit latency). Default 256.
   */
  maxInflight?: number;
  /** On cancel, how long records already in flight may take to finish (ms). Default 500. */
  cancelGraceMs?: number;
  /** Finished replays kept for `GET`. Default 50. */
  retain?: number;
  /** Progress tick period (ms). Default 1000 (the `replay.progress` event rate bound). */
  progressIntervalMs?: number;
  /** Tolerance for a window end slightly in the future (ms), e.g. `now` of a client with a skewed clock. Default 5000. */
  futureToleranceMs?: number;
  /** Largest record value (bytes), as the live pipeline. Default the envelope's default (1 MiB). */
  maxRecordBytes?: number;
  /** Parent in the actor tree. */
  parentId?: string;
  /** Clock (ms since epoch). Default `Date.now`. */
  now?: () => number;
  /**
   * Time of the replay's token bucket (the rate): its reading and its timers.
   * Default real time (`systemClock` of `actors/pipeline/rate_limiter.ts`);
   * tests pass xstate's `SimulatedClock` to check the rate exactly.
   */
  rateClock?: Clock;
}

/** What {@link ReplayManager.startPlanned} needs. */
export interface PlannedReplay {
  /** One replay per key at a time (e.g. the topic). */
  key: string;
  source: ReplaySource;
  topic: string;
  rate?: number;
  from?: number;
  to?: number;
  partitions?: number[];
  /** Resolves the plan (in the `planning` state). */
  plan(): Promise<ReplayPlan>;
}

/**
 * Seconds left of a replay: the records left at the pace of every record
 * handled so far (sent, skipped as already delivered, or outside the window),
 * since start. Skips take no token and go fast, so a pace of sends only (or
 * the configured rate) would overstate a replay made mostly of skips by
 * orders of magnitude. Before anything is handled: `left / rate`.
 */
export function replayEta(
  p: { left: number | null; handled: number; elapsedMs: number; rate: number },
): number | null {
  if (p.left === null) return null;
  if (p.left === 0) return 0;
  if (p.handled > 0 && p.elapsedMs > 0) return Math.ceil((p.left * p.elapsedMs) / p.handled / 1000);
  return Math.ceil(p.left / p.rate);
}

class Replay {
  /** Aborted on cancel or failure: no new record starts. */
  readonly controller = new AbortController();
  /** Aborted after the cancel grace: records still in flight are abandoned. */
  readonly hard = new AbortController();
  readonly startedAt: number;
  finishedAt: number | null = null;
  counts: ReplayCounts = zeroCounts();
  readonly actor;
  finished: Promise<void> = Promise.resolve();
  #samples: Array<[number, number]> = [];
  /** Records in flight (all lanes). */
  readonly inflight = new Set<Promise<void>>();
  /** Last job per Kafka key and per idempotency key (ordering, duplicates). */
  readonly byKafkaKey = new Map<string, Promise<void>>();
  readonly byIdempotencyKey = new Map<string, Promise<void>>();
  #resume = Promise.withResolvers<void>();
  #lastPublished = "";

  constructor(
    readonly id: string,
    readonly spec: PlannedReplay,
    readonly rate: number,
    readonly opts: ReplayManagerOptions,
  ) {
    this.startedAt = this.now();
    this.actor = spawnActor(replayDriverMachine, {
      id: `replay:${id}`,
      kind: "replay",
      parentId: opts.parentId,
      input: { id },
      summary: (s) => ({
        topic: spec.topic,
        source: spec.source,
        total: s.context.total,
        ...s.context.counts,
      }),
    });
    let last: string | undefined;
    this.actor.subscribe((s) => {
      const state = replayStateName(s);
      if (state !== last) {
        last = state;
        if (state === "running") this.#resume.resolve();
        else if (state === "paused") this.#resume = Promise.withResolvers<void>();
        this.publish(true);
      }
    });
  }

  now(): number {
    return (this.opts.now ?? Date.now)();
  }

  get state(): ReplayStateName {
    return replayStateName(this.actor.getSnapshot());
  }

  get final(): boolean {
    return ["done", "cancelled", "failed"].includes(this.state);
  }

  /** Resolves when the replay may take the next record (not paused). */
  whenRunning(signal: AbortSignal): Promise<void> | undefined {
    if (this.state !== "paused") return undefined;
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#resume.promise.then(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  }

  rateActual(): number {
    const done = this.counts.delivered + this.counts.dead_lettered;
    const t = this.now();
    this.#samples.push([t, done]);
    while (this.#samples.length > 2 && t - this.#samples[0][0] > 5000) this.#samples.shift();
    const [t0, d0] = this.#samples[0];
    return t > t0 ? Math.round(((done - d0) * 1000) / (t - t0) * 10) / 10 : 0;
  }

  progress(): ReplayProgress {
    const s = this.actor.getSnapshot();
    const total = s.context.total;
    const rateActual = this.final ? 0 : this.rateActual();
    const c = this.final ? s.context.counts : this.counts;
    const left = total === null ? null : Math.max(0, total - c.scanned - c.outside_window);
    const end = this.finishedAt ?? this.now();
    return {
      id: this.id,
      source: this.spec.source,
      topic: this.spec.topic,
      state: replayStateName(s),
      from: this.spec.from === undefined ? null : new Date(this.spec.from).toISOString(),
      to: this.spec.to === undefined ? null : new Date(this.spec.to).toISOString(),
      partitions: this.spec.partitions ?? [],
      rate: this.rate,
      total,
      ...c,
      rate_actual: rateActual,
      eta_s: this.final ? 0 : replayEta({
        left,
        handled: c.scanned + c.outside_window,
        elapsedMs: end - this.startedAt,
        rate: this.rate,
      }),
      pause_reasons: [...s.context.pauseReasons],
      started_at: new Date(this.startedAt).toISOString(),
      finished_at: this.finishedAt === null ? null : new Date(this.finishedAt).toISOString(),
      elapsed_s: Math.round((end - this.startedAt) / 100) / 10,
      error: s.context.error,
    };
  }

  /** Publishes `replay.progress`; a tick (`force` false) only when something changed. */
  publish(force: boolean): void {
    const p = this.progress();
    const sig = JSON.stringify([p.state, p.total, p.scanned, p.delivered, p.skipped_duplicate]);
    if (!force && sig === this.#lastPublished) return;
    this.#lastPublished = sig;
    const severity = p.state === "failed" ? "error" : p.state === "cancelled" ? "warn" : "info";
    publishEvent("replay.progress", severity, p, { topic: this.spec.topic });
  }
}

/**
 * The replays of one instance: what the control API's replay routes call
 * (`start`, `get`, `cancel`) plus {@link ReplayManager.startPlanned} (DLQ bulk
 * replays) and {@link ReplayManager.stopAll} (shutdown).
 */
export class ReplayManager {
  readonly #opts: ReplayManagerOptions;
  readonly #replays = new Map<string, Replay>();
  /** Running replay id by key (topic). */
  readonly #running = new Map<string, string>();
  #offBreaker?: () => void;
  #stopped = false;

  constructor(opts: ReplayManagerOptions) {
    this.#opts = opts;
    this.#offBreaker = opts.breaker?.onStateChange((to) => {
      for (const r of this.#active()) {
        if (to === "open") r.actor.send({ type: "PAUSE", reason: "circuit" });
        else r.actor.send({ type: "RESUME", reason: "circuit" });
      }
    });
  }

  #active(): Replay[] {
    return [...this.#running.values()].map((id) => this.#replays.get(id)!).filter(Boolean);
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }

  /**
   * Starts a window replay (`POST /control/replay`).
   *
   * @throws {ValidationError} for a window in the future, an unknown partition
   *   or a bad rate; {@link SluiceError} `unknown_topic` for an unknown topic;
   *   {@link UnavailableError} when the log cannot be read or when stopping.
   */
  async start(req: ReplayRequest): Promise<ReplayStart> {
    const now = this.#now();
    const tolerance = this.#opts.futureToleranceMs ?? 5000;
    if (!(req.from < req.to)) {
      throw new ValidationError("Invalid from: must be before to");
    }
    if (req.from > now) {
      throw new ValidationError(
        `Invalid from: ${new Date(req.from).toISOString()} is in the future`,
      );
    }
    if (req.to > now + tolerance) {
      throw new ValidationError(
        `Invalid to: ${
          new Date(req.to).toISOString()
        } is in the future (a replay reads records already written; use now)`,
      );
    }
    if (req.rate !== undefined && !(req.rate > 0 && Number.isFinite(req.rate))) {
      throw new ValidationError("Invalid rate: must be a number > 0");
    }
    const admin = await this.#opts.log.admin();
    let all: number[];
    try {
      all = await admin.partitions(req.topic);
    } catch (e) {
      if (e instanceof UnknownTopicError) {
        throw new SluiceError("not_found", "unknown_topic", `Unknown topic: ${req.topic}`, {
          cause: e,
        });
      }
      const msg = e instanceof Error ? e.message : String(e);
      throw new UnavailableError("log_unavailable", `Cannot read topic ${req.topic}: ${msg}`, {
        cause: e,
      });
    }
    const partitions = req.partitions ?? all;
    for (const p of partitions) {
      if (!all.includes(p)) {
        throw new ValidationError(
          `Invalid partitions: topic ${req.topic} has no partition ${p} (it has ${all.join(",")})`,
        );
      }
    }
    const readRange = this.#opts.log.readRange;
    const from = req.from, to = req.to;
    return this.startPlanned({
      key: req.topic,
      source: "window",
      topic: req.topic,
      rate: req.rate,
      from,
      to,
      partitions,
      async plan() {
        const [starts, ends] = await Promise.all([
          admin.offsetsForTimes(req.topic, from),
          admin.offsetsForTimes(req.topic, to),
        ]);
        const startBy = new Map(starts.map((o) => [o.partition, BigInt(o.offset)]));
        const endBy = new Map(ends.map((o) => [o.partition, BigInt(o.offset)]));
        const ranges = partitions.map((partition) => {
          const start = startBy.get(partition) ?? 0n;
          const end = endBy.get(partition) ?? start;
          return { partition, start, end: end > start ? end : start };
        }).filter((r) => r.end > r.start);
        return {
          total: ranges.reduce((n, r) => n + Number(r.end - r.start), 0),
          window: { from, to },
          lanes: ranges.map((r) => (signal: AbortSignal) =>
            readRange({ topic: req.topic, partition: r.partition }, {
              from: String(r.start),
              to: String(r.end),
              signal,
            })
          ),
        };
      },
    });
  }

  /**
   * Starts a replay whose records come from `spec.plan()` (window replays and
   * DLQ bulk replays). Answers `conflict` when one with the same key runs.
   */
  startPlanned(spec: PlannedReplay): ReplayStart {
    if (this.#stopped) {
      throw new UnavailableError("shutting_down", "Replays are stopped: sluice is shutting down");
    }
    const runningId = this.#running.get(spec.key);
    if (runningId) return { status: "conflict", runningId };
    const id = `${spec.source === "dlq" ? "dlq" : "rp"}-${this.#now().toString(36)}-${
      crypto.randomUUID().slice(0, 6)
    }`;
    const rate = spec.rate ?? this.#opts.defaultRate ?? DEFAULT_REPLAY_RATE;
    const r = new Replay(id, spec, rate, this.#opts);
    this.#replays.set(id, r);
    this.#running.set(spec.key, id);
    if (this.#opts.breaker?.state === "open") r.actor.send({ type: "PAUSE", reason: "circuit" });
    log.info("replay started", {
      id,
      source: spec.source,
      topic: spec.topic,
      rate,
      from: spec.from,
      to: spec.to,
    });
    r.finished = this.#run(r).finally(() => {
      r.finishedAt = this.#now();
      if (this.#running.get(spec.key) === id) this.#running.delete(spec.key);
      r.publish(true);
      this.#prune();
      const p = r.progress();
      log.info("replay finished", {
        id,
        state: p.state,
        delivered: p.delivered,
        skipped_duplicate: p.skipped_duplicate,
        dead_lettered: p.dead_lettered,
        error: p.error,
      });
    }).catch((e) => log.error("replay bookkeeping failed", { id, error: e }));
    return { status: "started", id };
  }

  async #run(r: Replay): Promise<void> {
    const signal = r.controller.signal;
    const tick = setInterval(() => {
      if (r.final) return;
      r.actor.send({ type: "PROGRESS", counts: { ...r.counts } });
      r.publish(false);
    }, this.#opts.progressIntervalMs ?? 1000);
    // A bucket of 50 ms of tokens: timer lateness is not lost, the burst stays negligible.
    const bucket = new TokenBucket(r.rate, Math.max(1, Math.ceil(r.rate / 20)), {
      clock: this.#opts.rateClock,
    });
    try {
      const plan = await r.spec.plan();
      if (signal.aborted) return;
      r.actor.send({ type: "PLANNED", total: plan.total });
      const processor = this.#opts.processor({ replay_id: r.id, source: r.spec.source });
      // A key delivered earlier in this replay is a duplicate for the rest of it.
      const deliveredHere = new Set<string>();
      await Promise.all(
        plan.lanes.map((lane) => this.#lane(r, lane, plan, processor, bucket, deliveredHere)),
      );
      if (signal.aborted) return;
      await this.#opts.store.flush();
      r.actor.send({ type: "FINISHED", counts: { ...r.counts } });
    } catch (e) {
      if (signal.aborted) return;
      const msg = e instanceof Error ? e.message : String(e);
      log.error("replay failed", { id: r.id, error: e });
      r.controller.abort(new Error(`replay failed: ${msg}`));
      r.actor.send({ type: "FAIL", error: msg, counts: { ...r.counts } });
    } finally {
      clearInterval(tick);
      bucket.stop();
      if (r.inflight.size > 0) {
        // Records already sent finish (counted and audited) within the grace;
        // then the rest are abandoned: not finished, not counted, no audit event.
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([
          Promise.allSettled([...r.inflight]),
          new Promise((res) => (timer = setTimeout(res, this.#opts.cancelGraceMs ?? 500))),
        ]);
        clearTimeout(timer);
        r.hard.abort(signal.reason);
        await Promise.allSettled([...r.inflight]);
      }
      if (signal.aborted) r.hard.abort(signal.reason);
      if (signal.aborted && !r.final) r.actor.send({ type: "CANCEL", counts: { ...r.counts } });
    }
  }

  async #lane(
    r: Replay,
    lane: (signal: AbortSignal) => AsyncIterable<SourceRecord[]>,
    plan: ReplayPlan,
    processor: Pick<Processor, "process">,
    bucket: TokenBucket,
    deliveredHere: Set<string>,
  ): Promise<void> {
    const signal = r.controller.signal;
    const it = lane(signal)[Symbol.asyncIterator]();
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
    aborted.catch(() => {});
    const maxBytes = this.#opts.maxRecordBytes;
    let jobs: Promise<void>[] = [];
    try {
      for (;;) {
        // Raced with the abort: a cancel does not wait for a fetch in progress.
        const next = await Promise.race([it.next(), aborted]);
        if (next.done) {
          await Promise.all(jobs);
          return;
        }
        const batch: { record: SourceRecord; key: string }[] = [];
        for (const record of next.value) {
          const ts = Number(record.timestamp);
          if (plan.window && !(ts >= plan.window.from && ts < plan.window.to)) {
            r.counts.outside_window++;
            continue;
          }
          const env = parseEnvelope(record, { maxBytes });
          batch.push({
            record,
            key: env.ok ? env.envelope.idempotency_key : env.idempotencyKey,
          });
        }
        const seen = await Promise.race([
          this.#opts.store.has([...new Set(batch.map((b) => b.key))]),
          aborted,
        ]);
        for (const { record, key } of batch) {
          const wait = r.whenRunning(signal);
          if (wait) await wait;
          if (signal.aborted) throw signal.reason;
          // The same idempotency key earlier in this replay: wait for its verdict.
          const earlier = r.byIdempotencyKey.get(key);
          if (earlier) await earlier.catch(() => {});
          if (seen.has(key) || deliveredHere.has(key)) {
            await this.#skip(r, record, key, signal);
            r.counts.scanned++;
            r.counts.skipped_duplicate++;
            continue;
          }
          while (r.inflight.size >= (this.#opts.maxInflight ?? 256)) {
            await Promise.race([...r.inflight, aborted]).catch(() => {});
            if (signal.aborted) throw signal.reason;
          }
          const token = bucket.acquire(signal);
          if (token) await token;
          // The breaker may have opened while this lane waited for its token.
          const again = r.whenRunning(signal);
          if (again) await again;
          if (signal.aborted) throw signal.reason;
          const replayed: SourceRecord = {
            ...record,
            headers: { ...record.headers, [REPROCESSED_HEADER]: "true" },
          };
          // Records of one Kafka key stay in order; others overlap (bounded).
          const kafkaKey = record.key === null ? null : decoder.decode(record.key);
          const previous = kafkaKey === null ? undefined : r.byKafkaKey.get(kafkaKey);
          const job: Promise<void> = (async () => {
            if (previous) await previous.catch(() => {});
            const outcome = await processor.process(replayed, r.hard.signal);
            r.counts.scanned++;
            replayRecordsTotal.inc({ result: outcome.outcome });
            if (outcome.outcome === "delivered") {
              r.counts.delivered++;
              deliveredHere.add(key);
              this.#opts.store.record(key);
            } else {
              r.counts.dead_lettered++;
            }
          })();
          r.inflight.add(job);
          jobs.push(job);
          r.byIdempotencyKey.set(key, job);
          if (kafkaKey !== null) r.byKafkaKey.set(kafkaKey, job);
          job.catch(() => {}).finally(() => {
            r.inflight.delete(job);
            if (r.byIdempotencyKey.get(key) === job) r.byIdempotencyKey.delete(key);
            if (kafkaKey !== null && r.byKafkaKey.get(kafkaKey) === job) {
              r.byKafkaKey.delete(kafkaKey);
            }
          });
        }
        // Finished jobs are forgotten; a failure is seen by the final await.
        jobs = jobs.filter((j) => r.inflight.has(j));
      }
    } finally {
      // Not awaited: closing a Kafka range reader can take longer than a cancel may.
      it.return?.()?.catch(() => {});
    }
  }

  async #skip(r: Replay, record: SourceRecord, key: string, signal: AbortSignal): Promise<void> {
    const event = skippedDuplicateEvent(record, key, {
      replay_id: r.id,
      source: r.spec.source,
    }, this.#opts.maxRecordBytes);
    for (let n = 0;; n++) {
      try {
        await this.#opts.audit.append(event);
        break;
      } catch (e) {
        if (signal.aborted) throw signal.reason;
        log.warn("audit append failed; retrying", { id: r.id, error: e });
        await new Promise((res) => setTimeout(res, Math.min(5000, 100 * 2 ** n)));
      }
    }
    replayRecordsTotal.inc({ result: "skipped_duplicate" });
    requestsTotal.inc({ outcome: "skipped_duplicate" });
  }

  /** Progress of a replay, or undefined for an unknown id. */
  get(id: string): ReplayProgress | undefined {
    return this.#replays.get(id)?.progress();
  }

  /** Every known replay, newest first. */
  list(): ReplayProgress[] {
    return [...this.#replays.values()].reverse().map((r) => r.progress());
  }

  /**
   * Cancels a replay and resolves with its (partial) progress once its
   * workers stopped; undefined for an unknown id. A finished replay is
   * returned unchanged.
   */
  async cancel(id: string): Promise<ReplayProgress | undefined> {
    const r = this.#replays.get(id);
    if (!r) return undefined;
    if (!r.final) {
      r.controller.abort(new Error("replay cancelled"));
      await r.finished;
    }
    return r.progress();
  }

  /** Ids of the running replays. */
  running(): string[] {
    return [...this.#running.values()];
  }

  /** Cancels every running replay and refuses new ones (shutdown phase `stop_load`). */
  async stopAll(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.running().map((id) => this.cancel(id)));
  }

  /** {@link stopAll}, then forgets the actors. */
  async close(): Promise<void> {
    await this.stopAll();
    this.#offBreaker?.();
    for (const id of [...this.#replays.keys()]) stopActor(`replay:${id}`);
    this.#replays.clear();
  }

  #prune(): void {
    const keep = this.#opts.retain ?? 50;
    const done = [...this.#replays.values()].filter((r) => r.final);
    for (const r of done.slice(0, Math.max(0, done.length - keep))) {
      this.#replays.delete(r.id);
      stopActor(`replay:${r.id}`);
    }
  }
}
