/**
 * The load generator's lifecycle as a pure XState machine (local mode and
 * benchmarks, README, Quick start).
 *
 * ```
 *             SET_RATE (forwarded to the producer)
 *              ┌──┐
 *              ▼  │
 * ──▶ running ─────── PAUSE ──▶ paused ─┐  SET_RATE (kept for RESUME)
 *       ▲                               │
 *       └────────── RESUME ─────────────┘
 * running | paused ──STOP / DONE──▶ stopping (drain: the send in flight ends) ──▶ stopped
 * ```
 *
 * The machine sees lifecycle and control events only, never one event per
 * record: the producing loop is plain code behind the `producer` callback
 * actor, which sends `DONE` when its record count is reached and
 * `PRODUCE_FAILED` / `PRODUCE_RECOVERED` when sending starts or stops
 * failing (once per streak). Stopping it is the first shutdown phase: `stopped`
 * is reached only after the send in flight finished (`drain`).
 *
 * Implementations are named in `setup` and supplied by
 * `actors/local/load_generator.ts` (and tests) with `.provide(...)`:
 *  - actor `producer` (callback, input `{rate}`, receives `SET_RATE`);
 *  - actor `drain` (promise): resolves once no send is in flight.
 *
 * @module
 */
import { assign, fromCallback, fromPromise, sendTo, setup, type SnapshotFrom } from "xstate";

/** Input of {@link loadGeneratorMachine}. */
export interface LoadGeneratorInput {
  /** Records per second; default 10. */
  rate?: number;
  /** Start in `paused`; default false. */
  paused?: boolean;
}

/** Context of {@link loadGeneratorMachine}. */
export interface LoadGeneratorContext {
  /** Target records per second. */
  rate: number;
  startPaused: boolean;
  /** Message of the send failure in the current failure streak, null when healthy. */
  lastError: string | null;
  /** Failure streaks seen. */
  failureStreaks: number;
}

/** Events of {@link loadGeneratorMachine}. */
export type LoadGeneratorEvent =
  | { type: "SET_RATE"; rate: number }
  | { type: "PAUSE" }
  | { type: "RESUME" }
  | { type: "STOP" }
  | { type: "DONE" }
  | { type: "PRODUCE_FAILED"; error: string }
  | { type: "PRODUCE_RECOVERED" };

/** Input of the `producer` actor. */
export interface ProducerInput {
  rate: number;
}

/** True when `rate` is a usable records-per-second value (finite, ≥ 0). */
export function isValidRate(rate: unknown): rate is number {
  return typeof rate === "number" && Number.isFinite(rate) && rate >= 0;
}

/** The machine; see the module doc. */
export const loadGeneratorMachine = setup({
  types: {
    input: {} as LoadGeneratorInput,
    context: {} as LoadGeneratorContext,
    events: {} as LoadGeneratorEvent,
  },
  actors: {
    producer: fromCallback<{ type: "SET_RATE"; rate: number }, ProducerInput>(() => () => {}),
    drain: fromPromise<void>(() => Promise.resolve()),
  },
  guards: {
    validRate: ({ event }) => event.type === "SET_RATE" && isValidRate(event.rate),
  },
}).createMachine({
  id: "loadGenerator",
  context: ({ input }) => ({
    rate: isValidRate(input.rate) ? input.rate : 10,
    startPaused: input.paused ?? false,
    lastError: null,
    failureStreaks: 0,
  }),
  initial: "starting",
  on: {
    PRODUCE_FAILED: {
      actions: assign({
        lastError: ({ event }) => event.error,
        failureStreaks: ({ context }) => context.failureStreaks + 1,
      }),
    },
    PRODUCE_RECOVERED: { actions: assign({ lastError: null }) },
  },
  states: {
    starting: {
      always: [{ guard: ({ context }) => context.startPaused, target: "paused" }, {
        target: "running",
      }],
    },
    running: {
      invoke: {
        id: "producer",
        src: "producer",
        input: ({ context }) => ({ rate: context.rate }),
      },
      on: {
        SET_RATE: {
          guard: "validRate",
          actions: [
            assign({ rate: ({ event }) => event.rate }),
            sendTo("producer", ({ event }) => event),
          ],
        },
        PAUSE: "paused",
        STOP: "stopping",
        DONE: "stopping",
      },
    },
    paused: {
      on: {
        SET_RATE: { guard: "validRate", actions: assign({ rate: ({ event }) => event.rate }) },
        RESUME: "running",
        STOP: "stopping",
        DONE: "stopping",
      },
    },
    stopping: {
      invoke: { src: "drain", onDone: "stopped", onError: "stopped" },
    },
    stopped: { type: "final" },
  },
});

/** Snapshot of {@link loadGeneratorMachine}. */
export type LoadGeneratorSnapshot = SnapshotFrom<typeof loadGeneratorMachine>;

/** The state name: `running`, `paused`, `stopping` or `stopped` (`starting` is transient). */
export function loadGeneratorStateName(snapshot: LoadGeneratorSnapshot): string {
  return String(snapshot.value);
}
