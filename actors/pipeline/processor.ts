/**
 * The per-record path: envelope → rate limiter → circuit breaker → upstream →
 * outcome → dead letter → audit event. Plain code, one call per record.
 *
 * ```ts
 * const processor = createProcessor({ upstream, rateLimiter, breaker, audit,
 *   publishDeadLetter: (dl) => producer.send(...), consumerGroup: "sluice" });
 * const worker = createPartitionWorker({ topic, partition, process: processor.process });
 * ```
 *
 * **When a record is finished.** {@link Processor.process} resolves only
 * after (1) the dead letter, if any, was acknowledged by
 * `deps.publishDeadLetter`, and (2) the audit event was made durable by
 * `deps.audit.append`. Only then may the offset be committed. Both are retried
 * with capped exponential backoff (`sinkRetryBaseMs`…`sinkRetryMaxMs`) until
 * they succeed or `signal` aborts: a failing DLQ producer or audit spool
 * stalls the partition (lag grows, visible in logs and metrics); nothing is
 * lost or skipped.
 *
 * **Never throws for bad input.** Invalid envelopes become
 * `DESERIALIZATION_ERROR` / `VALIDATION_ERROR` dead letters; an unexpected
 * error in the upstream path becomes an `UNKNOWN_ERROR` dead letter. The only
 * rejection is the `signal`'s reason when it aborts (drain deadline,
 * shutdown): the record is then unfinished and will be consumed again.
 *
 * **Breaker open, policy `pause`.** When the breaker refuses an attempt, the
 * record waits (no dead letter) for the breaker's next state change and tries
 * again, with a fresh retry and global-timeout budget (the wait is not
 * delivery time); its retry and timeout counts add up. Meanwhile the binding
 * pauses every partition (it listens to `breaker.onStateChange`, reason
 * `circuit`), so only records already fetched wait, bounded by `maxInflight`
 * per partition. On `halfOpen` one waiting record becomes the probe; the rest
 * wait for `closed` (or `open` again). With policy `dlq` the record is
 * dead-lettered with `CIRCUIT_OPEN` at once.
 *
 * Metrics: `requests_total{outcome}`, `kafka_dlq_messages_total{failure_reason}`,
 * `kafka_message_processing_duration_seconds`, `errors_total{kind}`
 * (`deserialization`, `validation`, `unknown`; upstream kinds are counted by
 * the upstream client). Events: `record.completed`, `record.dead_lettered`,
 * each with `trace_id`.
 *
 * @module
 */
import {
  AUDIT_EVENT_VERSION,
  type AuditEvent,
  type AuditOutcome,
  type FailureReason,
} from "../audit/event.ts";
import type { CircuitBreaker } from "./circuit_breaker.ts";
import { buildDeadLetter, type DeadLetter } from "../record/dead_letter.ts";
import { DEFAULT_MAX_RECORD_BYTES, parseEnvelope } from "../record/envelope.ts";
import { hasEventSubscribers, publishEvent } from "../runtime/events.ts";
import { logger } from "../runtime/logger.ts";
import {
  errorsTotal,
  kafkaDlqMessagesTotal,
  kafkaProcessingDuration,
  requestsTotal,
} from "../runtime/metrics.ts";
import type { Outcome, SourceRecord, TimeoutType } from "../record/record.ts";
import type { RecordTrace, RecordTracing } from "../runtime/tracing.ts";
import type { UpstreamClient } from "./upstream.ts";

const log = logger("processor");

/** What the processor needs. */
export interface ProcessorDeps {
  /** The upstream client (give it the same `breaker`). */
  upstream: Pick<UpstreamClient, "deliver" | "host">;
  /** Publishes a dead letter to `<topic>-dlq`; resolves once acknowledged. */
  publishDeadLetter(dl: DeadLetter, record: SourceRecord): Promise<void>;
  /** Appends an audit event; resolves once it is durable. */
  audit: { append(event: AuditEvent): Promise<void> };
  /** Consumer group, written in dead letters. */
  consumerGroup: string;
  /** Shared rate limiter. Default none (unlimited). */
  rateLimiter?: { acquire(signal?: AbortSignal): Promise<void> | undefined };
  /** The circuit breaker the upstream client uses (its policy and state). Default none. */
  breaker?: Pick<CircuitBreaker, "policy" | "state" | "nextChange">;
  /** `processing_host` of dead letters. Default `sluice@<hostname>`. */
  processingHost?: string;
  /** Largest record value (bytes). Default 1 MiB (`SLUICE_MAX_RECORD_BYTES`). */
  maxRecordBytes?: number;
  /** Traces of the record path (`actors/runtime/tracing.ts`). Default none (off). */
  tracing?: RecordTracing;
  /** Payload check of the topic's JSON Schema (`actors/record/schema.ts`); null = passes. Default none. */
  validatePayload?: (topic: string, payload: unknown) => string | null;
  /** First backoff when the DLQ or audit sink fails (ms). Default 100. */
  sinkRetryBaseMs?: number;
  /** Largest such backoff (ms). Default 5000. */
  sinkRetryMaxMs?: number;
  /** Marks the processor as a replay's: audit `event_type` gets the `replay.` prefix. Default none. */
  replay?: { replay_id: string; source: "window" | "dlq" };
  /**
   * Called synchronously once a record is finished as delivered (after its
   * audit event is durable), e.g. to record its idempotency key
   * (`actors/pipeline/idempotency.ts`). Must not throw or block. Default none.
   */
  onDelivered?: (idempotencyKey: string, record: SourceRecord) => void;
}

/** The processor. */
export interface Processor {
  /**
   * Processes one record to its final outcome (see the module doc).
   *
   * @throws only `signal.reason`, when `signal` aborts before the record is finished.
   */
  process(record: SourceRecord, signal?: AbortSignal): Promise<Outcome>;
  /**
   * Finishes a record whose outcome is already in the audit topic (an
   * instance died after auditing it, before committing it): nothing is sent
   * upstream; a `record.skipped_duplicate` audit event is written (durably,
   * retried like any audit append).
   *
   * @throws only `signal.reason`, when `signal` aborts first.
   */
  skipAudited(record: SourceRecord, signal?: AbortSignal): Promise<void>;
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** True for a broker's refusal of a message for its size (kafkajs protocol errors 10 and 18). */
function isTooLarge(e: unknown): boolean {
  const t = (e as { type?: unknown })?.type;
  return t === "MESSAGE_TOO_LARGE" || t === "RECORD_LIST_TOO_LARGE";
}

/**
 * The dead letter without the record's value: the message says where the
 * original is (the source topic keeps it for its retention).
 */
function withoutPayload(dl: DeadLetter, record: SourceRecord): DeadLetter {
  return {
    ...dl,
    original_payload: null,
    original_payload_encoding: "utf8",
    error_message:
      `${dl.error_message} (original payload of ${
        record.value?.byteLength ?? 0
      } bytes left out: the dead letter exceeded the DLQ topic's message size limit; ` +
      `read it at ${record.topic}/${record.partition}/${record.offset})`,
  };
}

/** Creates the processor. */
export function createProcessor(deps: ProcessorDeps): Processor {
  const maxBytes = deps.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const sinkBase = deps.sinkRetryBaseMs ?? 100;
  const sinkMax = deps.sinkRetryMaxMs ?? 5000;
  const eventPrefix = deps.replay ? "replay." : "";

  async function durably(
    what: string,
    fn: () => Promise<void>,
    record: SourceRecord,
    signal?: AbortSignal,
  ) {
    for (let n = 0;; n++) {
      try {
        await fn();
        return;
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        const delay = Math.random() * Math.min(sinkMax, sinkBase * 2 ** Math.min(n, 20));
        log.warn(`${what} failed; retrying`, {
          topic: record.topic,
          partition: record.partition,
          offset: record.offset,
          attempt: n + 1,
          error: e,
        });
        await abortableSleep(delay, signal);
      }
    }
  }

  async function process(record: SourceRecord, signal?: AbortSignal): Promise<Outcome> {
    const started = performance.now();
    const env = parseEnvelope(record, { maxBytes, validatePayload: deps.validatePayload });
    if (!deps.tracing) return finish(record, signal, env, started);
    const t = deps.tracing.start(
      record,
      env.ok
        ? {
          traceId: env.envelope.trace_id,
          idempotencyKey: env.envelope.idempotency_key,
          requestId: env.envelope.request_id,
        }
        : env,
      performance.timeOrigin + started,
    );
    try {
      const out = await finish(record, signal, env, started, t);
      t.end(out);
      return out;
    } catch (e) {
      t.abort(e);
      throw e;
    }
  }

  async function finish(
    record: SourceRecord,
    signal: AbortSignal | undefined,
    env: ReturnType<typeof parseEnvelope>,
    started: number,
    t?: RecordTrace,
  ): Promise<Outcome> {
    let traceId: string;
    let requestId: string | null;
    let idempotencyKey: string;
    let status: number | null = null;
    let latencyMs: number | null = null;
    let retries = 0;
    let timeouts = 0;
    let timeoutType: TimeoutType | null = null;
    let firstFailure: Date | null = null;
    let lastFailure: Date | null = null;
    let failure: { reason: FailureReason; message: string } | null = null;

    if (!env.ok) {
      traceId = env.traceId;
      requestId = env.requestId;
      idempotencyKey = env.idempotencyKey;
      failure = { reason: env.reason, message: env.message };
      errorsTotal.inc({
        kind: env.reason === "DESERIALIZATION_ERROR" ? "deserialization" : "validation",
      });
    } else {
      const envelope = env.envelope;
      traceId = envelope.trace_id;
      requestId = envelope.request_id;
      idempotencyKey = envelope.idempotency_key;
      try {
        const wait = deps.rateLimiter?.acquire(signal);
        if (wait) {
          const waited = t?.child("sluice.rate_limit.wait");
          await wait.finally(waited);
        }
        for (;;) {
          const r = await deps.upstream.deliver(envelope, record, { signal, trace: t?.upstream });
          retries += r.retries;
          timeouts += r.timeouts;
          if (r.timeoutType) timeoutType = r.timeoutType;
          if (r.attempts > 0) {
            status = r.status;
            latencyMs = r.latencyMs;
          }
          if (r.firstFailureAt) firstFailure ??= r.firstFailureAt;
          if (r.lastFailureAt) lastFailure = r.lastFailureAt;
          if (r.outcome === "delivered") break;
          if (r.outcome === "circuit_open" && deps.breaker?.policy === "pause") {
            // Refused while open (wait for halfOpen) or while the half-open
            // probe runs (wait for its verdict). Closed already: try again now.
            if (deps.breaker.state !== "closed") await deps.breaker.nextChange(signal);
            continue;
          }
          failure = {
            reason: r.reason ?? "UNKNOWN_ERROR",
            message: r.message ?? "Upstream delivery failed",
          };
          break;
        }
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        const msg = e instanceof Error ? e.message : String(e);
        log.error("Unexpected error on the record path", {
          topic: record.topic,
          partition: record.partition,
          offset: record.offset,
          error: e,
        });
        errorsTotal.inc({ kind: "unknown" });
        failure = { reason: "UNKNOWN_ERROR", message: `Unexpected processing error: ${msg}` };
      }
    }

    const circuitState = deps.breaker?.state ?? "closed";
    const base = {
      traceId,
      requestId,
      idempotencyKey,
      status,
      latencyMs,
      retries,
      timeouts,
      timeoutType,
      circuitState,
    };
    let outcome: Outcome;
    if (failure) {
      let dl = buildDeadLetter(record, {
        reason: failure.reason,
        message: failure.message,
        traceId,
        retryCount: retries,
        firstFailure: firstFailure ?? undefined,
        lastFailure: lastFailure ?? undefined,
      }, { consumerGroup: deps.consumerGroup, processingHost: deps.processingHost });
      const published = t?.child("sluice.dead_letter.publish", "producer");
      await durably(
        "Dead letter publish",
        async () => {
          try {
            await deps.publishDeadLetter(dl, record);
          } catch (e) {
            // A dead letter carries the record's value (base64 when not text),
            // so it can exceed the DLQ topic's message size limit even when the
            // record did not: retrying would stall the partition forever.
            if (!isTooLarge(e) || dl.original_payload === null) throw e;
            log.warn("Dead letter too large for the DLQ topic; publishing it without the payload", {
              topic: record.topic,
              partition: record.partition,
              offset: record.offset,
              bytes: record.value?.byteLength ?? 0,
            });
            dl = withoutPayload(dl, record);
            await deps.publishDeadLetter(dl, record);
          }
        },
        record,
        signal,
      );
      published?.();
      outcome = {
        ...base,
        outcome: "dead_lettered",
        reason: failure.reason,
        message: failure.message,
        deadLetterId: dl.id,
      };
    } else {
      outcome = { ...base, outcome: "delivered" };
    }

    const auditOutcome: AuditOutcome = outcome.outcome;
    const event: AuditEvent = {
      event_version: AUDIT_EVENT_VERSION,
      event_type: `${eventPrefix}record.${auditOutcome}`,
      timestamp: new Date().toISOString(),
      trace_id: traceId,
      request_id: requestId,
      idempotency_key: idempotencyKey,
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
      upstream: {
        host: env.ok ? deps.upstream.host : null,
        status_code: status,
        latency_ms: latencyMs === null ? null : Math.round(latencyMs * 1000) / 1000,
      },
      resilience: {
        retry_count: retries,
        timeout_count: timeouts,
        timeout_type: timeoutType,
        circuit_state: circuitState,
      },
      result: {
        outcome: auditOutcome,
        error_code: failure?.reason ?? null,
        error_message: failure?.message ?? null,
      },
      ...(deps.replay ? { replay: deps.replay } : {}),
    };
    const appended = t?.child("sluice.audit.append");
    await durably("Audit append", () => deps.audit.append(event), record, signal);
    appended?.();

    // Finished: counted and announced.
    requestsTotal.inc({ outcome: outcome.outcome });
    kafkaProcessingDuration.observe((performance.now() - started) / 1000);
    const announce = hasEventSubscribers();
    const where = announce
      ? { topic: record.topic, partition: record.partition, trace_id: traceId }
      : undefined;
    if (outcome.outcome === "dead_lettered") {
      kafkaDlqMessagesTotal.inc({ failure_reason: outcome.reason });
      if (announce) {
        publishEvent("record.dead_lettered", "warn", {
          offset: record.offset,
          request_id: requestId,
          idempotency_key: idempotencyKey,
          failure_reason: outcome.reason,
          error_message: outcome.message,
          dead_letter_id: outcome.deadLetterId,
          retries,
          status,
        }, where);
      }
    } else {
      try {
        deps.onDelivered?.(idempotencyKey, record);
      } catch (e) {
        log.warn("onDelivered hook failed", { error: e });
      }
      if (announce) {
        publishEvent("record.completed", "info", {
          offset: record.offset,
          request_id: requestId,
          idempotency_key: idempotencyKey,
          status,
          latency_ms: latencyMs,
          retries,
        }, where);
      }
    }
    return outcome;
  }

  async function skipAudited(record: SourceRecord, signal?: AbortSignal): Promise<void> {
    const env = parseEnvelope(record, { maxBytes });
    const ids = env.ok
      ? {
        traceId: env.envelope.trace_id,
        requestId: env.envelope.request_id,
        idempotencyKey: env.envelope.idempotency_key,
      }
      : { traceId: env.traceId, requestId: env.requestId, idempotencyKey: env.idempotencyKey };
    const event: AuditEvent = {
      event_version: AUDIT_EVENT_VERSION,
      event_type: `${eventPrefix}record.skipped_duplicate`,
      timestamp: new Date().toISOString(),
      trace_id: ids.traceId,
      request_id: ids.requestId,
      idempotency_key: ids.idempotencyKey,
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
      upstream: { host: null, status_code: null, latency_ms: null },
      resilience: {
        retry_count: 0,
        timeout_count: 0,
        timeout_type: null,
        circuit_state: deps.breaker?.state ?? "closed",
      },
      result: {
        outcome: "skipped_duplicate",
        error_code: null,
        error_message: "Outcome already in the audit topic (audited before a crash or rebalance)",
      },
    };
    await durably("Audit append", () => deps.audit.append(event), record, signal);
    requestsTotal.inc({ outcome: "skipped_duplicate" });
  }

  return { process, skipAudited };
}
