/**
 * The circuit breaker in front of the upstream: opossum decides, an XState
 * actor (`machines/circuit_breaker.ts`) mirrors `closed | open | halfOpen`.
 *
 * ```ts
 * const breaker = createCircuitBreaker({ policy: "pause" });
 * breaker.onStateChange((to) => to === "open" ? pauseAll("circuit") : resumeAll("circuit"));
 * const r = await breaker.run(() => attempt(), (r) => r.unhealthy);  // throws CircuitOpenError
 * ```
 *
 * **What counts as a failure.** {@link CircuitBreaker.run} takes a classifier:
 * only results that mean "upstream unhealthy" (5xx, timeouts, network errors)
 * count as breaker failures; a 2xx and a 4xx (including 408 and 429, which
 * say "slow down", not "broken") count as successes. The result is returned
 * either way: the breaker never changes what the caller sees, it only refuses
 * calls while open.
 *
 * **Retries and the breaker.** The upstream client runs *each attempt*
 * through the breaker (not the whole retried delivery). So every failed
 * attempt is counted at once, a record never keeps retrying into an open
 * breaker (its next attempt is refused with {@link CircuitOpenError}), and a
 * half-open probe is one single attempt. What a refused record does then is
 * the policy's business:
 *  - `pause` (default): the processor waits ({@link CircuitBreaker.whenCallable})
 *    and tries again, with a fresh retry budget; nothing is dead-lettered. The
 *    Kafka binding pauses every partition on `open` and resumes them on
 *    `halfOpen`/`closed` ({@link CircuitBreaker.onStateChange}), so lag grows
 *    instead of buffers.
 *  - `dlq`: the record is dead-lettered with `CIRCUIT_OPEN`.
 *
 * **Timeouts.** opossum's own `timeout` is off: its `abortController` is one
 * controller shared by every call, so an opossum timeout would abort every
 * call in flight. The upstream client's connect, read and global timeouts
 * bound each attempt instead (and count as failures). The `abortController`
 * option is still given to opossum, and its signal to every call:
 * {@link CircuitBreaker.stop} aborts it, cancelling the calls in flight, and
 * shuts opossum down (no timer is left behind).
 *
 * @module
 */
// @ts-types="@types/opossum"
import Opossum from "opossum";
import type { Actor } from "xstate";
import type { CircuitStateName } from "../record/record.ts";
import { spawnActor, stopActor } from "../runtime/registry.ts";
import { publishEvent } from "../runtime/events.ts";
import { circuitState } from "../runtime/metrics.ts";
import {
  type BreakerPolicy,
  CIRCUIT_GAUGE,
  circuitBreakerMachine,
} from "../../machines/circuit_breaker.ts";

export type { BreakerPolicy } from "../../machines/circuit_breaker.ts";

/**
 * The breaker mirror bound to the runtime: each change sets the
 * `circuit_state` gauge and publishes `circuit.changed` (warn when it opens).
 */
export const reportingCircuitBreakerMachine = circuitBreakerMachine.provide({
  actions: {
    report: (_, params) => {
      circuitState.set(CIRCUIT_GAUGE[params.to]);
      publishEvent(
        "circuit.changed",
        params.to === "open" ? "warn" : "info",
        { from: params.from, to: params.to },
      );
    },
    reportInitial: () => circuitState.set(CIRCUIT_GAUGE.closed),
  },
});

/** Thrown by {@link CircuitBreaker.run} when the breaker refuses the call. */
export class CircuitOpenError extends Error {
  /** State that refused the call (`open`, or `halfOpen` while its probe runs). */
  readonly state: CircuitStateName;
  constructor(state: CircuitStateName) {
    super(`Circuit breaker is ${state === "open" ? "open" : "half-open"}: call refused`);
    this.name = "CircuitOpenError";
    this.state = state;
  }
}

/** Options of {@link createCircuitBreaker}; defaults match the config schema. */
export interface CircuitBreakerOptions {
  /** Default `pause` (`SLUICE_BREAKER_POLICY`). */
  policy?: BreakerPolicy;
  /** Failure percentage over the window that opens the breaker. Default 50 (`SLUICE_BREAKER_ERROR_PERCENT`). */
  errorThresholdPercentage?: number;
  /** Calls in the window before the breaker may open. Default 10 (`SLUICE_BREAKER_VOLUME`). */
  volumeThreshold?: number;
  /** Rolling statistics window (ms). Default 10000 (`SLUICE_BREAKER_WINDOW_MS`). */
  rollingCountTimeout?: number;
  /** Time open before a half-open probe (ms). Default 10000 (`SLUICE_BREAKER_RESET_MS`). */
  resetTimeout?: number;
  /** Registry id of the actor. Default `circuit-breaker`. */
  id?: string;
  /** Parent in the actor tree. Default none. */
  parentId?: string;
}

/** Listener of state changes. */
export type BreakerListener = (to: CircuitStateName, from: CircuitStateName) => void;

/** The breaker. */
export interface CircuitBreaker {
  /** Policy while open. */
  readonly policy: BreakerPolicy;
  /** Current state (opossum's, which the actor mirrors). */
  readonly state: CircuitStateName;
  /** The mirror actor. */
  readonly actor: Actor<typeof reportingCircuitBreakerMachine>;
  /**
   * Runs one call. `isFailure(result)` says whether a result counts as a
   * breaker failure; the result is returned either way. A thrown error counts
   * as a failure and is rethrown.
   *
   * @throws {CircuitOpenError} when the breaker refuses the call (fn not run).
   */
  run<T>(fn: (signal: AbortSignal) => Promise<T>, isFailure: (result: T) => boolean): Promise<T>;
  /**
   * Resolves as soon as the breaker lets calls through (`closed` or
   * `halfOpen`), at once if it does now. Rejects with `signal.reason` on abort
   * and with an error when the breaker is stopped.
   */
  whenCallable(signal?: AbortSignal): Promise<void>;
  /** Resolves at the next state change (or on abort/stop, rejecting). */
  nextChange(signal?: AbortSignal): Promise<CircuitStateName>;
  /** Listens to state changes; returns the unsubscribe function. */
  onStateChange(listener: BreakerListener): () => void;
  /** Forces the breaker open (operator). */
  open(): void;
  /** Forces the breaker closed (operator). */
  close(): void;
  /** Rolling statistics (opossum's counters). */
  stats(): { successes: number; failures: number; rejects: number; fires: number };
  /** Aborts calls in flight, shuts opossum down, stops the actor. */
  stop(): void;
}

class UnhealthyResult {
  constructor(readonly result: unknown) {}
}

type Action = (
  fn: (signal: AbortSignal) => Promise<unknown>,
  isFailure: (r: unknown) => boolean,
  signal: AbortSignal,
) => Promise<unknown>;

/** Creates the breaker and its mirror actor (registered with `spawnActor`). */
export function createCircuitBreaker(options: CircuitBreakerOptions = {}): CircuitBreaker {
  const id = options.id ?? "circuit-breaker";
  const policy = options.policy ?? "pause";
  const abortController = new AbortController();
  const action: Action = async (fn, isFailure, signal) => {
    const r = await fn(signal);
    if (isFailure(r)) throw new UnhealthyResult(r);
    return r;
  };
  const opossum = new Opossum(action, {
    timeout: false,
    errorThresholdPercentage: options.errorThresholdPercentage ?? 50,
    volumeThreshold: options.volumeThreshold ?? 10,
    rollingCountTimeout: options.rollingCountTimeout ?? 10000,
    rollingCountBuckets: 10,
    resetTimeout: options.resetTimeout ?? 10000,
    enableSnapshots: false,
    abortController,
  });
  let state: CircuitStateName = "closed";
  let stopped = false;
  const listeners = new Set<BreakerListener>();
  const changeWaiters = new Set<
    { resolve: (s: CircuitStateName) => void; reject: (e: unknown) => void }
  >();
  const actor = spawnActor(reportingCircuitBreakerMachine, {
    id,
    kind: "breaker",
    parentId: options.parentId,
    input: { policy },
    summary: (s) => ({ policy: s.context.policy, opens: s.context.opens }),
  });
  const change = (to: CircuitStateName) => {
    if (to === state) return;
    const from = state;
    state = to;
    actor.send({ type: to === "open" ? "OPENED" : to === "halfOpen" ? "HALF_OPENED" : "CLOSED" });
    for (const w of changeWaiters) w.resolve(to);
    changeWaiters.clear();
    for (const l of listeners) {
      try {
        l(to, from);
      } catch {
        // A listener's failure is its own business.
      }
    }
  };
  opossum.on("open", () => change("open"));
  opossum.on("halfOpen", () => change("halfOpen"));
  opossum.on("close", () => change("closed"));

  const nextChange = (signal?: AbortSignal): Promise<CircuitStateName> => {
    if (stopped) return Promise.reject(new Error("Circuit breaker is stopped"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        changeWaiters.delete(w);
        reject(signal!.reason);
      };
      const w = {
        resolve: (s: CircuitStateName) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(s);
        },
        reject: (e: unknown) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      changeWaiters.add(w);
    });
  };

  return {
    policy,
    get state() {
      return state;
    },
    actor,
    async run<T>(fn: (signal: AbortSignal) => Promise<T>, isFailure: (result: T) => boolean) {
      try {
        return await opossum.fire(
          fn as (s: AbortSignal) => Promise<unknown>,
          isFailure as (r: unknown) => boolean,
          abortController.signal,
        ) as T;
      } catch (e) {
        if (e instanceof UnhealthyResult) return e.result as T;
        if ((e as { code?: string })?.code === "EOPENBREAKER") {
          throw new CircuitOpenError(state === "closed" ? "open" : state);
        }
        if ((e as { code?: string })?.code === "ESHUTDOWN") {
          throw new CircuitOpenError("open");
        }
        throw e;
      }
    },
    async whenCallable(signal) {
      while (state === "open") await nextChange(signal);
    },
    nextChange,
    onStateChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    open: () => opossum.open(),
    close: () => opossum.close(),
    stats() {
      const s = opossum.stats;
      return { successes: s.successes, failures: s.failures, rejects: s.rejects, fires: s.fires };
    },
    stop() {
      if (stopped) return;
      stopped = true;
      abortController.abort(new Error("Circuit breaker is stopped"));
      opossum.shutdown();
      const err = new Error("Circuit breaker is stopped");
      for (const w of changeWaiters) w.reject(err);
      changeWaiters.clear();
      listeners.clear();
      stopActor(id);
    },
  };
}
