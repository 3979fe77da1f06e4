/**
 * Outages of the shared infrastructure under load, on the real Kafka broker
 * and Ceph RGW of `deno task test`: RGW stopped for a minute, the broker
 * stopped and restarted (SIGTERM and SIGKILL). They stop what every infra
 * test uses, so the test runner runs this file while no other infra file
 * runs (`tests/run_tests.ts`, lane `outage`).
 *
 * Every test checks a ledger: each produced record has exactly one final
 * outcome (`delivered` or `dead_lettered`) in the RGW bucket.
 *
 * @module
 */
import assert from "node:assert/strict";
import { sleep, startKafka, startRgw, stopKafka, stopRgw, waitFor } from "../harness/mod.ts";
import {
  allPositions,
  createTopic,
  fullyCommitted,
  groupLag,
  highWatermarks,
  produceEnvelopes,
  sluiceEnv,
  waitLedgerComplete,
} from "../harness/kafka_fixture.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import { startUpstreamStub } from "../harness/upstream_stub.ts";
import { assertCleanExit, names, upstreamDuplicates, withOutput } from "../harness/durability.ts";

Deno.test("RGW stopped for 60 s under load: consumption goes on, nothing lost or duplicated, the uploader catches up", async () => {
  const { topic, group, bucket } = names("rgwdown");
  await createTopic(topic);
  // 300 records/s: enough for the 60 s outage and a little before and after.
  const total = 21_000;
  await produceEnvelopes(topic, total, 0, 300);
  const stub = startUpstreamStub({ latencyMs: 2 });
  try {
    const p = await startSluiceProcess({
      env: sluiceEnv(topic, group, bucket, stub, {
        SLUICE_ORDERING: "key",
        SLUICE_RATE_LIMIT: "300",
      }),
    });
    await withSluice(p, async () => {
      await waitFor(() => stub.delivered.size > 500, { message: "first deliveries" });
      await stopRgw();
      const atStop = stub.delivered.size;
      const downAt = Date.now();
      let sawNotReady = "";
      let backlog = 0;
      try {
        while (Date.now() - downAt < 60_000) {
          const r = await fetch(`${p.url}/health/ready`);
          const body = await r.json();
          if (r.status === 503 && body.checks?.s3?.ok === false) {
            sawNotReady = body.checks.s3.detail;
          }
          backlog = Math.max(backlog, await p.metric("audit_backlog_depth"));
          await sleep(2000);
        }
      } finally {
        await startRgw();
      }
      const during = stub.delivered.size - atStop;
      console.log(
        `RGW down 60 s: ${during} records delivered meanwhile, audit backlog up to ${backlog}; ` +
          `ready said: ${sawNotReady.slice(0, 160)}`,
      );
      assert.ok(during > 60 * 300 * 0.5, `consumption went on while RGW was down (${during})`);
      assert.match(sawNotReady, /audit store failing/);
      assert.ok(backlog > 1000, `the uploader lag grew (${backlog})`);
      await waitFor(
        async () => (await p.metric("audit_backlog_depth")) === 0 && stub.delivered.size === total,
        {
          timeoutMs: 180_000,
          intervalMs: 1000,
          message: "every record delivered and the uploader lag back to 0",
        },
      );
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 60_000,
        message: "all committed",
      });
    });
    await assertCleanExit(p);
    const positions = allPositions(topic, await highWatermarks(topic));
    const ledger = await waitLedgerComplete(bucket, positions, 60_000);
    assert.deepEqual(ledger.missing, []);
    assert.equal(ledger.duplicates.size, 0);
  } finally {
    await stub.stop();
  }
});

const BROKER_REPS = Number(Deno.env.get("SLUICE_TEST_BROKER_REPS") ?? "2");

Deno.test(`broker stopped ~20 s at 300 records/s and restarted, ${BROKER_REPS} times (SIGTERM and SIGKILL in turn): consumption resumes within 30 s of the broker serving again, each time`, async () => {
  const { topic, group, bucket } = names("brokerreps");
  await createTopic(topic, { partitions: 6 });
  // Each stop takes about 700 records at 300/s (before, and to see it resume): some to spare.
  const total = 4000 + BROKER_REPS * 1500;
  await produceEnvelopes(topic, total, 0, 300);
  const stub = startUpstreamStub({ latencyMs: 2 });
  try {
    const p = await startSluiceProcess({
      env: sluiceEnv(topic, group, bucket, stub, {
        SLUICE_ORDERING: "key",
        SLUICE_RATE_LIMIT: "300",
        SLUICE_LOG_LEVEL: Deno.env.get("SLUICE_TEST_DUMP_DIR") ? "debug" : "info",
      }),
    });
    const resumes: number[] = [];
    await withSluice(p, async () => {
      for (let rep = 0; rep < BROKER_REPS; rep++) {
        const signal: Deno.Signal = rep % 2 === 0 ? "SIGTERM" : "SIGKILL";
        const before = stub.delivered.size;
        await waitFor(() => stub.delivered.size > before + 300, {
          timeoutMs: 60_000,
          message: `deliveries before stop ${rep + 1}`,
        });
        // A different moment of the 1 s commit cycle each time.
        await sleep(Math.random() * 1000);
        const down = Date.now();
        await stopKafka(signal);
        await sleep(Math.max(0, down + 14_000 - Date.now()));
        await startKafka();
        const up = Date.now();
        // The 30 s are sluice's: they start once the broker serves this group and topic again
        // (its coordinator loaded, the partitions led), which after a SIGKILL includes the
        // broker's own log recovery, slower on a loaded machine and not sluice's doing.
        await waitFor(() => groupLag(group, topic).then(() => true, () => false), {
          timeoutMs: 90_000,
          intervalMs: 500,
          message: `the broker to serve ${group} on ${topic} again after stop ${rep + 1}`,
        });
        const serving = Date.now();
        const atUp = stub.delivered.size;
        await withOutput(p, 150, () =>
          waitFor(() => stub.delivered.size > atUp + 100, {
            timeoutMs: 30_000,
            intervalMs: 250,
            message: `consumption to resume after stop ${rep + 1} (${signal}), ` +
              `broker serving the group ${serving - up} ms after its start`,
          }));
        resumes.push(Date.now() - up);
        console.log(
          `stop ${rep + 1} (${signal}): broker away ${up - down} ms, serving the group ` +
            `${serving - up} ms after its start, consumption resumed ${
              Date.now() - up
            } ms after its start`,
        );
      }
      await waitFor(() => fullyCommitted(group, topic), {
        timeoutMs: 60_000 + (total / 300) * 1000,
        intervalMs: 1000,
        message: "everything committed",
      });
      // The uploader, a consumer of its own, recovers from the restarts too (its
      // watchdog starts it anew when it stops committing): every event is stored
      // while this instance runs, not left for the next one.
      await withOutput(
        p,
        150,
        () =>
          waitFor(async () => (await p.metric("audit_backlog_depth")) === 0, {
            timeoutMs: 150_000,
            intervalMs: 1000,
            message: "the audit uploader to catch up (audit_backlog_depth 0)",
          }),
      );
      console.log(`audit uploader stalls: ${await p.metric("audit_uploader_stalls_total")}`);
    });
    await assertCleanExit(p);
    const positions = allPositions(topic, await highWatermarks(topic));
    assert.equal(positions.length, total);
    const ledger = await waitLedgerComplete(bucket, positions, 60_000);
    console.log(
      `broker restarts: resumed after ${
        resumes.join(", ")
      } ms; ${ledger.duplicates.size} duplicate ` +
        `outcomes, ${upstreamDuplicates(stub)} duplicate upstream deliveries`,
    );
    assert.deepEqual(ledger.missing, []);
    assert.equal(await groupLag(group, topic), 0);
  } finally {
    await stub.stop();
  }
});
