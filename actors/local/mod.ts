/**
 * Local-mode stand-ins: the load generator (`load_generator.ts`) and the
 * simulated upstream (`sim_upstream.ts`).
 *
 * @module
 */
export * from "./load_generator.ts";
export * from "./sim_upstream.ts";
