/**
 * Record contracts: the record and its outcome (`record.ts`), the envelope and its
 * validation (`envelope.ts`), per-topic payload schemas (`schema.ts`) and dead
 * letters (`dead_letter.ts`). README, Internals: the contracts.
 *
 * @module
 */
export * from "./dead_letter.ts";
export * from "./envelope.ts";
export * from "./record.ts";
export * from "./schema.ts";
