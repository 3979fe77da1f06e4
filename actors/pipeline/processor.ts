/**
 * The per-record path: envelope → rate limiter → circuit breaker → upstream →
 * outcome → dead letter → audit event. Plain code, one call per record.
 *
 * **Stages.** {@link Processor.process} runs one record through six named
 * stages, in order (one plain function each, called from a short `stages`
 * function; what they share is one `RecordRun` object per record, no closure
 * and no XState event per record):
 *
 *  1. *parse*: the envelope (`actors/record/envelope.ts`, with the payload
 *     schema check); an invalid one is refused: its failure is the
 *     envelope's, counted in `errors_total`, and it skips admit and deliver.
 *  2. *admit*: a token from the rate limiter (no promise when one is there).
 *  3. *deliver*: the upstream client (its retries, timeouts and the circuit
 *     breaker); policy `pause` waits for the breaker and delivers again. An
 *     unexpected error in admit or deliver becomes an `UNKNOWN_ERROR` failure.
 *  4. *settle*: the {@link Outcome}; a failed record is dead-lettered first
 *     (durably, see below).
 *  5. *audit*: the audit event, appended durably.
 *  6. *announce*: metrics, `onDelivered`, the `record.*` events.
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
import {
  DEFAULT_MAX_RECORD_BYTES,
  type Envelope,
  type EnvelopeResult,
  parseEnvelope,
} from "../record/envelope.ts";
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

/**
 * What one record accumulates on its way through the stages: one object per
 * record (fixed shape), read and written by each stage in turn.
 */
class RecordRun {
  traceId: string;
  requestId: string | null;
  idempotencyKey: string;
  status: number | null = null;
  latencyMs: number | null = null;
  retries = 0;
  timeouts = 0;
  timeoutType: TimeoutType | null = null;
  firstFailure: Date | null = null;
  lastFailure: Date | null = null;
  failure: { reason: FailureReason; message: string } | null = null;
  /** The dead letter being published (settle), possibly without its payload. */
  deadLetter: DeadLetter | null = null;

  constructor(
    readonly record: SourceRecord,
    readonly signal: AbortSignal | undefined,
    readonly env: EnvelopeResult,
    readonly started: number,
    readonly trace: RecordTrace | undefined,
  ) {
    if (env.ok) {
      this.traceId = env.envelope.trace_id;
      this.requestId = env.envelope.request_id;
      this.idempotencyKey = env.envelope.idempotency_key;
    } else {
      this.traceId = env.traceId;
      this.requestId = env.requestId;
      this.idempotencyKey = env.idempotencyKey;
    }
  }
}

/** Creates the processor. */
export function createProcessor(deps: ProcessorDeps): Processor {
  const maxBytes = deps.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const parseOptions = { maxBytes, validatePayload: deps.validatePayload };
  const sinkBase = deps.sinkRetryBaseMs ?? 100;
  const sinkMax = deps.sinkRetryMaxMs ?? 5000;
  const eventPrefix = deps.replay ? "replay." : "";

  /** Calls `fn(arg)` until it resolves (capped exponential backoff) or `signal` aborts. */
  async function durably<T>(
    what: string,
    fn: (arg: T) => Promise<void>,
    arg: T,
    record: SourceRecord,
    signal?: AbortSignal,
  ) {
    for (let n = 0;; n++) {
      try {
        await fn(arg);
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
    const env = parseEnvelope(record, parseOptions);
    if (!deps.tracing) return stages(new RecordRun(record, signal, env, started, undefined));
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
      const out = await stages(new RecordRun(record, signal, env, started, t));
      t.end(out);
      return out;
    } catch (e) {
      t.abort(e);
      throw e;
    }
  }

  /** The stages after parse, in order (see the module doc). */
  async function stages(r: RecordRun): Promise<Outcome> {
    if (!r.env.ok) {
      refuse(r, r.env);
    } else {
      try {
        const wait = admit(r);
        if (wait) await wait;
        await deliver(r, r.env.envelope);
      } catch (e) {
        unexpected(r, e);
      }
    }
    const outcome = await settle(r);
    await audit(r, outcome);
    announce(r, outcome);
    return outcome;
  }

  /** Parse, invalid envelope: the failure is the envelope's; counted in `errors_total`. */
  function refuse(r: RecordRun, env: Extract<EnvelopeResult, { ok: false }>): void {
    r.failure = { reason: env.reason, message: env.message };
    errorsTotal.inc({
      kind: env.reason === "DESERIALIZATION_ERROR" ? "deserialization" : "validation",
    });
  }

  /** Admit: a rate limiter token; undefined when one was taken at once. */
  function admit(r: RecordRun): Promise<void> | undefined {
    const wait = deps.rateLimiter?.acquire(r.signal);
    if (!wait) return undefined;
    const waited = r.trace?.child("sluice.rate_limit.wait");
    return waited ? wait.finally(waited) : wait;
  }

  /**
   * Deliver: upstream attempts (the upstream client retries); with the
   * breaker's `pause` policy a refusal waits for its next state change and
   * delivers again. A final failure is left in `r.failure`.
   */
  async function deliver(r: RecordRun, envelope: Envelope): Promise<void> {
    for (;;) {
      const res = await deps.upstream.deliver(envelope, r.record, {
        signal: r.signal,
        trace: r.trace?.upstream,
      });
      r.retries += res.retries;
      r.timeouts += res.timeouts;
      if (res.timeoutType) r.timeoutType = res.timeoutType;
      if (res.attempts > 0) {
        r.status = res.status;
        r.latencyMs = res.latencyMs;
      }
      if (res.firstFailureAt) r.firstFailure ??= res.firstFailureAt;
      if (res.lastFailureAt) r.lastFailure = res.lastFailureAt;
      if (res.outcome === "delivered") return;
      if (res.outcome === "circuit_open" && deps.breaker?.policy === "pause") {
        // Refused while open (wait for halfOpen) or while the half-open
        // probe runs (wait for its verdict). Closed already: try again now.
        if (deps.breaker.state !== "closed") await deps.breaker.nextChange(r.signal);
        continue;
      }
      r.failure = {
        reason: res.reason ?? "UNKNOWN_ERROR",
        message: res.message ?? "Upstream delivery failed",
      };
      return;
    }
  }

  /** Admit or deliver threw: an `UNKNOWN_ERROR` failure, unless `signal` aborted (rethrown). */
  function unexpected(r: RecordRun, e: unknown): void {
    if (r.signal?.aborted) throw r.signal.reason;
    const msg = e instanceof Error ? e.message : String(e);
    log.error("Unexpected error on the record path", {
      topic: r.record.topic,
      partition: r.record.partition,
      offset: r.record.offset,
      error: e,
    });
    errorsTotal.inc({ kind: "unknown" });
    r.failure = { reason: "UNKNOWN_ERROR", message: `Unexpected processing error: ${msg}` };
  }

  /** Settle: the outcome; a failure is dead-lettered first (durably). */
  async function settle(r: RecordRun): Promise<Outcome> {
    const circuitState = deps.breaker?.state ?? "closed";
    const failure = r.failure;
    if (!failure) {
      return {
        traceId: r.traceId,
        requestId: r.requestId,
        idempotencyKey: r.idempotencyKey,
        status: r.status,
        latencyMs: r.latencyMs,
        retries: r.retries,
        timeouts: r.timeouts,
        timeoutType: r.timeoutType,
        circuitState,
        outcome: "delivered",
      };
    }
    r.deadLetter = buildDeadLetter(r.record, {
      reason: failure.reason,
      message: failure.message,
      traceId: r.traceId,
      retryCount: r.retries,
      firstFailure: r.firstFailure ?? undefined,
      lastFailure: r.lastFailure ?? undefined,
    }, { consumerGroup: deps.consumerGroup, processingHost: deps.processingHost });
    const published = r.trace?.child("sluice.dead_letter.publish", "producer");
    await durably("Dead letter publish", publishDeadLetter, r, r.record, r.signal);
    published?.();
    return {
      traceId: r.traceId,
      requestId: r.requestId,
      idempotencyKey: r.idempotencyKey,
      status: r.status,
      latencyMs: r.latencyMs,
      retries: r.retries,
      timeouts: r.timeouts,
      timeoutType: r.timeoutType,
      circuitState,
      outcome: "dead_lettered",
      reason: failure.reason,
      message: failure.message,
      deadLetterId: r.deadLetter.id,
    };
  }

  /** One attempt to publish `r.deadLetter` (settle retries it). */
  async function publishDeadLetter(r: RecordRun): Promise<void> {
    const record = r.record;
    const dl = r.deadLetter!;
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
      r.deadLetter = withoutPayload(dl, record);
      await deps.publishDeadLetter(r.deadLetter, record);
    }
  }

  /** Audit: the record's audit event, appended durably. */
  async function audit(r: RecordRun, outcome: Outcome): Promise<void> {
    const auditOutcome: AuditOutcome = outcome.outcome;
    const event: AuditEvent = {
      event_version: AUDIT_EVENT_VERSION,
      event_type: `${eventPrefix}record.${auditOutcome}`,
      timestamp: new Date().toISOString(),
      trace_id: r.traceId,
      request_id: r.requestId,
      idempotency_key: r.idempotencyKey,
      topic: r.record.topic,
      partition: r.record.partition,
      offset: r.record.offset,
      upstream: {
        host: r.env.ok ? deps.upstream.host : null,
        status_code: r.status,
        latency_ms: r.latencyMs === null ? null : Math.round(r.latencyMs * 1000) / 1000,
      },
      resilience: {
        retry_count: r.retries,
        timeout_count: r.timeouts,
        timeout_type: r.timeoutType,
        circuit_state: outcome.circuitState,
      },
      result: {
        outcome: auditOutcome,
        error_code: r.failure?.reason ?? null,
        error_message: r.failure?.message ?? null,
      },
      ...(deps.replay ? { replay: deps.replay } : {}),
    };
    const appended = r.trace?.child("sluice.audit.append");
    await durably("Audit append", appendAudit, event, r.record, r.signal);
    appended?.();
  }

  function appendAudit(event: AuditEvent): Promise<void> {
    return deps.audit.append(event);
  }

  /** Announce: the record is finished: counted, `onDelivered`, events. */
  function announce(r: RecordRun, outcome: Outcome): void {
    const record = r.record;
    requestsTotal.inc({ outcome: outcome.outcome });
    kafkaProcessingDuration.observe((performance.now() - r.started) / 1000);
    const subscribed = hasEventSubscribers(
      outcome.outcome === "dead_lettered" ? "record.dead_lettered" : "record.completed",
    );
    const where = subscribed
      ? { topic: record.topic, partition: record.partition, trace_id: r.traceId }
      : undefined;
    if (outcome.outcome === "dead_lettered") {
      kafkaDlqMessagesTotal.inc({ failure_reason: outcome.reason });
      if (subscribed) {
        publishEvent("record.dead_lettered", "warn", {
          offset: record.offset,
          request_id: r.requestId,
          idempotency_key: r.idempotencyKey,
          failure_reason: outcome.reason,
          error_message: outcome.message,
          dead_letter_id: outcome.deadLetterId,
          retries: r.retries,
          status: r.status,
        }, where);
      }
    } else {
      try {
        deps.onDelivered?.(r.idempotencyKey, record);
      } catch (e) {
        log.warn("onDelivered hook failed", { error: e });
      }
      if (subscribed) {
        publishEvent("record.completed", "info", {
          offset: record.offset,
          request_id: r.requestId,
          idempotency_key: r.idempotencyKey,
          status: r.status,
          latency_ms: r.latencyMs,
          retries: r.retries,
        }, where);
      }
    }
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
    await durably("Audit append", appendAudit, event, record, signal);
    requestsTotal.inc({ outcome: "skipped_duplicate" });
  }

  return { process, skipAudited };
}
