/**
 * Unit tests of the audit writer (`actors/audit/writer.ts`) on the embedded
 * log in a temporary directory (the same LogClient port as Kafka, no
 * infrastructure): durability before the append resolves, group commit,
 * partitioning and keys, validation, trimming of large events (also after a
 * broker's size refusal), failing produce requests, and `scanAudited`.
 */
import assert from "node:assert/strict";
import { createEmbeddedLog } from "../../actors/log/embedded/log.ts";
import type { LogClient, LogProducer, OutgoingMessage } from "../../actors/log/port.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import type { AuditEvent } from "../../actors/audit/event.ts";
import {
  AuditWriter,
  encodeAuditEvent,
  ensureAuditTopic,
  scanAudited,
  utf8Length,
} from "../../actors/audit/writer.ts";
import { makeEvent } from "../harness/audit_fixture.ts";

const AUDIT = "sluice-audit";
const decoder = new TextDecoder();
const encoder = new TextEncoder();

/** A producer wrapper that counts requests, can fail, refuse large messages or delay. */
class ProbeProducer implements LogProducer {
  sends = 0;
  messages = 0;
  /** Every request's message count, in order. */
  sizes: number[] = [];
  failing = false;
  /** Refuses (MESSAGE_TOO_LARGE) a request holding a message value above this many bytes. */
  maxMessageBytes = Infinity;
  refusals = 0;
  delayMs = 0;
  /** Requests acknowledged by the inner producer. */
  acked = 0;
  constructor(readonly inner: LogProducer) {}
  async send(topic: string, messages: OutgoingMessage[]): Promise<void> {
    this.sends++;
    this.sizes.push(messages.length);
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failing) throw new Error("Broker unavailable (test)");
    const big = messages.find((m) =>
      (typeof m.value === "string"
        ? encoder.encode(m.value).byteLength
        : m.value?.byteLength ?? 0) >
        this.maxMessageBytes
    );
    if (big) {
      this.refusals++;
      throw Object.assign(
        new Error("The request included a message larger than the max message size"),
        { type: "MESSAGE_TOO_LARGE" },
      );
    }
    await this.inner.send(topic, messages);
    this.messages += messages.length;
    this.acked++;
  }
  disconnect(): Promise<void> {
    return this.inner.disconnect();
  }
}

interface Env {
  log: LogClient;
  probe: ProbeProducer;
  writer: AuditWriter;
  partitions: number;
}

/** An embedded log in a temporary directory with a 3-partition audit topic and a writer. */
async function withWriter(
  fn: (env: Env) => Promise<void>,
  opts: { maxEventBytes?: number; maxRequestBytes?: number } = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-audit-writer-" });
  const log = createEmbeddedLog({ dir: `${dir}/log`, partitions: 3 });
  try {
    const admin = await log.admin();
    await admin.ensureTopics([{ topic: "orders", partitions: 3 }]);
    const partitions = await ensureAuditTopic(admin, { topic: AUDIT, sources: ["orders"] });
    assert.equal(partitions, 3);
    const probe = new ProbeProducer(await log.producer());
    const writer = new AuditWriter(probe, { topic: AUDIT, partitions, ...opts });
    await fn({ log, probe, writer, partitions });
    writer.close();
    await probe.disconnect();
  } finally {
    await log.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every record of the audit topic, per partition. */
async function readTopic(log: LogClient, partitions: number): Promise<SourceRecord[][]> {
  const admin = await log.admin();
  const high = await admin.highWatermarks(AUDIT);
  const out: SourceRecord[][] = [];
  for (let p = 0; p < partitions; p++) {
    const to = high.find((h) => h.partition === p)?.offset ?? "0";
    const records: SourceRecord[] = [];
    for await (const batch of log.readRange({ topic: AUDIT, partition: p }, { from: "0", to })) {
      records.push(...batch);
    }
    out.push(records);
  }
  return out;
}

function keyOf(r: SourceRecord): string {
  return r.key ? decoder.decode(r.key) : "";
}

function valueOf(r: SourceRecord): AuditEvent & { trimmed?: boolean } {
  return JSON.parse(decoder.decode(r.value!));
}

Deno.test("AuditWriter.append resolves only once the event is readable from the audit topic", async () => {
  await withWriter(async ({ log, probe, writer, partitions }) => {
    probe.delayMs = 30;
    for (let i = 0; i < 5; i++) {
      const ackedBefore = probe.acked;
      let resolved = false;
      const p = writer.append(makeEvent({ partition: 1, offset: i })).then(() => {
        resolved = true;
      });
      await new Promise((r) => setTimeout(r, 10));
      assert.equal(resolved, false, "resolved while its produce request was still in flight");
      await p;
      assert.equal(probe.acked, ackedBefore + 1, "resolved before the log acknowledged it");
      // Readable right away, by anyone reading the log.
      const all = await readTopic(log, partitions);
      assert.ok(
        all[1].some((r) => keyOf(r) === `orders/1/${i}`),
        `event ${i} is not in the audit topic once its append resolved`,
      );
    }
    assert.equal(writer.status().written, 5);
    assert.equal(writer.status().queued, 0);
  });
});

Deno.test("AuditWriter group commit: 1000 concurrent appends share a handful of produce requests", async () => {
  await withWriter(async ({ log, probe, writer, partitions }) => {
    probe.delayMs = 5; // A round trip, as to a broker.
    await Promise.all(
      Array.from(
        { length: 1000 },
        (_, i) => writer.append(makeEvent({ partition: i % 6, offset: i })),
      ),
    );
    assert.equal(probe.messages, 1000);
    assert.ok(probe.sends <= 10, `1000 concurrent appends took ${probe.sends} produce requests`);
    assert.ok(Math.max(...probe.sizes) >= 100, `largest request: ${Math.max(...probe.sizes)}`);
    const all = await readTopic(log, partitions);
    assert.equal(all.flat().length, 1000);
    console.log(
      `1000 concurrent appends: ${probe.sends} produce requests (${probe.sizes.join(", ")})`,
    );
  });
});

Deno.test("AuditWriter maxRequestBytes bounds the events of one produce request", async () => {
  const one = JSON.stringify(makeEvent({ offset: 100 })).length;
  await withWriter(async ({ probe, writer }) => {
    probe.delayMs = 5;
    await Promise.all(
      Array.from({ length: 200 }, (_, i) => writer.append(makeEvent({ offset: 100 + i }))),
    );
    assert.equal(probe.messages, 200);
    assert.ok(Math.max(...probe.sizes) <= 10, `requests: ${probe.sizes.join(", ")}`);
    assert.ok(probe.sends >= 20, `${probe.sends} requests`);
  }, { maxRequestBytes: 10 * one });
  // A limit below one event still sends each event alone (never stuck).
  await withWriter(async ({ probe, writer }) => {
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => writer.append(makeEvent({ offset: i }))),
    );
    assert.deepEqual(probe.sizes, Array(20).fill(1));
  }, { maxRequestBytes: 10 });
});

Deno.test("AuditWriter writes to partition (source partition mod audit partitions) with key topic/partition/offset", async () => {
  await withWriter(async ({ log, writer, partitions }) => {
    const events = [];
    for (let p = 0; p < 8; p++) {
      for (let o = 0; o < 5; o++) events.push(makeEvent({ partition: p, offset: 1000 + o }));
    }
    events.push(makeEvent({ topic: "payments", partition: 4, offset: "18446744073709551000" }));
    await Promise.all(events.map((e) => writer.append(e)));
    const all = await readTopic(log, partitions);
    assert.equal(all.flat().length, events.length);
    for (let ap = 0; ap < partitions; ap++) {
      for (const r of all[ap]) {
        const v = valueOf(r);
        assert.equal(v.partition % partitions, ap, `${keyOf(r)} in audit partition ${ap}`);
        assert.equal(keyOf(r), `${v.topic}/${v.partition}/${v.offset}`);
        assert.equal(r.headers.outcome, "delivered");
      }
    }
    const keys = all.flat().map(keyOf).sort();
    assert.deepEqual(keys, events.map((e) => `${e.topic}/${e.partition}/${e.offset}`).sort());
    // The events of one source partition keep their order within the audit partition.
    const p1 = all[1].filter((r) => keyOf(r).startsWith("orders/1/")).map((r) => valueOf(r).offset);
    assert.deepEqual(p1, ["1000", "1001", "1002", "1003", "1004"]);
  });
});

Deno.test("AuditWriter rejects an event without a valid timestamp or offset with a TypeError", async () => {
  await withWriter(async ({ probe, writer }) => {
    const bad: unknown[] = [
      { ...makeEvent(), timestamp: undefined },
      { ...makeEvent(), timestamp: "yesterday" },
      { ...makeEvent(), offset: undefined },
      { ...makeEvent(), offset: 12 },
      { ...makeEvent(), partition: "0" },
      { ...makeEvent(), topic: null },
      null,
    ];
    for (const e of bad) {
      await assert.rejects(() => writer.append(e as AuditEvent), (err: unknown) => {
        assert.ok(err instanceof TypeError, `${JSON.stringify(e)}: ${err}`);
        assert.match((err as Error).message, /Invalid audit event/);
        return true;
      });
    }
    assert.equal(probe.sends, 0, "nothing produced for invalid events");
    await writer.append(makeEvent());
    writer.close();
    await assert.rejects(() => writer.append(makeEvent()), /closed/);
  });
});

Deno.test("encodeAuditEvent trims an event with a 100 kB error message under the limit, keeping outcome, reason and position", () => {
  const small = makeEvent({ outcome: "dead_lettered", error_code: "PROCESSING_ERROR" });
  assert.equal(encodeAuditEvent(small, 64 * 1024), JSON.stringify(small), "small events unchanged");
  const huge = makeEvent({
    topic: "orders",
    partition: 2,
    offset: 77,
    outcome: "dead_lettered",
    error_code: "PROCESSING_ERROR",
    status_code: 500,
  });
  huge.result.error_message = "x".repeat(100_000);
  for (const max of [64 * 1024, 8 * 1024, 2 * 1024, 900]) {
    const text = encodeAuditEvent(huge, max);
    assert.ok(
      encoder.encode(text).byteLength <= max,
      `${encoder.encode(text).byteLength} > ${max}`,
    );
    const v = JSON.parse(text);
    assert.equal(v.trimmed, true);
    assert.equal(v.result.outcome, "dead_lettered");
    assert.equal(v.result.error_code, "PROCESSING_ERROR");
    assert.equal(v.topic, "orders");
    assert.equal(v.partition, 2);
    assert.equal(v.offset, "77");
    assert.equal(v.timestamp, huge.timestamp);
    assert.equal(v.idempotency_key, huge.idempotency_key);
    assert.equal(typeof v.result.error_message, "string");
    assert.ok(v.result.error_message.length < 5000);
  }
  const cut = JSON.parse(encodeAuditEvent(huge, 64 * 1024));
  assert.match(cut.result.error_message, /^x{4096}… \(cut from 100000 characters\)$/);
  assert.equal(cut.upstream.status_code, 500, "the first trim keeps the details");
  // Multi-byte characters count as bytes, not characters.
  const wide = makeEvent({ outcome: "dead_lettered", error_code: "PROCESSING_ERROR" });
  wide.result.error_message = "é".repeat(20_000);
  assert.ok(encoder.encode(encodeAuditEvent(wide, 30_000)).byteLength <= 30_000);
  const wider = makeEvent({ outcome: "dead_lettered", error_code: "PROCESSING_ERROR" });
  wider.result.error_message = "€".repeat(20_000);
  const w = encodeAuditEvent(wider, 10_000);
  assert.ok(encoder.encode(w).byteLength <= 10_000, `${encoder.encode(w).byteLength} bytes`);
  assert.equal(JSON.parse(w).trimmed, true);
});

Deno.test("AuditWriter sends the minimal form of an event the log refuses as too large, and the append resolves", async () => {
  await withWriter(async ({ log, probe, writer, partitions }) => {
    probe.maxMessageBytes = 2000;
    const big = makeEvent({
      partition: 0,
      offset: 500,
      outcome: "dead_lettered",
      error_code: "TIMEOUT_ERROR",
      status_code: null,
    });
    big.result.error_message = "y".repeat(10_000); // Under maxEventBytes (64 KiB): not trimmed locally.
    const others = Array.from({ length: 20 }, (_, i) => makeEvent({ partition: 0, offset: i }));
    await Promise.all(
      [...others.slice(0, 10), big, ...others.slice(10)].map((e) => writer.append(e)),
    );
    assert.ok(probe.refusals >= 1, "the log refused the large event");
    const records = (await readTopic(log, partitions))[0];
    assert.equal(records.length, 21);
    const v = valueOf(records.find((r) => keyOf(r) === "orders/0/500")!);
    assert.equal(v.trimmed, true);
    assert.equal(v.result.outcome, "dead_lettered");
    assert.equal(v.result.error_code, "TIMEOUT_ERROR");
    assert.equal(v.offset, "500");
    assert.ok(encoder.encode(JSON.stringify(v)).byteLength <= 2000);
    for (const r of records.filter((r) => keyOf(r) !== "orders/0/500")) {
      assert.equal(valueOf(r).trimmed, undefined, `${keyOf(r)} left whole`);
    }
    assert.equal(writer.status().errors, 0);

    // A log that refuses even the minimal form: that append rejects, the others do not.
    probe.maxMessageBytes = 10;
    await assert.rejects(() => writer.append(makeEvent({ offset: 9 })), /larger than the max/);
    assert.equal(writer.status().errors, 1);
  });
});

Deno.test("AuditWriter rejects the appends of a failed produce request, and the next append succeeds once the log answers", async () => {
  await withWriter(async ({ log, probe, writer, partitions }) => {
    probe.failing = true;
    probe.delayMs = 5;
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) => writer.append(makeEvent({ offset: i }))),
    );
    assert.ok(results.every((r) => r.status === "rejected"), "every append rejected");
    for (const r of results) {
      assert.match(String((r as PromiseRejectedResult).reason), /Broker unavailable/);
    }
    const s = writer.status();
    assert.ok(s.errors >= 1);
    assert.match(s.lastError ?? "", /Broker unavailable/);
    assert.equal(s.written, 0);
    assert.equal(s.queued, 0);
    assert.equal((await readTopic(log, partitions)).flat().length, 0);

    probe.failing = false;
    await writer.append(makeEvent({ offset: 0 }));
    await Promise.all(
      Array.from({ length: 49 }, (_, i) => writer.append(makeEvent({ offset: i + 1 }))),
    );
    assert.equal(writer.status().written, 50);
    assert.equal((await readTopic(log, partitions)).flat().length, 50);
  });
});

Deno.test("scanAudited finds the offsets >= from of one source partition and ignores other partitions and topics", async () => {
  await withWriter(async ({ log, writer, partitions }) => {
    const events: AuditEvent[] = [];
    for (let o = 0; o < 10; o++) {
      // orders/0, orders/3 and payments/0 share audit partition 0; orders/1 is elsewhere.
      events.push(makeEvent({ topic: "orders", partition: 0, offset: o }));
      events.push(makeEvent({ topic: "orders", partition: 3, offset: o }));
      events.push(makeEvent({ topic: "payments", partition: 0, offset: o }));
      events.push(makeEvent({ topic: "orders", partition: 1, offset: o }));
    }
    events.push(makeEvent({ topic: "orders", partition: 0, offset: 12 }));
    await Promise.all(events.map((e) => writer.append(e)));
    // A message of someone else, without an audit key.
    const p = await log.producer();
    await p.send(AUDIT, [{ key: "orders/0/not-a-number", value: "{}", partition: 0 }, {
      key: null,
      value: "{}",
      partition: 0,
    }]);
    const opts = { topic: AUDIT, partitions };
    const sorted = (s: Set<string>) => [...s].sort((a, b) => Number(a) - Number(b));
    assert.deepEqual(sorted(await scanAudited(log, { topic: "orders", partition: 0 }, "5", opts)), [
      "5",
      "6",
      "7",
      "8",
      "9",
      "12",
    ]);
    assert.deepEqual(
      sorted(await scanAudited(log, { topic: "orders", partition: 3 }, "0", opts)),
      Array.from({ length: 10 }, (_, i) => String(i)),
    );
    assert.deepEqual(sorted(await scanAudited(log, { topic: "orders", partition: 1 }, "8", opts)), [
      "8",
      "9",
    ]);
    assert.equal((await scanAudited(log, { topic: "orders", partition: 2 }, "0", opts)).size, 0);
    assert.equal((await scanAudited(log, { topic: "orders", partition: 0 }, "13", opts)).size, 0);
    // The tail window: only the last 4 events of audit partition 0 are read when the time window is empty.
    const tail = await scanAudited(log, { topic: "orders", partition: 0 }, "0", {
      ...opts,
      lookbackMs: -60_000,
      tailEvents: 4,
    });
    assert.deepEqual(sorted(tail), ["12"]);
  });
});

Deno.test("utf8Length counts the bytes TextEncoder writes, without encoding", () => {
  const enc = new TextEncoder();
  const cases = [
    "",
    "abc",
    "é",
    "€",
    "😀",
    "\ud800",
    "\udc00",
    "a\ud800b",
    "\ud83d\ude00\ud83d",
    "ü€😀x",
  ];
  for (const s of cases) assert.equal(utf8Length(s), enc.encode(s).byteLength, JSON.stringify(s));
  // Random UTF-16 code units, lone surrogates included.
  let seed = 7;
  const next = () => (seed = (Math.imul(seed, 48271) >>> 0) % 2147483647);
  for (let i = 0; i < 2000; i++) {
    let s = "";
    for (let j = 0; j < 16; j++) s += String.fromCharCode(next() % 65536);
    assert.equal(utf8Length(s), enc.encode(s).byteLength, JSON.stringify(s));
  }
});
