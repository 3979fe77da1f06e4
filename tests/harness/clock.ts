/**
 * A manual clock for rate tests: time moves only when the test moves it, so
 * a rate is checked exactly (no wall-clock window). It implements the
 * `Clock` of `actors/pipeline/rate_limiter.ts` (reading + timers), and it
 * tells which timers are pending, so a test can wait (on a condition) until
 * the code under test is waiting for time before moving it.
 *
 * ```ts
 * const clock = new ManualClock();
 * const bucket = new TokenBucket(20, 1, { clock });
 * await waitFor(() => clock.pending > 0);
 * clock.runNext(); // time jumps to the earliest timer, which runs
 * ```
 *
 * @module
 */
import type { Clock } from "../../actors/pipeline/rate_limiter.ts";

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
}

/** A clock whose time moves only by {@link advance} / {@link runNext}. */
export class ManualClock implements Clock {
  #now: number;
  #seq = 0;
  #timers = new Map<number, Timer>();

  /** @param start the initial reading (ms). Default 0. */
  constructor(start = 0) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): unknown {
    const seq = ++this.#seq;
    this.#timers.set(seq, { at: this.#now + Math.max(0, ms), seq, fn });
    return seq;
  }

  clearTimeout(id: unknown): void {
    this.#timers.delete(id as number);
  }

  /** Timers scheduled and not yet run or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /** Due time of the earliest pending timer; undefined when none. */
  nextDue(): number | undefined {
    return this.#earliest()?.at;
  }

  #earliest(): Timer | undefined {
    let first: Timer | undefined;
    for (const t of this.#timers.values()) {
      if (!first || t.at < first.at || (t.at === first.at && t.seq < first.seq)) first = t;
    }
    return first;
  }

  /**
   * Moves time to the earliest pending timer's due time and runs that timer
   * (only that one). Returns the new reading.
   *
   * @throws {Error} when no timer is pending.
   */
  runNext(): number {
    const t = this.#earliest();
    if (!t) throw new Error("ManualClock: no timer pending");
    this.#timers.delete(t.seq);
    if (t.at > this.#now) this.#now = t.at;
    t.fn();
    return this.#now;
  }

  /** Moves time forward by `ms`, running every timer due on the way, in due order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (let t = this.#earliest(); t && t.at <= end; t = this.#earliest()) {
      this.#timers.delete(t.seq);
      if (t.at > this.#now) this.#now = t.at;
      t.fn();
    }
    this.#now = end;
  }
}
