/**
 * Operator features on the log: the replay driver (`replay.ts`) and the
 * dead-letter store behind `GET /dlq` and the DLQ replay (`dlq.ts`).
 *
 * @module
 */
export * from "./dlq.ts";
export * from "./replay.ts";
export * from "./types.ts";
