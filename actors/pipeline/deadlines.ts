/**
 * Cheap per-record cancellation for the record path (`actors/pipeline/upstream.ts`):
 * one timer for every deadline, and one listener per shared abort signal.
 *
 * ```ts
 * const wheel = new DeadlineQueue();
 * const d = wheel.add(30_000, () => ctl.abort(new Error("late")));
 * wheel.cancel(d);
 * const unlink = linkAbort(workerSignal, ctl); // ctl aborts when workerSignal does
 * unlink();
 * const scope = new CancelScope();               // an AbortController without the EventTarget
 * const unlink2 = linkAbort(workerSignal, scope);
 * ```
 *
 * **Why.** Each record used to arm its own `setTimeout` for its global
 * timeout and add (then remove) an `abort` listener on the partition's and
 * the breaker's signals, which every record in flight shares: removing a
 * listener from a signal with a thousand others is a linear scan, per
 * record. The CPU profile of the framework benchmark (README, Benchmarks:
 * "Where the time goes") charged them several percent of sluice's CPU.
 *
 * **{@link DeadlineQueue}.** Deadlines are kept in a doubly linked list in
 * deadline order and one timer is armed for the earliest. Deadlines added
 * with the same duration arrive in order, so an add is O(1) at the tail; an
 * out-of-order deadline (a budget resumed after a flow-control wait) walks
 * back from the tail to its place. Cancel is O(1). Callbacks run from the
 * timer, never synchronously from `add`.
 *
 * **{@link linkAbort}.** The first link to a signal adds one listener; links
 * are a `Set`, so linking and unlinking are O(1). When the signal aborts,
 * every linked controller is aborted with its reason.
 *
 * **{@link CancelScope}.** The upstream client's cancellation of one
 * delivery round (its global timeout, the caller's signal, the breaker's):
 * what its waits read of an `AbortSignal` ({@link AbortLike}: `aborted`,
 * `reason`, `abort` listeners), without the `AbortController` and
 * `AbortSignal` (an `EventTarget`) of each round, nor undici's listener on
 * that signal for each request (Node's `addAbortListener`, a disposable per
 * call): about 2.5 % of sluice's CPU in the framework benchmark's profile,
 * before the allocations' share of garbage collection (README, Benchmarks).
 *
 * @module
 */

/** A deadline in a {@link DeadlineQueue}. */
export interface Deadline {
  at: number;
  fire: () => void;
  prev: Deadline | null;
  next: Deadline | null;
  queued: boolean;
}

/** Deadlines with one timer (see the module doc). */
export class DeadlineQueue {
  #head: Deadline | null = null;
  #tail: Deadline | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #armedAt = Infinity;
  #size = 0;

  /** Deadlines waiting. */
  get size(): number {
    return this.#size;
  }

  /** Calls `fire` in `ms` milliseconds unless cancelled first. */
  add(ms: number, fire: () => void): Deadline {
    const d: Deadline = {
      at: performance.now() + Math.max(0, ms),
      fire,
      prev: null,
      next: null,
      queued: true,
    };
    let after = this.#tail;
    while (after !== null && after.at > d.at) after = after.prev;
    d.prev = after;
    d.next = after === null ? this.#head : after.next;
    if (d.next) d.next.prev = d;
    else this.#tail = d;
    if (after) after.next = d;
    else this.#head = d;
    this.#size++;
    if (d.at < this.#armedAt) this.#arm(d.at);
    return d;
  }

  /** Removes a deadline; nothing happens if it fired or was cancelled already. */
  cancel(d: Deadline): void {
    if (!d.queued) return;
    d.queued = false;
    if (d.prev) d.prev.next = d.next;
    else this.#head = d.next;
    if (d.next) d.next.prev = d.prev;
    else this.#tail = d.prev;
    d.prev = d.next = null;
    this.#size--;
    if (this.#head === null) this.#disarm();
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    this.#armedAt = at;
    this.#timer = setTimeout(this.#run, Math.max(0, at - performance.now()));
  }

  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  #run = (): void => {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    const now = performance.now();
    // Timers may fire a little early: 1 ms of slack.
    while (this.#head !== null && this.#head.at <= now + 1) {
      const d = this.#head;
      this.cancel(d);
      try {
        d.fire();
      } catch {
        // The owner's business; the queue goes on.
      }
    }
    if (this.#head !== null) this.#arm(this.#head.at);
  };
}

/**
 * What the record path's waits read of an abort signal: an `AbortSignal` is
 * one, and so is a {@link CancelScope}.
 */
export interface AbortLike {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** What {@link linkAbort} aborts: an `AbortController`, a {@link CancelScope}. */
export interface Abortable {
  abort(reason?: unknown): void;
}

/**
 * An abort signal and its controller in one plain object (see the module
 * doc): `abort(reason)` sets `aborted` and `reason` and calls each `abort`
 * listener once, in the order added; a listener added after the abort is
 * never called (as with an `AbortSignal`). Listeners must not throw (an
 * exception is dropped, the next listener still runs).
 */
export class CancelScope implements AbortLike, Abortable {
  aborted = false;
  reason: unknown = undefined;
  #listeners: (() => void)[] | null = null;

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason === undefined
      ? new DOMException("This operation was aborted", "AbortError")
      : reason;
    const listeners = this.#listeners;
    this.#listeners = null;
    if (listeners === null) return;
    for (const l of listeners) {
      try {
        l();
      } catch {
        // A listener's failure is its own business (see the class doc).
      }
    }
  }

  addEventListener(_type: "abort", listener: () => void): void {
    if (!this.aborted) (this.#listeners ??= []).push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const listeners = this.#listeners;
    if (listeners === null) return;
    const at = listeners.lastIndexOf(listener);
    if (at >= 0) listeners.splice(at, 1);
  }
}

const links = new WeakMap<AbortSignal, Set<Abortable>>();

/**
 * Aborts `ctl` (with the signal's reason) when `signal` aborts; returns the
 * unlink function. An already aborted signal aborts `ctl` at once.
 */
export function linkAbort(signal: AbortSignal, ctl: Abortable): () => void {
  if (signal.aborted) {
    ctl.abort(signal.reason);
    return () => {};
  }
  let set = links.get(signal);
  if (!set) {
    const members = new Set<Abortable>();
    set = members;
    links.set(signal, members);
    signal.addEventListener("abort", () => {
      links.delete(signal);
      for (const c of members) c.abort(signal.reason);
      members.clear();
    }, { once: true });
  }
  set.add(ctl);
  const members = set;
  return () => void members.delete(ctl);
}
