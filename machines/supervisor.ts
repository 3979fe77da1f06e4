/**
 * The lifecycle of one supervisor, as an XState v5 machine. It decides *when*
 * things happen; the work itself (starting, restarting and stopping children)
 * is done by three promise actors that `supervisors/supervisor.ts` provides
 * with `supervisorMachine.provide({ actors, actions })`.
 *
 * ```
 *                        ┌──── UPDATE ────▶ updating (applyUpdate: add or remove a child)
 *                        │ ◀───── done ─────┘
 *   starting ──done──▶ running ◀──────── done ──────┐
 *      │                 │ CHILD_EXITED (restart) ──▶ restarting (handleExit)
 *      │ error           │ STOP                       │ error (intensity exceeded)
 *      ▼                 ▼                            ▼
 *   stopping (stopChildren, reverse order) ──▶ stopped | failed (when an error was recorded)
 * ```
 *
 * - Exits and updates are queued in `context.pending` whatever the state, so
 *   one that arrives while another is being handled is not lost; `running`
 *   takes them one at a time, in arrival order. Exits that need no restart
 *   (temporary, or transient ending normally) never leave `running`: the
 *   `forgetChild` action records them.
 * - `STOP` during `starting` or `restarting` is remembered and honoured as
 *   soon as that work ends, so children are never stopped while they start.
 * - Stopping is an explicit state rather than `actor.stop()`: XState's stop
 *   runs no exit actions and stops children in insertion order, while a
 *   supervisor must stop them in reverse order, each within its deadline.
 *
 * @module
 */
import { assign, fromPromise, setup } from "xstate";

/** Restart strategy (OTP names). */
export type Strategy = "one_for_one" | "rest_for_one" | "one_for_all";

/** Why a child ended: normally, because it was asked to, or with an error. */
export type ExitReason = "normal" | "shutdown" | Error;

/** A child ended without being asked to. `generation` tells runs of one child apart. */
export interface ChildExitedEvent {
  type: "CHILD_EXITED";
  /** The child's id. */
  id: string;
  /** Which start of the child ended (stale exits are ignored). */
  generation: number;
  /** How it ended. */
  reason: ExitReason;
  /** Whether the child's restart policy asks for a restart (decided at exit time). */
  restart: boolean;
}

/** A change to the child list (add or remove a child), applied in turn with exits. */
export interface UpdateEvent {
  type: "UPDATE";
  /** Opaque to the machine: the supervisor's `applyUpdate` knows what to do. */
  update: unknown;
}

/** Events of {@link supervisorMachine}. */
export type SupervisorEvent = ChildExitedEvent | UpdateEvent | { type: "STOP" };

/** Input of {@link supervisorMachine}. */
export interface SupervisorInput {
  /** The supervisor's id (also the actor's registry id). */
  supervisorId: string;
  /** Restart strategy, shown by the inspector. */
  strategy: Strategy;
}

/** Context of {@link supervisorMachine}. */
export interface SupervisorContext extends SupervisorInput {
  /** Exits and updates waiting to be handled, oldest first. */
  pending: (ChildExitedEvent | UpdateEvent)[];
  /** A stop arrived while starting or restarting. */
  stopRequested: boolean;
  /** Set when the supervisor gives up (a child failed to start, or restart intensity exceeded). */
  error?: Error;
  /** Restarts performed since start (one per handled crash, whatever the strategy restarted). */
  restarts: number;
}

/** States of {@link supervisorMachine}. */
export type SupervisorState =
  | "starting"
  | "running"
  | "restarting"
  | "updating"
  | "stopping"
  | "stopped"
  | "failed";

/** Output of {@link supervisorMachine} when it reaches `stopped` or `failed`. */
export interface SupervisorOutput {
  /** `"shutdown"` after a stop, or the error that made the supervisor give up. */
  reason: "shutdown" | Error;
}

function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/**
 * The supervisor lifecycle machine. The default implementations of
 * `startChildren`, `handleExit`, `applyUpdate`, `stopChildren` and
 * `forgetChild` do nothing;
 * the supervisor provides the real ones.
 */
export const supervisorMachine = setup({
  types: {} as {
    context: SupervisorContext;
    events: SupervisorEvent;
    input: SupervisorInput;
    output: SupervisorOutput;
  },
  actors: {
    /** Starts every child in order; rejects when one fails to start. */
    startChildren: fromPromise<void, void>(async () => {}),
    /** Restarts per the strategy; rejects when restart intensity is exceeded. */
    handleExit: fromPromise<void, ChildExitedEvent>(async () => {}),
    /** Adds or removes a child. Never rejects (errors go to whoever asked). */
    applyUpdate: fromPromise<void, UpdateEvent>(async () => {}),
    /** Stops every child in reverse order, each within its shutdown deadline. Never rejects. */
    stopChildren: fromPromise<void, void>(async () => {}),
  },
  actions: {
    /** Records an exit that needs no restart (synchronous). */
    forgetChild: (_, _exit: ChildExitedEvent) => {},
    enqueue: assign({
      pending: ({ context, event }) =>
        event.type === "STOP" ? context.pending : [...context.pending, event],
    }),
    dequeue: assign({ pending: ({ context }) => context.pending.slice(1) }),
    requestStop: assign({ stopRequested: true }),
    countRestart: assign({ restarts: ({ context }) => context.restarts + 1 }),
  },
  guards: {
    stopRequested: ({ context }) => context.stopRequested,
    nextNeedsRestart: ({ context }) => {
      const next = context.pending[0];
      return next?.type === "CHILD_EXITED" && next.restart;
    },
    nextNeedsNoRestart: ({ context }) => {
      const next = context.pending[0];
      return next?.type === "CHILD_EXITED" && !next.restart;
    },
    nextIsUpdate: ({ context }) => context.pending[0]?.type === "UPDATE",
    hasError: ({ context }) => context.error !== undefined,
  },
}).createMachine({
  id: "supervisor",
  context: ({ input }) => ({ ...input, pending: [], stopRequested: false, restarts: 0 }),
  initial: "starting",
  on: { CHILD_EXITED: { actions: "enqueue" }, UPDATE: { actions: "enqueue" } },
  states: {
    starting: {
      on: { STOP: { actions: "requestStop" } },
      invoke: {
        src: "startChildren",
        onDone: "running",
        onError: {
          target: "stopping",
          actions: assign({ error: ({ event }) => toError(event.error) }),
        },
      },
    },
    running: {
      always: [
        { guard: "stopRequested", target: "stopping" },
        { guard: "nextNeedsRestart", target: "restarting" },
        {
          // Targetless: eventless transitions are evaluated again for the next exit.
          guard: "nextNeedsNoRestart",
          actions: [
            {
              type: "forgetChild",
              params: ({ context }) => context.pending[0] as ChildExitedEvent,
            },
            "dequeue",
          ],
        },
        { guard: "nextIsUpdate", target: "updating" },
      ],
      on: { STOP: "stopping" },
    },
    restarting: {
      on: { STOP: { actions: "requestStop" } },
      invoke: {
        src: "handleExit",
        input: ({ context }) => context.pending[0] as ChildExitedEvent,
        onDone: { target: "running", actions: ["dequeue", "countRestart"] },
        onError: {
          target: "stopping",
          actions: assign({ error: ({ event }) => toError(event.error) }),
        },
      },
    },
    updating: {
      on: { STOP: { actions: "requestStop" } },
      invoke: {
        src: "applyUpdate",
        input: ({ context }) => context.pending[0] as UpdateEvent,
        onDone: { target: "running", actions: "dequeue" },
        onError: { target: "running", actions: "dequeue" },
      },
    },
    stopping: {
      // Every child is being stopped: exits from now on are expected; the
      // supervisor refuses updates that were still queued.
      on: { CHILD_EXITED: {}, UPDATE: {}, STOP: {} },
      invoke: {
        src: "stopChildren",
        onDone: [{ guard: "hasError", target: "failed" }, { target: "stopped" }],
        onError: [{ guard: "hasError", target: "failed" }, { target: "stopped" }],
      },
    },
    stopped: { type: "final" },
    failed: { type: "final" },
  },
  output: ({ context }) => ({ reason: context.error ?? "shutdown" }),
});
