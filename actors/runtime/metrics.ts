/**
 * The Prometheus metrics of sluice (names from the README, Internals, and the
 * runbooks). One registry per process; every module imports the metric it
 * updates from here, so names are defined once. Never label by a per-record
 * value (trace id, key).
 *
 * @module
 */
import client from "./prom.ts";
import { FAILURE_REASONS } from "../audit/event.ts";
import { registerRuntimeMetrics } from "./runtime_metrics.ts";

/** The registry served on `GET /metrics` (process and runtime metrics: `actors/runtime/runtime_metrics.ts`). */
export const registry = new client.Registry();
registerRuntimeMetrics(registry);

const r = [registry];

/** Final outcomes: `delivered`, `dead_lettered`, `skipped_duplicate`. */
export const requestsTotal = new client.Counter({
  name: "requests_total",
  help: "Records finished, by outcome",
  labelNames: ["outcome"] as const,
  registers: r,
});
/** Errors by kind (`http_4xx`, `http_5xx`, `timeout`, `network`, `deserialization`, ...). */
export const errorsTotal = new client.Counter({
  name: "errors_total",
  help: "Upstream and processing errors, by kind",
  labelNames: ["kind"] as const,
  registers: r,
});
/** Timeouts by kind: `connect`, `read`, `global`. */
export const timeoutsTotal = new client.Counter({
  name: "timeouts_total",
  help: "Upstream timeouts, by timeout type",
  labelNames: ["timeout_type"] as const,
  registers: r,
});
export const retriesTotal = new client.Counter({
  name: "retries_total",
  help: "Upstream call retries",
  registers: r,
});
export const requestLatency = new client.Histogram({
  name: "request_latency_seconds",
  help: "Upstream call latency, per attempt",
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.4, 0.5, 1, 2.5],
  registers: r,
});
export const inflightRequests = new client.Gauge({
  name: "inflight_requests",
  help: "Upstream calls in flight",
  registers: r,
});
export const queueDepth = new client.Gauge({
  name: "queue_depth",
  help: "Records fetched and not yet finished, per partition",
  labelNames: ["topic", "partition"] as const,
  registers: r,
});
export const circuitState = new client.Gauge({
  name: "circuit_state",
  help: "Circuit breaker state: 0 closed, 1 half-open, 2 open",
  registers: r,
});
export const rateLimitTokens = new client.Gauge({
  name: "rate_limit_tokens",
  help: "Tokens left in the rate limiter bucket",
  registers: r,
});
/** Effective rate of the adaptive limiter (records/s); 0 = unlimited. */
export const rateLimitEffective = new client.Gauge({
  name: "rate_limit_effective",
  help: "Upstream calls per second allowed now (adaptive limiter; 0 = unlimited)",
  registers: r,
});
export const rateLimitCeiling = new client.Gauge({
  name: "rate_limit_ceiling",
  help: "Configured rate limit the adaptive limiter stays under (0 = unlimited)",
  registers: r,
});
export const concurrencyLimitEffective = new client.Gauge({
  name: "concurrency_limit_effective",
  help: "Upstream calls allowed in flight at once (adaptive limiter)",
  registers: r,
});
export const rateLimitPaused = new client.Gauge({
  name: "rate_limit_paused",
  help: "1 while a long Retry-After pauses every upstream call, else 0",
  registers: r,
});
/** Decreases of the adaptive rate or in-flight limit, by cause (`429`, `503`, `timeout`, `latency`). */
export const rateLimitDecreasesTotal = new client.Counter({
  name: "rate_limit_decreases_total",
  help: "Decreases of the adaptive rate or in-flight limit, by reason",
  labelNames: ["reason"] as const,
  registers: r,
});
/** `Retry-After` honoured: `wait` (the record's retry waits) or `pause` (every call waits). */
export const upstreamRetryAfterTotal = new client.Counter({
  name: "upstream_retry_after_total",
  help: "Upstream answers with a Retry-After that was honoured, by action",
  labelNames: ["action"] as const,
  registers: r,
});
export const outageHoldsTotal = new client.Counter({
  name: "upstream_outage_holds_total",
  help:
    "Records that ran out of retries during an upstream outage (or on a 503, a refused connection, a connect timeout) and were held, not dead-lettered",
  registers: r,
});
export const auditWritesTotal = new client.Counter({
  name: "audit_writes_total",
  help: "Audit events uploaded to the audit store",
  registers: r,
});
export const auditWriteErrorsTotal = new client.Counter({
  name: "audit_write_errors_total",
  help: "Failed audit batch uploads",
  registers: r,
});
export const auditBacklogDepth = new client.Gauge({
  name: "audit_backlog_depth",
  help: "Audit events in the audit topic not yet uploaded to the audit store (uploader lag)",
  registers: r,
});
export const auditSpoolBytes = new client.Gauge({
  name: "audit_spool_bytes",
  help: "Bytes of audit events held in memory by this instance's uploader for its next upload",
  registers: r,
});
export const auditFlushLag = new client.Gauge({
  name: "audit_flush_lag_seconds",
  help: "Age of the oldest audit event not yet uploaded",
  registers: r,
});
export const kafkaConsumerLag = new client.Gauge({
  name: "kafka_consumer_lag",
  help: "High watermark minus committed offset, per partition",
  labelNames: ["topic", "partition"] as const,
  registers: r,
});
export const auditTopicWritesTotal = new client.Counter({
  name: "audit_topic_writes_total",
  help: "Audit events acknowledged by the audit topic (before the offset commit)",
  registers: r,
});
export const pipelineStallsTotal = new client.Counter({
  name: "pipeline_stalls_total",
  help: "Times the progress watchdog found the pipeline stalled and restarted it",
  registers: r,
});
export const auditUploaderStallsTotal = new client.Counter({
  name: "audit_uploader_stalls_total",
  help:
    "Times the progress watchdog found the audit uploader stalled and started its consumer anew",
  registers: r,
});
export const kafkaRebalancesTotal = new client.Counter({
  name: "kafka_consumer_rebalances_total",
  help: "Consumer group rebalances seen",
  registers: r,
});
export const kafkaDlqMessagesTotal = new client.Counter({
  name: "kafka_dlq_messages_total",
  help: "Dead letters published, by failure reason",
  labelNames: ["failure_reason"] as const,
  registers: r,
});
export const kafkaProcessingDuration = new client.Histogram({
  name: "kafka_message_processing_duration_seconds",
  help: "Time from fetch to final outcome, per record",
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: r,
});
export const actorRestartsTotal = new client.Counter({
  name: "actor_restarts_total",
  help: "Supervisor restarts, by actor",
  labelNames: ["actor"] as const,
  registers: r,
});
export const shutdownPhaseDuration = new client.Gauge({
  name: "shutdown_phase_duration_seconds",
  help: "Duration of each graceful shutdown phase",
  labelNames: ["phase"] as const,
  registers: r,
});
export const wsClients = new client.Gauge({
  name: "ws_clients",
  help: "Connected WebSocket clients (events and inspector)",
  registers: r,
});
export const wsDroppedEventsTotal = new client.Counter({
  name: "ws_dropped_events_total",
  help: "WebSocket events dropped for slow clients (drop-oldest)",
  registers: r,
});
export const replayRecordsTotal = new client.Counter({
  name: "replay_records_total",
  help: "Records handled by replays, by result",
  labelNames: ["result"] as const,
  registers: r,
});

// Labelled counters start at 0 for every known label value, so that the
// first dead letter or timeout of a kind is visible to `increase()` and rate
// alerts (Prometheus cannot see a series appear from nothing).
for (const outcome of ["delivered", "dead_lettered", "skipped_duplicate"]) {
  requestsTotal.inc({ outcome }, 0);
}
for (const reason of FAILURE_REASONS) kafkaDlqMessagesTotal.inc({ failure_reason: reason }, 0);
for (const t of ["connect", "read", "global"]) timeoutsTotal.inc({ timeout_type: t }, 0);
for (const reason of ["429", "503", "timeout", "latency"]) {
  rateLimitDecreasesTotal.inc({ reason }, 0);
}
for (const action of ["wait", "pause"]) upstreamRetryAfterTotal.inc({ action }, 0);
for (
  const kind of [
    "http_4xx",
    "http_5xx",
    "timeout",
    "network",
    "deserialization",
    "validation",
    "unknown",
  ]
) {
  errorsTotal.inc({ kind }, 0);
}
