/**
 * Flow control that reads the upstream (`SLUICE_ADAPTIVE=on`): every call to
 * the upstream, first attempts and retries alike, takes a permit here, and
 * every answer is reported back. Plain code on the hot path; the XState actor
 * (`machines/adaptive_limiter.ts`) only mirrors the figures, at most once per
 * second.
 *
 * ```ts
 * const flow = createAdaptiveLimiter({ ceiling: 1000, burst: 100, maxConcurrency: 256 });
 * const permit = await flow.acquire(signal);          // pause → token → in-flight slot
 * permit.release({ caller, kind: "http", status: 429, latencyMs: 3 });
 * await flow.judgeSoon(caller, firstFailureAt, signal); // "outage" | "poison"
 * ```
 *
 * Three controls, each on its own signal:
 *
 * - **Rate, AIMD on pushback** (429, 503, connect/read timeouts). A pushback
 *   multiplies the effective rate by 0.9, at most once per round trip: only a
 *   call *started after* the last cut can cut again, and only once some call
 *   succeeded since that cut (a dead upstream cuts once; the breaker handles
 *   it). While callers wait for tokens and nothing pushes back, the rate grows
 *   by 1 % of the ceiling per second (with no ceiling: the first cut starts
 *   from the call rate measured then, and the step is 1 % of it, at least
 *   1/s per second). Bounds: 1 record/s and the ceiling (`SLUICE_RATE_LIMIT`, or
 *   `PUT /control/rate`).
 * - **In-flight limit, latency gradient** (after Netflix's gradient2):
 *   `gradient = clamp((1.5 × longRtt + 20 ms) / rtt, 0.5, 1)` per answer, with
 *   `longRtt` an average over ~600 answers; below 1 the limit shrinks towards
 *   `limit × gradient + 4`, at 1 it grows by 0.8 per answer while at least
 *   half of it is used. Between 2 and `maxConcurrency`.
 * - **Pause**: {@link AdaptiveLimiter.pause} (a long `Retry-After`) holds
 *   every new call until then.
 *
 * And one judgement, {@link AdaptiveLimiter.judge}: whether a record that ran
 * out of retries is a poison record (the other records' calls succeed) or a
 * victim of an outage (they fail too).
 *
 * Metrics: `rate_limit_effective`, `rate_limit_ceiling`,
 * `concurrency_limit_effective`, `rate_limit_paused`,
 * `rate_limit_decreases_total{reason}`, `rate_limit_tokens`.
 *
 * @module
 */
import type { Actor } from "xstate";
import { type Clock, systemClock, TokenBucket } from "./rate_limiter.ts";
import type { AbortLike } from "./deadlines.ts";
import {
  concurrencyLimitEffective,
  rateLimitCeiling,
  rateLimitDecreasesTotal,
  rateLimitEffective,
  rateLimitPaused,
  rateLimitTokens,
} from "../runtime/metrics.ts";
import { spawnActor, stopActor } from "../runtime/registry.ts";
import { type AdaptiveFigures, adaptiveLimiterMachine } from "../../machines/adaptive_limiter.ts";

/** What became of one call, reported with {@link Permit.release}. */
export interface CallReport {
  /** Identity of the delivery (one per record delivery), for {@link AdaptiveLimiter.judge}. */
  caller: object;
  /**
   * `ok` (2xx), `http` (another status), `timeout` (connect, read or the
   * global budget), `network`, or `ignore` (cancelled, refused by the breaker).
   */
  kind: "ok" | "http" | "timeout" | "network" | "ignore";
  status?: number;
  /** Time the call took (ms). */
  latencyMs: number;
}

/** Permission for one call; release it exactly once. */
export interface Permit {
  /** Clock time at which the call was allowed. */
  readonly startedAt: number;
  release(report: CallReport): void;
}

/** Options of {@link createAdaptiveLimiter} and {@link AdaptiveLimiter}. */
export interface AdaptiveLimiterOptions {
  /** Ceiling (records/s), 0 = unlimited. Default 1000 (`SLUICE_RATE_LIMIT`). */
  ceiling?: number;
  /** Token bucket size at the ceiling. Default 100 (`SLUICE_RATE_BURST`). */
  burst?: number;
  /** Upper bound of the in-flight limit. Default 256 (the upstream client's connections). */
  maxConcurrency?: number;
  /** Lower bound of the in-flight limit. Default 2. */
  minConcurrency?: number;
  /** Lower bound of the rate (records/s). Default 1. */
  floorRate?: number;
  /**
   * Outage judgement, from the breaker's settings; `waitMs` (default 2000,
   * at most `windowMs`) bounds {@link AdaptiveLimiter.judgeSoon}'s wait.
   */
  judge?: { volume?: number; errorPercent?: number; windowMs?: number; waitMs?: number };
  /** Registry id of the actor (none when absent: unit tests). */
  id?: string;
  parentId?: string;
  clock?: Clock;
}

/** Current figures, for `/status` and the dashboard. */
export interface AdaptiveStatus {
  adaptive: true;
  /** Effective rate (records/s); 0 = unlimited. */
  effective: number;
  ceiling: number;
  concurrency: number;
  inflight: number;
  waiting: number;
  /** ISO time; null when not paused. */
  paused_until: string | null;
  /** Last reason the figures moved. */
  reason: string;
}

const BETA = 0.9;
const TICK_MS = 100;
const INCREASE_PER_S = 0.01;
const LONG_WINDOW = 600;
const TOLERANCE = 1.5;
const SLACK_MS = 20;
const SMOOTHING = 0.2;
const QUEUE = 4;
const HISTORY = 256;

interface Outcome {
  caller: object;
  /** When the call started and ended (clock time). */
  startedAt: number;
  at: number;
  failed: boolean;
}

/** The limiter (see the module doc). */
export class AdaptiveLimiter {
  #clock: Clock;
  #bucket: TokenBucket;
  #ceiling: number;
  #burst: number;
  /** Effective rate; Infinity = unlimited. */
  #rate: number;
  #scale: number;
  #floor: number;
  #lastCut = -Infinity;
  #successSinceCut = true;
  #binding = false;
  #starts = new Array<number>(10).fill(0);
  #startsSlot = 0;
  #firstStart: number | null = null;
  // Concurrency.
  #limit: number;
  #minLimit: number;
  #maxLimit: number;
  #inflight = 0;
  #slotWaiters: { grant: () => void; fail: (e: unknown) => void; done: boolean }[] = [];
  #longRtt = 0;
  #samples = 0;
  // Pause.
  #pausedUntil = 0;
  #pauseWaiters = new Set<() => void>();
  #evidenceWaiters = new Set<{ check: () => void; done: () => void }>();
  #judgeWaitMs: number;
  #pauseTimer: unknown = undefined;
  // Judgement.
  #history: Outcome[] = [];
  #historyHead = 0;
  #volume: number;
  #errorPercent: number;
  #windowMs: number;
  // Reporting.
  #timer: unknown = undefined;
  #reason = "start";
  #published = { rate: NaN, concurrency: NaN };
  #lastPublish = -Infinity;
  #stopped = false;
  #actor?: Actor<typeof adaptiveLimiterMachine>;
  #id?: string;

  constructor(options: AdaptiveLimiterOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#ceiling = options.ceiling ?? 1000;
    this.#burst = options.burst ?? 100;
    this.#floor = options.floorRate ?? 1;
    this.#rate = this.#ceiling > 0 ? this.#ceiling : Infinity;
    this.#scale = this.#ceiling;
    this.#maxLimit = options.maxConcurrency ?? 256;
    this.#minLimit = Math.min(options.minConcurrency ?? 2, this.#maxLimit);
    this.#limit = this.#maxLimit;
    this.#volume = Math.max(1, Math.min(options.judge?.volume ?? 10, HISTORY));
    this.#errorPercent = options.judge?.errorPercent ?? 50;
    this.#windowMs = options.judge?.windowMs ?? 10_000;
    this.#judgeWaitMs = Math.min(options.judge?.waitMs ?? 2000, this.#windowMs);
    this.#bucket = new TokenBucket(this.#ceiling, this.#burst, {
      clock: this.#clock,
      onTokens: (t) => rateLimitTokens.set(Math.floor(t)),
    });
    if (options.id) {
      this.#id = options.id;
      this.#actor = spawnActor(adaptiveLimiterMachine, {
        id: options.id,
        kind: "rate-limiter",
        parentId: options.parentId,
        input: { rate: this.#ceiling, ceiling: this.#ceiling, concurrency: this.#maxLimit },
        summary: (s) => ({
          rate: s.context.rate,
          ceiling: s.context.ceiling,
          concurrency: s.context.concurrency,
          reason: s.context.reason,
          pausedUntil: s.context.pausedUntil,
        }),
      });
    }
    this.#gauges();
    this.#schedule();
  }

  /** Effective rate (records/s); 0 = unlimited. */
  get rate(): number {
    return Number.isFinite(this.#rate) ? this.#rate : 0;
  }

  /** Effective in-flight limit. */
  get concurrency(): number {
    return Math.max(1, Math.floor(this.#limit));
  }

  /** Calls in flight (permits not released). */
  get inflight(): number {
    return this.#inflight;
  }

  /** Configured ceiling (records/s); 0 = unlimited. */
  get ceiling(): number {
    return this.#ceiling;
  }

  /** True while a pause holds every call. */
  get paused(): boolean {
    return this.#clock.now() < this.#pausedUntil;
  }

  /**
   * Takes a permit: waits for the end of a pause, then for a token, then for
   * an in-flight slot. Synchronous (no promise) when nothing has to wait.
   *
   * @throws never; the promise rejects with `signal.reason` on abort, or with
   *   an error when the limiter is stopped.
   */
  acquire(signal?: AbortLike): Permit | Promise<Permit> {
    if (this.#stopped) return Promise.reject(new Error("Adaptive limiter is stopped"));
    if (!this.paused && this.#bucket.tryAcquire()) {
      if (this.#inflight < this.concurrency && this.#slotWaiters.length === 0) {
        return this.#grant();
      }
      return this.#waitSlot(signal);
    }
    return this.#acquireSlow(signal);
  }

  async #acquireSlow(signal?: AbortLike): Promise<Permit> {
    while (this.paused) await this.#waitPause(signal);
    const wait = this.#bucket.acquire(signal);
    if (wait) {
      this.#binding = true;
      await wait;
    }
    if (this.#inflight < this.concurrency && this.#slotWaiters.length === 0) return this.#grant();
    return this.#waitSlot(signal);
  }

  #grant(): Permit {
    this.#inflight++;
    this.#starts[this.#startsSlot]++;
    const startedAt = this.#clock.now();
    this.#firstStart ??= startedAt;
    let released = false;
    return {
      startedAt,
      release: (report) => {
        if (released) return;
        released = true;
        this.#inflight--;
        this.#observe(report, startedAt);
        this.#wakeSlots();
      },
    };
  }

  #waitSlot(signal?: AbortLike): Promise<Permit> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<Permit>((resolve, reject) => {
      const w = {
        done: false,
        grant: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve(this.#grant());
        },
        fail: (e: unknown) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        if (w.done) return;
        w.done = true;
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#slotWaiters.push(w);
    });
  }

  #wakeSlots(): void {
    while (this.#slotWaiters.length > 0 && this.#inflight < this.concurrency) {
      const w = this.#slotWaiters.shift()!;
      if (w.done) continue;
      w.done = true;
      w.grant();
    }
  }

  #waitPause(signal?: AbortLike): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#stopped) return Promise.reject(new Error("Adaptive limiter is stopped"));
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.#pauseWaiters.delete(wake);
        reject(signal!.reason);
      };
      const wake = () => {
        signal?.removeEventListener("abort", onAbort);
        if (this.#stopped) reject(new Error("Adaptive limiter is stopped"));
        else resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#pauseWaiters.add(wake);
    });
  }

  /**
   * Holds every new call for `ms` (calls in flight go on). A pause that ends
   * later than the current one extends it; a shorter one changes nothing.
   */
  pause(ms: number, reason = "retry_after"): void {
    if (this.#stopped || !(ms > 0)) return;
    const now = this.#clock.now();
    const until = now + ms;
    if (until <= this.#pausedUntil) return;
    const starting = now >= this.#pausedUntil;
    this.#pausedUntil = until;
    if (this.#pauseTimer !== undefined) this.#clock.clearTimeout(this.#pauseTimer);
    this.#pauseTimer = this.#clock.setTimeout(() => this.#endPause(), ms);
    this.#reason = reason;
    rateLimitPaused.set(1);
    this.#actor?.send({
      type: "PAUSED",
      until: new Date(Date.now() + ms).toISOString(),
      ...this.#figures(),
    });
    if (starting) this.#publishedNow();
  }

  #endPause(): void {
    this.#pauseTimer = undefined;
    this.#pausedUntil = 0;
    rateLimitPaused.set(0);
    this.#reason = "resumed";
    this.#actor?.send({ type: "RESUMED", ...this.#figures() });
    this.#publishedNow();
    const waiters = [...this.#pauseWaiters];
    this.#pauseWaiters.clear();
    for (const w of waiters) w();
  }

  /** Sets the ceiling (and burst) from the operator or the config; 0 = unlimited. */
  setCeiling(ceiling: number, burst = this.#burst): void {
    if (ceiling === this.#ceiling && burst === this.#burst) return;
    // At the old ceiling, the ceiling was what held the rate: follow the new
    // one at once. Below it (the upstream pushed back), stay, under the new one.
    const atCeiling = !Number.isFinite(this.#rate) || this.#rate >= this.#ceiling;
    this.#ceiling = ceiling;
    this.#burst = burst;
    if (ceiling === 0) {
      this.#rate = Infinity;
      this.#scale = 0;
    } else {
      this.#scale = ceiling;
      this.#rate = atCeiling ? ceiling : Math.min(this.#rate, ceiling);
    }
    this.#reason = "ceiling";
    this.#applyRate();
  }

  /**
   * Tells a poison record from an outage, for a record (`caller`) that ran
   * out of retries and whose first failed call started at `firstFailureAt`
   * (clock time). The evidence is the other records' calls since then, the
   * last `volume` of them within the window: every failure that ended since,
   * and the successes of calls that *started* since (a call answered before
   * the upstream began failing this record says nothing about now). `outage`
   * when more than `errorPercent` % of them failed (5xx, timeout, network
   * error); else `poison`.
   *
   * With one or two such calls, they decide: a wrong `outage` costs a pause
   * until the breaker's probe, a wrong `poison` a good record in the
   * dead-letter topic. With none, the calls that ended before decide, at
   * least 3 of them (a record alone with its failures is poison).
   * {@link judgeSoon} first waits for 3 such calls.
   */
  judge(caller: object, firstFailureAt: number): "outage" | "poison" {
    const { recent, older } = this.#evidence(caller, firstFailureAt);
    const evidence = recent.length > 0 ? recent : older;
    if (evidence.length === 0 || (evidence === older && older.length < 3)) return "poison";
    const failed = evidence.filter((o) => o.failed).length;
    return failed * 100 / evidence.length > this.#errorPercent ? "outage" : "poison";
  }

  /**
   * {@link judge}, once 3 other calls count as evidence (or after the
   * judgement's `waitMs`, 2 s by default; no call is made meanwhile). At the
   * start of an outage with few records in flight (partition ordering, a
   * record out of retries within ~0.2 s) the others' failures are still on
   * their way; judged at once, one call would decide. Rejects with
   * `signal.reason` on abort.
   */
  async judgeSoon(
    caller: object,
    firstFailureAt: number,
    signal?: AbortSignal,
  ): Promise<"outage" | "poison"> {
    const enough = () => this.#evidence(caller, firstFailureAt).recent.length >= 3;
    if (!this.#stopped && !enough()) {
      if (signal?.aborted) throw signal.reason;
      await new Promise<void>((resolve, reject) => {
        const w = {
          check: () => {
            if (enough()) w.done();
          },
          done: () => {
            cleanup();
            resolve();
          },
        };
        const onAbort = () => {
          cleanup();
          reject(signal!.reason);
        };
        const timer = this.#clock.setTimeout(w.done, this.#judgeWaitMs);
        const cleanup = () => {
          this.#clock.clearTimeout(timer);
          this.#evidenceWaiters.delete(w);
          signal?.removeEventListener("abort", onAbort);
        };
        this.#evidenceWaiters.add(w);
        signal?.addEventListener("abort", onAbort, { once: true });
      });
    }
    return this.judge(caller, firstFailureAt);
  }

  /** The other calls' outcomes since `firstFailureAt` (see {@link judge}), and before it. */
  #evidence(caller: object, firstFailureAt: number): { recent: Outcome[]; older: Outcome[] } {
    const now = this.#clock.now();
    const recent: Outcome[] = [], older: Outcome[] = [];
    const h = this.#history, n = h.length;
    // Newest first (by end); at most 256 entries, and judged only when a record runs out of retries.
    for (let i = 0; i < n && recent.length < this.#volume; i++) {
      const o = h[(this.#historyHead - 1 - i + n) % n];
      if (now - o.at > this.#windowMs) break;
      if (o.at < firstFailureAt && older.length >= this.#volume) break;
      if (o.caller === caller) continue;
      const since = o.failed ? o.at >= firstFailureAt : o.startedAt >= firstFailureAt;
      if (since) recent.push(o);
      else if (older.length < this.#volume) older.push(o);
    }
    return { recent, older };
  }

  #observe(r: CallReport, startedAt: number): void {
    if (r.kind === "ignore") return;
    const now = this.#clock.now();
    const failed = r.kind === "timeout" || r.kind === "network" ||
      (r.kind === "http" && (r.status ?? 0) >= 500);
    const entry = { caller: r.caller, startedAt, at: now, failed };
    if (this.#history.length < HISTORY) {
      this.#history.push(entry);
      this.#historyHead = this.#history.length % HISTORY;
    } else {
      this.#history[this.#historyHead] = entry;
      this.#historyHead = (this.#historyHead + 1) % HISTORY;
    }
    if (this.#evidenceWaiters.size > 0) { for (const w of [...this.#evidenceWaiters]) w.check(); }
    if (r.kind === "network") return;
    // Rate: AIMD on pushback.
    const pushback = r.kind === "timeout" || r.status === 429 || r.status === 503;
    if (pushback) {
      if (startedAt > this.#lastCut && this.#successSinceCut) {
        this.#cut(r.kind === "timeout" ? "timeout" : String(r.status));
      }
    } else if (r.kind === "ok" || (r.status ?? 0) < 500) {
      this.#successSinceCut = true;
    }
    // In-flight limit: latency gradient.
    this.#gradient(r.latencyMs);
  }

  #cut(reason: string): void {
    if (!Number.isFinite(this.#rate)) {
      // No ceiling: start from the call rate that met the pushback.
      const measured = this.#measuredRate();
      this.#scale = Math.max(this.#scale, measured, 100);
      this.#rate = measured;
    }
    this.#rate = Math.max(this.#floor, this.#rate * BETA);
    this.#lastCut = this.#clock.now();
    this.#successSinceCut = false;
    this.#reason = reason;
    rateLimitDecreasesTotal.inc({ reason });
    this.#applyRate();
  }

  /**
   * Calls started over the last second, or since the first call when that
   * was less than a second ago (at least 20 ms: a crude first estimate, which
   * the AIMD corrects).
   */
  #measuredRate(): number {
    const total = this.#starts.reduce((a, b) => a + b, 0);
    const since = this.#firstStart === null ? 0 : this.#clock.now() - this.#firstStart;
    const age = Math.min(1, Math.max(0.02, since / 1000));
    return Math.max(this.#floor, total / age);
  }

  #gradient(rtt: number): void {
    if (!(rtt >= 0)) return;
    this.#samples++;
    if (this.#samples <= 10) this.#longRtt += (rtt - this.#longRtt) / this.#samples;
    else this.#longRtt += (rtt - this.#longRtt) / LONG_WINDOW;
    // After a slow period, let the long-term average come down quickly.
    if (this.#longRtt > 2 * rtt) this.#longRtt *= 0.95;
    const g = Math.max(
      0.5,
      Math.min(1, (TOLERANCE * this.#longRtt + SLACK_MS) / Math.max(rtt, 1e-3)),
    );
    const before = this.concurrency;
    if (g < 1) {
      this.#limit = this.#limit * (1 - SMOOTHING) + SMOOTHING * (this.#limit * g + QUEUE);
    } else if (this.#inflight + 1 >= this.#limit / 2) {
      this.#limit = this.#limit * (1 - SMOOTHING) + SMOOTHING * (this.#limit + QUEUE);
    }
    this.#limit = Math.max(this.#minLimit, Math.min(this.#maxLimit, this.#limit));
    if (this.concurrency < before) {
      rateLimitDecreasesTotal.inc({ reason: "latency" });
      this.#reason = "latency";
    }
    concurrencyLimitEffective.set(this.concurrency);
    if (this.concurrency > before) this.#wakeSlots();
  }

  #applyRate(): void {
    const r = this.rate;
    const burst = !Number.isFinite(this.#rate) || (this.#ceiling > 0 && r >= this.#ceiling)
      ? this.#burst
      : Math.max(1, Math.min(this.#burst, Math.ceil(r / 10)));
    this.#bucket.configure(r, burst);
    this.#gauges();
  }

  #gauges(): void {
    rateLimitEffective.set(this.rate);
    rateLimitCeiling.set(this.#ceiling);
    concurrencyLimitEffective.set(this.concurrency);
    rateLimitPaused.set(this.paused ? 1 : 0);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#tick();
      this.#schedule();
    }, TICK_MS);
  }

  /** Every 100 ms: additive increase, call-rate window, and (≤ 1/s) the actor. */
  #tick(): void {
    const now = this.#clock.now();
    this.#startsSlot = (this.#startsSlot + 1) % this.#starts.length;
    this.#starts[this.#startsSlot] = 0;
    if (this.#binding && Number.isFinite(this.#rate) && !this.paused) {
      const cap = this.#ceiling > 0 ? this.#ceiling : Infinity;
      if (this.#rate < cap) {
        const step = Math.max(this.#floor, this.#scale) * INCREASE_PER_S * (TICK_MS / 1000);
        this.#rate = Math.min(cap, this.#rate + step);
        if (now - this.#lastCut > 1000) this.#reason = "recovery";
        this.#applyRate();
      }
    }
    this.#binding = this.#bucket.waiting > 0;
    if (now - this.#lastPublish >= 1000 && !this.paused) this.#publish();
  }

  #figures(): AdaptiveFigures {
    return {
      rate: Math.round(this.rate * 10) / 10,
      ceiling: this.#ceiling,
      concurrency: this.concurrency,
      reason: this.#reason,
    };
  }

  #publish(): void {
    const f = this.#figures();
    const moved = (a: number, b: number) =>
      !(Math.abs(a - b) <= Math.max(1, 0.05 * Math.max(Math.abs(a), Math.abs(b))));
    if (
      !moved(f.rate, this.#published.rate) && !moved(f.concurrency, this.#published.concurrency)
    ) {
      return;
    }
    this.#actor?.send({ type: "ADJUSTED", ...f });
    this.#publishedNow();
  }

  #publishedNow(): void {
    const f = this.#figures();
    this.#published = { rate: f.rate, concurrency: f.concurrency };
    this.#lastPublish = this.#clock.now();
  }

  /** Figures for `/status`. */
  status(): AdaptiveStatus {
    return {
      adaptive: true,
      effective: Math.round(this.rate * 10) / 10,
      ceiling: this.#ceiling,
      concurrency: this.concurrency,
      inflight: this.#inflight,
      waiting: this.#bucket.waiting + this.#slotWaiters.length + this.#pauseWaiters.size,
      paused_until: this.paused
        ? new Date(Date.now() + (this.#pausedUntil - this.#clock.now())).toISOString()
        : null,
      reason: this.#reason,
    };
  }

  /** Stops timers, rejects every waiter, stops the actor. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    if (this.#pauseTimer !== undefined) this.#clock.clearTimeout(this.#pauseTimer);
    this.#bucket.stop();
    const waiters = [...this.#pauseWaiters];
    this.#pauseWaiters.clear();
    for (const w of waiters) w();
    for (const w of [...this.#evidenceWaiters]) w.done();
    const err = new Error("Adaptive limiter is stopped");
    for (const w of this.#slotWaiters) {
      if (w.done) continue;
      w.done = true;
      w.fail(err);
    }
    this.#slotWaiters = [];
    rateLimitPaused.set(0);
    if (this.#id) stopActor(this.#id);
  }
}

/** Creates the limiter (and its actor when `options.id` is given). */
export function createAdaptiveLimiter(options: AdaptiveLimiterOptions = {}): AdaptiveLimiter {
  return new AdaptiveLimiter(options);
}
