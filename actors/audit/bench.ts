/**
 * Benchmark of the audit append path: events per second made durable in the
 * spool with group commit (concurrent appends share one write + fsync) and
 * without (one write + fsync per event), measured in the same run on the
 * same disk. `deno task bench` prints it.
 *
 * @module
 */
import { AUDIT_EVENT_VERSION, type AuditEvent } from "./event.ts";
import { Spool } from "./spool.ts";

/** A typical audit event (about 500 bytes as JSON). */
function benchEvent(i: number): AuditEvent {
  return {
    event_version: AUDIT_EVENT_VERSION,
    event_type: "record.delivered",
    timestamp: new Date().toISOString(),
    trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
    request_id: crypto.randomUUID(),
    idempotency_key: `bench/${i % 8}/${i}`,
    topic: "bench",
    partition: i % 8,
    offset: String(i),
    upstream: { host: "upstream.local", status_code: 200, latency_ms: 3 },
    resilience: { retry_count: 0, timeout_count: 0, timeout_type: null, circuit_state: "closed" },
    result: { outcome: "delivered", error_code: null, error_message: null },
  };
}

/** Options of {@link benchAppend}. */
export interface BenchAppendOptions {
  /** Events appended with group commit; default 20000. */
  events?: number;
  /** Events appended without group commit (one fsync each, slow); default 2000. */
  singleEvents?: number;
  /** Appends in flight at once; default 256. */
  concurrency?: number;
  /** Directory for the spools (a temporary one, removed after, by default). */
  dir?: string;
}

/** One measured mode. */
export interface BenchAppendMode {
  events: number;
  seconds: number;
  eventsPerSecond: number;
  fsyncs: number;
}

/** What {@link benchAppend} returns. */
export interface BenchAppendResult {
  groupCommit: BenchAppendMode;
  single: BenchAppendMode;
  /** `groupCommit.eventsPerSecond / single.eventsPerSecond`. */
  speedup: number;
}

async function run(
  dir: string,
  groupCommit: boolean,
  events: number,
  concurrency: number,
): Promise<BenchAppendMode> {
  const { spool } = await Spool.open(dir, { groupCommit, segmentEvents: 50_000 });
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < events) {
      const i = next++;
      await spool.append(benchEvent(i));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, events) }, worker));
  const seconds = (performance.now() - started) / 1000;
  const { fsyncs } = spool.stats();
  await spool.close();
  return { events, seconds, eventsPerSecond: Math.round(events / seconds), fsyncs };
}

/**
 * Appends events to a fresh spool with `concurrency` appends in flight, once
 * with group commit and once without, and returns both rates.
 */
export async function benchAppend(opts: BenchAppendOptions = {}): Promise<BenchAppendResult> {
  const base = opts.dir ?? await Deno.makeTempDir({ prefix: "sluice-bench-audit-" });
  const concurrency = opts.concurrency ?? 256;
  try {
    const groupCommit = await run(`${base}/group`, true, opts.events ?? 20_000, concurrency);
    const single = await run(`${base}/single`, false, opts.singleEvents ?? 2000, concurrency);
    return {
      groupCommit,
      single,
      speedup: Math.round(100 * groupCommit.eventsPerSecond / single.eventsPerSecond) / 100,
    };
  } finally {
    await Deno.remove(opts.dir ? `${base}/group` : base, { recursive: true }).catch(() => {});
    if (opts.dir) await Deno.remove(`${base}/single`, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  console.log(JSON.stringify(await benchAppend(), null, 2));
}
