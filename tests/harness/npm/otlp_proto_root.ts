/**
 * The protobufjs root generated from the opentelemetry-proto definitions, in
 * `@opentelemetry/otlp-proto-exporter-base`, for the tests' OTLP receiver.
 *
 * @module
 */
// Test-only npm package, pinned here and not in deno.json: `deno task start` installs every
// package of deno.json's import map before it runs, so test-only packages stay out of it
// and out of the root deno.lock (README: Benchmarks, "Cold start"). The tests run with
// `--lock=tests/deno.lock`.
// @ts-types="../otlp_root.d.ts"
export { default } from "npm:@opentelemetry/otlp-proto-exporter-base@0.51.1/build/esm/generated/root.js";
