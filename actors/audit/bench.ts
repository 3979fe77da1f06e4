/**
 * Benchmark of the audit append path: audit events per second acknowledged
 * by the log through the {@link AuditWriter}, with group commit (many appends
 * in flight share one produce request) and with one produce request per
 * event (each append awaited before the next), measured in the same run on
 * the same log, with the latency of each append. `deno task bench` runs it on
 * the real Kafka of the benchmark (`tests/bench/bench.ts`).
 *
 * ```
 * SLUICE_KAFKA_BROKERS=127.0.0.1:9092 deno run -A actors/audit/bench.ts   # real Kafka
 * deno run -A actors/audit/bench.ts                                      # embedded log in a temporary directory
 * ```
 *
 * Each run writes to a fresh audit topic (`sluice-bench-audit-…`), left in
 * place.
 *
 * @module
 */
import { createEmbeddedLog } from "../log/embedded/log.ts";
import { createKafkaLog } from "../log/kafka.ts";
import type { LogClient, LogProducer, OutgoingMessage } from "../log/port.ts";
import { AUDIT_EVENT_VERSION, type AuditEvent } from "./event.ts";
import { AuditWriter } from "./writer.ts";

/** A typical audit event (about 500 bytes as JSON). */
export function benchEvent(i: number, partitions = 8): AuditEvent {
  return {
    event_version: AUDIT_EVENT_VERSION,
    event_type: "record.delivered",
    timestamp: new Date().toISOString(),
    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
    request_id: crypto.randomUUID(),
    idempotency_key: `bench/${i % partitions}/${i}`,
    topic: "bench",
    partition: i % partitions,
    offset: String(i),
    upstream: { host: "upstream.local", status_code: 200, latency_ms: 3 },
    resilience: { retry_count: 0, timeout_count: 0, timeout_type: null, circuit_state: "closed" },
    result: { outcome: "delivered", error_code: null, error_message: null },
  };
}

/** Counts the produce requests of a producer. */
class CountingProducer implements LogProducer {
  requests = 0;
  constructor(readonly inner: LogProducer) {}
  send(topic: string, messages: OutgoingMessage[]): Promise<void> {
    this.requests++;
    return this.inner.send(topic, messages);
  }
  disconnect(): Promise<void> {
    return this.inner.disconnect();
  }
}

/** Nearest-rank percentile (`p` in 0..100); NaN when empty. */
function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** One measured mode. */
export interface BenchWriterMode {
  events: number;
  /** Appends in flight at once. */
  concurrency: number;
  seconds: number;
  eventsPerSecond: number;
  /** Produce requests sent to the log. */
  requests: number;
  /** Latency of one append (ms): call → resolved (acknowledged by the log). */
  p50Ms: number;
  p99Ms: number;
}

/**
 * Appends `events` events through an {@link AuditWriter} on `topic` (which
 * must exist, with `partitions` partitions), `concurrency` appends in flight
 * at once (1: each append awaited before the next).
 */
export async function measureAppends(
  log: LogClient,
  opts: { topic: string; partitions: number; events: number; concurrency: number; from?: number },
): Promise<BenchWriterMode> {
  const producer = new CountingProducer(await log.producer());
  const writer = new AuditWriter(producer, { topic: opts.topic, partitions: opts.partitions });
  const lat: number[] = [];
  const from = opts.from ?? 0;
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < opts.events) {
      const i = from + next++;
      const a = performance.now();
      await writer.append(benchEvent(i, opts.partitions));
      lat.push(performance.now() - a);
    }
  };
  try {
    await Promise.all(
      Array.from({ length: Math.max(1, Math.min(opts.concurrency, opts.events)) }, worker),
    );
  } finally {
    writer.close();
    await producer.disconnect().catch(() => {});
  }
  const seconds = (performance.now() - started) / 1000;
  return {
    events: opts.events,
    concurrency: opts.concurrency,
    seconds,
    eventsPerSecond: Math.round(opts.events / seconds),
    requests: producer.requests,
    p50Ms: percentile(lat, 50),
    p99Ms: percentile(lat, 99),
  };
}

/** Options of {@link benchWriter}. */
export interface BenchWriterOptions {
  /** The log (real Kafka for meaningful figures). */
  log: LogClient;
  /** A fresh audit topic is created with this name; default `sluice-bench-audit-<random>`. */
  topic?: string;
  /** Partitions of that topic; default 8. */
  partitions?: number;
  /** Events appended with group commit; default 20 000. */
  events?: number;
  /** Events appended one produce request each (slow); default 2000. */
  singleEvents?: number;
  /** Appends in flight at once with group commit; default 256. */
  concurrency?: number;
}

/** What {@link benchWriter} returns. */
export interface BenchWriterResult {
  topic: string;
  groupCommit: BenchWriterMode;
  single: BenchWriterMode;
  /** `groupCommit.eventsPerSecond / single.eventsPerSecond`. */
  speedup: number;
}

/**
 * Appends to a fresh audit topic with `concurrency` appends in flight (group
 * commit), then one at a time (one produce request per event), and returns
 * both rates.
 */
export async function benchWriter(opts: BenchWriterOptions): Promise<BenchWriterResult> {
  const topic = opts.topic ?? `sluice-bench-audit-${crypto.randomUUID().slice(0, 8)}`;
  const partitions = opts.partitions ?? 8;
  const admin = await opts.log.admin();
  await admin.ensureTopics([{ topic, partitions }]);
  // Warm-up: connections and partition leaders, outside the measures.
  await measureAppends(opts.log, { topic, partitions, events: 50, concurrency: 50 });
  const events = opts.events ?? 20_000;
  const groupCommit = await measureAppends(opts.log, {
    topic,
    partitions,
    events,
    concurrency: opts.concurrency ?? 256,
    from: 1_000_000,
  });
  const single = await measureAppends(opts.log, {
    topic,
    partitions,
    events: opts.singleEvents ?? 2000,
    concurrency: 1,
    from: 2_000_000,
  });
  return {
    topic,
    groupCommit,
    single,
    speedup: Math.round(100 * groupCommit.eventsPerSecond / single.eventsPerSecond) / 100,
  };
}

if (import.meta.main) {
  const brokers = Deno.env.get("SLUICE_KAFKA_BROKERS");
  const dir = brokers ? undefined : await Deno.makeTempDir({ prefix: "sluice-bench-audit-" });
  const log = brokers
    ? createKafkaLog({ brokers: brokers.split(","), clientId: "sluice-audit-bench" })
    : createEmbeddedLog({ dir: `${dir}/log` });
  try {
    console.log(JSON.stringify({ log: log.description, ...await benchWriter({ log }) }, null, 2));
  } finally {
    await log.close();
    if (dir) await Deno.remove(dir, { recursive: true });
  }
}
