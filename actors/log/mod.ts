/**
 * The log sluice consumes and produces to: the {@link LogClient} port
 * (`port.ts`) and its two adapters, real Kafka on kafkajs or on `@platformatic/kafka` (`platformatic.ts`,
 * `SLUICE_KAFKA_CLIENT`), (`kafka.ts`; fetch sizes from the memory budget:
 * `memory_budget.ts`) and the
 * embedded in-process log of local mode (`embedded/`).
 *
 * @module
 */
export * from "./kafka.ts";
export * from "./platformatic.ts";
export * from "./memory_budget.ts";
export * from "./port.ts";
export * from "./embedded/mod.ts";
