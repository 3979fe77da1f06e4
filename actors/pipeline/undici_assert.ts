/**
 * A cheaper `assert` for undici, in force only while undici's modules load.
 *
 * ```ts
 * import { endCheapAssert } from "./undici_assert.ts"; // installs it (first import)
 * import pool from "undici/lib/dispatcher/pool.js";    // requires node:assert: gets cheapAssert
 * const served = endCheapAssert();                     // files served; Node's loader back
 * ```
 *
 * **Why.** undici checks its invariants with Node's `assert(value)` on every
 * step of every request: about twenty calls per request and response in its
 * HTTP/1.1 client and parser (one per header of the answer). Deno 2.9.6's
 * `node:assert` is `function assert(...args) { ok(fn, args.length, ...new
 * SafeArrayIterator(args)) }`: a rest array, an iterator and its results per
 * call, about 100 ns against 5 for `if (!value)`. In the allocation profile of
 * the framework benchmark these calls were the largest single site (5.4 % of
 * the bytes sluice allocated, charged to the iterator's `next`) and `assert`
 * 2.2 % of its CPU (README, Benchmarks: "undici's `assert`"). undici's own
 * maintainers found `assert` slow under Node too (nodejs/undici#3091).
 *
 * {@link cheapAssert} does the test itself and calls Node's `assert` only when
 * it fails: the same `AssertionError` (or the `Error` passed as message) as
 * before. One difference: without a message, Node's quotes the source of the
 * failing call ("The expression evaluated to a falsy value:\n\n
 * assert(!this.upgrade)"), which from here would be this module's line; the
 * message stops before the quote, and the stack starts at undici's line as
 * before. It carries Node's `assert` properties (`ok`, `strictEqual`, …),
 * though undici only calls `assert(value[, message])`.
 *
 * **How.** Importing this module replaces `Module._load`, Node's CommonJS
 * loader entry, so that a `require("node:assert")` (or `"assert"`) returns
 * {@link cheapAssert}; {@link endCheapAssert} puts the loader back. The
 * upstream client's `actors/pipeline/undici.ts` imports this module first,
 * then undici's modules, then ends it: ES modules evaluate in import order, so
 * the window holds undici's loading only (its CommonJS `require`s are
 * synchronous), in source form, in `deno compile`'s binary and in the
 * `deno task bundle` file alike (there undici's `require`s go through
 * `createRequire`, the same loader). Nothing loaded later sees it.
 * `tests/unit/undici_assert_test.ts` checks all of this, and
 * `tests/e2e/bundle_test.ts` the window in a bundle.
 *
 * @module
 */
import Module, { createRequire } from "node:module";

type NodeAssert = ((value?: unknown, message?: string | Error) => void) & Record<string, unknown>;
type LoadFn = (request: string, parent: unknown, isMain: boolean) => unknown;

const loader = Module as unknown as { _load: LoadFn };
const nodeAssert = createRequire(import.meta.url)("node:assert") as NodeAssert;
const AssertionError = nodeAssert.AssertionError as new (options: {
  message: string;
  actual: unknown;
  expected: unknown;
  operator: string;
  // deno-lint-ignore ban-types
  stackStartFn: Function;
}) => Error & { generatedMessage: boolean };

/**
 * Node's `assert(value[, message])` without its per-call allocations. When
 * `value` is falsy it throws what Node's throws: by calling it when there is
 * a message (or no argument at all), else an `AssertionError` with the same
 * fields whose message does not quote the caller's source (module doc).
 */
export const cheapAssert: NodeAssert = Object.assign(
  function assert(value: unknown, message?: string | Error): void {
    if (value) return;
    // Node's assert tells "no argument" apart from a falsy one.
    if (arguments.length === 0) nodeAssert();
    if (message !== undefined) nodeAssert(value, message);
    // Without a message Node's quotes the expression of its caller's line,
    // which would be the line above: the same error, without the quote, its
    // stack starting at the caller (undici's line).
    const error = new AssertionError({
      message: "The expression evaluated to a falsy value",
      actual: value,
      expected: true,
      operator: "==",
      stackStartFn: assert,
    });
    error.generatedMessage = true;
    throw error;
  },
  nodeAssert,
);

const original = loader._load;
const served: string[] = [];
let active = true;
loader._load = function (this: unknown, request: string, parent: unknown, isMain: boolean) {
  if (active && (request === "node:assert" || request === "assert")) {
    served.push((parent as { filename?: string } | null)?.filename ?? "");
    return cheapAssert;
  }
  return Reflect.apply(original, this, [request, parent, isMain]);
};
const installed = loader._load;

/**
 * Ends the window: `require("node:assert")` gives Node's `assert` again.
 * Returns the files whose `require` of it was served {@link cheapAssert} in
 * the window (the bundle's own path, once per module, in the single file).
 * Idempotent.
 */
export function endCheapAssert(): readonly string[] {
  active = false;
  // Put the loader back unless someone hooked it after us (then ours stays in
  // their chain, inactive: a pass-through).
  if (loader._load === installed) loader._load = original;
  return served;
}
