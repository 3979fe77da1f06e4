/**
 * The parts of undici the upstream client uses, loaded with a cheaper
 * `assert` (`actors/pipeline/undici_assert.ts`: Deno's `node:assert` allocates
 * on every call, and undici calls it 23 times per request against a loopback
 * `204`).
 *
 * ```ts
 * import { Pool, errors, dispatchWithSignal } from "./undici.ts";
 * ```
 *
 * Only these three of undici's modules: its index also loads fetch,
 * WebSocket, EventSource, the mock agents and the cache stores (7.5 MB of heap
 * loaded alone, 4.8 MB for these three; README, Benchmarks).
 * `tests/e2e/lazy_modules_test.ts` checks it.
 *
 * @module
 */
// First: it puts the cheaper assert in place for the imports that follow
// (ES modules evaluate in import order).
import { endCheapAssert } from "./undici_assert.ts";
import type { Dispatcher, errors as UndiciErrors, Pool as UndiciPool } from "undici";
import undiciPool from "undici/lib/dispatcher/pool.js";
import undiciErrors from "undici/lib/core/errors.js";
import undiciAbortSignal from "undici/lib/api/abort-signal.js";

/** The files of undici whose `require("node:assert")` got the cheaper assert (tests read it). */
export const cheapAssertServed: readonly string[] = endCheapAssert();

export type { Dispatcher };
/** undici's connection pool for one origin. */
export const Pool = undiciPool as unknown as typeof UndiciPool;
/** undici's error classes (`ConnectTimeoutError`, `HeadersTimeoutError`, …). */
export const errors = undiciErrors as unknown as typeof UndiciErrors;

/** A dispatch handler that undici's abort-signal helpers can drive. */
export interface AbortableHandler {
  /** Set by `addSignal` when the signal aborts: the abort's reason. */
  reason?: unknown;
  /** Called by `addSignal` when the signal aborts. */
  abort?: ((reason: unknown) => void) | null;
}

/**
 * undici's own abort-signal helpers of its `request` API: `addSignal` links a
 * handler to a signal (sets its `reason`, calls its `abort`), and
 * `dispatchWithSignal` lets an abort also take a request out of the pool's
 * queue before it starts.
 */
export const { addSignal, removeSignal, dispatchWithSignal } = undiciAbortSignal as unknown as {
  addSignal(handler: AbortableHandler, signal: AbortSignal): void;
  removeSignal(handler: AbortableHandler): void;
  dispatchWithSignal(
    dispatcher: Dispatcher,
    opts: Dispatcher.DispatchOptions,
    handler: AbortableHandler,
  ): void;
};
