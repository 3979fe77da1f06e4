/**
 * The load generator (machines/load_generator.ts, actors/local/load_generator.ts)
 * on the embedded log: rate held exactly (on a manual clock), runtime rate change, pause,
 * count, valid and malformed envelopes, stop waiting for the send in flight;
 * and `sluice produce` (supervisors/cli/produce.ts) into the embedded log.
 */
import assert from "node:assert/strict";
import { createEmbeddedLog, embeddedLogDir } from "../../actors/log/embedded/log.ts";
import { makeEnvelope, startLoadGenerator } from "../../actors/local/load_generator.ts";
import { createProduceCommand } from "../../supervisors/cli/produce.ts";
import { listActors } from "../../actors/runtime/registry.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import type { LogClient, LogProducer } from "../../actors/log/port.ts";
import { UsageError } from "../../supervisors/cli/common.ts";
import { loadConfig } from "../../supervisors/config.ts";
import { ManualClock } from "../harness/clock.ts";
import { sleep, waitFor } from "../harness/procs.ts";

const decoder = new TextDecoder();

/** The harness's `waitFor`, with this file's argument order. */
async function waitUntil(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  await waitFor(cond, { timeoutMs, intervalMs: 5, message: what });
}

async function withLog(fn: (log: LogClient, dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-load-" });
  const log = createEmbeddedLog({ dir, partitions: 3 });
  try {
    await fn(log, dir);
  } finally {
    await log.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function readAll(log: LogClient, topic: string): Promise<SourceRecord[]> {
  const admin = await log.admin();
  const out: SourceRecord[] = [];
  for (const { partition, offset } of await admin.highWatermarks(topic)) {
    for await (const b of log.readRange({ topic, partition }, { from: "0", to: offset })) {
      out.push(...b);
    }
  }
  return out;
}

/**
 * Runs `n` ticks of the generator on `clock` (each tick's send acknowledged
 * before the next) and returns the records produced at each tick.
 */
async function runTicks(
  clock: ManualClock,
  produced: () => number,
  n: number,
  perTick: number,
): Promise<number[]> {
  const counts: number[] = [];
  for (let i = 0; i < n; i++) {
    const before = produced();
    clock.runNext();
    // Acknowledged (or more, which the assertion below reports).
    await waitUntil(() => produced() >= before + perTick, `tick ${i}: ${perTick} records`);
    await waitUntil(() => clock.pending > 0, `tick ${i}: the next tick armed`);
    counts.push(produced() - before);
  }
  return counts;
}

Deno.test("loadGenerator holds its rate exactly (manual clock) and follows a runtime change", async () => {
  await withLog(async (log) => {
    const clock = new ManualClock();
    const gen = startLoadGenerator({
      producer: await log.producer(),
      topic: "events",
      rate: 200,
      clock,
    });
    try {
      assert.equal(gen.stats().state, "running");
      const entry = listActors().find((a) => a.id === "load-generator");
      assert.equal(entry?.kind, "load");
      assert.equal(clock.nextDue(), 100, "one tick each 100 ms");
      // 200/s for 3 s: 20 records at each 100 ms tick, 600 in all, at exactly 3000 ms.
      const at200 = await runTicks(clock, () => gen.stats().produced, 30, 20);
      assert.deepEqual(at200, Array(30).fill(20), "20 records per 100 ms tick");
      assert.equal(clock.now(), 3000);
      assert.equal(gen.stats().produced, 600);
      gen.setRate(600);
      assert.equal(gen.stats().rate, 600);
      // 600/s from now on: 60 records at each tick, 1200 more in 2 s.
      const at600 = await runTicks(clock, () => gen.stats().produced, 20, 60);
      assert.deepEqual(at600, Array(20).fill(60), "60 records per 100 ms tick");
      assert.equal(clock.now(), 5000);
      assert.equal(gen.stats().produced, 1800);
      assert.throws(() => gen.setRate(-1), /rate/);
    } finally {
      await gen.stop();
    }
    assert.equal(gen.stats().state, "stopped");
    const records = await readAll(log, "events");
    assert.equal(records.length, gen.stats().produced, "every acknowledged record is in the log");
    const keys = new Set<string>();
    for (const r of records) {
      const env = JSON.parse(decoder.decode(r.value!));
      assert.match(env.request_id, /^[0-9a-f-]{36}$/);
      assert.match(env.idempotency_key, /^load-[0-9a-f]{8}-\d+$/);
      assert.ok(!Number.isNaN(Date.parse(env.timestamp)));
      assert.equal(typeof env.payload.seq, "number");
      assert.match(r.headers.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      keys.add(env.idempotency_key);
    }
    assert.equal(keys.size, records.length, "idempotency keys are unique");
  });
});

Deno.test("loadGenerator pauses, resumes, stops at its count and waits for the send in flight", async () => {
  await withLog(async (log) => {
    const inner = await log.producer();
    let release: (() => void) | null = null;
    let gated = false;
    const producer: LogProducer = {
      async send(topic, messages) {
        if (gated) await new Promise<void>((r) => (release = r));
        await inner.send(topic, messages);
      },
      disconnect: () => inner.disconnect(),
    };
    const gen = startLoadGenerator({ producer, topic: "t", rate: 1000, paused: true, count: 300 });
    assert.equal(gen.stats().state, "paused");
    gen.resume();
    await waitUntil(() => gen.stats().produced >= 100, "100 records");
    gen.pause();
    assert.equal(gen.stats().state, "paused");
    const atPause = gen.stats().produced;
    await sleep(300);
    assert.ok(gen.stats().produced - atPause <= 100, "at most the send in flight lands");
    const settled = gen.stats().produced;
    gen.resume();
    await gen.done();
    assert.ok(settled < 300);
    assert.equal(gen.stats().produced, 300);
    assert.equal(gen.stats().state, "stopped");

    // Stop waits for the send in flight.
    gated = true;
    const slow = startLoadGenerator({ producer, topic: "t", rate: 100, id: "slow" });
    await waitUntil(() => release !== null, "a send in flight");
    let stopped = false;
    const stopping = slow.stop().then(() => (stopped = true));
    await sleep(50);
    assert.equal(stopped, false);
    assert.equal(slow.stats().state, "stopping");
    release!();
    await stopping;
    assert.equal(slow.stats().state, "stopped");
    assert.ok(slow.stats().produced > 0);
  });
});

Deno.test("loadGenerator reports failing sends in its state and recovers", async () => {
  let fail = true;
  let sends = 0;
  const producer: LogProducer = {
    send() {
      sends++;
      return fail ? Promise.reject(new Error("broker down")) : Promise.resolve();
    },
    disconnect: () => Promise.resolve(),
  };
  const gen = startLoadGenerator({ producer, topic: "t", rate: 100, id: "failing" });
  try {
    await waitUntil(() => gen.actor.getSnapshot().context.lastError === "broker down", "failure");
    assert.equal(gen.stats().produced, 0);
    fail = false;
    await waitUntil(() => gen.stats().produced > 0, "recovery");
    assert.equal(gen.actor.getSnapshot().context.lastError, null);
    assert.ok(sends >= 2);
  } finally {
    await gen.stop();
  }
});

Deno.test("makeEnvelope builds malformed records of every kind on request", () => {
  const kinds = ["not_json", "missing_fields", "not_object"] as const;
  const values = kinds.map((malformed) =>
    decoder.decode(makeEnvelope(1, { malformed }).value as Uint8Array)
  );
  assert.throws(() => JSON.parse(values[0]));
  assert.equal(JSON.parse(values[1]).request_id, undefined);
  assert.ok(Array.isArray(JSON.parse(values[2])));
  const ok = JSON.parse(decoder.decode(makeEnvelope(7, { runId: "r" }).value as Uint8Array));
  assert.equal(ok.idempotency_key, "load-r-7");
});

Deno.test("produce command writes N records into the embedded log and rejects bad arguments", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "sluice-produce-" });
  try {
    const lines: string[] = [];
    const progress: string[] = [];
    const cmd = createProduceCommand({
      loadConfig: () => loadConfig({ SLUICE_DATA_DIR: dataDir }),
      out: (l) => lines.push(l),
      progress: (l) => progress.push(l),
    });
    const code = await cmd.run([
      "--topic",
      "demo",
      "--rate",
      "2000",
      "--count",
      "250",
      "--malformed",
      "0.2",
    ]);
    assert.equal(code, 0);
    assert.match(lines[0], /^produced 250 records to demo \(\d+ malformed\) on embedded log at /);
    assert.ok(progress.at(-1)?.startsWith("produced 250/250 to demo"));
    const log = createEmbeddedLog({ dir: embeddedLogDir(dataDir) });
    try {
      const records = await readAll(log, "demo");
      assert.equal(records.length, 250);
      const bad = records.filter((r) => {
        try {
          const v = JSON.parse(decoder.decode(r.value!));
          return typeof v?.request_id !== "string";
        } catch {
          return true;
        }
      }).length;
      assert.match(lines[0], new RegExp(`\\(${bad} malformed\\)`));
    } finally {
      await log.close();
    }
    for (
      const args of [
        ["--rate", "abc"],
        ["--rate", "0"],
        ["--count", "1.5"],
        ["--malformed", "2"],
        ["--nope"],
        ["extra"],
        ["--brokers", ","],
      ]
    ) {
      await assert.rejects(cmd.run(args), UsageError, args.join(" "));
    }
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});
