/**
 * The upstream client's undici loads with a cheaper `assert`
 * (`actors/pipeline/undici_assert.ts`): undici's HTTP/1.1 client and parser
 * get it, nothing loaded afterwards does, and it throws what Node's throws.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { cheapAssertServed, Pool } from "../../actors/pipeline/undici.ts";
import { cheapAssert } from "../../actors/pipeline/undici_assert.ts";

const require = createRequire(import.meta.url);
const nodeAssert = require("node:assert");

Deno.test("undici's client and parser load with the cheaper assert; Node's loader is back afterwards", () => {
  const files = cheapAssertServed.map((f) => f.replace(/.*\/undici\/[^/]+\//, ""));
  for (
    const f of [
      "lib/dispatcher/client-h1.js",
      "lib/dispatcher/parser-h1.js",
      "lib/dispatcher/client.js",
      "lib/core/request.js",
      "lib/core/util.js",
    ]
  ) {
    assert.ok(
      files.includes(f),
      `${f} not served the cheaper assert; served: ${files.join(", ") || "none"}`,
    );
  }
  assert.equal(typeof Pool, "function");
  // After the window: Node's own assert, to anything that requires it.
  assert.notEqual(nodeAssert, cheapAssert);
  assert.equal(require("assert"), nodeAssert);
});

Deno.test("the cheaper assert throws what Node's assert throws, and nothing when the value holds", () => {
  const thrown = (f: () => void) => {
    try {
      f();
    } catch (e) {
      const err = e as Error & { code?: string; generatedMessage?: boolean };
      return { name: err.name, code: err.code, message: err.message, same: e };
    }
    return null;
  };
  const custom = new TypeError("custom");
  const fields = (e: ReturnType<typeof thrown>) => {
    const err = e?.same as Record<string, unknown> | undefined;
    return err && {
      name: e?.name,
      code: e?.code,
      actual: err.actual,
      expected: err.expected,
      operator: err.operator,
      generatedMessage: err.generatedMessage,
    };
  };
  const cases: [string, unknown[]][] = [
    ["0 with a message", [0, "the message"]],
    ["null with an Error", [null, custom]],
    ["no argument", []],
  ];
  for (const [label, args] of cases) {
    const ours = thrown(() => Reflect.apply(cheapAssert, undefined, args));
    const node = thrown(() => Reflect.apply(nodeAssert, undefined, args));
    assert.ok(ours && node, label);
    assert.deepEqual({ ...fields(ours), message: ours.message }, {
      ...fields(node),
      message: node.message,
    }, label);
  }
  // Without a message: Node's quotes the failing call's source; ours stops
  // before the quote, and its stack starts at the caller's line.
  for (const value of [false, undefined, 0, ""]) {
    const ours = thrown(() => cheapAssert(value));
    const node = thrown(() => nodeAssert(value));
    assert.ok(ours && node);
    assert.deepEqual(fields(ours), fields(node), String(value));
    assert.ok(node.message.startsWith(`${ours.message}:`), `${ours.message} / ${node.message}`);
    const firstFrame = (ours.same as Error).stack?.split("\n").find((l) =>
      l.trim().startsWith("at ")
    );
    assert.match(firstFrame ?? "", /undici_assert_test\.ts/, String((ours.same as Error).stack));
  }
  assert.equal(thrown(() => cheapAssert(null, custom))?.same, custom);
  for (const v of [true, 1, "x", {}, []]) assert.equal(thrown(() => cheapAssert(v)), null);
  assert.equal(cheapAssert.ok, nodeAssert.ok);
  assert.equal(cheapAssert.strictEqual, nodeAssert.strictEqual);
});

Deno.test("the cheaper assert costs a fraction of Node's (interleaved in one run)", () => {
  const calls = 500_000;
  const time = (f: (v: unknown) => void) => {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) f(i >= 0);
    return performance.now() - t0;
  };
  time(cheapAssert);
  time(nodeAssert);
  const ratios: number[] = [];
  for (let r = 0; r < 5; r++) ratios.push(time(cheapAssert) / time(nodeAssert));
  ratios.sort((a, b) => a - b);
  // Measured 0.03-0.1 (Deno 2.9.6): Node's allocates a rest array and an iterator per call.
  assert.ok(
    ratios[2] < 0.5,
    `cheap / node's assert time: ${ratios.map((r) => r.toFixed(3)).join(", ")}`,
  );
});
