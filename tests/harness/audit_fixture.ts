/**
 * Test helpers of the audit trail: an event factory, a fixture of mixed
 * outcomes with its expected report figures, a store that can be made to
 * fail, and a reader of every event in a store.
 *
 * @module
 */
import type { AuditEvent, AuditOutcome, FailureReason } from "../../actors/audit/event.ts";
import { AUDIT_EVENT_VERSION } from "../../actors/audit/event.ts";
import { type AuditStore, decodeBatch, type StoreCallOptions } from "../../actors/audit/store.ts";

/** Fields a test may set on {@link makeEvent}. */
export interface EventFields {
  topic?: string;
  partition?: number;
  offset?: string | number;
  timestamp?: string;
  trace_id?: string | null;
  idempotency_key?: string;
  event_type?: string;
  outcome?: AuditOutcome;
  error_code?: FailureReason | null;
  status_code?: number | null;
  retry_count?: number;
  timeout_count?: number;
  timeout_type?: "connect" | "read" | "global" | null;
}

/** A complete audit event; by default `delivered` with status 200. */
export function makeEvent(f: EventFields = {}): AuditEvent {
  const topic = f.topic ?? "orders";
  const partition = f.partition ?? 0;
  const offset = String(f.offset ?? 0);
  const outcome = f.outcome ?? "delivered";
  return {
    event_version: AUDIT_EVENT_VERSION,
    event_type: f.event_type ?? `record.${outcome}`,
    timestamp: f.timestamp ?? new Date().toISOString(),
    trace_id: f.trace_id === undefined ? crypto.randomUUID().replaceAll("-", "") : f.trace_id,
    request_id: crypto.randomUUID(),
    idempotency_key: f.idempotency_key ?? `${topic}/${partition}/${offset}`,
    topic,
    partition,
    offset,
    upstream: {
      host: "upstream.test",
      status_code: f.status_code === undefined ? 200 : f.status_code,
      latency_ms: 12,
    },
    resilience: {
      retry_count: f.retry_count ?? 0,
      timeout_count: f.timeout_count ?? 0,
      timeout_type: f.timeout_type ?? null,
      circuit_state: "closed",
    },
    result: {
      outcome,
      error_code: f.error_code ?? null,
      error_message: f.error_code ? `failed: ${f.error_code}` : null,
    },
  };
}

/** The window of {@link mixedFixture}: 2025-03-04T10:00Z to 12:00Z (two hours). */
export const FIXTURE_FROM = new Date("2025-03-04T10:00:00.000Z");
/** End of the fixture window (exclusive). */
export const FIXTURE_TO = new Date("2025-03-04T12:00:00.000Z");
/** The trace with a three-event timeline in {@link mixedFixture}. */
export const FIXTURE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

function at(minutes: number, seconds = 0): string {
  return new Date(FIXTURE_FROM.getTime() + minutes * 60_000 + seconds * 1000).toISOString();
}

/**
 * 23 events over two hours and two topics, plus 2 outside the window, in a
 * shuffled order. Expected figures in {@link FIXTURE_EXPECTED}.
 */
export function mixedFixture(): AuditEvent[] {
  const ev: AuditEvent[] = [];
  // 10 delivered, 200, spread over both hours and two partitions.
  for (let i = 0; i < 10; i++) {
    ev.push(makeEvent({ partition: i % 2, offset: 100 + i, timestamp: at(i * 11) }));
  }
  // 3 read timeouts, dead-lettered after 3 retries.
  for (let i = 0; i < 3; i++) {
    ev.push(makeEvent({
      partition: 1,
      offset: 200 + i,
      timestamp: at(20 + i),
      outcome: "dead_lettered",
      error_code: "TIMEOUT_ERROR",
      status_code: null,
      retry_count: 3,
      timeout_count: 4,
      timeout_type: "read",
    }));
  }
  // 2 upstream 500s, dead-lettered after 3 retries.
  for (let i = 0; i < 2; i++) {
    ev.push(makeEvent({
      topic: "payments",
      offset: 7 + i,
      timestamp: at(70 + i),
      outcome: "dead_lettered",
      error_code: "PROCESSING_ERROR",
      status_code: 500,
      retry_count: 3,
    }));
  }
  // 1 validation error, not retried.
  ev.push(makeEvent({
    topic: "payments",
    offset: 9,
    timestamp: at(75),
    outcome: "dead_lettered",
    error_code: "VALIDATION_ERROR",
    status_code: 400,
  }));
  // 2 skipped duplicates of offsets already delivered (replay).
  ev.push(makeEvent({
    offset: 100,
    timestamp: at(90),
    outcome: "skipped_duplicate",
    event_type: "replay.skipped_duplicate",
    status_code: null,
  }));
  ev.push(makeEvent({
    partition: 1,
    offset: 101,
    timestamp: at(91),
    outcome: "skipped_duplicate",
    event_type: "replay.skipped_duplicate",
    status_code: null,
  }));
  // One key delivered twice (a redelivery after a rebalance).
  ev.push(makeEvent({ offset: 300, timestamp: at(30), idempotency_key: "order-300" }));
  ev.push(makeEvent({ offset: 300, timestamp: at(31), idempotency_key: "order-300" }));
  // A trace: connect timeout with a retry, dead-lettered, then replayed and delivered.
  ev.push(makeEvent({
    offset: 400,
    timestamp: at(40, 1),
    trace_id: FIXTURE_TRACE,
    idempotency_key: "order-400",
    outcome: "dead_lettered",
    error_code: "TIMEOUT_ERROR",
    status_code: null,
    retry_count: 1,
    timeout_count: 2,
    timeout_type: "connect",
  }));
  ev.push(makeEvent({
    offset: 401,
    timestamp: at(40, 2),
    trace_id: FIXTURE_TRACE,
    idempotency_key: "order-401",
  }));
  ev.push(makeEvent({
    offset: 400,
    timestamp: at(100),
    trace_id: FIXTURE_TRACE,
    idempotency_key: "order-400",
    event_type: "replay.delivered",
  }));
  // Outside the window: just before, and exactly at the (exclusive) end.
  ev.push(makeEvent({ offset: 1, timestamp: new Date(FIXTURE_FROM.getTime() - 1).toISOString() }));
  ev.push(makeEvent({ offset: 2, timestamp: FIXTURE_TO.toISOString() }));
  // Deterministic shuffle, so the report has to sort.
  return ev.map((e, i) => ({ e, k: (i * 7919) % 31 })).sort((a, b) => a.k - b.k).map((x) => x.e);
}

/** What the report over {@link mixedFixture} in its window must say. */
export const FIXTURE_EXPECTED = {
  events: 23,
  byOutcome: { delivered: 14, dead_lettered: 7, skipped_duplicate: 2 },
  byErrorCode: { TIMEOUT_ERROR: 4, PROCESSING_ERROR: 2, VALIDATION_ERROR: 1 },
  byStatusCode: { "200": 14, "500": 2, "400": 1 },
  byTimeoutType: { read: 12, connect: 2 },
  timeouts: { events: 4, total: 14 },
  retries: { events: 6, total: 16, max: 3 },
  // order-300 (delivered twice), order-400 (dead-lettered then delivered),
  // orders/0/100 and orders/1/101 (delivered then skipped).
  duplicateKeys: 4,
  deliveredTwice: 1,
  traceEvents: 3,
};

/** A store wrapper that fails every call while `failing` is true. */
export class FlakyStore implements AuditStore {
  failing = false;
  /** Keys put successfully, in order. */
  keys: string[] = [];
  failures = 0;
  constructor(readonly inner: AuditStore) {}
  #check(opts?: StoreCallOptions): void {
    opts?.signal?.throwIfAborted();
    if (this.failing) {
      this.failures++;
      throw new Error("Store unavailable (test)");
    }
  }
  async put(key: string, body: Uint8Array, opts?: StoreCallOptions): Promise<void> {
    this.#check(opts);
    await this.inner.put(key, body, opts);
    this.keys.push(key);
  }
  list(prefix: string, opts?: StoreCallOptions): Promise<string[]> {
    this.#check(opts);
    return this.inner.list(prefix, opts);
  }
  get(key: string, opts?: StoreCallOptions): Promise<Uint8Array> {
    this.#check(opts);
    return this.inner.get(key, opts);
  }
  describe(): string {
    return `flaky ${this.inner.describe()}`;
  }
  close(): void {
    this.inner.close();
  }
}

/** Every event of every object under `prefix`, with the object keys. */
export async function readAll(
  store: AuditStore,
  prefix: string,
): Promise<{ keys: string[]; events: AuditEvent[] }> {
  const keys = await store.list(prefix);
  const parts: AuditEvent[][] = new Array(keys.length);
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const i = next++;
      parts[i] = (await decodeBatch(await store.get(keys[i]))).events;
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return { keys, events: parts.flat() };
}

/** Asserts-friendly count of events per idempotency key that are not exactly 1. */
export function notExactlyOnce(events: AuditEvent[], expected: Iterable<string>): string[] {
  const seen = new Map<string, number>();
  for (const e of events) seen.set(e.idempotency_key, (seen.get(e.idempotency_key) ?? 0) + 1);
  const bad: string[] = [];
  for (const k of expected) {
    const n = seen.get(k) ?? 0;
    if (n !== 1) bad.push(`${k}: ${n}`);
    seen.delete(k);
  }
  for (const [k, n] of seen) bad.push(`${k}: ${n} (unexpected)`);
  return bad;
}
