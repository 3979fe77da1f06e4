/**
 * prom-client's metric classes, loaded from their own files rather than from
 * the package's index.
 *
 * ```ts
 * import prom from "./prom.ts";
 * const registry = new prom.Registry();
 * new prom.Counter({ name: "x_total", help: "X.", registers: [registry] });
 * ```
 *
 * The index also loads what sluice does not use: the cluster aggregator
 * (`node:cluster`), the Pushgateway client (`node:http`, `node:https`) and
 * every default collector, one of which (`processCpuTotal`) loads
 * OpenTelemetry's API for exemplars. These files are the same modules the
 * index exports (the same classes, `instanceof` holds across both).
 * `tests/e2e/lazy_modules_test.ts` fails if the index, or OpenTelemetry's
 * API, loads in a local-mode instance (README, Benchmarks: "Loading only what
 * is used").
 *
 * @module
 */
import type * as PromClient from "prom-client";
import registry from "prom-client/lib/registry.js";
import counter from "prom-client/lib/counter.js";
import gauge from "prom-client/lib/gauge.js";
import histogram from "prom-client/lib/histogram.js";

/** The part of prom-client sluice uses. */
export type Prom = Pick<typeof PromClient, "Registry" | "Counter" | "Gauge" | "Histogram">;

/** prom-client's `Registry`, `Counter`, `Gauge` and `Histogram`. */
const prom: Prom = {
  Registry: registry,
  Counter: counter,
  Gauge: gauge,
  Histogram: histogram,
} as unknown as Prom;
export default prom;
