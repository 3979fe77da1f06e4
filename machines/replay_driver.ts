/**
 * The lifecycle of one replay as a pure XState machine (README, Architecture,
 * "Replay driver"). The work itself (reading the window, the token bucket,
 * the idempotency lookups, the processor) is plain code in
 * `actors/replay/replay.ts`, which drives this machine with lifecycle events and a
 * progress tick at most once a second: never one event per record.
 *
 * ```
 * ──▶ planning ──PLANNED──▶ running ──PAUSE(reason)──▶ paused
 *        │                    ▲  │                        │
 *        │                    │  └─── RESUME (last reason removed) ◀──┘
 *        │                    │
 *        ├─ FAIL ─▶ failed    ├─ FINISHED ─▶ done
 *        └─ CANCEL ─▶ cancelled ◀─ CANCEL ─ running | paused
 *                              FAIL (running | paused) ─▶ failed
 * ```
 *
 * - `planning`: offsets-for-times of `from` and `to` per partition (or the
 *   dead letters to replay) are being resolved; `PLANNED` carries the total.
 * - `paused` holds a set of reasons (`circuit`: the breaker is open;
 *   `operator`): `RESUME` removes one, and the replay runs again when none is
 *   left.
 * - `PROGRESS` (any non-final state) replaces the counters; the driver sends
 *   it at most once a second.
 * - `done`, `cancelled`, `failed` are final: the counters are then the
 *   replay's result (partial for `cancelled` and `failed`).
 *
 * @module
 */
import { assign, setup, type SnapshotFrom } from "xstate";

/** Counters of a replay. */
export interface ReplayCounts {
  /** Records read from the window (or dead letters considered). */
  scanned: number;
  /** Delivered to the upstream by this replay. */
  delivered: number;
  /** Skipped: their idempotency key was already delivered. */
  skipped_duplicate: number;
  /** Dead-lettered (again) by this replay. */
  dead_lettered: number;
  /** Read between the planned offsets but with a timestamp outside the window (not replayed). */
  outside_window: number;
}

/** All-zero counters. */
export function zeroCounts(): ReplayCounts {
  return { scanned: 0, delivered: 0, skipped_duplicate: 0, dead_lettered: 0, outside_window: 0 };
}

/** Why a replay is paused. */
export type ReplayPauseReason = "circuit" | "operator";

/** Context of {@link replayDriverMachine}. */
export interface ReplayDriverContext {
  id: string;
  /** Records planned (sum of `to - from` offsets); null while planning. */
  total: number | null;
  counts: ReplayCounts;
  pauseReasons: ReplayPauseReason[];
  /** Why the replay failed, or null. */
  error: string | null;
}

/** Input of {@link replayDriverMachine}. */
export interface ReplayDriverInput {
  id: string;
}

/** Events of {@link replayDriverMachine}. */
export type ReplayDriverEvent =
  | { type: "PLANNED"; total: number }
  | { type: "PROGRESS"; counts: ReplayCounts }
  | { type: "PAUSE"; reason: ReplayPauseReason }
  | { type: "RESUME"; reason: ReplayPauseReason }
  | { type: "FINISHED"; counts: ReplayCounts }
  | { type: "CANCEL"; counts?: ReplayCounts }
  | { type: "FAIL"; error: string; counts?: ReplayCounts };

/** State names of the machine (the `state` of the progress answer). */
export type ReplayStateName = "planning" | "running" | "paused" | "done" | "cancelled" | "failed";

/** The machine; see the module doc. */
export const replayDriverMachine = setup({
  types: {
    input: {} as ReplayDriverInput,
    context: {} as ReplayDriverContext,
    events: {} as ReplayDriverEvent,
  },
  actions: {
    keepCounts: assign({
      counts: ({ context, event }) =>
        "counts" in event && event.counts ? { ...event.counts } : context.counts,
    }),
  },
  guards: {
    noReasonLeft: ({ context, event }) =>
      event.type === "RESUME" &&
      context.pauseReasons.filter((r) => r !== event.reason).length === 0,
  },
}).createMachine({
  id: "replayDriver",
  context: ({ input }) => ({
    id: input.id,
    total: null,
    counts: zeroCounts(),
    pauseReasons: [],
    error: null,
  }),
  initial: "planning",
  on: {
    PROGRESS: { actions: "keepCounts" },
    CANCEL: { target: ".cancelled", actions: "keepCounts" },
    FAIL: {
      target: ".failed",
      actions: ["keepCounts", assign({ error: ({ event }) => event.error })],
    },
    PAUSE: {
      actions: assign({
        pauseReasons: ({ context, event }) =>
          context.pauseReasons.includes(event.reason)
            ? context.pauseReasons
            : [...context.pauseReasons, event.reason],
      }),
    },
    RESUME: {
      actions: assign({
        pauseReasons: ({ context, event }) =>
          context.pauseReasons.filter((r) => r !== event.reason),
      }),
    },
  },
  states: {
    planning: {
      on: {
        PLANNED: [
          {
            guard: ({ context }) => context.pauseReasons.length > 0,
            target: "paused",
            actions: assign({ total: ({ event }) => event.total }),
          },
          { target: "running", actions: assign({ total: ({ event }) => event.total }) },
        ],
      },
    },
    running: {
      on: {
        PAUSE: {
          target: "paused",
          actions: assign({
            pauseReasons: ({ context, event }) =>
              context.pauseReasons.includes(event.reason)
                ? context.pauseReasons
                : [...context.pauseReasons, event.reason],
          }),
        },
        FINISHED: { target: "done", actions: "keepCounts" },
      },
    },
    paused: {
      on: {
        RESUME: [
          {
            guard: "noReasonLeft",
            target: "running",
            actions: assign({ pauseReasons: [] as ReplayPauseReason[] }),
          },
          {
            actions: assign({
              pauseReasons: ({ context, event }) =>
                context.pauseReasons.filter((r) => r !== event.reason),
            }),
          },
        ],
        // The last records may finish while paused (e.g. the breaker opened after them).
        FINISHED: { target: "done", actions: "keepCounts" },
      },
    },
    done: { type: "final" },
    cancelled: { type: "final" },
    failed: { type: "final" },
  },
});

/** A snapshot of the machine. */
export type ReplayDriverSnapshot = SnapshotFrom<typeof replayDriverMachine>;

/** The state name of a snapshot. */
export function replayStateName(s: ReplayDriverSnapshot): ReplayStateName {
  return s.value as ReplayStateName;
}
