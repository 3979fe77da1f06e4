/**
 * @xstate/graph, for the model-based tests of the machines.
 *
 * @module
 */
// Test-only npm package, pinned here and not in deno.json: `deno task start` installs every
// package of deno.json's import map before it runs, so test-only packages stay out of it
// and out of the root deno.lock (README: Benchmarks, "Cold start"). The tests run with
// `--lock=tests/deno.lock`.
export { getShortestPaths, getSimplePaths } from "npm:@xstate/graph@3.0.4";
