/**
 * The audit trail against a real Ceph RGW (run through `deno task test
 * tests/audit_rgw_test.ts`): 50,000 concurrent appends uploaded exactly
 * once, an RGW outage of about 30 s under load, a SIGKILL'd writer whose
 * segments the next start uploads, and the report read back from RGW and
 * from the file-system store.
 */
import assert from "node:assert/strict";
import { encodeBatch, FsAuditStore, groupSegment, S3AuditStore } from "../actors/audit/store.ts";
import { createAuditTrail } from "../actors/audit/trail.ts";
import { buildReport } from "../actors/audit/report.ts";
import { registry } from "../actors/metrics.ts";
import { infra, sleep, startRgw, stopRgw, uniqueName, waitFor } from "./harness/mod.ts";
import {
  FIXTURE_EXPECTED,
  FIXTURE_FROM,
  FIXTURE_TO,
  FIXTURE_TRACE,
  makeEvent,
  mixedFixture,
  notExactlyOnce,
  readAll,
} from "./audit_fixture.ts";

function rgwStore(bucket = uniqueName("audit")): S3AuditStore {
  const { s3 } = infra();
  return new S3AuditStore({ ...s3, bucket });
}

async function metric(name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values[0]?.value as number | undefined) ?? 0;
}

async function tempDir(t: Deno.TestContext): Promise<string> {
  const dir = await Deno.makeTempDir({
    prefix: `sluice-${t.name.slice(0, 20).replace(/\W/g, "_")}-`,
  });
  return dir;
}

Deno.test("audit trail uploads 50,000 concurrent appends to RGW exactly once each", async (t) => {
  const dir = await tempDir(t);
  const store = rgwStore();
  const trail = createAuditTrail({ dir, store, batchEvents: 5000, batchAgeMs: 1000 });
  try {
    await trail.start();
    const n = 50_000;
    const keys = Array.from({ length: n }, (_, i) => `orders/${i % 8}/${i}`);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: n }, (_, i) => trail.append(makeEvent({ partition: i % 8, offset: i }))),
    );
    const appendS = (performance.now() - started) / 1000;
    const flushed = await trail.flush(60_000);
    assert.equal(flushed.remaining, 0);
    const totalS = (performance.now() - started) / 1000;
    const all = await readAll(store, "audit/");
    assert.equal(all.events.length, n);
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
    console.log(
      `50,000 events: appended in ${appendS.toFixed(2)} s (${Math.round(n / appendS)}/s), ` +
        `all in RGW after ${totalS.toFixed(2)} s, ${all.keys.length} objects`,
    );
  } finally {
    await trail.stop();
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("audit trail keeps appending through a 30 s RGW outage, then uploads everything once", async (t) => {
  const dir = await tempDir(t);
  const store = rgwStore();
  const trail = createAuditTrail({
    dir,
    store,
    batchEvents: 500,
    batchAgeMs: 200,
    retryBaseMs: 200,
    retryMaxMs: 2000,
    gaugeIntervalMs: 100,
  });
  let producing = true;
  let appended = 0;
  let maxAppendMs = 0;
  const keys: string[] = [];
  let producer: Promise<void> | undefined;
  let rgwDown = false;
  try {
    await trail.start();
    const errorsBefore = await metric("audit_write_errors_total");
    producer = (async () => {
      let offset = 0;
      while (producing) {
        const round = Array.from({ length: 50 }, () => {
          const o = offset++;
          keys.push(`orders/${o % 4}/${o}`);
          return makeEvent({ partition: o % 4, offset: o });
        });
        const t0 = performance.now();
        await Promise.all(round.map((e) => trail.append(e)));
        maxAppendMs = Math.max(maxAppendMs, performance.now() - t0);
        appended += round.length;
        await sleep(40);
      }
    })();
    await waitFor(() => appended >= 2000 && trail.status().backlogEvents < 1000, {
      timeoutMs: 30_000,
      message: "uploads under load before the outage",
    });

    await stopRgw();
    rgwDown = true;
    const downAt = Date.now();
    const appendedAtStop = appended;
    await waitFor(() => trail.status().degraded, { timeoutMs: 20_000, message: "degraded" });
    assert.equal(trail.status().state, "degraded");
    assert.equal(trail.ready().ready, false);
    assert.match(trail.ready().reason ?? "", /audit store failing/);
    await waitFor(async () => (await metric("audit_write_errors_total")) > errorsBefore + 1, {
      timeoutMs: 20_000,
      message: "audit_write_errors_total to grow",
    });
    await sleep(Math.max(0, 30_000 - (Date.now() - downAt)));
    const during = appended - appendedAtStop;
    const backlog = trail.status().backlogEvents;
    assert.ok(during >= 1000, `only ${during} appends resolved during the outage`);
    assert.ok(backlog >= during, `backlog ${backlog} < ${during} appended during the outage`);
    assert.ok((await metric("audit_backlog_depth")) > 0);
    assert.ok((await metric("audit_flush_lag_seconds")) > 5);
    assert.equal(trail.status().degraded, true);

    await startRgw();
    rgwDown = false;
    await waitFor(() => !trail.status().degraded && trail.ready().ready, {
      timeoutMs: 60_000,
      message: "recovery after RGW came back",
    });
    producing = false;
    await producer;
    const flushed = await trail.flush(60_000);
    assert.equal(flushed.remaining, 0);
    const all = await readAll(store, "audit/");
    assert.equal(all.events.length, appended);
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
    console.log(
      `outage: ${appended} events, ${during} appended while RGW was down ` +
        `(largest round of 50 appends: ${maxAppendMs.toFixed(0)} ms), ${all.keys.length} objects`,
    );
  } finally {
    producing = false;
    await producer?.catch(() => {});
    if (rgwDown) await startRgw();
    await trail.stop();
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("audit trail uploads the segments of a writer killed with SIGKILL at the next start", async (t) => {
  const dir = await tempDir(t);
  const bucket = uniqueName("audit");
  const store = rgwStore(bucket);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./audit_crash_child.ts", import.meta.url).pathname, dir, bucket],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  // A child that never gets there is killed, and the test fails below.
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  let durable = 0;
  let childErr = "";
  const errDone = child.stderr.pipeTo(
    new WritableStream({
      write: (c) => void (childErr = (childErr + new TextDecoder().decode(c)).slice(-4000)),
    }),
  );
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let trail;
  try {
    let buffered = "";
    while (durable < 5000) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`Child exited before 5000 durable events: ${childErr}`);
      buffered += value;
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const l of lines) {
        const m = /^durable (\d+)$/.exec(l);
        if (m) durable = Number(m[1]);
      }
    }
    child.kill("SIGKILL");
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL");
    await reader.cancel();
    await errDone.catch(() => {});

    const before = await readAll(store, "audit/");
    const leftover = [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".jsonl"));
    assert.ok(leftover.length > 0, "the child left segments in its spool");

    trail = createAuditTrail({ dir, store, batchAgeMs: 60_000 });
    const report = await trail.start();
    assert.ok(report.events >= durable - before.events.length, `recovered ${report.events} events`);
    for (const line of report.invalidLines) assert.equal(line.reason, "torn");
    assert.equal(trail.status().backlogEvents, 0, "start() uploaded the leftovers");
    assert.equal(trail.status().degraded, false);

    const after = await readAll(store, "audit/");
    const counts = new Map<string, number>();
    for (const e of after.events) {
      counts.set(e.idempotency_key, (counts.get(e.idempotency_key) ?? 0) + 1);
    }
    const missing = [];
    for (let o = 0; o < durable; o++) if (counts.get(`orders/${o % 3}/${o}`) !== 1) missing.push(o);
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} durable events not exactly once`);
    const twice = [...counts].filter(([, n]) => n > 1);
    assert.deepEqual(twice.slice(0, 10), []);
    console.log(
      `crash: killed after ${durable} durable events; ${before.events.length} were in RGW, ` +
        `${report.segments} segments (${report.events} events, ${report.invalidLines.length} torn lines) ` +
        `recovered, ${after.events.length} in RGW after restart`,
    );
  } finally {
    clearTimeout(killer);
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    await child.status;
    await trail?.stop();
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("audit report reads a fixture back from RGW and from the fs store alike", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-audit-report-" });
  const s3Store = rgwStore();
  const fsStore = new FsAuditStore(`${dir}/audit`);
  try {
    const events = mixedFixture();
    for (const store of [s3Store, fsStore]) {
      for (const g of groupSegment("audit", "00000001", events.slice(0, 13))) {
        await store.put(g.key, await encodeBatch(g.events));
      }
      for (const g of groupSegment("audit", "00000002", events.slice(13))) {
        await store.put(g.key, await encodeBatch(g.events));
      }
    }
    const reports = [];
    for (const store of [s3Store, fsStore]) {
      const r = await buildReport(store, {
        from: FIXTURE_FROM,
        to: FIXTURE_TO,
        traceId: FIXTURE_TRACE,
      });
      assert.equal(r.events, FIXTURE_EXPECTED.events);
      assert.deepEqual(r.byOutcome, FIXTURE_EXPECTED.byOutcome);
      assert.deepEqual(r.errors.byErrorCode, FIXTURE_EXPECTED.byErrorCode);
      assert.equal(r.duplicates.keys, FIXTURE_EXPECTED.duplicateKeys);
      assert.equal(r.trace?.events, FIXTURE_EXPECTED.traceEvents);
      reports.push({ ...r, store: "" });
    }
    assert.deepEqual(reports[0], reports[1]);

    // The CLI, with the store taken from the environment.
    const { s3 } = infra();
    const code = `import { auditCommand } from ${
      JSON.stringify(new URL("../actors/audit/report.ts", import.meta.url).href)
    };
      Deno.exit(await auditCommand.run(Deno.args));`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        code,
        "report",
        "--from",
        FIXTURE_FROM.toISOString(),
        "--to",
        FIXTURE_TO.toISOString(),
        "--format",
        "json",
      ],
      env: {
        HOME: Deno.env.get("HOME") ?? "/root",
        PATH: Deno.env.get("PATH") ?? "",
        SLUICE_S3_ENDPOINT: s3.endpoint,
        SLUICE_S3_REGION: s3.region,
        SLUICE_S3_ACCESS_KEY: s3.accessKey,
        SLUICE_S3_SECRET_KEY: s3.secretKey,
        SLUICE_S3_BUCKET: s3Store.bucket,
      },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const json = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(json.events, FIXTURE_EXPECTED.events);
    assert.match(json.store, /^s3 /);
  } finally {
    s3Store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
