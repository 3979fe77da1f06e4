/**
 * The record as the pipeline sees it, and the outcome of processing it.
 *
 * {@link SourceRecord} is what the Kafka binding (or the embedded log, or a
 * replay) hands to a partition worker: the fields of a kafkajs message with
 * the headers already decoded to strings. {@link Outcome} is what
 * `actors/pipeline/processor.ts` returns once a record is finished: delivered or
 * dead-lettered, with what the upstream call and the resilience layers saw.
 *
 * @module
 */
import type { FailureReason } from "../audit/event.ts";

/** One record fetched from a topic-partition. */
export interface SourceRecord {
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (offsets are 64-bit). */
  offset: string;
  key: Uint8Array | null;
  value: Uint8Array | null;
  /** Headers decoded as UTF-8 (the binding joins repeated headers with `,`). */
  headers: Record<string, string>;
  /** Record timestamp: milliseconds since the epoch as a string, like kafkajs. */
  timestamp: string;
}

/** Which timeout ended an upstream attempt. */
export type TimeoutType = "connect" | "read" | "global";

/** State of the circuit breaker, as in the audit event. */
export type CircuitStateName = "closed" | "open" | "halfOpen";

/** What every outcome carries, delivered or not. */
export interface OutcomeBase {
  /** Trace id (32 lowercase hex digits) of the record: from `traceparent`, the envelope, or derived. */
  traceId: string;
  /** The envelope's `request_id`; null when the envelope could not be read. */
  requestId: string | null;
  /** The envelope's `idempotency_key`, or `topic/partition/offset`. */
  idempotencyKey: string;
  /** HTTP status of the last upstream attempt; null when no response was received. */
  status: number | null;
  /** Latency of the last upstream attempt (ms); null when no attempt was made. */
  latencyMs: number | null;
  /** Upstream retries (attempts after the first). */
  retries: number;
  /** Attempts that ended in a timeout. */
  timeouts: number;
  /** Kind of the last timeout, if any. */
  timeoutType: TimeoutType | null;
  /** Breaker state when the record finished. */
  circuitState: CircuitStateName;
}

/** The record was accepted by the upstream (2xx). */
export interface DeliveredOutcome extends OutcomeBase {
  outcome: "delivered";
}

/** The record was written to `<topic>-dlq`. */
export interface DeadLetteredOutcome extends OutcomeBase {
  outcome: "dead_lettered";
  reason: FailureReason;
  /** Why, sentence case, no trailing period. */
  message: string;
  /** Id of the dead letter (deterministic: `topic:partition:offset`). */
  deadLetterId: string;
}

/** Final outcome of one record. */
export type Outcome = DeliveredOutcome | DeadLetteredOutcome;
