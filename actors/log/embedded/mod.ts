/**
 * The embedded log of local mode: an in-process, partitioned, persistent log
 * behind the same `LogClient` port as real Kafka (`../kafka.ts`). The public
 * face is `log.ts` (`createEmbeddedLog`, `embeddedLogDir`, the options and
 * errors, `murmur2`); the other files hold its parts by role.
 *
 * @module
 */
export * from "./log.ts";
