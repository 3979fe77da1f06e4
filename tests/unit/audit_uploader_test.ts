/**
 * Unit tests of the audit uploader (`actors/audit/uploader.ts`) on the
 * embedded log and the file-system store, in temporary directories (no
 * infrastructure): every event uploaded exactly once with deterministic,
 * sorted keys; the batch age; a failing store (degraded, nothing lost,
 * recovery); an object already stored by an earlier attempt is not written
 * again; `flush()`; `stop()`.
 */
import assert from "node:assert/strict";
import { createEmbeddedLog } from "../../actors/log/embedded/log.ts";
import type { LogClient } from "../../actors/log/port.ts";
import { decodeBatch, FsAuditStore, hourPrefix } from "../../actors/audit/store.ts";
import { AuditWriter, ensureAuditTopic } from "../../actors/audit/writer.ts";
import {
  AuditUploader,
  type AuditUploaderOptions,
  uploadKey,
} from "../../actors/audit/uploader.ts";
import { listActors } from "../../actors/runtime/registry.ts";
import { registry } from "../../actors/runtime/metrics.ts";
import { FlakyStore, makeEvent, notExactlyOnce, readAll } from "../harness/audit_fixture.ts";
import { waitFor } from "../harness/procs.ts";

const AUDIT = "sluice-audit";
const GROUP = "sluice-audit-uploader";
const KEY_RE = new RegExp(
  `^audit/(\\d{4})/(\\d{2})/(\\d{2})/(\\d{2})/${AUDIT}-(\\d+)-(\\d{20})-(\\d{20})\\.jsonl\\.gz$`,
);

interface Env {
  dir: string;
  log: LogClient;
  writer: AuditWriter;
  store: FsAuditStore;
  /** Starts an uploader on the audit topic (stopped at the end of the test). */
  uploader(opts?: Partial<AuditUploaderOptions>): Promise<AuditUploader>;
  /** The uploader group's lag on the audit topic. */
  lag(): Promise<number>;
}

let ids = 0;

async function withAudit(fn: (env: Env) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-audit-uploader-" });
  const log = createEmbeddedLog({ dir: `${dir}/log`, partitions: 3, maxBatchRecords: 500 });
  const store = new FsAuditStore(`${dir}/store`);
  const started: AuditUploader[] = [];
  try {
    const admin = await log.admin();
    await admin.ensureTopics([{ topic: "orders", partitions: 3 }]);
    const partitions = await ensureAuditTopic(admin, { topic: AUDIT, sources: ["orders"] });
    const producer = await log.producer();
    const writer = new AuditWriter(producer, { topic: AUDIT, partitions });
    await fn({
      dir,
      log,
      writer,
      store,
      async uploader(opts = {}) {
        const u = new AuditUploader({
          log,
          topic: AUDIT,
          groupId: GROUP,
          store,
          id: `audit-uploader-unit-${++ids}`,
          gaugeIntervalMs: 50,
          retryBaseMs: 20,
          retryMaxMs: 100,
          ...opts,
        });
        started.push(u);
        await u.start();
        return u;
      },
      async lag() {
        const [high, committed] = await Promise.all([
          admin.highWatermarks(AUDIT),
          admin.committed(GROUP, AUDIT),
        ]);
        let lag = 0;
        for (const h of high) {
          const c = Number(committed.find((x) => x.partition === h.partition)?.offset ?? -1);
          lag += Number(h.offset) - Math.max(0, c);
        }
        return lag;
      },
    });
  } finally {
    for (const u of started) await u.stop();
    await log.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The harness's `waitFor`, with this file's argument order. */
async function waitUntil(
  fn: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  await waitFor(fn, { timeoutMs, intervalMs: 20, message: what });
}

async function metric(name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values[0]?.value as number | undefined) ?? 0;
}

/** Appends events `orders/{o % 6}/{o}` for o in [from, from + n); returns their keys. */
async function appendEvents(writer: AuditWriter, n: number, from = 0): Promise<string[]> {
  const keys: string[] = [];
  await Promise.all(Array.from({ length: n }, (_, i) => {
    const o = from + i;
    keys.push(`orders/${o % 6}/${o}`);
    return writer.append(makeEvent({ partition: o % 6, offset: o }));
  }));
  return keys;
}

/**
 * Checks the layout of the objects: keys match the pattern, and per audit
 * partition the objects cover offsets 0 … high-1 contiguously, each holding
 * exactly (last − first + 1) events. Returns the parsed keys.
 */
async function checkLayout(env: Env, t0: number, t1: number) {
  const { keys } = await readAll(env.store, "audit/");
  assert.deepEqual(keys, [...keys].sort(), "keys sort");
  const hours = new Set<string>();
  for (let t = Math.floor(t0 / 3_600_000) * 3_600_000; t <= t1; t += 3_600_000) {
    hours.add(hourPrefix("audit", new Date(t)));
  }
  const admin = await env.log.admin();
  const high = await admin.highWatermarks(AUDIT);
  const byPartition = new Map<number, { first: bigint; last: bigint; key: string }[]>();
  for (const key of keys) {
    const m = KEY_RE.exec(key);
    assert.ok(m, `key ${key} follows the layout`);
    assert.ok(hours.has(key.slice(0, "audit/yyyy/mm/dd/hh/".length)), `hour of ${key}`);
    const p = Number(m[5]);
    const list = byPartition.get(p) ?? [];
    list.push({ first: BigInt(m[6]), last: BigInt(m[7]), key });
    byPartition.set(p, list);
  }
  for (const h of high) {
    const list = (byPartition.get(h.partition) ?? []).sort((a, b) => Number(a.first - b.first));
    let next = 0n;
    for (const o of list) {
      assert.equal(o.first, next, `${o.key} starts right after the previous object`);
      assert.ok(o.last >= o.first);
      const events = await decodeBatch(await env.store.get(o.key));
      assert.equal(events.invalid, 0);
      assert.equal(BigInt(events.events.length), o.last - o.first + 1n, `events in ${o.key}`);
      next = o.last + 1n;
    }
    assert.equal(next, BigInt(h.offset), `objects of audit partition ${h.partition} reach its end`);
  }
  return keys;
}

Deno.test("AuditUploader uploads every appended event exactly once, with keys that follow the layout and sort", async () => {
  await withAudit(async (env) => {
    const t0 = Date.now();
    const writesBefore = await metric("audit_writes_total");
    const u = await env.uploader({ batchEvents: 300, batchAgeMs: 100 });
    assert.equal(u.status().state, "uploading");
    assert.deepEqual(u.ready(), { ready: true });
    const keys = await appendEvents(env.writer, 2000);
    keys.push(...await appendEvents(env.writer, 500, 2000));
    await waitUntil(async () => (await env.lag()) === 0, "the uploader group's lag to reach 0");
    await waitUntil(() => u.status().backlogEvents === 0, "status().backlogEvents to be 0");
    const all = await readAll(env.store, "audit/");
    assert.equal(all.events.length, 2500);
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
    const objects = await checkLayout(env, t0, Date.now());
    // 2500 events over 3 partitions, at most 300 per object.
    assert.ok(objects.length >= 9, `${objects.length} objects`);
    const s = u.status();
    assert.equal(s.uploadedEvents, 2500);
    assert.equal(s.degraded, false);
    assert.equal(s.failures, 0);
    assert.equal(s.lastError, null);
    assert.equal((await metric("audit_writes_total")) - writesBefore, 2500);
    await waitUntil(async () => (await metric("audit_backlog_depth")) === 0, "backlog gauge 0");
    assert.equal(
      uploadKey("p", Date.parse("2025-12-31T23:10:00Z"), "a/b", 3, "1", "99"),
      "p/2025/12/31/23/a_b-3-00000000000000000001-00000000000000000099.jsonl.gz",
    );
  });
});

Deno.test("AuditUploader uploads a batch once its first event is batchAgeMs old, without a flush", async () => {
  await withAudit(async (env) => {
    const u = await env.uploader({ batchEvents: 5000, batchAgeMs: 1500 });
    const t0 = Date.now();
    await appendEvents(env.writer, 3);
    let seenAt = 0;
    await waitUntil(async () => {
      if ((await env.store.list("audit/")).length === 0) return false;
      seenAt = Date.now();
      return true;
    }, "the aged batch");
    assert.ok(seenAt - t0 >= 1500 - 20, `uploaded after ${seenAt - t0} ms, before the batch age`);
    await waitUntil(async () => (await env.lag()) === 0, "lag 0");
    await waitUntil(() => u.status().backlogEvents === 0, "backlog 0");
    assert.equal((await readAll(env.store, "audit/")).events.length, 3);
  });
});

Deno.test("AuditUploader is degraded and not ready while the store fails, loses nothing, and recovers", async () => {
  await withAudit(async (env) => {
    const flaky = new FlakyStore(env.store);
    flaky.failing = true;
    const errorsBefore = await metric("audit_write_errors_total");
    const u = await env.uploader({ store: flaky, batchEvents: 10, batchAgeMs: 20 });
    const keys = await appendEvents(env.writer, 60);
    await waitUntil(() => u.status().degraded, "degraded");
    await waitUntil(() => u.status().backlogEvents === 60, "the backlog to show the 60 events");
    const s = u.status();
    assert.equal(s.state, "degraded");
    assert.ok(s.failures >= 1);
    assert.match(s.lastError ?? "", /Store unavailable \(test\)/);
    assert.ok(s.oldestPendingAgeS >= 0);
    const ready = u.ready();
    assert.equal(ready.ready, false);
    assert.match(ready.reason ?? "", /audit store failing/);
    assert.match(ready.reason ?? "", /60 events waiting in the audit topic/);
    assert.match(ready.reason ?? "", /Store unavailable \(test\)/);
    await waitUntil(
      async () => (await metric("audit_write_errors_total")) - errorsBefore >= 3,
      "retried failures counted",
    );
    await waitUntil(async () => (await metric("audit_backlog_depth")) === 60, "backlog gauge 60");
    assert.deepEqual(await env.store.list("audit/"), [], "nothing uploaded while failing");
    assert.equal(await env.lag(), 60, "nothing committed while failing");

    flaky.failing = false;
    await waitUntil(async () => (await env.lag()) === 0, "the backlog to drain");
    await waitUntil(() => u.status().backlogEvents === 0, "backlog 0");
    assert.deepEqual(u.ready(), { ready: true });
    assert.equal(u.status().degraded, false);
    assert.equal(u.status().lastError, null, "lastError cleared once uploads succeed again");
    assert.equal(u.status().state, "uploading");
    const all = await readAll(env.store, "audit/");
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
  });
});

Deno.test("AuditUploader does not write a batch twice when an earlier attempt stored it but did not commit", async () => {
  await withAudit(async (env) => {
    // First uploader: its PUTs succeed, then it "crashes" before every commit.
    const crashed: string[] = [];
    const first = await env.uploader({
      batchEvents: 10,
      batchAgeMs: 0,
      afterPut: (key) => {
        crashed.push(key);
        throw new Error("crash between PUT and commit (test)");
      },
    });
    const keys = await appendEvents(env.writer, 90);
    await waitUntil(() => crashed.length >= 3, "three PUTs not committed");
    await first.stop();
    const lagAfterCrash = await env.lag();
    assert.ok(lagAfterCrash > 0, "the crashed uploader left uncommitted events");
    const stored = await env.store.list("audit/");
    assert.deepEqual(stored, [...new Set(crashed)].sort());

    // Second uploader, larger batches: without the check it would rewrite
    // those events inside objects with other keys.
    const counting = new FlakyStore(env.store);
    const second = await env.uploader({ store: counting, batchEvents: 1000, batchAgeMs: 0 });
    await waitUntil(async () => (await env.lag()) === 0, "the second uploader to finish");
    await waitUntil(() => second.status().backlogEvents === 0, "backlog 0");
    for (const k of crashed) assert.ok(!counting.keys.includes(k), `${k} written again`);
    const all = await readAll(env.store, "audit/");
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
    assert.equal(all.events.length, 90);
    await checkLayout(env, Date.now() - 60_000, Date.now());
  });
});

Deno.test("AuditUploader with smaller batches than an earlier attempt's objects does not upload their events again", async () => {
  await withAudit(async (env) => {
    // One source partition: every event in audit partition 0.
    const keys: string[] = [];
    await Promise.all(Array.from({ length: 60 }, (_, o) => {
      keys.push(`orders/0/${o}`);
      return env.writer.append(makeEvent({ partition: 0, offset: o }));
    }));
    // First uploader: objects of up to 30 events, "crashes" before each commit.
    const crashed: string[] = [];
    const first = await env.uploader({
      batchEvents: 30,
      batchAgeMs: 0,
      afterPut: (key) => {
        crashed.push(key);
        throw new Error("crash between PUT and commit (test)");
      },
    });
    await waitUntil(() => crashed.length >= 1, "a PUT not committed");
    await first.stop();
    const [object] = await env.store.list("audit/");
    assert.match(object, /-0-00000000000000000000-00000000000000000029\.jsonl\.gz$/);

    // Second uploader (say, after a configuration change): batches of 7.
    const second = await env.uploader({ batchEvents: 7, batchAgeMs: 0 });
    await waitUntil(async () => (await env.lag()) === 0, "the second uploader to finish");
    await waitUntil(() => second.status().backlogEvents === 0, "backlog 0");
    const all = await readAll(env.store, "audit/");
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
    await checkLayout(env, Date.now() - 60_000, Date.now());
  });
});

Deno.test("AuditUploader.flush uploads pending events without waiting for the batch age", async () => {
  await withAudit(async (env) => {
    const u = await env.uploader({ batchEvents: 5000, batchAgeMs: 60_000 });
    const keys = await appendEvents(env.writer, 40);
    await waitUntil(() => u.status().backlogEvents === 40, "the backlog to show the events");
    const t0 = Date.now();
    const r = await u.flush(10_000);
    const ms = Date.now() - t0;
    assert.deepEqual(r, { uploaded: 40, remaining: 0 });
    assert.ok(ms < 10_000, `flush took ${ms} ms`);
    assert.equal(u.status().state, "draining");
    assert.equal(await env.lag(), 0);
    const all = await readAll(env.store, "audit/");
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
    console.log(`flush: 40 events uploaded in ${ms} ms (batch age 60 s)`);
  });
});

Deno.test("AuditUploader.flush returns at its deadline with what remains while the store fails", async () => {
  await withAudit(async (env) => {
    const flaky = new FlakyStore(env.store);
    flaky.failing = true;
    const u = await env.uploader({ store: flaky, batchAgeMs: 60_000 });
    await appendEvents(env.writer, 12);
    const t0 = Date.now();
    const r = await u.flush(500);
    assert.deepEqual(r, { uploaded: 0, remaining: 12 });
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(await env.lag(), 12, "the events stay in the audit topic");
  });
});

Deno.test("AuditUploader.stop is idempotent and leaves the registry and the group clean", async () => {
  await withAudit(async (env) => {
    const id = "audit-uploader-unit-stop";
    const u = new AuditUploader({
      log: env.log,
      topic: AUDIT,
      groupId: GROUP,
      store: env.store,
      id,
    });
    assert.deepEqual(u.ready(), { ready: false, reason: "audit uploader not started" });
    await u.start();
    assert.ok(listActors().some((a) => a.id === id), "registered while running");
    await assert.rejects(() => u.start(), /already started/);
    await appendEvents(env.writer, 5);
    await Promise.all([u.stop(), u.stop()]);
    await u.stop();
    assert.ok(!listActors().some((a) => a.id === id), "removed from the registry");
    assert.equal(u.status().state, "stopped");
    assert.deepEqual(u.ready(), { ready: false, reason: "audit uploader stopped" });
    // The group has no member left: another uploader can join it and upload.
    const next = await env.uploader({ batchAgeMs: 0 });
    await waitUntil(async () => (await env.lag()) === 0, "the next uploader to upload");
    await next.stop();
    await next.stop();
    assert.equal((await readAll(env.store, "audit/")).events.length, 5);
    // Stopping one that never started is harmless.
    await new AuditUploader({ log: env.log, topic: AUDIT, groupId: GROUP, store: env.store })
      .stop();
  });
});

/**
 * `log` with the commits of its first consumer never answered: a coordinator
 * that keeps the connection and stops answering, as after a broker restart.
 */
function hangingFirstConsumer(log: LogClient): LogClient {
  let consumers = 0;
  return {
    kind: log.kind,
    description: log.description,
    producer: () => log.producer(),
    admin: () => log.admin(),
    readRange: (tp, range) => log.readRange(tp, range),
    ping: () => log.ping(),
    close: () => log.close(),
    consumer(groupId) {
      const c = log.consumer(groupId);
      if (++consumers > 1) return c;
      return {
        pause: (tps) => c.pause(tps),
        resume: (tps) => c.resume(tps),
        stop: () => c.stop(),
        disconnect: () => c.disconnect(),
        run: (topics, handler) =>
          c.run(topics, {
            onAssignment: (a, g) => handler.onAssignment(a, g),
            eachBatch: (batch) =>
              handler.eachBatch({ ...batch, commit: () => new Promise<boolean>(() => {}) }),
          }),
      };
    },
  };
}

Deno.test("AuditUploader whose commits never answer is seen stalled, not ready, and starts its consumer anew: every event uploaded once", async () => {
  await withAudit(async (env) => {
    const stallsBefore = await metric("audit_uploader_stalls_total");
    const u = await env.uploader({
      log: hangingFirstConsumer(env.log),
      batchEvents: 10,
      batchAgeMs: 20,
      commitTimeoutMs: 200,
      stallMs: 600,
    });
    const keys = await appendEvents(env.writer, 60);
    await waitUntil(() => u.status().stalls >= 1, "the stall to be seen");
    assert.match(u.status().lastStall?.reason ?? "", /no audit upload committed for \d+ s/);
    await waitUntil(async () => (await env.lag()) === 0, "the restarted consumer to upload");
    assert.ok((await metric("audit_uploader_stalls_total")) - stallsBefore >= 1, "counted");
    await waitUntil(() => u.ready().ready, "ready again");
    const all = await readAll(env.store, "audit/");
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
  });
});
