/**
 * Delivery guarantees with the audit trail on the log, on the real Kafka
 * broker and the real Ceph RGW of `deno task test`: an instance lost for good
 * (killed, its data directory deleted, never restarted), repeated kill -9 and
 * restarts, an uploader killed between its PUT and its commit, a commit that
 * hangs, and bad input on the audit path. The outages of the shared broker
 * and RGW are in `outage_kafka_test.ts` (they run apart from other files).
 *
 * Every test checks a ledger: each produced record has exactly one final
 * outcome (`delivered` or `dead_lettered`) in the RGW bucket.
 *
 * @module
 */
import assert from "node:assert/strict";
import { sleep, uniqueName, waitFor } from "../harness/mod.ts";
import {
  allPositions,
  createTopic,
  fullyCommitted,
  groupLag,
  highWatermarks,
  produceEnvelopes,
  produceMessages,
  readDeadLetters,
  sluiceEnv,
  waitLedgerComplete,
} from "../harness/kafka_fixture.ts";
import { readAllAuditEvents, rgwStore } from "../harness/ledger.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import { startUpstreamStub } from "../harness/upstream_stub.ts";
import {
  admitted,
  assertCleanExit,
  mixedMessages,
  names,
  upstreamDuplicates,
} from "../harness/durability.ts";

Deno.test("an instance lost for good (kill -9, data dir deleted, never restarted): the survivor leaves every record exactly one outcome in RGW", async () => {
  const { topic, group, bucket } = names("lost");
  await createTopic(topic, { partitions: 6 });
  const { messages, malformed } = mixedMessages(topic, 0, 10_100, 101);
  await produceMessages(topic, messages);
  const stub = startUpstreamStub({ latencyMs: 2 });
  const env = sluiceEnv(topic, group, bucket, stub, {
    SLUICE_ORDERING: "key",
    SLUICE_RATE_LIMIT: "600",
    SLUICE_KAFKA_SESSION_TIMEOUT_MS: "6000",
  });
  const dirA = await Deno.makeTempDir({ prefix: "sluice-it-lostA-" });
  const dirB = await Deno.makeTempDir({ prefix: "sluice-it-lostB-" });
  try {
    const a = await startSluiceProcess({ env, dataDir: dirA });
    const b = await startSluiceProcess({ env, dataDir: dirB });
    await withSluice(b, async () => {
      await waitFor(() => stub.delivered.size > 3000, {
        timeoutMs: 60_000,
        message: "3000 records delivered by the pair",
      });
      const inflight = await admitted(a);
      assert.notEqual(await a.stop("SIGKILL"), 0);
      await Deno.remove(dirA, { recursive: true });
      console.log(`instance A killed with ${inflight} records admitted; its data dir deleted`);
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 120_000,
        intervalMs: 1000,
        message: "the survivor to commit everything",
      });
    });
    assert.equal((await b.status).code, 0);
    const positions = allPositions(topic, await highWatermarks(topic));
    assert.equal(positions.length, 10_100);
    const ledger = await waitLedgerComplete(bucket, positions, 60_000);
    const dls = await readDeadLetters(`${topic}-dlq`, malformed.length);
    const byOffset = new Map<string, number>();
    for (const d of dls) {
      const k = `${d.original_partition}/${d.original_offset}`;
      byOffset.set(k, (byOffset.get(k) ?? 0) + 1);
    }
    console.log(
      `instance lost: ${positions.length} records, ${ledger.missing.length} missing, ` +
        `${ledger.duplicates.size} duplicate outcomes, ${malformed.length} malformed → ` +
        `${byOffset.size} with a dead letter (${dls.length} dead letters), ` +
        `${upstreamDuplicates(stub)} duplicate upstream deliveries, lag ${await groupLag(
          group,
          topic,
        )}`,
    );
    assert.deepEqual(ledger.missing, []);
    assert.equal(ledger.duplicates.size, 0, "exactly one final outcome per record");
    assert.equal(ledger.outcomes.dead_lettered, malformed.length);
    assert.equal(byOffset.size, malformed.length, "every malformed record has a dead letter");
    assert.equal(await groupLag(group, topic), 0);
    assert.equal(stub.delivered.size, 10_100 - malformed.length);
  } finally {
    await stub.stop();
    await Deno.remove(dirA, { recursive: true }).catch(() => {});
    await Deno.remove(dirB, { recursive: true }).catch(() => {});
  }
});

Deno.test("five kill -9 and restarts under load: nothing missing, upstream duplicates bounded by the records in flight at the kills", async () => {
  const { topic, group, bucket } = names("kill5");
  await createTopic(topic);
  await produceEnvelopes(topic, 2000, 0, 200);
  let produced = 2000;
  const stub = startUpstreamStub({ latencyMs: 3 });
  const maxInflight = 16;
  const env = sluiceEnv(topic, group, bucket, stub, {
    SLUICE_ORDERING: "key",
    SLUICE_MAX_INFLIGHT: String(maxInflight),
    SLUICE_RATE_LIMIT: "400",
    SLUICE_KAFKA_SESSION_TIMEOUT_MS: "6000",
  });
  const dataDir = await Deno.makeTempDir({ prefix: "sluice-it-kill5-" });
  let inflightAtKills = 0;
  try {
    for (let i = 0; i < 5; i++) {
      const p = await startSluiceProcess({ env, dataDir });
      const load = produceEnvelopes(topic, 400, produced, 200);
      produced += 400;
      await waitFor(async () => (await p.metric("requests_total")) > 50, {
        timeoutMs: 60_000,
        message: "deliveries before the kill",
      });
      await sleep(Math.random() * 1500);
      inflightAtKills += await admitted(p);
      assert.notEqual(await p.stop("SIGKILL"), 0);
      await load;
    }
    const last = await startSluiceProcess({ env, dataDir });
    await withSluice(last, async () => {
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 120_000,
        intervalMs: 500,
        message: "the last instance to commit everything",
      });
    });
    assert.equal((await last.status).code, 0);
    const positions = allPositions(topic, await highWatermarks(topic));
    assert.equal(positions.length, produced);
    const ledger = await waitLedgerComplete(bucket, positions, 60_000);
    const dups = upstreamDuplicates(stub);
    console.log(
      `5 kills: ${produced} records, ${ledger.missing.length} missing, ` +
        `${dups} duplicate upstream deliveries, ${inflightAtKills} records admitted (in flight) ` +
        `at the kill instants, ${ledger.duplicates.size} duplicate outcomes in the audit`,
    );
    assert.deepEqual(ledger.missing, []);
    assert.equal(stub.delivered.size, produced);
    // Each kill can cost at most what was admitted on its partitions (3 × maxInflight).
    assert.ok(
      dups <= 5 * 3 * maxInflight,
      `duplicates (${dups}) within 5 kills × 3 × ${maxInflight}`,
    );
  } finally {
    await stub.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("an uploader killed between its PUT and its commit: the batch is not stored twice", async () => {
  const { topic, group, bucket } = names("putkill");
  await createTopic(topic);
  await produceEnvelopes(topic, 3000, 0, 100);
  const stub = startUpstreamStub({ latencyMs: 1 });
  const dataDir = await Deno.makeTempDir({ prefix: "sluice-it-putkill-" });
  try {
    const env = sluiceEnv(topic, group, bucket, stub, { SLUICE_AUDIT_BATCH_EVENTS: "200" });
    const first = await startSluiceProcess({
      env: { ...env, SLUICE_TEST_KILL_AFTER_PUT: "3" },
      dataDir,
    });
    const status = await first.status;
    assert.equal(status.signal, "SIGKILL", "the test hook killed the process after a PUT");
    assert.match(first.output(), /killing this process after an audit upload/);
    const second = await startSluiceProcess({ env, dataDir });
    await withSluice(second, async () => {
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 90_000,
        message: "all committed",
      });
      await waitFor(async () => (await second.metric("audit_backlog_depth")) === 0, {
        timeoutMs: 60_000,
        message: "the uploader lag back to 0",
      });
    });
    const positions = allPositions(topic, await highWatermarks(topic));
    const ledger = await waitLedgerComplete(bucket, positions, 60_000);
    const store = rgwStore(bucket);
    try {
      const events = await readAllAuditEvents(store);
      const seen = new Map<string, number>();
      for (const e of events) {
        const k = `${e.topic}/${e.partition}/${e.offset}/${e.event_type}`;
        seen.set(k, (seen.get(k) ?? 0) + 1);
      }
      const twice = [...seen].filter(([, n]) => n > 1);
      console.log(
        `uploader killed after a PUT: ${events.length} events in the bucket, ${twice.length} stored twice`,
      );
      assert.deepEqual(twice, [], "no audit event stored twice");
    } finally {
      store.close();
    }
    assert.deepEqual(ledger.missing, []);
    assert.equal(ledger.duplicates.size, 0);
  } finally {
    await stub.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a commit that hangs: the watchdog marks the pipeline not ready, restarts it, and it recovers", async () => {
  const { topic, group, bucket } = names("hang");
  await createTopic(topic);
  await produceEnvelopes(topic, 6000, 0, 100);
  const stub = startUpstreamStub({ latencyMs: 1 });
  try {
    const p = await startSluiceProcess({
      env: sluiceEnv(topic, group, bucket, stub, {
        SLUICE_RATE_LIMIT: "200",
        SLUICE_TEST_HANG_COMMITS: group,
        // Only the watchdog may rescue it: the commit timeout is out of the way.
        SLUICE_COMMIT_TIMEOUT_MS: "600000",
        SLUICE_GLOBAL_TIMEOUT_MS: "3000",
        SLUICE_WATCHDOG_MS: "8000",
      }),
    });
    await withSluice(p, async () => {
      let detail = "";
      await waitFor(async () => {
        const r = await fetch(`${p.url}/health/ready`);
        const body = await r.json();
        if (r.status === 503 && body.checks?.pipeline?.ok === false) {
          detail = body.checks.pipeline.detail;
        }
        return /stalled/.test(detail);
      }, {
        timeoutMs: 60_000,
        // Not ready from the stall until the restarted pipeline finishes a record: short.
        intervalMs: 20,
        message: "/health/ready 503 naming a stalled pipeline",
      });
      console.log(`ready said: ${detail}`);
      await waitFor(async () => (await p.metric("pipeline_stalls_total")) >= 1, {
        message: "the stall counted",
      });
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 120_000,
        intervalMs: 1000,
        message: "the restarted pipeline to commit everything",
      });
      await waitFor(async () => (await fetch(`${p.url}/health/ready`)).status === 200, {
        message: "ready again",
      });
      assert.match(p.output(), /pipeline stalled; restarting it/);
      const st = await p.json("/status") as {
        watchdog: { stalls: number; last_stall: { reason: string } };
      };
      assert.ok(st.watchdog.stalls >= 1);
      assert.match(st.watchdog.last_stall.reason, /no record finished/);
    });
    await assertCleanExit(p);
    const positions = allPositions(topic, await highWatermarks(topic));
    const ledger = await waitLedgerComplete(bucket, positions, 60_000);
    assert.deepEqual(ledger.missing, []);
  } finally {
    await stub.stop();
  }
});

Deno.test("an audit topic that cannot be created stops the start with exit 2 naming it", async () => {
  const topic = uniqueName("badaudit");
  await createTopic(topic);
  const stub = startUpstreamStub();
  try {
    const bad = `${"x".repeat(250)}`;
    const p = await startSluiceProcess({
      env: sluiceEnv(topic, uniqueName("badaudit-group"), uniqueName("badaudit-b"), stub, {
        SLUICE_AUDIT_TOPIC: bad,
      }),
      waitReady: false,
    });
    const status = await p.status;
    assert.equal(status.code, 2);
    assert.match(p.output(), /SLUICE_AUDIT_TOPIC=.*xxxx.*Cannot create or read the audit topic/s);
  } finally {
    await stub.stop();
  }
});

Deno.test("an audit event over the audit topic's message size limit is trimmed and never blocks its partition; a short retention is warned about", async () => {
  // A long topic name and long ids make each audit event ~1.5 kB; the audit
  // topic takes at most 1100 bytes per message.
  const topic = uniqueName("bigaudit").padEnd(200, "x");
  const group = uniqueName("bigaudit-group");
  const bucket = uniqueName("bigaudit-b");
  await createTopic(topic, { partitions: 1 });
  // One hour of retention: under SLUICE_AUDIT_MIN_RETENTION_HOURS (24), so the start warns.
  await createTopic(`${group}-audit`, {
    partitions: 1,
    configs: { "max.message.bytes": "1100", "retention.ms": "3600000" },
  });
  const long = (i: number) =>
    JSON.stringify({
      request_id: `r${i}`.padEnd(256, "r"),
      idempotency_key: `k${i}`.padEnd(256, "k"),
      timestamp: new Date().toISOString(),
      payload: { i },
    });
  await produceMessages(topic, [0, 1, 2].map((i) => ({ key: "a", value: long(i) })));
  const stub = startUpstreamStub();
  try {
    const p = await startSluiceProcess({ env: sluiceEnv(topic, group, bucket, stub) });
    await withSluice(p, async () => {
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 60_000,
        message: "all committed",
      });
      assert.match(p.output(), /audit event refused for its size by the log; trimming it/);
      assert.match(
        p.output(),
        /the audit topic keeps events for less than SLUICE_AUDIT_MIN_RETENTION_HOURS.*retention_hours=1 /,
      );
    });
    const positions = [0, 1, 2].map((o) => `${topic}/0/${o}`);
    const ledger = await waitLedgerComplete(bucket, positions);
    assert.deepEqual(ledger.missing, []);
    const store = rgwStore(bucket);
    try {
      const events = await readAllAuditEvents(store);
      assert.equal(events.length, 3);
      for (const e of events) {
        assert.equal((e as unknown as { trimmed?: boolean }).trimmed, true);
        assert.equal(e.result.outcome, "delivered");
        assert.equal(e.idempotency_key.length, 65);
      }
    } finally {
      store.close();
    }
    assert.equal(stub.delivered.size, 3);
  } finally {
    await stub.stop();
  }
});
