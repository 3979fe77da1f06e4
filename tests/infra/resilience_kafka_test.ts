/**
 * Issue 4 on the real parts: sluice as a process, Kafka 4.1 and Ceph RGW from
 * the runner, a loopback upstream stub whose behaviour changes while sluice
 * runs. Each test has its own topic, group and bucket.
 *
 * - upstream 503 then 200: retried, all delivered;
 * - upstream 400: dead letter, PROCESSING_ERROR, status in the message;
 * - upstream hanging: read timeouts counted, TIMEOUT_ERROR after the retries;
 * - breaker policy `pause`: opens, partitions pause, no dead letter, lag grows,
 *   half-open probe closes it, everything delivered; policy `dlq`: CIRCUIT_OPEN;
 * - rate limit: 200/s measured within ±10 % over 10 s; a change over HTTP
 *   takes effect within 1 s;
 * - malformed and hostile input: right reasons, valid records after them delivered;
 * - slow upstream: `queue_depth` bounded by SLUICE_MAX_INFLIGHT, RSS flat.
 */
import assert from "node:assert/strict";
import { sleep, uniqueName, waitFor } from "../harness/mod.ts";
import {
  allPositions,
  createTopic,
  envelope,
  groupLag,
  highWatermarks,
  ledgerOf,
  type Message,
  produceEnvelopes,
  produceMessages,
  readDeadLetters,
  sampler,
  sluiceEnv,
  waitLedgerComplete,
} from "../harness/kafka_fixture.ts";
import { type SluiceProcess, startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import {
  startUpstreamStub,
  type StubBehaviour,
  type UpstreamStub,
} from "../harness/upstream_stub.ts";

interface Run {
  topic: string;
  group: string;
  bucket: string;
  stub: UpstreamStub;
  sluice: SluiceProcess;
}

/** A breaker that never opens (so records wait in their retries instead). */
const NO_BREAKER = { SLUICE_BREAKER_VOLUME: "1000000", SLUICE_BREAKER_ERROR_PERCENT: "100" };

/**
 * Creates a fresh topic, group and bucket, a stub with `behaviour`, starts
 * sluice with `env`, runs `fn`, and stops everything (SIGTERM, exit code
 * checked by the caller through `run.sluice.status` if it cares).
 */
async function scenario(
  name: string,
  opts: {
    behaviour?: Partial<StubBehaviour>;
    env?: Record<string, string>;
    topicConfigs?: Record<string, string>;
    before?: (topic: string) => Promise<void>;
  },
  fn: (run: Run) => Promise<void>,
): Promise<void> {
  const topic = uniqueName(name);
  const group = uniqueName(`${name}-group`);
  const bucket = uniqueName(`${name}-audit`);
  await createTopic(topic, { configs: opts.topicConfigs });
  await opts.before?.(topic);
  const stub = startUpstreamStub(opts.behaviour ?? {});
  try {
    const sluice = await startSluiceProcess({
      env: sluiceEnv(topic, group, bucket, stub, opts.env ?? {}),
    });
    await withSluice(sluice, () => fn({ topic, group, bucket, stub, sluice }));
    assert.equal((await sluice.status).code, 0, "graceful exit 0");
  } finally {
    await stub.stop();
  }
}

/** Every record of `topic` has exactly one final audit outcome; returns the outcomes. */
async function assertLedger(run: Run): Promise<Record<string, number>> {
  const positions = allPositions(run.topic, await highWatermarks(run.topic));
  const ledger = await waitLedgerComplete(run.bucket, positions, 30_000);
  assert.deepEqual(ledger.missing, []);
  assert.equal(ledger.duplicates.size, 0, "no record has two outcomes");
  return ledger.outcomes;
}

Deno.test("upstream answering 503 for 5 s then 200: retried, every record delivered", async () => {
  const N = 300;
  await scenario("up503", {
    behaviour: { status: 503 },
    env: {
      ...NO_BREAKER,
      SLUICE_ORDERING: "key",
      SLUICE_MAX_RETRIES: "30",
      SLUICE_RETRY_BASE_MS: "100",
      SLUICE_RETRY_MAX_MS: "800",
    },
    before: (topic) => produceEnvelopes(topic, N),
  }, async (run) => {
    await waitFor(() => run.stub.requests.length >= 50, { message: "first 503 answers" });
    const failing = Date.now();
    await sleep(5000);
    const during = await run.sluice.metric("retries_total");
    assert.ok(during > 0, `retries counted while 503 (${during})`);
    assert.equal(run.stub.delivered.size, 0);
    run.stub.set({ status: 200 });
    const healthy = Date.now();
    await waitFor(() => run.stub.delivered.size === N, {
      timeoutMs: 30_000,
      message: `${N} deliveries after the upstream recovered`,
    });
    const retries = await run.sluice.metric("retries_total");
    console.log(
      `503 for ${
        healthy - failing
      } ms: ${run.stub.requests.length} requests, ${retries} retries, ` +
        `all ${N} delivered ${Date.now() - healthy} ms after recovery`,
    );
    await waitFor(() =>
      run.sluice.metric("requests_total", { outcome: "delivered" }).then((n) => n === N)
    );
    assert.equal(await run.sluice.metric("kafka_dlq_messages_total"), 0);
    assert.ok(await run.sluice.metric("errors_total", { kind: "http_5xx" }) > 0);
    assert.deepEqual(await assertLedger(run), { delivered: N });
  });
});

Deno.test("upstream answering 400: dead letters with PROCESSING_ERROR and the status, no retry", async () => {
  const N = 20;
  await scenario("up400", {
    behaviour: { status: 400 },
    before: (topic) => produceEnvelopes(topic, N),
  }, async (run) => {
    const dls = await readDeadLetters(`${run.topic}-dlq`, N);
    assert.equal(dls.length, N, "one dead letter per record");
    for (const dl of dls) {
      assert.equal(dl.failure_reason, "PROCESSING_ERROR");
      assert.match(dl.error_message, /\b400\b/);
      assert.equal(dl.original_topic, run.topic);
      assert.equal(dl.retry_count, 0);
    }
    assert.equal(new Set(dls.map((d) => d.id)).size, N);
    assert.equal(run.stub.requests.length, N, "4xx is not retried");
    await waitFor(async () =>
      (await run.sluice.metric("kafka_dlq_messages_total", {
        failure_reason: "PROCESSING_ERROR",
      })) === N
    );
    assert.equal(await run.sluice.metric("retries_total"), 0);
    assert.deepEqual(await assertLedger(run), { dead_lettered: N });
  });
});

Deno.test("upstream hanging: read timeouts counted by kind, TIMEOUT_ERROR after the retry limit", async () => {
  const N = 6;
  await scenario("uphang", {
    behaviour: { hang: true },
    env: {
      ...NO_BREAKER,
      SLUICE_ORDERING: "none",
      SLUICE_READ_TIMEOUT_MS: "300",
      SLUICE_MAX_RETRIES: "2",
      SLUICE_RETRY_BASE_MS: "50",
      SLUICE_RETRY_MAX_MS: "100",
    },
    before: (topic) => produceEnvelopes(topic, N),
  }, async (run) => {
    const dls = await readDeadLetters(`${run.topic}-dlq`, N);
    assert.equal(dls.length, N);
    for (const dl of dls) {
      assert.equal(dl.failure_reason, "TIMEOUT_ERROR");
      assert.match(dl.error_message, /read timeout after 300 ms after 2 retries/);
      assert.equal(dl.retry_count, 2);
    }
    const read = await run.sluice.metric("timeouts_total", { timeout_type: "read" });
    assert.equal(read, N * 3, "three attempts per record, each a read timeout");
    assert.equal(await run.sluice.metric("timeouts_total", { timeout_type: "connect" }), 0);
    assert.equal(await run.sluice.metric("timeouts_total", { timeout_type: "global" }), 0);
    assert.equal(
      await run.sluice.metric("kafka_dlq_messages_total", { failure_reason: "TIMEOUT_ERROR" }),
      N,
    );
    assert.equal(run.stub.requests.length, N * 3);
    assert.deepEqual(await assertLedger(run), { dead_lettered: N });
  });
});

const BREAKER = {
  SLUICE_BREAKER_VOLUME: "5",
  SLUICE_BREAKER_ERROR_PERCENT: "50",
  SLUICE_BREAKER_WINDOW_MS: "10000",
  SLUICE_MAX_RETRIES: "20",
  SLUICE_RETRY_BASE_MS: "50",
  SLUICE_RETRY_MAX_MS: "200",
};

Deno.test("breaker policy pause: opens, pauses partitions, no dead letter, lag grows; a half-open probe closes it and every record is delivered", async () => {
  const FIRST = 300, MORE = 300;
  await scenario("brkpause", {
    behaviour: { status: 503 },
    env: { ...BREAKER, SLUICE_BREAKER_POLICY: "pause", SLUICE_BREAKER_RESET_MS: "2000" },
    before: (topic) => produceEnvelopes(topic, FIRST),
  }, async (run) => {
    await waitFor(async () => (await run.sluice.metric("circuit_state")) === 2, {
      message: "circuit_state 2 (open)",
    });
    const status = await run.sluice.json("/status") as { pause_reasons: string[] };
    assert.ok(
      status.pause_reasons.includes("circuit"),
      `paused for circuit: ${status.pause_reasons}`,
    );
    const lagBefore = await groupLag(run.group, run.topic);
    await produceEnvelopes(run.topic, MORE, FIRST);
    const lagAfter = await groupLag(run.group, run.topic);
    assert.ok(lagAfter >= lagBefore + MORE, `lag grows while open: ${lagBefore} → ${lagAfter}`);
    // Still open (re-opened by failed probes) for a while: nothing is dead-lettered.
    const requestsWhileOpen = run.stub.requests.length;
    await sleep(4500);
    assert.ok(
      run.stub.requests.length - requestsWhileOpen <= 6,
      `only half-open probes reach the upstream while open (${
        run.stub.requests.length - requestsWhileOpen
      })`,
    );
    assert.equal(await run.sluice.metric("kafka_dlq_messages_total"), 0, "no dead letter");
    assert.equal(run.stub.delivered.size, 0);
    run.stub.set({ status: 200 });
    await waitFor(async () => (await run.sluice.metric("circuit_state")) === 0, {
      timeoutMs: 10_000,
      message: "circuit closed by a successful half-open probe",
    });
    await waitFor(() => run.stub.delivered.size === FIRST + MORE, {
      timeoutMs: 30_000,
      message: `${FIRST + MORE} deliveries`,
    });
    assert.equal(await run.sluice.metric("kafka_dlq_messages_total"), 0);
    assert.equal((await highWatermarks(`${run.topic}-dlq`)).size, 3);
    assert.ok([...(await highWatermarks(`${run.topic}-dlq`)).values()].every((h) => h === "0"));
    assert.deepEqual(await assertLedger(run), { delivered: FIRST + MORE });
  });
});

Deno.test("breaker policy dlq: records refused while open are dead-lettered with CIRCUIT_OPEN", async () => {
  const N = 60;
  await scenario("brkdlq", {
    behaviour: { status: 503 },
    env: { ...BREAKER, SLUICE_BREAKER_POLICY: "dlq", SLUICE_BREAKER_RESET_MS: "60000" },
    before: (topic) => produceEnvelopes(topic, N),
  }, async (run) => {
    const dls = await readDeadLetters(`${run.topic}-dlq`, N);
    assert.equal(dls.length, N);
    const reasons = Object.groupBy(dls, (d) => d.failure_reason);
    assert.deepEqual(Object.keys(reasons), ["CIRCUIT_OPEN"], JSON.stringify(Object.keys(reasons)));
    assert.match(dls[0].error_message, /Circuit breaker is open/);
    assert.equal(await run.sluice.metric("circuit_state"), 2);
    assert.equal(
      await run.sluice.metric("kafka_dlq_messages_total", { failure_reason: "CIRCUIT_OPEN" }),
      N,
    );
    assert.deepEqual(await assertLedger(run), { dead_lettered: N });
  });
});

/** Arrivals in `[from, to)` per second. */
function rateIn(stub: UpstreamStub, from: number, to: number): number {
  return stub.requests.filter((r) => r.at >= from && r.at < to).length / ((to - from) / 1000);
}

Deno.test("rate limit 200/s holds within ±10 % over 10 s; PUT /control/rate 400 takes effect within 1 s", async () => {
  await scenario("rate", {
    behaviour: { latencyMs: 1 },
    env: {
      SLUICE_RATE_LIMIT: "200",
      SLUICE_RATE_BURST: "20",
      SLUICE_ORDERING: "none",
      SLUICE_MAX_INFLIGHT: "256",
    },
    before: (topic) => produceEnvelopes(topic, 4500),
  }, async (run) => {
    await waitFor(() => run.stub.requests.length > 0, { message: "first request" });
    const t0 = run.stub.requests[0].at;
    await sleep(t0 + 11_500 - Date.now());
    const measured = rateIn(run.stub, t0 + 1000, t0 + 11_000);
    const changedAt = Date.now();
    const res = await run.sluice.json("/control/rate", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ rate: 400 }),
    }) as { rate: { rate: number } };
    assert.equal(res.rate.rate, 400);
    await sleep(changedAt + 3200 - Date.now());
    const after = rateIn(run.stub, changedAt + 1000, changedAt + 3000);
    const firstSecond = rateIn(run.stub, changedAt, changedAt + 1000);
    console.log(
      `rate: ${measured.toFixed(1)}/s over 10 s at 200; after PUT 400: ${
        firstSecond.toFixed(0)
      }/s in the first second, ${after.toFixed(1)}/s over the next 2 s`,
    );
    assert.ok(Math.abs(measured - 200) <= 20, `200/s ± 10 %: measured ${measured}`);
    assert.ok(Math.abs(after - 400) <= 40, `400/s ± 10 % from 1 s after the change: ${after}`);
    assert.ok(firstSecond > 300, `faster within the first second (${firstSecond}/s)`);
    assert.equal(await run.sluice.metric("kafka_dlq_messages_total"), 0);
  });
});

Deno.test("malformed and hostile records are dead-lettered with the right reason and the pipeline goes on", async () => {
  const big = JSON.stringify({
    request_id: "big",
    timestamp: new Date().toISOString(),
    payload: "x".repeat(2 * 1024 * 1024),
  });
  const random = (n: number) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536));
    b[0] = 0xff; // never valid UTF-8: the record cannot be text, so not JSON
    return b;
  };
  const bad: { m: Message; reason: "DESERIALIZATION_ERROR" | "VALIDATION_ERROR" }[] = [];
  const add = (value: Message["value"], reason: (typeof bad)[number]["reason"]) =>
    bad.push({ m: { key: `bad-${bad.length}`, value, partition: 0 }, reason });
  for (let i = 0; i < 100; i++) {
    add(`not json ${i} {`, "DESERIALIZATION_ERROR");
    add(random(64 + i), "DESERIALIZATION_ERROR");
    add(JSON.stringify({ request_id: `r-${i}` }), "VALIDATION_ERROR"); // no timestamp, payload
    add(JSON.stringify({ timestamp: new Date().toISOString(), payload: i }), "VALIDATION_ERROR");
    add(JSON.stringify([1, 2, i]), "VALIDATION_ERROR");
    add(
      JSON.stringify({ request_id: "", timestamp: "yesterday", payload: {} }),
      "VALIDATION_ERROR",
    );
    add(null, "VALIDATION_ERROR"); // tombstone
    add(
      '{"request_id": "x", "payload": {"deep": ' + "[".repeat(5000) + "]",
      "DESERIALIZATION_ERROR",
    );
  }
  add(big, "VALIDATION_ERROR");
  add(random(1024 * 1024 - 1024), "DESERIALIZATION_ERROR");
  const VALID = 200;
  await scenario("malformed", {
    env: { SLUICE_ORDERING: "partition" },
    topicConfigs: { "max.message.bytes": String(8 * 1024 * 1024) },
    before: async (topic) => {
      // All in partition 0, the bad ones first: the valid ones come after them.
      await produceMessages(topic, bad.map((b) => b.m));
      const valid: Message[] = [];
      for (let s = 0; s < VALID; s++) {
        valid.push({ key: `k${s}`, value: envelope(topic, s), partition: 0 });
      }
      await produceMessages(topic, valid);
    },
  }, async (run) => {
    await waitFor(() => run.stub.delivered.size === VALID, {
      timeoutMs: 60_000,
      message: `${VALID} valid records delivered after ${bad.length} bad ones`,
    });
    const dls = await readDeadLetters(`${run.topic}-dlq`, bad.length, 60_000);
    assert.equal(dls.length, bad.length);
    const byKey = new Map(dls.map((d) => [d.original_key, d]));
    for (const b of bad) {
      const dl = byKey.get(b.m.key);
      assert.ok(dl, `a dead letter for ${b.m.key}`);
      assert.equal(dl.failure_reason, b.reason, `${b.m.key}: ${dl.error_message}`);
    }
    const deser = bad.filter((b) => b.reason === "DESERIALIZATION_ERROR").length;
    assert.equal(
      await run.sluice.metric("kafka_dlq_messages_total", {
        failure_reason: "DESERIALIZATION_ERROR",
      }),
      deser,
    );
    assert.equal(
      await run.sluice.metric("kafka_dlq_messages_total", { failure_reason: "VALIDATION_ERROR" }),
      bad.length - deser,
    );
    const big = byKey.get(`bad-${bad.length - 2}`)!;
    assert.match(big.error_message, /^Record value is too large: \d+ bytes, limit 1048576/);
    // Dead letters over the DLQ topic's size limit go without the payload, saying where it is.
    for (const dl of [big, byKey.get(`bad-${bad.length - 1}`)!]) {
      assert.equal(dl.original_payload, null);
      assert.match(dl.error_message, /payload of \d+ bytes left out.*read it at /);
    }
    assert.equal(byKey.get("bad-0")!.original_payload, "not json 0 {");
    assert.deepEqual(await assertLedger(run), { dead_lettered: bad.length, delivered: VALID });
  });
});

/** Largest `queue_depth` sample of one /metrics scrape. */
async function maxQueueDepth(p: SluiceProcess): Promise<{ depth: number; rss: number }> {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  let depth = 0, rss = NaN;
  for (const line of text.split("\n")) {
    const q = /^queue_depth\{[^}]*\} (\S+)$/.exec(line);
    if (q) depth = Math.max(depth, Number(q[1]));
    const r = /^process_resident_memory_bytes (\S+)$/.exec(line);
    if (r) rss = Number(r[1]);
  }
  return { depth, rss };
}

Deno.test("slow upstream: queue_depth never exceeds SLUICE_MAX_INFLIGHT and RSS stays flat", async () => {
  const MAX = 16;
  await scenario("slow", {
    behaviour: { latencyMs: 150 },
    env: {
      SLUICE_ORDERING: "key",
      SLUICE_MAX_INFLIGHT: String(MAX),
      // Unbounded, V8 lets garbage pile up to a few hundred MB before a major
      // GC (a sawtooth, not a leak: the heap falls back to ~60 MB). Under a
      // cap, a leak cannot hide: the heap would hit it and the process die.
      DENO_V8_FLAGS: "--max-old-space-size=128",
    },
    before: (topic) => produceEnvelopes(topic, 8000, 0, 500),
  }, async (run) => {
    await waitFor(() => run.stub.requests.length > 0);
    const s = sampler(() => maxQueueDepth(run.sluice), 100);
    await sleep(20_000);
    const samples = await s.stop();
    const depths = samples.map((x) => x.depth);
    const rss = samples.map((x) => x.rss / 2 ** 20);
    const q = Math.floor(rss.length / 4);
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const early = avg(rss.slice(q, 2 * q)), late = avg(rss.slice(-q));
    console.log(
      `slow upstream: ${samples.length} samples, max queue_depth ${Math.max(...depths)} ` +
        `(limit ${MAX}), ${run.stub.delivered.size} delivered, max in flight upstream ` +
        `${run.stub.maxInflight()}, RSS ${early.toFixed(0)} → ${late.toFixed(0)} MiB ` +
        `(max ${Math.max(...rss).toFixed(0)})`,
    );
    assert.ok(samples.length > 100, `enough samples (${samples.length})`);
    assert.ok(Math.max(...depths) <= MAX, `queue_depth ≤ ${MAX}: max ${Math.max(...depths)}`);
    assert.ok(Math.max(...depths) >= MAX / 2, "the bound was actually reached");
    assert.ok(late - early < 25, `RSS flat: ${early.toFixed(0)} → ${late.toFixed(0)} MiB`);
    assert.ok(Math.max(...rss) < 300, `RSS under 300 MiB (max ${Math.max(...rss)})`);
    assert.equal(
      await Promise.race([run.sluice.status.then(() => "exited"), sleep(0).then(() => "alive")]),
      "alive",
    );
    assert.ok(run.stub.maxInflight() <= 3 * MAX);
    const ledger = await ledgerOf(run.bucket, []);
    assert.equal(ledger.duplicates.size, 0);
  });
});
