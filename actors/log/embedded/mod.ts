/**
 * The embedded log of local mode: an in-process, partitioned, persistent log
 * behind the same `LogClient` port as real Kafka (`log.ts`).
 *
 * @module
 */
export * from "./log.ts";
