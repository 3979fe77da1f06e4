/**
 * Unit tests of the replay driver: the machine alone, the idempotency store
 * on a real Deno KV file, and the {@link ReplayManager} / DLQ store on the
 * embedded log with a fake processor and a fake audit trail.
 */
import assert from "node:assert/strict";
import { createActor } from "xstate";
import type { AuditEvent } from "../../actors/audit/event.ts";
import { buildDeadLetter, toDeadLetterMessage } from "../../actors/record/dead_letter.ts";
import { DeadLetterStore } from "../../actors/replay/dlq.ts";
import { createEmbeddedLog } from "../../actors/log/embedded/log.ts";
import { parseEnvelope } from "../../actors/record/envelope.ts";
import { type IdempotencyStore, openIdempotencyStore } from "../../actors/pipeline/idempotency.ts";
import type { Processor } from "../../actors/pipeline/processor.ts";
import type { Outcome, SourceRecord } from "../../actors/record/record.ts";
import { replayEta, ReplayManager } from "../../actors/replay/replay.ts";
import type { LogClient } from "../../actors/log/port.ts";
import { formatDlqTable, formatProgress } from "../../supervisors/cli/replay.ts";
import { replayDriverMachine, zeroCounts } from "../../machines/replay_driver.ts";
import { toHttpError } from "../../http/errors.ts";
import { SluiceError } from "../../actors/runtime/errors.ts";
import { parseDlqBulk, parseDlqQuery, parseReplay } from "../../http/validate.ts";
import type { Clock } from "../../actors/pipeline/rate_limiter.ts";
import { ManualClock } from "../harness/clock.ts";
import { waitFor } from "../harness/procs.ts";

Deno.test("replay machine: planning → running ⇄ paused (reasons) → done; cancel and fail are final", () => {
  const a = createActor(replayDriverMachine, { input: { id: "r1" } }).start();
  assert.equal(a.getSnapshot().value, "planning");
  a.send({ type: "PAUSE", reason: "circuit" });
  a.send({ type: "PLANNED", total: 10 });
  assert.equal(a.getSnapshot().value, "paused", "planned while the breaker is open");
  a.send({ type: "PAUSE", reason: "operator" });
  a.send({ type: "RESUME", reason: "circuit" });
  assert.equal(a.getSnapshot().value, "paused", "one reason left");
  a.send({ type: "RESUME", reason: "operator" });
  assert.equal(a.getSnapshot().value, "running");
  a.send({ type: "PROGRESS", counts: { ...zeroCounts(), scanned: 4, delivered: 4 } });
  assert.equal(a.getSnapshot().context.counts.delivered, 4);
  a.send({ type: "FINISHED", counts: { ...zeroCounts(), scanned: 10, delivered: 10 } });
  assert.equal(a.getSnapshot().value, "done");
  assert.equal(a.getSnapshot().status, "done");
  a.send({ type: "CANCEL" });
  assert.equal(a.getSnapshot().value, "done", "final states do not move");
  a.stop();

  const b = createActor(replayDriverMachine, { input: { id: "r2" } }).start();
  b.send({ type: "PLANNED", total: 5 });
  b.send({ type: "CANCEL", counts: { ...zeroCounts(), scanned: 2, delivered: 2 } });
  assert.equal(b.getSnapshot().value, "cancelled");
  assert.equal(b.getSnapshot().context.counts.delivered, 2);
  b.stop();

  const c = createActor(replayDriverMachine, { input: { id: "r3" } }).start();
  c.send({ type: "FAIL", error: "broker gone" });
  assert.equal(c.getSnapshot().value, "failed");
  assert.equal(c.getSnapshot().context.error, "broker gone");
  c.stop();
});

Deno.test("idempotency store: write-behind, has() sees the buffer, survives reopen, expires", async () => {
  const dir = await Deno.makeTempDir({ prefix: "idem-" });
  let now = 1_000_000;
  const path = `${dir}/idempotency.kv`;
  const s = await openIdempotencyStore({ path, ttlMs: 60_000, flushMs: 20, now: () => now });
  try {
    s.record("a");
    s.record("x".repeat(3000)); // longer than a KV key may be: stored hashed
    assert.deepEqual(await s.has(["a", "b"]), new Set(["a"]), "seen in the buffer");
    assert.ok(s.stats().pending >= 1);
    await s.flush();
    assert.equal(s.stats().pending, 0);
    await s.markDelivered(["b"]);
    const keys = Array.from({ length: 25 }, (_, i) => `k${i}`);
    for (const k of keys) s.record(k);
  } finally {
    await s.close();
  }
  const again = await openIdempotencyStore({ path, ttlMs: 60_000, now: () => now });
  try {
    const found = await again.has(["a", "b", "c", "x".repeat(3000), "k0", "k24"]);
    assert.deepEqual(found, new Set(["a", "b", "x".repeat(3000), "k0", "k24"]));
    now += 61_000;
    assert.deepEqual(await again.has(["a", "b"]), new Set(), "expired after the TTL");
  } finally {
    await again.close();
    await Deno.remove(dir, { recursive: true });
  }
});

const T0 = Date.UTC(2025, 0, 1, 10, 0, 0);

function envelope(topic: string, i: number): string {
  return JSON.stringify({
    request_id: `req-${i}`,
    idempotency_key: `${topic}-${i}`,
    timestamp: new Date(T0 + i * 1000).toISOString(),
    payload: { i },
  });
}

interface Fixture {
  log: LogClient;
  store: IdempotencyStore;
  audit: AuditEvent[];
  sent: SourceRecord[];
  /** Behaviour of the fake upstream. */
  behave: { fail: boolean; delayMs: number };
  replays: ReplayManager;
  breakerListeners: Set<(to: string) => void>;
  breaker: { state: string; onStateChange(l: (to: string) => void): () => void };
  processor: (
    replay: { replay_id: string; source: "window" | "dlq" },
  ) => Pick<Processor, "process">;
  close(): Promise<void>;
}

async function fixture(
  count: number,
  topic = "orders",
  options: { rateClock?: Clock } = {},
): Promise<Fixture> {
  const dir = await Deno.makeTempDir({ prefix: "replay-unit-" });
  const log = createEmbeddedLog({ dir: `${dir}/log`, partitions: 2 });
  const admin = await log.admin();
  await admin.ensureTopics([{ topic, partitions: 2 }, { topic: `${topic}-dlq`, partitions: 2 }]);
  const producer = await log.producer();
  await producer.send(
    topic,
    Array.from({ length: count }, (_, i) => ({
      key: `k${i}`,
      value: envelope(topic, i),
      partition: i % 2,
      timestamp: String(T0 + i * 1000),
    })),
  );
  const store = await openIdempotencyStore({ path: `${dir}/idempotency.kv`, flushMs: 20 });
  const audit: AuditEvent[] = [];
  const sent: SourceRecord[] = [];
  const behave = { fail: false, delayMs: 0 };
  const breakerListeners = new Set<(to: string) => void>();
  const breaker = {
    state: "closed",
    onStateChange(l: (to: string) => void) {
      breakerListeners.add(l);
      return () => breakerListeners.delete(l);
    },
  };
  const processor = (
    replay: { replay_id: string; source: "window" | "dlq" },
  ): Pick<Processor, "process"> => ({
    async process(record, signal) {
      if (behave.delayMs) {
        await new Promise<void>((res, rej) => {
          const t = setTimeout(res, behave.delayMs);
          signal?.addEventListener("abort", () => {
            clearTimeout(t);
            rej(signal.reason);
          }, { once: true });
        });
      }
      sent.push(record);
      const env = parseEnvelope(record);
      const key = env.ok ? env.envelope.idempotency_key : env.idempotencyKey;
      const base = {
        traceId: "0".repeat(32),
        requestId: null,
        idempotencyKey: key,
        status: behave.fail ? 400 : 200,
        latencyMs: 1,
        retries: 0,
        timeouts: 0,
        timeoutType: null,
        circuitState: "closed" as const,
      };
      const outcome: Outcome = behave.fail
        ? {
          ...base,
          outcome: "dead_lettered",
          reason: "PROCESSING_ERROR",
          message: "Upstream answered 400",
          deadLetterId: `${record.topic}:${record.partition}:${record.offset}`,
        }
        : { ...base, outcome: "delivered" };
      audit.push({ event_type: `replay.record.${outcome.outcome}`, replay } as AuditEvent);
      return outcome;
    },
  });
  const replays = new ReplayManager({
    log,
    store,
    audit: { append: (e) => Promise.resolve(void audit.push(e)) },
    processor,
    breaker,
    progressIntervalMs: 50,
    rateClock: options.rateClock,
  });
  return {
    log,
    store,
    audit,
    sent,
    behave,
    replays,
    breakerListeners,
    breaker,
    processor,
    async close() {
      await replays.close();
      await producer.disconnect();
      await store.close();
      await log.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function finished(f: Fixture, id: string, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const p = f.replays.get(id)!;
    if (["done", "cancelled", "failed"].includes(p.state)) return p;
    if (Date.now() > end) throw new Error(`replay ${id} still ${p.state}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function started(s: { status: string; id?: string }): string {
  assert.equal(s.status, "started");
  return (s as { id: string }).id;
}

Deno.test("replay driver: exactly the window minus delivered keys, then nothing the second time", async () => {
  const f = await fixture(40);
  try {
    // Records 10..14 were delivered live.
    for (let i = 10; i < 15; i++) f.store.record(`orders-${i}`);
    const id = started(
      await f.replays.start({ topic: "orders", from: T0 + 8_000, to: T0 + 20_000, rate: 1000 }),
    );
    const p = await finished(f, id);
    assert.equal(p.state, "done");
    assert.equal(p.total, 12);
    assert.equal(p.scanned, 12);
    assert.equal(p.skipped_duplicate, 5);
    assert.equal(p.delivered, 7);
    const sentKeys = f.sent.map((r) => parseEnvelope(r)).map((e) => e.ok && e.envelope.payload);
    assert.deepEqual(
      sentKeys.map((x) => (x as { i: number }).i).sort((a, b) => a - b),
      [8, 9, 15, 16, 17, 18, 19],
    );
    assert.ok(f.sent.every((r) => r.headers["x-sluice-reprocessed"] === "true"));
    const skipped = f.audit.filter((e) => e.event_type === "replay.record.skipped_duplicate");
    assert.equal(skipped.length, 5);
    assert.equal(skipped[0].replay?.replay_id, id);

    const again = started(
      await f.replays.start({ topic: "orders", from: T0 + 8_000, to: T0 + 20_000, rate: 1000 }),
    );
    const q = await finished(f, again);
    assert.equal(q.delivered, 0);
    assert.equal(q.skipped_duplicate, 12);
    assert.equal(f.sent.length, 7, "nothing sent the second time");

    // A partition subset.
    const sub = started(
      await f.replays.start({
        topic: "orders",
        from: T0 + 20_000,
        to: T0 + 30_000,
        rate: 1000,
        partitions: [1],
      }),
    );
    const s = await finished(f, sub);
    assert.equal(s.delivered, 5, "odd records 21..29 only");
  } finally {
    await f.close();
  }
});

Deno.test("replay driver: clear errors, one replay per topic, rate, cancel with partial counts", async () => {
  const clock = new ManualClock();
  const f = await fixture(40, "orders", { rateClock: clock });
  try {
    const errorOf = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        assert.ok(e instanceof SluiceError, "a domain error, not an HTTP one");
        const h = toHttpError(e);
        assert.ok(h);
        return `${h.status} ${h.message}`;
      }
      throw new Error("expected an error");
    };
    assert.match(
      await errorOf(f.replays.start({ topic: "nope", from: T0, to: T0 + 1000 })),
      /^404 Unknown topic: nope/,
    );
    assert.match(
      await errorOf(f.replays.start({ topic: "orders", from: T0 + 1000, to: T0 })),
      /^422 .*before to/,
    );
    assert.match(
      await errorOf(
        f.replays.start({ topic: "orders", from: Date.now() + 60_000, to: Date.now() + 120_000 }),
      ),
      /^422 .*future/,
    );
    assert.match(
      await errorOf(f.replays.start({ topic: "orders", from: T0, to: T0 + 1, partitions: [7] })),
      /^422 .*no partition 7/,
    );
    assert.throws(() => parseReplay({ topic: "t", from: 1, to: 2, rate: 0 }), /rate/);

    // 20 records/s on the manual clock: the bucket holds one token (50 ms of
    // records), so one record at 0 ms, then exactly one more each 50 ms.
    const id = started(
      await f.replays.start({ topic: "orders", from: T0, to: T0 + 40_000, rate: 20 }),
    );
    const conflict = await f.replays.start({ topic: "orders", from: T0, to: T0 + 1000 });
    assert.deepEqual(conflict, { status: "conflict", runningId: id });
    const sentAt: number[] = [];
    for (let k = 0; k < 8; k++) {
      // Record k is sent and the next one waits for a token (the bucket's timer).
      await waitFor(() => f.sent.length > k && clock.pending > 0, {
        timeoutMs: 5000,
        message: `record ${k} sent and the next waiting for a token`,
      });
      assert.equal(f.sent.length, k + 1, `one record per token (at ${clock.now()} ms)`);
      sentAt.push(clock.now());
      if (k < 7) assert.equal(clock.runNext(), (k + 1) * 50, "the next token is due 50 ms later");
    }
    assert.deepEqual(sentAt, [0, 50, 100, 150, 200, 250, 300, 350], "exactly 20/s");
    const c0 = performance.now();
    const p = (await f.replays.cancel(id))!;
    const cancelMs = performance.now() - c0;
    assert.ok(cancelMs < 1000, `cancelled in ${cancelMs.toFixed(0)} ms`);
    assert.equal(p.state, "cancelled");
    assert.equal(p.delivered, 8, "partial: the records sent, all finished");
    assert.equal(clock.pending, 0, "the bucket's timer is cleared");
    const sentAtCancel = f.sent.length;
    clock.advance(10_000); // 200 tokens' worth, if anything still waited for them
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(f.sent.length, sentAtCancel, "nothing sent after the cancel");
    assert.equal(f.sent.length, p.delivered);
  } finally {
    await f.close();
  }
});

Deno.test("replay driver: pauses while the breaker is open", async () => {
  const f = await fixture(10);
  try {
    const id = started(
      await f.replays.start({ topic: "orders", from: T0, to: T0 + 10_000, rate: 50 }),
    );
    while (f.sent.length < 2) await new Promise((r) => setTimeout(r, 5));
    for (const l of f.breakerListeners) l("open");
    assert.equal(f.replays.get(id)!.state, "paused");
    const n = f.sent.length;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(f.sent.length, n, "nothing sent while paused");
    assert.deepEqual(f.replays.get(id)!.pause_reasons, ["circuit"]);
    for (const l of f.breakerListeners) l("closed");
    const p = await finished(f, id);
    assert.equal(p.state, "done");
    assert.equal(p.delivered, 10);
  } finally {
    await f.close();
  }
});

Deno.test("DLQ store: list with filters and cursor, replay once, then already_delivered, bulk", async () => {
  const f = await fixture(0);
  try {
    const producer = await f.log.producer();
    const reasons = ["PROCESSING_ERROR", "TIMEOUT_ERROR"] as const;
    for (let i = 0; i < 6; i++) {
      const record: SourceRecord = {
        topic: "orders",
        partition: i % 2,
        offset: String(i),
        key: new TextEncoder().encode(`k${i}`),
        value: new TextEncoder().encode(envelope("orders", i)),
        headers: {},
        timestamp: String(T0 + i * 1000),
      };
      const dl = buildDeadLetter(record, {
        reason: reasons[i % 2],
        message: "Upstream answered 503",
        traceId: "0".repeat(32),
      }, { consumerGroup: "g", now: new Date(T0 + i * 1000) });
      const m = toDeadLetterMessage(dl);
      await producer.send(m.topic, [{ key: m.key, value: m.value, headers: m.headers }]);
    }
    await producer.disconnect();
    const dlq = new DeadLetterStore({
      log: f.log,
      topics: ["orders"],
      store: f.store,
      audit: { append: (e) => Promise.resolve(void f.audit.push(e)) },
      processor: f.processor,
      replays: f.replays,
    });
    const all = await dlq.list({ limit: 4 });
    assert.equal(all.items.length, 4);
    assert.ok(all.next_cursor);
    const rest = await dlq.list({ limit: 4, cursor: all.next_cursor });
    assert.equal(rest.items.length, 2);
    assert.equal(rest.next_cursor, undefined);
    assert.deepEqual(
      [...all.items, ...rest.items].map((d) => d.id),
      [0, 1, 2, 3, 4, 5].map((i) => `orders:${i % 2}:${i}`),
    );
    const timeouts = await dlq.list({ limit: 100, reason: "TIMEOUT_ERROR", from: T0 + 2000 });
    assert.deepEqual(timeouts.items.map((d) => d.id), ["orders:1:3", "orders:1:5"]);
    assert.throws(() => parseDlqQuery({ reason: "NOPE" }), /reason/);
    assert.deepEqual(parseDlqBulk({ reason: "TIMEOUT_ERROR" }), { reason: "TIMEOUT_ERROR" });

    assert.equal(await dlq.replay("orders:0:99"), undefined);
    const first = await dlq.replay("orders:0:2");
    assert.equal(first?.status, "delivered");
    const second = await dlq.replay("orders:0:2");
    assert.equal(second?.status, "already_delivered");
    assert.equal(f.sent.length, 1, "sent once");
    assert.equal(f.sent[0].headers["x-sluice-reprocessed"], "true");

    const bulk = await dlq.replayBulk({ reason: "PROCESSING_ERROR" });
    const p = await finished(f, started(bulk));
    assert.equal(p.state, "done");
    assert.equal(p.total, 3);
    assert.equal(p.delivered, 2);
    assert.equal(p.skipped_duplicate, 1);
    assert.match(formatProgress(p as never), /done \[#+\] 100% 3\/3/);

    // "Delivered since" is true whichever way the record got delivered: its
    // own replay, the bulk replay, or (here) a window replay or the live
    // consumer, which only record the idempotency key.
    const before = await dlq.list({ limit: 100 });
    const since = (page: typeof before) =>
      Object.fromEntries(page.items.map((d) => [d.id, d.delivered_since]));
    assert.deepEqual(since(before), {
      "orders:0:0": true,
      "orders:1:1": false,
      "orders:0:2": true,
      "orders:1:3": false,
      "orders:0:4": true,
      "orders:1:5": false,
    });
    f.store.record("orders-3");
    assert.equal(since(await dlq.list({ limit: 100 }))["orders:1:3"], true);
    assert.equal(
      formatDlqTable(before.items as never).split("\n")[0].includes("DELIVERED-SINCE"),
      true,
    );
  } finally {
    await f.close();
  }
});

Deno.test("replayEta counts skipped records: a replay made of skips is not estimated at the send rate", () => {
  // 10,000 records, 500 handled (all skipped as already delivered) in 0.5 s, rate 20/s:
  // at that pace the rest takes about 10 s, not 9,500 / 20 = 475 s.
  assert.equal(replayEta({ left: 9500, handled: 500, elapsedMs: 500, rate: 20 }), 10);
  // Nothing handled yet: the configured rate is all there is.
  assert.equal(replayEta({ left: 100, handled: 0, elapsedMs: 0, rate: 20 }), 5);
  assert.equal(replayEta({ left: 0, handled: 10, elapsedMs: 100, rate: 20 }), 0);
  assert.equal(replayEta({ left: null, handled: 10, elapsedMs: 100, rate: 20 }), null);
});
