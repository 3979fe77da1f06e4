/**
 * The shared rate limiter: a token bucket in plain code, configured by
 * `machines/rate_limiter.ts`.
 *
 * ```ts
 * const limiter = createRateLimiter({ rate: 500, burst: 50 });
 * const wait = limiter.acquire(signal);   // undefined: a token was taken at once
 * if (wait) await wait;                   // else wait (FIFO) for one
 * limiter.setRate(100);                   // effective at once, waiters included
 * ```
 *
 * - The bucket refills continuously at `rate` tokens/s up to `burst`; rate 0
 *   means unlimited (every acquire succeeds at once).
 * - {@link RateLimiter.acquire} takes a token synchronously when one is there
 *   and nobody is waiting (no promise, no microtask on the hot path); else the
 *   caller joins a FIFO queue. Waiters are never dropped: they leave the queue
 *   only with a token or when their `signal` aborts (the promise then rejects
 *   with the signal's reason).
 * - {@link RateLimiter.setRate} re-plans the single wake-up timer at once, so a
 *   new rate applies to queued waiters within one token interval (immediately
 *   when the limiter becomes unlimited).
 * - `rate_limit_tokens` shows the tokens left (updated on each change of
 *   settings, each wake-up, and at most every 250 ms on the fast path).
 *
 * @module
 */
import type { Actor } from "xstate";
import { rateLimitTokens } from "../runtime/metrics.ts";
import { spawnActor, stopActor } from "../runtime/registry.ts";
import { rateLimiterMachine, validRate } from "../../machines/rate_limiter.ts";
import type { AbortLike } from "./deadlines.ts";

/** A clock the bucket reads and schedules with (tests pass xstate's `SimulatedClock`). */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** The real clock (monotonic `performance.now()`). */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
  signal?: AbortLike;
  onAbort?: () => void;
  done: boolean;
}

/**
 * A token bucket with a FIFO queue of waiters. Usually reached through
 * {@link createRateLimiter}; usable alone (no actor, no metric).
 */
export class TokenBucket {
  #rate: number;
  #burst: number;
  #tokens: number;
  #last: number;
  #clock: Clock;
  #queue: Waiter[] = [];
  #head = 0;
  #timer: unknown = undefined;
  #stopped = false;
  #onTokens?: (tokens: number) => void;
  #lastReport = -Infinity;

  /**
   * @param rate records per second, 0 = unlimited
   * @param burst bucket size (at least 1); the bucket starts full
   */
  constructor(
    rate: number,
    burst: number,
    options: { clock?: Clock; onTokens?: (tokens: number) => void } = {},
  ) {
    if (!validRate(rate, burst)) {
      throw new RangeError(`Invalid rate limit: rate ${rate}, burst ${burst}`);
    }
    this.#clock = options.clock ?? systemClock;
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = burst;
    this.#last = this.#clock.now();
    this.#onTokens = options.onTokens;
  }

  /** Records per second (0 = unlimited). */
  get rate(): number {
    return this.#rate;
  }

  /** Bucket size. */
  get burst(): number {
    return this.#burst;
  }

  /** Callers waiting for a token. */
  get waiting(): number {
    return this.#queue.length - this.#head;
  }

  /** Tokens in the bucket now (fractional). */
  tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  #refill(): void {
    const now = this.#clock.now();
    if (this.#rate > 0 && now > this.#last) {
      this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) * this.#rate) / 1000);
    }
    this.#last = now;
  }

  #report(force: boolean): void {
    if (!this.#onTokens) return;
    const now = this.#clock.now();
    if (!force && now - this.#lastReport < 250) return;
    this.#lastReport = now;
    this.#onTokens(this.#rate === 0 ? this.#burst : this.#tokens);
  }

  /** Takes a token if one is there and nobody waits; never waits. */
  tryAcquire(): boolean {
    if (this.#stopped) return false;
    if (this.#rate === 0) return true;
    if (this.#head < this.#queue.length) return false;
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    this.#report(false);
    return true;
  }

  /**
   * Takes a token: returns undefined when one was taken at once, else a
   * promise that resolves when this caller (FIFO) gets one.
   *
   * @throws never; the promise rejects with `signal.reason` on abort, or with
   *   an error when the bucket is stopped.
   */
  acquire(signal?: AbortLike): Promise<void> | undefined {
    if (this.tryAcquire()) return undefined;
    if (this.#stopped) return Promise.reject(new Error("Rate limiter is stopped"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject, signal, done: false };
      if (signal) {
        w.onAbort = () => {
          if (w.done) return;
          w.done = true;
          reject(signal.reason);
          this.#schedule();
        };
        signal.addEventListener("abort", w.onAbort, { once: true });
      }
      this.#queue.push(w);
      this.#schedule();
    });
  }

  /** Changes rate and burst (burst unchanged when omitted); applies to waiters at once. */
  configure(rate: number, burst: number = this.#burst): void {
    if (!validRate(rate, burst)) {
      throw new RangeError(`Invalid rate limit: rate ${rate}, burst ${burst}`);
    }
    this.#refill();
    this.#rate = rate;
    this.#burst = burst;
    this.#tokens = rate === 0 ? burst : Math.min(this.#tokens, burst);
    this.#schedule();
    this.#report(true);
  }

  #grant(w: Waiter): void {
    w.done = true;
    if (w.signal && w.onAbort) w.signal.removeEventListener("abort", w.onAbort);
    w.resolve();
  }

  #schedule(): void {
    if (this.#timer !== undefined) {
      this.#clock.clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#stopped) return;
    this.#refill();
    while (this.#head < this.#queue.length) {
      const w = this.#queue[this.#head];
      if (w.done) {
        this.#head++;
        continue;
      }
      if (this.#rate === 0) {
        this.#head++;
        this.#grant(w);
        continue;
      }
      if (this.#tokens < 1) break;
      this.#tokens -= 1;
      this.#head++;
      this.#grant(w);
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    } else if (this.#head === this.#queue.length) {
      this.#queue.length = 0;
      this.#head = 0;
    }
    if (this.#head < this.#queue.length) {
      // Capped at the largest delay a timer honours (a longer one would fire at once, in a loop).
      const wait = Math.min(
        2_147_483_647,
        Math.max(1, Math.ceil(((1 - this.#tokens) * 1000) / this.#rate)),
      );
      this.#timer = this.#clock.setTimeout(() => {
        this.#timer = undefined;
        this.#schedule();
        this.#report(true);
      }, wait);
    }
  }

  /** Stops the bucket: clears its timer and rejects every waiter. */
  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    const err = new Error("Rate limiter is stopped");
    for (let i = this.#head; i < this.#queue.length; i++) {
      const w = this.#queue[i];
      if (w.done) continue;
      w.done = true;
      if (w.signal && w.onAbort) w.signal.removeEventListener("abort", w.onAbort);
      w.reject(err);
    }
    this.#queue = [];
    this.#head = 0;
  }
}

/** Options of {@link createRateLimiter}. */
export interface RateLimiterOptions {
  /** Records per second; 0 = unlimited. Default 1000 (`SLUICE_RATE_LIMIT`). */
  rate?: number;
  /** Bucket size. Default 100 (`SLUICE_RATE_BURST`). */
  burst?: number;
  /** Registry id of the actor. Default `rate-limiter`. */
  id?: string;
  /** Parent in the actor tree (a supervisor id). Default none. */
  parentId?: string;
  /** Clock. Default {@link systemClock}. */
  clock?: Clock;
}

/** The shared rate limiter (token bucket + lifecycle actor). */
export interface RateLimiter {
  /** See {@link TokenBucket.acquire}. */
  acquire(signal?: AbortLike): Promise<void> | undefined;
  /** See {@link TokenBucket.tryAcquire}. */
  tryAcquire(): boolean;
  /**
   * Changes the rate (0 = unlimited) and optionally the burst, through the
   * actor (`SET_RATE`).
   *
   * @throws {RangeError} on a negative or non-finite rate, or a burst below 1.
   */
  setRate(rate: number, burst?: number): void;
  /** Current settings and state. */
  status(): { rate: number; burst: number; tokens: number; waiting: number; state: string };
  /** The lifecycle actor. */
  readonly actor: Actor<typeof rateLimiterMachine>;
  /** Stops the actor and the bucket (waiters are rejected). */
  stop(): void;
}

/** Creates the shared rate limiter and its actor (registered with `spawnActor`). */
export function createRateLimiter(options: RateLimiterOptions = {}): RateLimiter {
  const id = options.id ?? "rate-limiter";
  const rate = options.rate ?? 1000;
  const burst = options.burst ?? 100;
  const bucket = new TokenBucket(rate, burst, {
    clock: options.clock,
    onTokens: (t) => rateLimitTokens.set(Math.floor(t)),
  });
  const actor = spawnActor(rateLimiterMachine, {
    id,
    kind: "rate-limiter",
    parentId: options.parentId,
    input: { rate, burst },
    summary: (s) => ({ rate: s.context.rate, burst: s.context.burst, waiting: bucket.waiting }),
  });
  actor.subscribe((s) => {
    if (s.context.rate !== bucket.rate || s.context.burst !== bucket.burst) {
      bucket.configure(s.context.rate, s.context.burst);
    }
  });
  rateLimitTokens.set(burst);
  return {
    acquire: (signal) => bucket.acquire(signal),
    tryAcquire: () => bucket.tryAcquire(),
    setRate(newRate, newBurst) {
      if (!validRate(newRate, newBurst)) {
        throw new RangeError(
          `Invalid rate limit: rate must be a number of at least 0 and burst at least 1, got ${newRate} and ${newBurst}`,
        );
      }
      actor.send({ type: "SET_RATE", rate: newRate, burst: newBurst });
    },
    status: () => ({
      rate: bucket.rate,
      burst: bucket.burst,
      tokens: bucket.tokens(),
      waiting: bucket.waiting,
      state: String(actor.getSnapshot().value),
    }),
    actor,
    stop() {
      stopActor(id);
      bucket.stop();
    },
  };
}
