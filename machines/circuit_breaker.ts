/**
 * The circuit breaker's visible state: `closed | open | halfOpen`.
 *
 * opossum decides (failure percentage over a rolling window, reset timer, one
 * half-open probe); this machine mirrors its `open`, `halfOpen` and `close`
 * events (`OPENED`, `HALF_OPENED`, `CLOSED`) so the inspector and the
 * dashboard see the breaker like every other actor. On each change it runs
 * the named action `report` (and `reportInitial` on start); here they do
 * nothing: `actors/pipeline/circuit_breaker.ts` binds them with
 * `machine.provide(...)` to the `circuit_state` gauge (0 closed, 1
 * half-open, 2 open) and the `circuit.changed` event, so this machine
 * imports no runtime singleton.
 *
 * @module
 */
import { assign, setup } from "xstate";

/** What happens to records while the breaker is open. */
export type BreakerPolicy = "pause" | "dlq";

/** Context of {@link circuitBreakerMachine}. */
export interface CircuitBreakerContext {
  /** Default `pause`. */
  policy: BreakerPolicy;
  /** Times the breaker opened since start. */
  opens: number;
  /** ISO time of the last change; null before the first. */
  changedAt: string | null;
}

/** Input of {@link circuitBreakerMachine}. */
export interface CircuitBreakerInput {
  /** Default `pause`. */
  policy?: BreakerPolicy;
}

/** Events of {@link circuitBreakerMachine}: mirrors of opossum's events. */
export type CircuitBreakerEvent =
  | { type: "OPENED" }
  | { type: "HALF_OPENED" }
  | { type: "CLOSED" };

/** Gauge value of each state (README, "Internals: the contracts": 0 closed, 1 half-open, 2 open). */
export const CIRCUIT_GAUGE = { closed: 0, halfOpen: 1, open: 2 } as const;

/** The breaker mirror: `closed` → `open` → `halfOpen` → `closed` (or back to `open`). */
export const circuitBreakerMachine = setup({
  types: {
    context: {} as CircuitBreakerContext,
    input: {} as CircuitBreakerInput,
    events: {} as CircuitBreakerEvent,
  },
  actions: {
    /** A change of state; bound by the actor that runs the machine. */
    report: (
      _,
      _params: { from: keyof typeof CIRCUIT_GAUGE; to: keyof typeof CIRCUIT_GAUGE },
    ) => {},
    /** The state on start (`closed`); bound by the actor that runs the machine. */
    reportInitial: () => {},
    stamp: assign({ changedAt: () => new Date().toISOString() }),
    countOpen: assign({ opens: ({ context }) => context.opens + 1 }),
  },
}).createMachine({
  id: "circuitBreaker",
  context: ({ input }) => ({ policy: input?.policy ?? "pause", opens: 0, changedAt: null }),
  initial: "closed",
  entry: "reportInitial",
  states: {
    closed: {
      on: {
        OPENED: {
          target: "open",
          actions: ["stamp", "countOpen", {
            type: "report",
            params: { from: "closed", to: "open" },
          }],
        },
      },
    },
    open: {
      on: {
        HALF_OPENED: {
          target: "halfOpen",
          actions: ["stamp", { type: "report", params: { from: "open", to: "halfOpen" } }],
        },
        // An operator may close it by hand (opossum `close()`).
        CLOSED: {
          target: "closed",
          actions: ["stamp", { type: "report", params: { from: "open", to: "closed" } }],
        },
      },
    },
    halfOpen: {
      on: {
        CLOSED: {
          target: "closed",
          actions: ["stamp", { type: "report", params: { from: "halfOpen", to: "closed" } }],
        },
        OPENED: {
          target: "open",
          actions: ["stamp", "countOpen", {
            type: "report",
            params: { from: "halfOpen", to: "open" },
          }],
        },
      },
    },
  },
});
