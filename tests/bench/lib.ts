/**
 * Helpers of the benchmarks (`tests/bench/bench.ts`): a loopback upstream
 * that timestamps every request, topic filling, Kafka offsets, a metrics
 * sampler, a `/ws/events` listener, percentiles and the machine description.
 *
 * @module
 */
import { Kafka, logLevel } from "kafkajs";
import { waitFor } from "../harness/procs.ts";

/** Partitions of every benchmark topic. */
export const PARTITIONS = 6;

/** A Kafka client for the benchmark's own admin and producer work. */
export function kafkaClient(brokers: string[], clientId = "sluice-bench"): Kafka {
  return new Kafka({ clientId, brokers, logLevel: logLevel.NOTHING });
}

/** Timestamps of one request seen by {@link BenchStub} (`performance.now()` of the bench process). */
export interface StubTimes {
  in: number;
  out: number;
  /** `Date.now()` when the response was sent (to compare with sluice's event timestamps). */
  outWall: number;
}

/** A loopback upstream answering 200 after `latencyMs`. */
export interface BenchStub {
  url: string;
  /** Requests answered (all, also repeats). */
  readonly responded: number;
  /** Distinct `X-Request-Id`s answered. */
  readonly distinct: number;
  /** `performance.now()` of the first request received, of the last response sent. */
  readonly firstIn: number;
  readonly lastOut: number;
  /** Per `X-Request-Id` (first time seen), when `track` is on. */
  times: Map<string, StubTimes>;
  /** Answered requests per second between the first request and the last response. */
  rate(): number;
  /** With `held`: lets the held requests and every later one through. */
  release(): void;
  stop(): Promise<void>;
}

/** Starts a {@link BenchStub} on 127.0.0.1 (a free port). */
export function startBenchStub(
  opts: {
    latencyMs: number;
    track?: boolean;
    /** Hold every request until {@link BenchStub.release} (then answer after `latencyMs`). */
    held?: boolean;
  },
): BenchStub {
  let release = () => {};
  const gate = opts.held ? new Promise<void>((r) => (release = r)) : undefined;
  const seen = new Set<string>();
  const times = new Map<string, StubTimes>();
  let responded = 0, firstIn = 0, lastOut = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const at = performance.now();
      if (firstIn === 0) firstIn = at;
      await req.arrayBuffer();
      if (gate) await gate;
      if (opts.latencyMs > 0) await new Promise((r) => setTimeout(r, opts.latencyMs));
      const id = req.headers.get("x-request-id") ?? "";
      const out = performance.now();
      responded++;
      lastOut = out;
      if (!seen.has(id)) {
        seen.add(id);
        if (opts.track) times.set(id, { in: at, out, outWall: Date.now() });
      }
      return new Response("ok");
    },
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/ingest`,
    get responded() {
      return responded;
    },
    get distinct() {
      return seen.size;
    },
    get firstIn() {
      return firstIn;
    },
    get lastOut() {
      return lastOut;
    },
    times,
    rate: () => responded / Math.max(1e-9, (lastOut - firstIn) / 1000),
    release: () => release(),
    stop: () => {
      release();
      return server.shutdown();
    },
  };
}

/** One envelope as sluice expects it (about 230 bytes). */
export function envelope(topic: string, i: number, requestId: string, key: string): string {
  return JSON.stringify({
    request_id: requestId,
    idempotency_key: `${topic}-${i}`,
    timestamp: new Date().toISOString(),
    payload: { key, seq: i, note: "benchmark record with a payload of typical size" },
  });
}

/** Creates `topic` with {@link PARTITIONS} partitions. */
export async function createTopic(kafka: Kafka, topic: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [{ topic, numPartitions: PARTITIONS }],
      waitForLeaders: true,
    });
  } finally {
    await admin.disconnect();
  }
}

/**
 * Creates `topic` and produces `count` envelopes (`request_id` = `${prefix}-${i}`,
 * `keys` distinct keys) in batches of 1000.
 */
export async function fillTopic(
  kafka: Kafka,
  topic: string,
  count: number,
  opts: { keys?: number; prefix?: string } = {},
): Promise<void> {
  await createTopic(kafka, topic);
  const keys = opts.keys ?? 1000;
  const prefix = opts.prefix ?? "req";
  const producer = kafka.producer();
  await producer.connect();
  try {
    for (let i = 0; i < count; i += 1000) {
      const messages = [];
      for (let j = i; j < Math.min(count, i + 1000); j++) {
        const key = `key-${j % keys}`;
        messages.push({ key, value: envelope(topic, j, `${prefix}-${j}`, key) });
      }
      await producer.send({ topic, messages });
    }
  } finally {
    await producer.disconnect();
  }
}

/** High watermarks and committed offsets of `group` (missing/-1 = 0). */
export async function offsets(
  kafka: Kafka,
  topic: string,
  group: string,
): Promise<{ high: Map<number, bigint>; committed: Map<number, bigint> }> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const high = new Map(
      (await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, BigInt(o.high)]),
    );
    const r = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    const committed = new Map(
      r[0].partitions.map((
        p,
      ) => [p.partition, BigInt(Number(p.offset) < 0 ? "0" : p.offset)]),
    );
    return { high, committed };
  } finally {
    await admin.disconnect();
  }
}

/** Reads one sample (summed over label sets) from Prometheus text. */
export function metricFrom(text: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

/** Samples `process_resident_memory_bytes` of a sluice every `intervalMs` until stopped. */
export function sampleRss(
  url: string,
  intervalMs = 500,
): { stop(): Promise<number[]>; peaks: Record<string, number> } {
  const samples: number[] = [];
  // Largest V8 heap (total, used) and external memory seen, for the notes.
  const peaks: Record<string, number> = {};
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        const res = await fetch(`${url}/metrics`);
        const text = await res.text();
        const v = metricFrom(text, "process_resident_memory_bytes");
        if (v !== undefined) samples.push(v);
        for (
          const name of [
            "nodejs_heap_size_total_bytes",
            "nodejs_heap_size_used_bytes",
            "nodejs_external_memory_bytes",
          ]
        ) {
          const x = metricFrom(text, name);
          if (x !== undefined) peaks[name] = Math.max(peaks[name] ?? 0, x);
        }
      } catch {
        // The process is going away; the caller stops the sampler.
      }
      if (running) await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return samples;
    },
    peaks,
  };
}

/** Receipt times (`performance.now()`) of `record.completed` events on `/ws/events`, by `request_id`. */
export interface WsListener {
  received: Map<string, number>;
  /** By `request_id`: the event's own `timestamp` (when sluice published it) and `Date.now()` at receipt. */
  wall: Map<string, { published: number; received: number }>;
  close(): Promise<void>;
}

/** Connects to `/ws/events?severity=info&topic=…` and waits until the socket is open. */
export async function listenWs(baseUrl: string, topic: string): Promise<WsListener> {
  const ws = new WebSocket(
    `${baseUrl.replace(/^http/, "ws")}/ws/events?severity=info&topic=${encodeURIComponent(topic)}`,
  );
  const received = new Map<string, number>();
  const wall = new Map<string, { published: number; received: number }>();
  const closed = new Promise<void>((resolve) => ws.addEventListener("close", () => resolve()));
  ws.addEventListener("message", (e) => {
    const at = performance.now();
    const ev = JSON.parse(String(e.data));
    if (ev.type !== "record.completed") return;
    const id = ev.data?.request_id;
    if (typeof id === "string" && !received.has(id)) {
      received.set(id, at);
      wall.set(id, { published: Date.parse(ev.timestamp), received: Date.now() });
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve(), { once: true });
    ws.addEventListener("error", () => reject(new Error("/ws/events did not open")), {
      once: true,
    });
  });
  return {
    received,
    wall,
    async close() {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close();
      await closed;
    },
  };
}

/** Nearest-rank percentile (`p` in 0..100) of `values`; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Polls `pred` every `intervalMs` until it is true; throws after `timeoutMs`. */
export async function until(
  pred: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
  intervalMs = 50,
): Promise<void> {
  await waitFor(pred, { timeoutMs, intervalMs, message: what });
}

/** What the benchmark ran on. */
export function machine(): Record<string, string | number> {
  let cpu = "unknown";
  try {
    cpu = /model name\s*:\s*(.*)/.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? cpu;
  } catch {
    // Not Linux.
  }
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memory_gib: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
  };
}

/** Every row a complete run of `tests/bench/bench.ts` prints (also in `--quick` mode). */
export const ROW_IDS: readonly string[] = [
  "framework.sluice",
  "framework.raw_post",
  "framework.ratio",
  "framework.raw_noop",
  "framework.ratio_noop",
  "framework.machine_cpu",
  "framework.cpu_per_1k",
  "metrics.render",
  "delivery.sluice",
  "delivery.naive",
  "delivery.ratio",
  "shutdown.inflight",
  "shutdown.exit",
  "shutdown.lost",
  "ws.p50",
  "ws.p99",
  "latency.record_p50",
  "latency.after_upstream_p50",
  "latency.in_sluice_after_upstream_p50",
  "latency.ws_hop_p50",
  "audit.append_p50",
  "audit.latency_share",
  "memory.rss_peak",
  "memory.rss_steady",
  "memory.rss_idle",
  "memory.rss_idle_after_burst",
  "idle_kafka.cpu",
  "idle_kafka.rss",
  "audit.group_commit",
  "audit.group_commit_p50",
  "audit.single",
  "audit.speedup",
  "cost.base",
  "cost.schema",
  "cost.schema_ratio",
  "cost.trace10",
  "cost.trace10_ratio",
  "cost.trace10_cpu_ratio",
  "cost.trace100",
  "cost.trace100_ratio",
  "cost.inproc_schema_us",
  "cost.inproc_trace10_us",
  "cost.inproc_trace10_share",
  "cost.inproc_trace100_us",
];

/**
 * An OTLP/HTTP endpoint that accepts and discards trace exports (counting
 * requests and bytes), standing in for a collector on another machine: it
 * spends no CPU decoding on the 2 cores sluice is measured on.
 */
export function startOtlpSink(): {
  url: string;
  requests: number;
  bytes: number;
  stop(): Promise<void>;
} {
  const sink = {
    url: "",
    requests: 0,
    bytes: 0,
    stop: () => server.shutdown(),
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    sink.bytes += (await req.arrayBuffer()).byteLength;
    sink.requests++;
    // An empty ExportTraceServiceResponse: everything accepted.
    return new Response(new Uint8Array(0), {
      headers: { "content-type": "application/x-protobuf" },
    });
  });
  sink.url = `http://127.0.0.1:${server.addr.port}`;
  return sink;
}
