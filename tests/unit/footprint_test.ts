/**
 * Unit tests of the footprint work (README, Benchmarks): the deadline queue
 * and shared abort links of the record path (`actors/pipeline/deadlines.ts`), the
 * fetch sizes of the memory budget (`actors/log/memory_budget.ts`), the
 * runtime metrics (`actors/runtime/runtime_metrics.ts`) and the bundle's
 * Latin-1 pass (`compose/bundle.ts`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { CancelScope, DeadlineQueue, linkAbort } from "../../actors/pipeline/deadlines.ts";
import { fetchSizes } from "../../actors/log/memory_budget.ts";
import client from "prom-client";
import { registry } from "../../actors/runtime/metrics.ts";
import {
  openFileDescriptors,
  processCpu,
  processMemory,
  registerRuntimeMetrics,
} from "../../actors/runtime/runtime_metrics.ts";
import osMemoryHeap from "prom-client/lib/metrics/osMemoryHeap.js";
import processCpuTotal from "prom-client/lib/metrics/processCpuTotal.js";
import process from "node:process";
import processOpenFileDescriptors from "prom-client/lib/metrics/processOpenFileDescriptors.js";
import net from "node:net";
import { waitFor } from "../harness/procs.ts";
import { latin1Comments } from "../../compose/bundle.ts";

/** The harness's `waitFor`, with this file's argument order. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  await waitFor(cond, { timeoutMs: ms, intervalMs: 5, message: what });
}

Deno.test("DeadlineQueue fires in deadline order, not before, and never a cancelled one", async () => {
  const q = new DeadlineQueue();
  const fired: string[] = [];
  const start = performance.now();
  const at = new Map<string, number>();
  const add = (name: string, ms: number) =>
    q.add(ms, () => {
      fired.push(name);
      at.set(name, performance.now() - start);
    });
  add("c", 60);
  const b = add("b", 40);
  add("a", 20);
  add("d", 60); // same deadline as c, added later: after it
  const e = add("e", 10);
  q.cancel(e);
  q.cancel(e); // twice: no effect
  q.cancel(b);
  assert.equal(q.size, 3);
  await until(() => fired.length === 3, 2000, "three deadlines");
  assert.deepEqual(fired, ["a", "c", "d"]);
  assert.ok(at.get("a")! >= 19, `a fired after ${at.get("a")} ms`);
  assert.ok(at.get("c")! >= 59, `c fired after ${at.get("c")} ms`);
  assert.equal(q.size, 0);
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(fired, ["a", "c", "d"], "no cancelled deadline fired later");
});

Deno.test("DeadlineQueue: a deadline added from a callback and an earlier one added later both fire", async () => {
  const q = new DeadlineQueue();
  const fired: string[] = [];
  q.add(30, () => {
    fired.push("first");
    q.add(5, () => fired.push("chained"));
  });
  q.add(200, () => fired.push("late"));
  q.add(10, () => fired.push("early")); // before the armed timer
  await until(() => fired.length === 4, 2000, "four deadlines");
  assert.deepEqual(fired, ["early", "first", "chained", "late"]);
});

Deno.test("linkAbort aborts every linked controller once, with the reason, and not unlinked ones", () => {
  const shared = new AbortController();
  const a = new AbortController(), b = new AbortController(), c = new AbortController();
  linkAbort(shared.signal, a);
  const unlinkB = linkAbort(shared.signal, b);
  linkAbort(shared.signal, c);
  unlinkB();
  const reason = new Error("drain deadline");
  shared.abort(reason);
  assert.equal(a.signal.reason, reason);
  assert.equal(c.signal.reason, reason);
  assert.equal(b.signal.aborted, false);
  // Linking to a signal already aborted aborts at once.
  const d = new AbortController();
  linkAbort(shared.signal, d);
  assert.equal(d.signal.reason, reason);
});

Deno.test("CancelScope aborts once: listeners in order, a removed or late one never, a throwing one does not stop the next", () => {
  const scope = new CancelScope();
  const calls: string[] = [];
  const a = () => calls.push("a");
  const b = () => calls.push("b");
  const gone = () => calls.push("gone");
  scope.addEventListener("abort", a);
  scope.addEventListener("abort", () => {
    throw new Error("listener failed");
  });
  scope.addEventListener("abort", gone);
  scope.addEventListener("abort", b);
  scope.removeEventListener("abort", gone);
  assert.equal(scope.aborted, false);
  const reason = new Error("global timeout");
  scope.abort(reason);
  scope.abort(new Error("again"));
  scope.addEventListener("abort", () => calls.push("late"));
  assert.deepEqual(calls, ["a", "b"]);
  assert.equal(scope.aborted, true);
  assert.equal(scope.reason, reason);
  // No reason: an AbortError, as AbortController.abort() gives.
  const plain = new CancelScope();
  plain.abort();
  assert.ok(plain.reason instanceof DOMException && plain.reason.name === "AbortError");
  // Linked to a shared signal like an AbortController.
  const shared = new AbortController();
  const linked = new CancelScope();
  linkAbort(shared.signal, linked);
  shared.abort(new Error("drain deadline"));
  assert.equal((linked.reason as Error).message, "drain deadline");
});

Deno.test("fetchSizes: a fetch takes 1/8 of the budget, a partition maxInflight × 256 B within 64 KiB–1 MiB", () => {
  assert.deepEqual(fetchSizes({ memoryBudgetMb: 64, maxInflight: 32 }), {
    maxBytes: 8 * 1024 * 1024,
    maxBytesPerPartition: 64 * 1024,
  });
  assert.deepEqual(fetchSizes({ memoryBudgetMb: 64, maxInflight: 1000 }), {
    maxBytes: 8 * 1024 * 1024,
    maxBytesPerPartition: 1000 * 256,
  });
  assert.equal(
    fetchSizes({ memoryBudgetMb: 64, maxInflight: 5000 }).maxBytesPerPartition,
    1024 * 1024,
  );
  // Never more per partition than the whole fetch.
  assert.deepEqual(fetchSizes({ memoryBudgetMb: 16, maxInflight: 100_000 }), {
    maxBytes: 2 * 1024 * 1024,
    maxBytesPerPartition: 1024 * 1024,
  });
  assert.deepEqual(fetchSizes({ memoryBudgetMb: 16, maxInflight: 1 }), {
    maxBytes: 2 * 1024 * 1024,
    maxBytesPerPartition: 64 * 1024,
  });
});

/**
 * Median render time of `ours` over that of `theirs`, rendered alternately 31
 * times in this run (no wall-clock threshold: load on the machine hits both
 * alike); logged with `what` and `baseline`.
 */
async function renderRatio(
  ours: client.Registry,
  theirs: client.Registry,
  what: string,
  baseline: string,
): Promise<number> {
  const median = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1];
  const a: number[] = [], b: number[] = [];
  for (let i = 0; i < 31; i++) {
    let t = performance.now();
    await ours.metrics();
    a.push(performance.now() - t);
    t = performance.now();
    await theirs.metrics();
    b.push(performance.now() - t);
  }
  const ratio = median(a) / median(b);
  console.log(
    `${what}: ${median(a).toFixed(3)} ms; ${baseline} ${median(b).toFixed(3)} ms; ratio ${
      ratio.toFixed(2)
    }`,
  );
  return ratio;
}

Deno.test("runtime metrics: prom-client's default names, event-loop lag measured, a render cheaper than prom-client's defaults", async () => {
  await new Promise((r) => setTimeout(r, 350)); // a few lag samples
  const text = await registry.metrics();
  for (
    const name of [
      "process_cpu_seconds_total",
      "process_resident_memory_bytes",
      "process_open_fds",
      "process_start_time_seconds",
      "nodejs_heap_size_used_bytes",
      "nodejs_version_info",
      "nodejs_eventloop_lag_seconds",
      "nodejs_eventloop_lag_p99_seconds",
    ]
  ) {
    assert.match(text, new RegExp(`^${name}(\\{.*\\})? `, "m"), name);
  }
  const p50 = Number(text.match(/^nodejs_eventloop_lag_p50_seconds (\S+)$/m)![1]);
  assert.ok(Number.isFinite(p50) && p50 >= 0 && p50 < 1, `p50 lag ${p50}`);
  // Cost against a baseline of the same run (no wall-clock threshold): the
  // same runtime metrics from prom-client's collectDefaultMetrics, which
  // these replace. Interleaved, so load on the machine hits both alike.
  const ours = new client.Registry();
  registerRuntimeMetrics(ours);
  const theirs = new client.Registry();
  client.collectDefaultMetrics({ register: theirs });
  await new Promise((r) => setTimeout(r, 50));
  const ratio = await renderRatio(ours, theirs, "runtime metrics render", "prom-client defaults");
  assert.ok(ratio < 1, `render ratio ${ratio.toFixed(2)} against prom-client's default metrics`);
});

Deno.test("process CPU counters: prom-client's names, help and types; the process's CPU since it started", async () => {
  const ours = new client.Registry();
  processCpu(ours);
  const theirs = new client.Registry();
  (processCpuTotal as (r: client.Registry, c: object) => void)(theirs, {});
  const spin = performance.now() + 30;
  while (performance.now() < spin) Math.sqrt(Math.random());
  const value = (text: string, name: string) =>
    Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
  const before = process.cpuUsage();
  const [a, b] = [await ours.metrics(), await theirs.metrics()];
  const after = process.cpuUsage();
  // Same metric families, help and types, in the same order.
  assert.deepEqual(
    a.split("\n").filter((l) => l.startsWith("#")),
    b.split("\n").filter((l) => l.startsWith("#")),
  );
  const user = value(a, "process_cpu_user_seconds_total");
  const system = value(a, "process_cpu_system_seconds_total");
  const total = value(a, "process_cpu_seconds_total");
  // Since the process started (this test file's imports took CPU before the
  // counters were registered; prom-client's count from their registration).
  assert.ok(total >= (before.user + before.system) / 1e6, `${total} s`);
  assert.ok(total <= (after.user + after.system) / 1e6, `${total} s`);
  assert.ok(total > value(b, "process_cpu_seconds_total"));
  assert.ok(Math.abs(user + system - total) < 1e-9);
  // Counters: the next render counts on from there.
  const spin2 = performance.now() + 20;
  while (performance.now() < spin2) Math.sqrt(Math.random());
  assert.ok(value(await ours.metrics(), "process_cpu_seconds_total") > total);
});

Deno.test({
  name:
    "process memory and open descriptors: prom-client's names, help and values, a render cheaper than prom-client's collectors",
  ignore: Deno.build.os !== "linux",
  fn: async () => {
    // Descriptors open, as a Kafka-mode instance has (its connections).
    const server = net.createServer((s) => s.on("data", () => {})).listen(0, "127.0.0.1");
    await new Promise((r) => server.once("listening", r));
    const { port } = server.address() as net.AddressInfo;
    const sockets = Array.from({ length: 40 }, () => net.connect(port, "127.0.0.1"));
    try {
      await Promise.all(sockets.map((s) => new Promise((r) => s.once("connect", r))));
      const ours = new client.Registry();
      processMemory(ours);
      openFileDescriptors(ours);
      const theirs = new client.Registry();
      (osMemoryHeap as (r: client.Registry, c: object) => void)(theirs, {});
      (processOpenFileDescriptors as (r: client.Registry, c: object) => void)(theirs, {});
      const value = (text: string, name: string) =>
        Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
      const [a, b] = [await ours.metrics(), await theirs.metrics()];
      // Same metric families, help and types, in the same order.
      assert.deepEqual(
        a.split("\n").filter((l) => l.startsWith("#")),
        b.split("\n").filter((l) => l.startsWith("#")),
      );
      const fds = value(a, "process_open_fds");
      assert.equal(fds, value(b, "process_open_fds"));
      assert.ok(fds >= 80, `${fds} descriptors open, with 80 sockets`);
      for (
        const name of [
          "process_resident_memory_bytes",
          "process_virtual_memory_bytes",
          "process_heap_bytes",
        ]
      ) {
        const [x, y] = [value(a, name), value(b, name)];
        assert.ok(x > 0 && Math.abs(x - y) / y < 0.1, `${name}: ${x} against prom-client's ${y}`);
      }
      // Cost against prom-client's collectors in the same run, interleaved.
      const ratio = await renderRatio(
        ours,
        theirs,
        "memory and descriptors render",
        "prom-client's",
      );
      assert.ok(ratio < 0.8, `render ratio ${ratio.toFixed(2)} against prom-client's collectors`);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  },
});

Deno.test("the ./sluice launcher runs Deno with the V8 flags of `deno task start`", () => {
  const config = JSON.parse(Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)));
  const flags: string[] = config.tasks.start.match(/--v8-flags=\S+/g) ?? [];
  assert.ok(flags.length > 0, "deno task start sets V8 flags");
  const launcher = Deno.readTextFileSync(new URL("../../sluice", import.meta.url));
  const exec = launcher.split("\n").find((l) => l.startsWith('exec "$deno_bin" run'));
  assert.ok(exec, "the launcher's exec line");
  assert.deepEqual(exec.match(/--v8-flags=\S+/g), flags);
});

Deno.test("bundle: characters above U+00FF in comments become \\uXXXX; elsewhere they stay and are reported", () => {
  const source = [
    "/** topic \u2192 partition */",
    "  // dead \u2014 fenced",
    "   * an actor\u2019s snapshot, \u{1F600}",
    'const label = "a \u2192 b";',
  ].join("\n");
  const { text, escaped, left } = latin1Comments(source);
  assert.equal(escaped, 5); // the emoji is two UTF-16 code units
  assert.equal(
    text,
    [
      "/** topic \\u2192 partition */",
      "  // dead \\u2014 fenced",
      "   * an actor\\u2019s snapshot, \\ud83d\\ude00",
      'const label = "a \u2192 b";',
    ].join("\n"),
  );
  assert.equal(left.length, 1);
  assert.match(left[0], /const label/);
  assert.equal(JSON.parse('"\\u2192"'), "\u2192"); // what the escape reads as, in a string
});
