/**
 * Lifecycle of one assigned topic-partition.
 *
 * ```
 * assigned ──START──▶ running ⇄ paused ──DRAIN / REVOKE──▶ draining ──DRAINED / DRAIN_TIMEOUT──▶ stopped
 *     └──────────────────DRAIN / REVOKE────────────────────────▲
 * ```
 *
 * Pause reasons compose: `PAUSE {reason}` adds a reason, `RESUME {reason}`
 * removes it, and the partition is `paused` while *any* reason holds
 * (`inflight`: the worker is full; `backpressure`: the audit spool is over
 * budget; `circuit`: the breaker is open; `operator`: `POST /control/drain`).
 * Reasons are tracked in every state, so a partition started while the
 * breaker is open goes straight to `paused`.
 *
 * Events come per batch or per state change, never per record. The Kafka
 * binding follows the state: entering `paused` → `consumer.pause(...)`,
 * entering `running` → `consumer.resume(...)`; on `draining` it stops
 * fetching, drains the worker, commits, then sends `DRAINED`.
 *
 * @module
 */
import { assign, setup } from "xstate";

/** Why a partition is paused. */
export type PauseReason = "inflight" | "backpressure" | "circuit" | "operator";

/** Why a partition drains. */
export type DrainReason = "shutdown" | "revoke";

/** Context of {@link partitionConsumerMachine}. */
export interface PartitionConsumerContext {
  topic: string;
  partition: number;
  /** Consumer group generation the partition was assigned in. */
  generation: number;
  /** Reasons holding the partition paused (each at most once, in arrival order). */
  pauseReasons: PauseReason[];
  /** Set once draining. */
  drainReason: DrainReason | null;
  /** Times the partition was paused. */
  pauses: number;
  /** True when the drain ended by `DRAIN_TIMEOUT` rather than `DRAINED`. */
  drainTimedOut: boolean;
}

/** Input of {@link partitionConsumerMachine}. */
export interface PartitionConsumerInput {
  topic: string;
  partition: number;
  /** Default 0. */
  generation?: number;
}

/** Events of {@link partitionConsumerMachine}. */
export type PartitionConsumerEvent =
  | { type: "START" }
  | { type: "PAUSE"; reason: PauseReason }
  | { type: "RESUME"; reason: PauseReason }
  | { type: "DRAIN"; reason?: DrainReason }
  | { type: "REVOKE" }
  | { type: "DRAINED" }
  /** The drain deadline passed with records unfinished (they will be consumed again). */
  | { type: "DRAIN_TIMEOUT" };

/** One partition's lifecycle (see the module doc). */
export const partitionConsumerMachine = setup({
  types: {
    context: {} as PartitionConsumerContext,
    input: {} as PartitionConsumerInput,
    events: {} as PartitionConsumerEvent,
  },
  guards: {
    anyReason: ({ context }) => context.pauseReasons.length > 0,
    noReason: ({ context }) => context.pauseReasons.length === 0,
  },
  actions: {
    addReason: assign({
      pauseReasons: ({ context, event }) =>
        event.type === "PAUSE" && !context.pauseReasons.includes(event.reason)
          ? [...context.pauseReasons, event.reason]
          : context.pauseReasons,
    }),
    removeReason: assign({
      pauseReasons: ({ context, event }) =>
        event.type === "RESUME"
          ? context.pauseReasons.filter((r) => r !== event.reason)
          : context.pauseReasons,
    }),
    countPause: assign({ pauses: ({ context }) => context.pauses + 1 }),
    setDrainReason: assign({
      drainReason: ({ event }) =>
        event.type === "REVOKE"
          ? "revoke"
          : event.type === "DRAIN"
          ? event.reason ?? "shutdown"
          : null,
    }),
  },
}).createMachine({
  id: "partitionConsumer",
  context: ({ input }) => ({
    topic: input.topic,
    partition: input.partition,
    generation: input.generation ?? 0,
    pauseReasons: [],
    drainReason: null,
    pauses: 0,
    drainTimedOut: false,
  }),
  initial: "assigned",
  on: {
    PAUSE: { actions: "addReason" },
    RESUME: { actions: "removeReason" },
  },
  states: {
    assigned: {
      on: {
        START: "running",
        DRAIN: { target: "draining", actions: "setDrainReason" },
        REVOKE: { target: "draining", actions: "setDrainReason" },
      },
    },
    running: {
      always: { guard: "anyReason", target: "paused" },
      on: {
        DRAIN: { target: "draining", actions: "setDrainReason" },
        REVOKE: { target: "draining", actions: "setDrainReason" },
      },
    },
    paused: {
      entry: "countPause",
      always: { guard: "noReason", target: "running" },
      on: {
        DRAIN: { target: "draining", actions: "setDrainReason" },
        REVOKE: { target: "draining", actions: "setDrainReason" },
      },
    },
    draining: {
      on: {
        DRAINED: "stopped",
        DRAIN_TIMEOUT: { target: "stopped", actions: assign({ drainTimedOut: true }) },
        // A revocation during a shutdown drain only changes the reason.
        REVOKE: { actions: "setDrainReason" },
      },
    },
    stopped: { type: "final" },
  },
});
