/**
 * Lifecycle and configuration of the shared rate limiter.
 *
 * The machine holds the rate (records/s) and the burst, and whether the
 * limiter is `limited` or `unlimited` (rate 0). It never sees a record: the
 * token bucket in `actors/pipeline/rate_limiter.ts` is plain code that follows the
 * machine's context (it subscribes to snapshots).
 *
 * Events: `SET_RATE {rate, burst?}` (from `PUT /control/rate`); invalid
 * values (negative or non-finite rate, burst < 1) are ignored by a guard (the
 * actor validates first and throws a clear error).
 *
 * @module
 */
import { assign, setup } from "xstate";

/** Context of {@link rateLimiterMachine}. */
export interface RateLimiterContext {
  /** Records per second; 0 = unlimited. */
  rate: number;
  /** Bucket size; at least 1. */
  burst: number;
  /** How many times the rate was changed since start. */
  changes: number;
}

/** Input of {@link rateLimiterMachine}. Defaults: rate 1000, burst 100 (as in the config schema). */
export interface RateLimiterInput {
  rate?: number;
  burst?: number;
}

/** Events of {@link rateLimiterMachine}. */
export type RateLimiterEvent = { type: "SET_RATE"; rate: number; burst?: number };

/** True when `rate` and `burst` are acceptable limiter settings. */
export function validRate(rate: number, burst?: number): boolean {
  return Number.isFinite(rate) && rate >= 0 &&
    (burst === undefined || (Number.isFinite(burst) && burst >= 1));
}

/** The rate limiter's lifecycle: `limited` ⇄ `unlimited`, driven by `SET_RATE`. */
export const rateLimiterMachine = setup({
  types: {
    context: {} as RateLimiterContext,
    input: {} as RateLimiterInput,
    events: {} as RateLimiterEvent,
  },
  guards: {
    isValid: ({ event }) => validRate(event.rate, event.burst),
    startsUnlimited: ({ context }) => context.rate === 0,
  },
  actions: {
    apply: assign(({ context, event }) => ({
      rate: event.rate,
      burst: event.burst ?? context.burst,
      changes: context.changes + 1,
    })),
  },
}).createMachine({
  id: "rateLimiter",
  context: ({ input }) => ({
    rate: input?.rate ?? 1000,
    burst: Math.max(1, input?.burst ?? 100),
    changes: 0,
  }),
  initial: "init",
  on: {
    SET_RATE: { guard: "isValid", target: ".init", actions: "apply" },
  },
  states: {
    init: {
      always: [{ guard: "startsUnlimited", target: "unlimited" }, { target: "limited" }],
    },
    limited: {},
    unlimited: {},
  },
});
