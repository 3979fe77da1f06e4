/**
 * The log sluice consumes and produces to: the {@link LogClient} port
 * (`port.ts`) and its two adapters, real Kafka on kafkajs (`kafka.ts`) and the
 * embedded in-process log of local mode (`embedded/`).
 *
 * @module
 */
export * from "./kafka.ts";
export * from "./port.ts";
export * from "./embedded/mod.ts";
