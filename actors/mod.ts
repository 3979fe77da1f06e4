/**
 * The actors of sluice, by role: record contracts (`record/`), one record's path
 * (`pipeline/`), the log port and its adapters (`log/`), the audit trail
 * (`audit/`), replay and dead letters (`replay/`), local-mode stand-ins
 * (`local/`) and runtime services (`runtime/`). Each folder's `mod.ts` is its face.
 *
 * @module
 */
export * as record from "./record/mod.ts";
export * as pipeline from "./pipeline/mod.ts";
export * as log from "./log/mod.ts";
export * as audit from "./audit/mod.ts";
export * as replay from "./replay/mod.ts";
export * as local from "./local/mod.ts";
export * as runtime from "./runtime/mod.ts";
