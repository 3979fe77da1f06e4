/**
 * The audit batcher's lifecycle as a pure XState machine (shared/DESIGN.md §1).
 *
 * ```
 * running (parallel)
 *   upload: collecting ──SEGMENT_SEALED──▶ flushing ──done──▶ collecting
 *                                             │ error
 *                                             ▼
 *           degraded.backoff ──retryBackoff──▶ degraded.retrying ──done──▶ collecting
 *                  ▲────────────── error ─────────────┘
 *   batch:  empty ──SEGMENT_OPENED──▶ open ──batchAge / sealActive──▶ empty
 * ──DRAIN──▶ draining (uploading ⇄ backoff, bounded by drainDeadline) ──▶ stopped
 * ──STOP───▶ stopped
 * ```
 *
 * The machine sees one event per batch or state change, never one per audit
 * event: the append path (spool, group commit) is plain code in
 * `actors/audit/trail.ts`, which tells the machine when a segment opens or is
 * sealed and when the spool crosses its disk budget. Backpressure is a flag in
 * the context, flipped by `OVER_BUDGET` / `UNDER_BUDGET` in any state.
 *
 * Side effects are named in `setup` and do nothing here; the trail (and the
 * tests) supply them with `.provide(...)`:
 *  - actor `uploadSealed({seal})`: uploads every sealed segment, oldest first
 *    (with `seal`, seals the active segment first); resolves to
 *    `{uploaded, remaining}` events;
 *  - actions `sealActive`, `onDegraded`, `onRecovered`, `onBackpressure`
 *    (params `{on}`), `onStopped`;
 *  - delays `batchAge`, `retryBackoff` (exponential with jitter, see
 *    {@link backoffDelay}), `drainDeadline`.
 *
 * @module
 */
import { assign, fromPromise, setup, type SnapshotFrom } from "xstate";

/** What `uploadSealed` resolves to: events uploaded, events still pending. */
export interface UploadOutput {
  uploaded: number;
  remaining: number;
}

/** Input of the `uploadSealed` actor. */
export interface UploadInput {
  /** Seal the active segment first (draining). */
  seal: boolean;
}

/** Input of {@link auditBatcherMachine}. */
export interface AuditBatcherInput {
  /** Age of a batch before it is sealed and uploaded (ms); default 5000. */
  batchAgeMs?: number;
  /** First retry backoff (ms); default 500. */
  retryBaseMs?: number;
  /** Largest retry backoff (ms); default 30000. */
  retryMaxMs?: number;
  /** Sealed segments already in the spool at start (uploaded first); default 0. */
  sealed?: number;
}

/** Context of {@link auditBatcherMachine}. */
export interface AuditBatcherContext {
  batchAgeMs: number;
  retryBaseMs: number;
  retryMaxMs: number;
  /** Sealed segments known to wait for upload. */
  sealed: number;
  /** Consecutive failed uploads (0 = healthy). */
  failures: number;
  lastError: string | null;
  /** Events uploaded since start. */
  uploaded: number;
  backpressure: boolean;
  /** Deadline of the current drain (ms after DRAIN). */
  drainDeadlineMs: number;
  /** True when the last drain ended at its deadline with events left. */
  drainTimedOut: boolean;
}

/** Events of {@link auditBatcherMachine}. */
export type AuditBatcherEvent =
  | { type: "SEGMENT_OPENED" }
  | { type: "SEGMENT_SEALED" }
  | { type: "OVER_BUDGET" }
  | { type: "UNDER_BUDGET" }
  | { type: "DRAIN"; deadlineMs: number }
  | { type: "STOP" };

/**
 * Exponential backoff with jitter: the `attempt`-th retry (1-based) waits
 * between half and all of `min(maxMs, baseMs * 2^(attempt-1))`.
 */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The audit batcher machine; supply the implementations with `.provide`. */
export const auditBatcherMachine = setup({
  types: {
    context: {} as AuditBatcherContext,
    events: {} as AuditBatcherEvent,
    input: {} as AuditBatcherInput,
  },
  actors: {
    uploadSealed: fromPromise<UploadOutput, UploadInput>(() =>
      Promise.resolve({ uploaded: 0, remaining: 0 })
    ),
  },
  actions: {
    sealActive: () => {},
    onDegraded: (_, _params: { error: string | null }) => {},
    onRecovered: () => {},
    onBackpressure: (_, _params: { on: boolean }) => {},
    onStopped: () => {},
    countSealed: assign({ sealed: ({ context }) => context.sealed + 1 }),
    takeSealed: assign({ sealed: 0 }),
    recordUpload: assign(({ context }, params: UploadOutput) => ({
      failures: 0,
      lastError: null,
      uploaded: context.uploaded + params.uploaded,
    })),
    recordFailure: assign(({ context }, params: { error: unknown }) => ({
      failures: context.failures + 1,
      lastError: errorText(params.error),
    })),
  },
  guards: {
    hasSealed: ({ context }) => context.sealed > 0,
  },
  delays: {
    batchAge: ({ context }) => context.batchAgeMs,
    retryBackoff: ({ context }) =>
      backoffDelay(context.failures, context.retryBaseMs, context.retryMaxMs),
    drainDeadline: ({ context }) => context.drainDeadlineMs,
  },
}).createMachine({
  id: "auditBatcher",
  context: ({ input }) => ({
    batchAgeMs: input.batchAgeMs ?? 5000,
    retryBaseMs: input.retryBaseMs ?? 500,
    retryMaxMs: input.retryMaxMs ?? 30_000,
    sealed: input.sealed ?? 0,
    failures: 0,
    lastError: null,
    uploaded: 0,
    backpressure: false,
    drainDeadlineMs: 0,
    drainTimedOut: false,
  }),
  initial: "running",
  on: {
    OVER_BUDGET: {
      guard: ({ context }) => !context.backpressure,
      actions: [assign({ backpressure: true }), { type: "onBackpressure", params: { on: true } }],
    },
    UNDER_BUDGET: {
      guard: ({ context }) => context.backpressure,
      actions: [assign({ backpressure: false }), { type: "onBackpressure", params: { on: false } }],
    },
    SEGMENT_SEALED: { actions: "countSealed" },
  },
  states: {
    running: {
      type: "parallel",
      on: {
        DRAIN: {
          target: "draining",
          actions: assign({
            drainDeadlineMs: ({ event }) => event.deadlineMs,
            drainTimedOut: false,
          }),
        },
        STOP: "stopped",
      },
      states: {
        upload: {
          initial: "collecting",
          states: {
            collecting: {
              always: { guard: "hasSealed", target: "flushing" },
              on: { SEGMENT_SEALED: { target: "flushing", actions: "countSealed" } },
            },
            flushing: {
              entry: "takeSealed",
              invoke: {
                src: "uploadSealed",
                input: { seal: false },
                onDone: {
                  target: "collecting",
                  actions: { type: "recordUpload", params: ({ event }) => event.output },
                },
                onError: {
                  target: "degraded",
                  actions: {
                    type: "recordFailure",
                    params: ({ event }) => ({ error: event.error }),
                  },
                },
              },
            },
            degraded: {
              entry: {
                type: "onDegraded",
                params: ({ context }) => ({ error: context.lastError }),
              },
              initial: "backoff",
              states: {
                backoff: { after: { retryBackoff: "retrying" } },
                retrying: {
                  entry: "takeSealed",
                  invoke: {
                    src: "uploadSealed",
                    input: { seal: false },
                    onDone: {
                      target: "#auditBatcher.running.upload.collecting",
                      actions: [
                        { type: "recordUpload", params: ({ event }) => event.output },
                        "onRecovered",
                      ],
                    },
                    onError: {
                      target: "backoff",
                      actions: {
                        type: "recordFailure",
                        params: ({ event }) => ({ error: event.error }),
                      },
                    },
                  },
                },
              },
            },
          },
        },
        batch: {
          initial: "empty",
          states: {
            empty: { on: { SEGMENT_OPENED: "open" } },
            open: {
              after: { batchAge: { target: "empty", actions: "sealActive" } },
              on: { SEGMENT_SEALED: "empty" },
            },
          },
        },
      },
    },
    draining: {
      initial: "uploading",
      after: {
        drainDeadline: { target: "stopped", actions: assign({ drainTimedOut: true }) },
      },
      on: { STOP: "stopped" },
      states: {
        uploading: {
          entry: "takeSealed",
          invoke: {
            src: "uploadSealed",
            input: { seal: true },
            onDone: [
              {
                guard: ({ event }) => event.output.remaining === 0,
                target: "#auditBatcher.stopped",
                actions: { type: "recordUpload", params: ({ event }) => event.output },
              },
              {
                target: "uploading",
                reenter: true,
                actions: { type: "recordUpload", params: ({ event }) => event.output },
              },
            ],
            onError: {
              target: "backoff",
              actions: { type: "recordFailure", params: ({ event }) => ({ error: event.error }) },
            },
          },
        },
        backoff: { after: { retryBackoff: "uploading" } },
      },
    },
    stopped: { type: "final", entry: "onStopped" },
  },
});

/** The public state name of a snapshot: `collecting`, `flushing`, `degraded`, `draining`, `stopped`. */
export function batcherStateName(snapshot: SnapshotFrom<typeof auditBatcherMachine>): string {
  if (snapshot.status !== "active" || snapshot.matches("stopped")) return "stopped";
  if (snapshot.matches("draining")) return "draining";
  if (snapshot.matches({ running: { upload: "degraded" } })) return "degraded";
  if (snapshot.matches({ running: { upload: "flushing" } })) return "flushing";
  return "collecting";
}
