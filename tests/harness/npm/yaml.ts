/**
 * yaml, to read the compose, Prometheus and Kubernetes files in the tests.
 *
 * @module
 */
// Test-only npm package, pinned here and not in deno.json: `deno task start` installs every
// package of deno.json's import map before it runs, so test-only packages stay out of it
// and out of the root deno.lock (README: Benchmarks, "Cold start"). The tests run with
// `--lock=tests/deno.lock`.
export { parse, parseAllDocuments } from "npm:yaml@2.9.1";
