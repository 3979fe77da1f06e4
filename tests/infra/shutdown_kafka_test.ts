/**
 * Issue 5 on the real parts: graceful and abrupt ends of sluice processes,
 * group membership changes and a broker outage, each checked against the
 * ledger (every produced record has a final audit outcome in RGW).
 *
 * - SIGTERM with ~10,000 records in flight or buffered: exit 0 in time,
 *   phases in order, audit flushed, nothing lost after a restart;
 * - SIGKILL at random moments, 10 times in a row, with restarts under load;
 * - a child that keeps crashing: restarted per strategy, then the tree stops
 *   with a non-zero exit naming it;
 * - a second instance joins under load and leaves gracefully;
 * - an idle consumer closes within a second of SIGTERM (its fetch wait bounded).
 *
 * The broker outages (SIGTERM and SIGKILL, restarted on the same port and
 * data) are in `tests/infra/durability_kafka_test.ts`.
 */
import assert from "node:assert/strict";
import { sleep, uniqueName, waitFor } from "../harness/mod.ts";
import {
  allPositions,
  assertInOrder,
  committedOffsets,
  createTopic,
  fullyCommitted,
  highWatermarks,
  kafka,
  ledgerOf,
  produceEnvelopes,
  sluiceEnv,
  waitLedgerComplete,
} from "../harness/kafka_fixture.ts";
import { type SluiceProcess, startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import { startUpstreamStub } from "../harness/upstream_stub.ts";

/** Sum of `queue_depth` over partitions (records pushed to workers and not finished). */
async function pendingRecords(p: SluiceProcess): Promise<number> {
  return await p.metric("queue_depth");
}

/** Positions below the committed offsets (records the group says are done). */
function committedPositions(topic: string, committed: Map<number, string>): string[] {
  const done = new Map([...committed].filter(([, o]) => BigInt(o) > 0n));
  return allPositions(topic, done);
}

const PHASES = [
  "stop_load",
  "mark_not_ready",
  "drain",
  "close_consumer",
  "flush_audit",
  "stop_http",
];

Deno.test("SIGTERM with ~10,000 records in flight: exit 0 within the drain deadline + 5 s, phases in order, ledger complete after a restart", async () => {
  const topic = uniqueName("sigterm");
  const group = uniqueName("sigterm-group");
  const bucket = uniqueName("sigterm-audit");
  // The drain deadline leaves room for a loaded machine: beside another infra
  // lane on 2 cores sluice drained ~800 records/s (12,000 pending did not fit
  // in 10 s: exit 1 after 15.8 s); alone about 2,000/s. What is checked is
  // that the drain ends by itself, in order, within its deadline.
  const N = 24_000, MAX_INFLIGHT = 4000, DRAIN_MS = 30_000;
  await createTopic(topic);
  await produceEnvelopes(topic, N, 0, 3000);
  const positions = allPositions(topic, await highWatermarks(topic));
  const stub = startUpstreamStub({ latencyMs: 50 });
  const env = sluiceEnv(topic, group, bucket, stub, {
    SLUICE_ORDERING: "key",
    SLUICE_MAX_INFLIGHT: String(MAX_INFLIGHT),
    SLUICE_SHUTDOWN_DRAIN_MS: String(DRAIN_MS),
  });
  try {
    const first = await startSluiceProcess({ env });
    let pendingAtSignal = 0, exitMs = 0, code = -1;
    await withSluice(first, async () => {
      pendingAtSignal = await waitFor(async () => {
        const n = await pendingRecords(first);
        return n >= 9000 ? n : 0;
      }, { timeoutMs: 60_000, intervalMs: 20, message: "~10,000 records pending" });
      const t = performance.now();
      code = await first.stop("SIGTERM");
      exitMs = performance.now() - t;
    });
    const deliveredBefore = stub.delivered.size;
    console.log(
      `SIGTERM with ${pendingAtSignal} records pending: exit ${code} after ${
        exitMs.toFixed(0)
      } ms; ` +
        `${deliveredBefore} delivered`,
    );
    assert.equal(code, 0, `graceful exit 0\n${first.output().slice(-4000)}`);
    assert.ok(exitMs < DRAIN_MS + 5000, `exit within the drain deadline + 5 s (${exitMs} ms)`);
    const out = first.output();
    assertInOrder(out, PHASES.map((p) => `shutdown phase completed phase=${p} `));
    assert.ok(!out.includes("shutdown phase timed out"), "no phase timed out");
    const phaseMs = [...out.matchAll(/shutdown phase completed phase=(\w+) ms=(\d+)/g)]
      .map((m) => `${m[1]} ${m[2]} ms`);
    console.log(`phases: ${phaseMs.join(", ")}`);
    // Everything the group committed is already in the audit store (flushed, nothing lost).
    const committed = await committedOffsets(group, topic);
    const flushed = await ledgerOf(bucket, committedPositions(topic, committed));
    assert.deepEqual(flushed.missing, [], "every committed record was audited before the exit");

    // A restart finishes the rest; nothing is missing, duplicates stay within the window.
    const second = await startSluiceProcess({ env, dataDir: first.dataDir });
    await withSluice(second, async () => {
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 90_000,
        intervalMs: 500,
        message: "the restarted instance to commit everything",
      });
    });
    const ledger = await waitLedgerComplete(bucket, positions, 30_000);
    const dups = [...ledger.duplicates.values()].reduce((a, n) => a + n - 1, 0);
    console.log(
      `after restart: ${ledger.outcomes.delivered} delivered, ${dups} duplicate outcomes ` +
        `(window ${pendingAtSignal}), ${stub.requests.length} upstream requests for ${N} records`,
    );
    assert.deepEqual(ledger.missing, []);
    assert.equal(stub.delivered.size, N);
    assert.ok(dups <= pendingAtSignal, `duplicates (${dups}) within the in-flight window`);
  } finally {
    await stub.stop();
  }
});

Deno.test("SIGKILL at random moments, 10 times with restarts under load: ledger complete", async () => {
  const topic = uniqueName("sigkill");
  const group = uniqueName("sigkill-group");
  const bucket = uniqueName("sigkill-audit");
  await createTopic(topic);
  await produceEnvelopes(topic, 1000, 0, 200);
  let produced = 1000;
  const stub = startUpstreamStub({ latencyMs: 3 });
  const env = sluiceEnv(topic, group, bucket, stub, {
    SLUICE_ORDERING: "key",
    SLUICE_MAX_INFLIGHT: "64",
    SLUICE_RATE_LIMIT: "400",
    // A killed instance holds its partitions until its session expires: keep it short.
    SLUICE_KAFKA_SESSION_TIMEOUT_MS: "6000",
  });
  const dataDir = await Deno.makeTempDir({ prefix: "sluice-it-kill-" });
  const kills: string[] = [];
  try {
    for (let i = 0; i < 10; i++) {
      const p = await startSluiceProcess({ env, dataDir });
      const started = Date.now();
      const before = stub.delivered.size;
      // Under load: more records arrive while it runs; the kill comes at a random moment.
      const load = produceEnvelopes(topic, 200, produced, 200);
      produced += 200;
      await sleep(200 + Math.random() * 1800);
      const code = await p.stop("SIGKILL");
      await load;
      kills.push(`${Date.now() - started} ms/${stub.delivered.size - before}`);
      assert.notEqual(code, 0, "killed");
    }
    console.log(`10 kills (alive ms/deliveries): ${kills.join(", ")}`);
    const last = await startSluiceProcess({ env, dataDir });
    await withSluice(last, async () => {
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 90_000,
        intervalMs: 500,
        message: "the last instance to commit everything",
      });
    });
    assert.equal((await last.status).code, 0);
    const positions = allPositions(topic, await highWatermarks(topic));
    assert.equal(positions.length, produced);
    const ledger = await waitLedgerComplete(bucket, positions, 30_000);
    console.log(
      `after 10 kills: ${produced} records, ${ledger.duplicates.size} with duplicate outcomes, ` +
        `${stub.requests.length} upstream requests`,
    );
    assert.deepEqual(ledger.missing, []);
    assert.equal(stub.delivered.size, produced);
  } finally {
    await stub.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a child that keeps crashing is restarted per strategy, then the tree stops with a non-zero exit naming it", async () => {
  const topic = uniqueName("crash");
  const group = uniqueName("crash-group");
  const bucket = uniqueName("crash-audit");
  await createTopic(topic);
  await produceEnvelopes(topic, 3000);
  const stub = startUpstreamStub({ latencyMs: 20 });
  try {
    const p = await startSluiceProcess({
      env: sluiceEnv(topic, group, bucket, stub, { SLUICE_ORDERING: "key" }),
    });
    await withSluice(p, async () => {
      await waitFor(() => stub.delivered.size > 100, { message: "first deliveries" });
      // The source topic disappears under the running pipeline: commits fail,
      // the pipeline child crashes, and every restart fails to find the topic.
      const admin = kafka().admin();
      await admin.connect();
      try {
        await admin.deleteTopics({ topics: [topic] });
      } finally {
        await admin.disconnect();
      }
      const status = await Promise.race([p.status, sleep(60_000).then(() => undefined)]);
      assert.ok(status, "the process ended by itself");
      assert.notEqual(status.code, 0, "non-zero exit");
      const out = p.output();
      console.log(
        `exit ${status.code}; supervisor lines:\n` +
          out.split("\n").filter((l) => /\[supervisor\]|\[sluice\].*stopped/.test(l))
            .map((l) => `  ${l.slice(0, 260)}`).join("\n"),
      );
      assert.match(
        out,
        /child exited; restarting supervisor=sluice child=pipeline strategy=rest_for_one/,
      );
      assert.match(out, /gave up: child pipeline exceeded 5 restarts in 60000 ms/);
      assert.match(out, /supervisor tree stopped/);
    });
  } finally {
    await stub.stop();
  }
});

Deno.test("a second instance joins the group under load and leaves gracefully: ledger complete, commits before it leaves", async () => {
  const topic = uniqueName("join");
  const group = uniqueName("join-group");
  const bucket = uniqueName("join-audit");
  const N = 6000;
  await createTopic(topic, { partitions: 6 });
  await produceEnvelopes(topic, N, 0, 300);
  const stub = startUpstreamStub({ latencyMs: 5 });
  const env = sluiceEnv(topic, group, bucket, stub, {
    SLUICE_ORDERING: "key",
    SLUICE_MAX_INFLIGHT: "32",
    SLUICE_RATE_LIMIT: "300",
  });
  try {
    const a = await startSluiceProcess({ env });
    await withSluice(a, async () => {
      await waitFor(() => stub.delivered.size > 500, { message: "A delivering" });
      const b = await startSluiceProcess({ env });
      let bCode = -1;
      await withSluice(b, async () => {
        const partsOf = async (p: SluiceProcess) =>
          ((await p.json("/status")) as { partitions: unknown[] }).partitions.length;
        await waitFor(async () => (await partsOf(a)) === 3 && (await partsOf(b)) === 3, {
          timeoutMs: 60_000,
          message: "A and B to own 3 partitions each",
        });
        const atJoin = stub.delivered.size;
        await waitFor(() => stub.delivered.size > atJoin + 1000, {
          timeoutMs: 30_000,
          message: "both instances delivering",
        });
        bCode = await b.stop("SIGTERM");
      });
      assert.equal(
        bCode,
        0,
        `B left gracefully; its last lines:\n${
          b.output().split("\n").filter((l) => /shutdown|phase|ERROR|WARN/.test(l)).slice(-30)
            .join("\n")
        }`,
      );
      assertInOrder(b.output(), PHASES.map((p) => `shutdown phase completed phase=${p} `));
      // What the group committed when B left is audited (B flushed before it left).
      const committed = await committedOffsets(group, topic);
      const ledgerAtLeave = await ledgerOf(bucket, committedPositions(topic, committed));
      // A's part may still sit in A's spool (batches of 300 ms): wait for them.
      await waitFor(
        async () =>
          (await ledgerOf(bucket, committedPositions(topic, committed))).missing.length === 0,
        {
          timeoutMs: 10_000,
          message:
            `every record committed at B's leave audited (${ledgerAtLeave.missing.length} missing)`,
        },
      );
      await waitFor(
        async () => (await a.json("/status") as { partitions: unknown[] }).partitions.length === 6,
        {
          timeoutMs: 30_000,
          message: "A to own all 6 partitions again",
        },
      );
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 90_000,
        intervalMs: 500,
        message: "A to commit everything",
      });
      assert.ok(
        !b.output().includes("ILLEGAL_GENERATION"),
        "B never committed with a stale generation",
      );
    });
    const positions = allPositions(topic, await highWatermarks(topic));
    const ledger = await waitLedgerComplete(bucket, positions, 30_000);
    console.log(
      `join/leave: ${N} records, ${ledger.duplicates.size} with duplicate outcomes, ` +
        `${stub.requests.length} upstream requests`,
    );
    assert.deepEqual(ledger.missing, []);
    assert.equal(stub.delivered.size, N);
    assert.ok(ledger.duplicates.size <= 6 * 32, `duplicates within the in-flight window`);
  } finally {
    await stub.stop();
  }
});

Deno.test("an idle consumer closes at once on SIGTERM: close_consumer well within its 5 s, exit 0 (3 rounds)", async () => {
  // Stopping the kafkajs consumer waits for its fetch in flight; with nothing
  // to read, a fetch waited 5 s at the broker (kafkajs's default), as long as
  // the whole close_consumer deadline: that phase took 0–5 s and sometimes
  // timed out (exit 1). A 1 s fetch wait bounds it.
  const topic = uniqueName("idle-close");
  const group = uniqueName("idle-close-group");
  const bucket = uniqueName("idle-close-audit");
  await createTopic(topic, { partitions: 3 });
  await produceEnvelopes(topic, 30);
  const stub = startUpstreamStub({ latencyMs: 1 });
  const took: number[] = [];
  try {
    for (let round = 0; round < 3; round++) {
      const p = await startSluiceProcess({ env: sluiceEnv(topic, group, bucket, stub) });
      let code = -1;
      await withSluice(p, async () => {
        await waitFor(() => fullyCommitted(group, topic), {
          timeoutMs: 30_000,
          message: "everything committed",
        });
        await sleep(500 + Math.random() * 1500); // idle, a fetch waiting at the broker
        code = await p.stop("SIGTERM");
      });
      const m = /shutdown phase completed phase=close_consumer ms=(\d+)/.exec(p.output());
      assert.ok(m, `close_consumer completed:\n${p.output().slice(-2000)}`);
      took.push(Number(m[1]));
      assert.equal(code, 0, `exit 0:\n${p.output().slice(-2000)}`);
    }
    console.log(`close_consumer with an idle consumer: ${took.join(", ")} ms`);
    for (const ms of took) assert.ok(ms < 2_000, `close_consumer took ${ms} ms`);
  } finally {
    await stub.stop();
  }
});
