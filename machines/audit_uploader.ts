/**
 * Lifecycle of the audit uploader (`actors/audit/uploader.ts`): the stage that
 * reads the audit topic and uploads batches to S3 / Ceph RGW.
 *
 * ```
 * running.uploading ──UPLOAD_FAILED──▶ running.degraded ──UPLOAD_OK──▶ running.uploading
 *        │                                   │ (UPLOAD_FAILED counts failures)
 *        └──────────────DRAIN──────────────▶ draining ──STOPPED──▶ stopped
 * ```
 *
 * One event per uploaded batch or state change, never one per audit event.
 * `degraded` means uploads fail and retry with backoff while the events wait
 * in the audit topic: nothing is dropped and consumption goes on.
 *
 * @module
 */
import { assign, setup } from "xstate";

/** Context of {@link auditUploaderMachine}. */
export interface AuditUploaderContext {
  /** Consecutive failed uploads (0 when the last one succeeded). */
  failures: number;
  lastError: string | null;
  /** Batches uploaded since start. */
  uploads: number;
}

/** Events of {@link auditUploaderMachine}. */
export type AuditUploaderEvent =
  | { type: "UPLOAD_OK" }
  | { type: "UPLOAD_FAILED"; error: string }
  | { type: "DRAIN" }
  | { type: "STOPPED" };

/** The audit uploader's lifecycle (see the module doc). */
export const auditUploaderMachine = setup({
  types: {
    context: {} as AuditUploaderContext,
    events: {} as AuditUploaderEvent,
  },
  actions: {
    countOk: assign({
      failures: 0,
      lastError: null,
      uploads: ({ context }) => context.uploads + 1,
    }),
    countFailure: assign({
      failures: ({ context }) => context.failures + 1,
      lastError: ({ event }) => (event.type === "UPLOAD_FAILED" ? event.error : null),
    }),
  },
}).createMachine({
  id: "auditUploader",
  context: { failures: 0, lastError: null, uploads: 0 },
  initial: "running",
  states: {
    running: {
      initial: "uploading",
      on: {
        DRAIN: "draining",
        STOPPED: "stopped",
      },
      states: {
        uploading: {
          on: {
            UPLOAD_OK: { actions: "countOk" },
            UPLOAD_FAILED: { target: "degraded", actions: "countFailure" },
          },
        },
        degraded: {
          on: {
            UPLOAD_OK: { target: "uploading", actions: "countOk" },
            UPLOAD_FAILED: { actions: "countFailure" },
          },
        },
      },
    },
    draining: {
      on: {
        UPLOAD_OK: { actions: "countOk" },
        UPLOAD_FAILED: { actions: "countFailure" },
        STOPPED: "stopped",
      },
    },
    stopped: { type: "final" },
  },
});

/** The state as one word: `uploading`, `degraded`, `draining`, `stopped`. */
export function uploaderStateName(value: unknown): string {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && "running" in value) {
    return String((value as { running: unknown }).running);
  }
  return String(value);
}
