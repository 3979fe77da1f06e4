/**
 * OpenTelemetry traces of the per-record path, exported over OTLP/HTTP
 * (protobuf). Off unless an endpoint is configured
 * (`SLUICE_OTLP_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` /
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); when off, the processor gets no
 * tracer and pays nothing.
 *
 * One trace per record, in the record's own trace (the `trace_id` of its
 * audit event, dead letter and `/ws/events` events):
 *
 * ```text
 * process <topic>                 CONSUMER  child of the record's `traceparent` header when valid
 * ├── sluice.rate_limit.wait      INTERNAL  only when the limiter made the record wait
 * ├── POST                        CLIENT    one per upstream attempt; the upstream gets its traceparent
 * ├── POST                        CLIENT    (retry)
 * ├── sluice.dead_letter.publish  PRODUCER  when dead-lettered
 * └── sluice.audit.append         INTERNAL
 * ```
 *
 * Attributes of the record span: `messaging.system` (`kafka`),
 * `messaging.destination.name` (topic), `messaging.destination.partition.id`,
 * `messaging.kafka.offset`, `messaging.consumer.group.name`,
 * `sluice.idempotency_key`, `sluice.request_id`, `sluice.outcome`
 * (`delivered` | `dead_lettered` | `aborted`), `sluice.retry_count`,
 * `sluice.timeout_count`, `sluice.timeout_type` (`connect` | `read` |
 * `global`), `sluice.failure_reason`, `http.response.status_code`; status
 * ERROR when dead-lettered. Attempt spans: `sluice.attempt` (1, 2, ...),
 * `http.request.method`, `server.address`, `server.port`,
 * `http.response.status_code`, `sluice.timeout_type`, `error.type`.
 *
 * **Trace ids.** A record with a valid `traceparent` header continues that
 * trace (its span is a child of the header's span); one without gets the
 * trace id sluice already derives for it (`actors/record/envelope.ts`): the id
 * generator hands the SDK that id for the root span, so the trace found from
 * a dead letter's `trace_id` is this one.
 *
 * **Sampling.** Parent-based, trace-id ratio `SLUICE_TRACE_SAMPLE_RATIO`:
 * a record whose `traceparent` says sampled is always traced, one whose
 * header says not sampled never is, others by ratio of their trace id (the
 * same record gets the same decision when consumed again). An unsampled
 * record still sends a fresh `traceparent` (flags 00) upstream.
 *
 * **Libraries.** OpenTelemetry JS from npm, pinned in deno.json:
 * `@opentelemetry/api`, `@opentelemetry/sdk-trace` (tracer provider,
 * samplers, batch processor), `@opentelemetry/resources`,
 * `@opentelemetry/exporter-trace-otlp-proto`. Spans get their parent
 * explicitly, so no context manager (no AsyncLocalStorage) runs per record.
 * Deno's built-in OpenTelemetry (`OTEL_DENO=true`) was not used: it is
 * switched on by the runtime's environment before the program starts (sluice
 * could not turn it on from its own configuration, nor in the bundled or
 * compiled builds without the flag), it instruments every `Deno.serve`
 * request and `fetch` (the metrics scrapes, S3 calls) and exports console
 * logs, and it takes no custom id generator, so a record without a
 * `traceparent` would not get its derived trace id.
 *
 * @module
 */
import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Tracer,
} from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  type IdGenerator,
  ParentBasedSampler,
  RandomIdGenerator,
  SamplingDecision,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import { headerValue, newSpanId, parseTraceparent } from "../record/envelope.ts";
export { otlpTracesUrl } from "./otlp_url.ts";
import { logger } from "./logger.ts";
import type { Outcome, SourceRecord } from "../record/record.ts";

const log = logger("tracing");

/** What an attempt span is ended with. */
export interface AttemptEnd {
  /** `ok`, `http`, `timeout`, `network`, `aborted`, `circuit_open`. */
  kind: string;
  status?: number | null;
  timeoutType?: string | null;
  detail?: string;
}

/** Hooks the upstream client calls around each attempt (see `actors/pipeline/upstream.ts`). */
export interface AttemptTracer {
  /** Starts the span of attempt `n` (0-based within this `deliver` call). */
  attempt(n: number): { traceparent: string; end(result: AttemptEnd): void };
}

/** The trace of one record, driven by the processor. */
export interface RecordTrace {
  /** Starts a child span; call the result to end it (with an error message when it failed). */
  child(name: string, kind?: "internal" | "producer"): (error?: string) => void;
  /** Hooks for the upstream client. */
  readonly upstream: AttemptTracer;
  /** Ends the record span with its outcome. */
  end(outcome: Outcome): void;
  /** Ends the record span when the record was not finished (drain deadline, shutdown). */
  abort(reason: unknown): void;
}

/** The tracer of the per-record path. */
export interface RecordTracing {
  /**
   * Starts the span of `record` (start time `startMs`, epoch ms, best as
   * `performance.timeOrigin + performance.now()`, the clock of the SDK), once
   * its trace id and keys are known.
   */
  start(
    record: SourceRecord,
    ids: { traceId: string; idempotencyKey: string; requestId: string | null },
    startMs: number,
  ): RecordTrace;
  /** Flushes and stops the exporter, bounded by `timeoutMs`. */
  shutdown(timeoutMs?: number): Promise<void>;
}

/** Options of {@link createTracing}. */
export interface TracingOptions {
  /** Full OTLP/HTTP traces URL (`…/v1/traces`). */
  url?: string;
  /** Exporter to use instead of OTLP (tests). */
  exporter?: SpanExporter;
  /** Share of root records traced, 0..1. Default 1. */
  sampleRatio?: number;
  /** `service.name`. Default `OTEL_SERVICE_NAME`, else `sluice`. */
  serviceName?: string;
  /** `host:port` of the upstream (attempt spans' `server.*`). */
  upstreamHost?: string;
  /** Consumer group (record spans). */
  consumerGroup?: string;
  /** Batch processor delay (ms). Default 1000. */
  scheduledDelayMs?: number;
}

/** Hands out a chosen trace id for the next root span (see the module doc). */
class RecordIdGenerator implements IdGenerator {
  next: string | undefined;
  readonly #random = new RandomIdGenerator();
  generateTraceId(): string {
    const id = this.next ?? this.#random.generateTraceId();
    this.next = undefined;
    return id;
  }
  generateSpanId(): string {
    return this.#random.generateSpanId();
  }
}

/**
 * Now, in epoch ms with sub-millisecond precision: every span start and end
 * is given explicitly from this one clock (the SDK's default mixes a
 * millisecond `Date.now()` with `performance.now()`, which can put a child's
 * end a fraction of a millisecond after its parent's).
 */
const now = () => performance.timeOrigin + performance.now();

function traceparentOf(span: Span): string {
  const c = span.spanContext();
  const flags = (c.traceFlags & TraceFlags.SAMPLED) ? "01" : "00";
  return `00-${c.traceId}-${c.spanId}-${flags}`;
}

const NOOP = () => {};

/** The trace of a record that is not sampled: nothing recorded, traceparent flags 00. */
function unsampled(traceId: string): RecordTrace {
  return {
    child: () => NOOP,
    upstream: { attempt: () => ({ traceparent: `00-${traceId}-${newSpanId()}-00`, end: NOOP }) },
    end: NOOP,
    abort: NOOP,
  };
}

/** Creates the tracer; spans go to `opts.exporter`, else OTLP at `opts.url`. */
export function createTracing(opts: TracingOptions): RecordTracing {
  const exporter = opts.exporter ?? new OTLPTraceExporter({ url: opts.url });
  const ids = new RecordIdGenerator();
  const rootSampler = new TraceIdRatioBasedSampler(opts.sampleRatio ?? 1);
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      "service.name": opts.serviceName ?? Deno.env.get("OTEL_SERVICE_NAME") ?? "sluice",
    }),
    sampler: new ParentBasedSampler({ root: rootSampler }),
    idGenerator: ids,
    spanProcessors: [
      new BatchSpanProcessor({
        exporter,
        scheduledDelayMillis: opts.scheduledDelayMs ?? 1000,
        maxQueueSize: 8192,
        maxExportBatchSize: 512,
      }),
    ],
  });
  const tracer: Tracer = provider.getTracer("sluice");
  const [serverAddress, serverPort] = (opts.upstreamHost ?? "").split(":");

  function start(
    record: SourceRecord,
    keys: { traceId: string; idempotencyKey: string; requestId: string | null },
    startMs: number,
  ): RecordTrace {
    const parent = parseTraceparent(headerValue(record.headers, "traceparent"));
    // Unsampled records (most of them at a low ratio) skip the SDK: the same
    // decision as its parent-based sampler, taken first, and a traceparent
    // with a fresh span id and flags 00 for the upstream.
    const sampled = parent
      ? (parseInt(parent.flags, 16) & TraceFlags.SAMPLED) !== 0
      : rootSampler.shouldSample(ROOT_CONTEXT, keys.traceId).decision !==
        SamplingDecision.NOT_RECORD;
    if (!sampled) return unsampled(parent?.traceId ?? keys.traceId);
    let ctx: Context = ROOT_CONTEXT;
    if (parent) {
      ctx = trace.setSpanContext(ROOT_CONTEXT, {
        traceId: parent.traceId,
        spanId: parent.parentId,
        traceFlags: parseInt(parent.flags, 16) & TraceFlags.SAMPLED,
        isRemote: true,
      });
    } else {
      ids.next = keys.traceId;
    }
    const attributes: Attributes = {
      "messaging.system": "kafka",
      "messaging.operation.type": "process",
      "messaging.destination.name": record.topic,
      "messaging.destination.partition.id": String(record.partition),
      "messaging.kafka.offset": Number(record.offset),
      "sluice.idempotency_key": keys.idempotencyKey,
    };
    if (opts.consumerGroup) attributes["messaging.consumer.group.name"] = opts.consumerGroup;
    if (keys.requestId !== null) attributes["sluice.request_id"] = keys.requestId;
    const span = tracer.startSpan(
      `process ${record.topic}`,
      { kind: SpanKind.CONSUMER, startTime: startMs, attributes },
      ctx,
    );
    ids.next = undefined;
    const recording = span.isRecording();
    const spanCtx = trace.setSpan(ROOT_CONTEXT, span);
    let attempts = 0;

    const child = (name: string, kind: "internal" | "producer" = "internal") => {
      if (!recording) return () => {};
      const s = tracer.startSpan(
        name,
        { kind: kind === "producer" ? SpanKind.PRODUCER : SpanKind.INTERNAL, startTime: now() },
        spanCtx,
      );
      return (error?: string) => {
        if (error !== undefined) s.setStatus({ code: SpanStatusCode.ERROR, message: error });
        s.end(now());
      };
    };

    const upstream: AttemptTracer = {
      attempt() {
        attempts++;
        const s = tracer.startSpan("POST", {
          kind: SpanKind.CLIENT,
          startTime: now(),
          attributes: recording
            ? {
              "http.request.method": "POST",
              "server.address": serverAddress,
              ...(serverPort ? { "server.port": Number(serverPort) } : {}),
              "sluice.attempt": attempts,
            }
            : undefined,
        }, spanCtx);
        return {
          traceparent: traceparentOf(s),
          end(r) {
            if (s.isRecording()) {
              if (r.status != null) s.setAttribute("http.response.status_code", r.status);
              if (r.timeoutType) s.setAttribute("sluice.timeout_type", r.timeoutType);
              if (r.kind !== "ok") {
                s.setAttribute(
                  "error.type",
                  r.kind === "http" ? String(r.status) : r.timeoutType ?? r.kind,
                );
                s.setStatus({
                  code: SpanStatusCode.ERROR,
                  message: r.detail ?? (r.kind === "http" ? `HTTP ${r.status}` : r.kind),
                });
              }
            }
            s.end(now());
          },
        };
      },
    };

    return {
      child,
      upstream,
      end(out) {
        if (recording) {
          const a: Attributes = {
            "sluice.outcome": out.outcome,
            "sluice.retry_count": out.retries,
            "sluice.timeout_count": out.timeouts,
          };
          if (out.timeoutType) a["sluice.timeout_type"] = out.timeoutType;
          if (out.status !== null) a["http.response.status_code"] = out.status;
          span.setAttributes(a);
          if (out.outcome === "dead_lettered") {
            span.setAttribute("sluice.failure_reason", out.reason);
            span.setStatus({ code: SpanStatusCode.ERROR, message: out.message });
          }
        }
        span.end(now());
      },
      abort(reason) {
        if (recording) {
          span.setAttribute("sluice.outcome", "aborted");
          span.setStatus({
            code: SpanStatusCode.ERROR,
            message: reason instanceof Error ? reason.message : String(reason),
          });
        }
        span.end(now());
      },
    };
  }

  return {
    start,
    async shutdown(timeoutMs = 2000) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        await Promise.race([
          provider.shutdown(),
          new Promise((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`not flushed within ${timeoutMs} ms`)),
              timeoutMs,
            );
          }),
        ]);
      } catch (e) {
        log.warn("Trace export did not finish", { error: e });
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
