/**
 * The audit event (README, Internals): one per final outcome of a record,
 * written as JSON Lines, gzip, to the audit store.
 *
 * @module
 */

/** Version of the event layout; bump on incompatible change. */
export const AUDIT_EVENT_VERSION = 1;

/** Final outcome of a record. */
export type AuditOutcome = "delivered" | "dead_lettered" | "skipped_duplicate";

/** Dead-letter reasons (README, Internals). */
export type FailureReason =
  | "DESERIALIZATION_ERROR"
  | "VALIDATION_ERROR"
  | "PROCESSING_ERROR"
  | "TIMEOUT_ERROR"
  | "CIRCUIT_OPEN"
  | "UNKNOWN_ERROR";

/** Every dead-letter reason, in documentation order. */
export const FAILURE_REASONS: readonly FailureReason[] = [
  "DESERIALIZATION_ERROR",
  "VALIDATION_ERROR",
  "PROCESSING_ERROR",
  "TIMEOUT_ERROR",
  "CIRCUIT_OPEN",
  "UNKNOWN_ERROR",
];

/** One audit event. */
export interface AuditEvent {
  event_version: number;
  /** `record.delivered`, `record.dead_lettered`, `record.skipped_duplicate`; `replay.` prefix for replays. */
  event_type: string;
  /** ISO 8601 time of the outcome. */
  timestamp: string;
  trace_id: string | null;
  request_id: string | null;
  idempotency_key: string;
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (offsets are 64-bit). */
  offset: string;
  upstream: { host: string | null; status_code: number | null; latency_ms: number | null };
  resilience: {
    retry_count: number;
    timeout_count: number;
    timeout_type: "connect" | "read" | "global" | null;
    circuit_state: "closed" | "open" | "halfOpen";
  };
  result: { outcome: AuditOutcome; error_code: FailureReason | null; error_message: string | null };
  /** Set for records handled by a replay (window or dead letter). */
  replay?: { replay_id: string; source: "window" | "dlq" };
}
