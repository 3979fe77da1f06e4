/**
 * Process-wide runtime services: the structured logger (`logger.ts`), Prometheus
 * metrics (`metrics.ts`, on prom-client's classes from `prom.ts`; process and runtime
 * metrics: `runtime_metrics.ts`), the event bus (`events.ts`), the actor registry
 * (`registry.ts`), tracing (`tracing.ts`), credential redaction (`redact.ts`)
 * and durable local writes (`durable_fs.ts`).
 *
 * @module
 */
export * from "./durable_fs.ts";
export * from "./events.ts";
export * from "./logger.ts";
export * from "./metrics.ts";
export * from "./otlp_url.ts";
export * from "./runtime_metrics.ts";
export * from "./redact.ts";
export * from "./registry.ts";
export * from "./tracing.ts";
export * from "./errors.ts";
