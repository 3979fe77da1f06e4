/**
 * The log sluice consumes and produces to: the {@link LogClient} port
 * (`port.ts`) and its adapters: real Kafka on kafkajs (`kafka.ts`, the
 * default) or on `@platformatic/kafka` (`platformatic.ts`, chosen with
 * `SLUICE_KAFKA_CLIENT`), with fetch sizes from the memory budget
 * (`memory_budget.ts`); and the embedded in-process log of local mode
 * (`embedded/`).
 *
 * @module
 */
export * from "./kafka.ts";
export * from "./platformatic.ts";
export * from "./memory_budget.ts";
export * from "./port.ts";
export * from "./embedded/mod.ts";
