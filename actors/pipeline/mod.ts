/**
 * One record's path, in call order: the partition actor's scheduler and offset
 * tracker (`partition_worker.ts`, its queues are `fifo_queue.ts`), the per-record procedure (`processor.ts`), the
 * rate limiter (`rate_limiter.ts`), the adaptive flow control
 * (`adaptive_limiter.ts`), the circuit breaker (`circuit_breaker.ts`), the upstream
 * client (`upstream.ts`, its deadline queue in `deadlines.ts`), the idempotency store (`idempotency.ts`), and the
 * consuming side that binds a log consumer to partition actors (`pipeline.ts`).
 *
 * @module
 */
export * from "./adaptive_limiter.ts";
export * from "./circuit_breaker.ts";
export * from "./deadlines.ts";
export * from "./fifo_queue.ts";
export * from "./idempotency.ts";
export * from "./partition_worker.ts";
export * from "./pipeline.ts";
export * from "./processor.ts";
export * from "./rate_limiter.ts";
export * from "./upstream.ts";
