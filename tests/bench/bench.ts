/**
 * `deno task bench`: the benchmarks of the README (Benchmarks) in one run, on the
 * same real Kafka and Ceph RGW the tests use, with sluice as a real process.
 * Prints one Markdown table and writes the figures as JSON.
 *
 * ```
 * deno task bench                     # starts Kafka + RGW itself, stops them at the end (also on Ctrl-C)
 * deno task bench --quick             # tiny sizes (what CI runs, through tests/infra/bench_quick_test.ts)
 * deno task bench --out path.json     # default ./bench-results.json
 * deno task bench --only cost         # only the scenarios whose name contains "cost"
 * deno task bench --only framework --profile DIR  # CPU profile + heap snapshot of sluice (tests/bench/profile.ts)
 * deno task bench --v8-flags=--max-old-space-size=96  # V8 flags of every sluice started,
 *                                      # instead of deno task start's (`none`: V8's defaults)
 * deno task bench --client platformatic           # every sluice started on @platformatic/kafka
 * deno task bench --compare-clients --only client # the framework run on kafkajs and on @platformatic/kafka
 * SLUICE_TEST_STATE=… deno task bench # reuse running infrastructure (deno task test --hold, or the runner)
 * ```
 *
 * Each figure is compared only with figures of the same run. What is run:
 *
 * 1. framework overhead: sluice with a no-op upstream (loopback, 200 at once,
 *    `SLUICE_RATE_LIMIT=0`, `SLUICE_ORDERING=key`, large in-flight) against
 *    a hand-written kafkajs `eachBatch` consumer POSTing every record to the
 *    same upstream, and against `eachBatch` doing nothing; the pair runs 3
 *    times (1 with `--quick`), in alternating order, and the rows give the
 *    medians (the ratio: the median of the rounds' ratios), each round in
 *    the notes: one pair moved by ±0.3 between runs on a 2-core machine;
 * 2. delivery: sluice against a 10 ms upstream against a kafkajs
 *    `eachMessage` + `fetch` loop;
 * 3. graceful shutdown with about 10,000 records in flight or buffered (the
 *    upstream holds its calls until SIGTERM, then answers in 20 ms): SIGTERM
 *    to exit, and the ledger (committed offsets against the audit trail read
 *    back from RGW);
 * 4. RSS (`process_resident_memory_bytes`) sampled during runs 1, 2 and 5;
 * 5. latency at a steady 200 records/s against a 10 ms upstream: production
 *    → `record.completed` on `/ws/events`, with the upstream's own timestamps
 *    to split the record's time; the audit's share is an estimate: the audit
 *    writer's append latency on the same Kafka (group commit, the
 *    concurrency of that run), measured apart, over the rest;
 * 6. audit writer append throughput on the same Kafka with group commit (256
 *    appends in flight) and with one produce request per event
 *    (`benchWriter`, `actors/audit/bench.ts`);
 * 7. idle instances: RSS of a local-mode instance with no configuration, and
 *    CPU per second and RSS of a Kafka-mode instance whose topic is empty;
 * 8. cost of the optional per-record work: the same pre-filled topic consumed
 *    by sluice against a no-op upstream without it, with a payload JSON
 *    Schema (`SLUICE_SCHEMA_DIR`), with traces exported over OTLP to a
 *    receiver at 10 % and 100 % sampling, alternated in rounds so that
 *    drifts of the shared machine hit every configuration alike; ratio =
 *    with / without.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { Kafka } from "kafkajs";
import { benchWriter, measureAppends } from "../../actors/audit/bench.ts";
import { createKafkaLog } from "../../actors/log/kafka.ts";
import {
  ensureDebianPackages,
  type InfraState,
  logTails,
  startInfra,
  stopInfra,
} from "../harness/infra.ts";
import { checkLedger, readAllAuditEvents, rgwStore } from "../harness/ledger.ts";
import { infra, infraCpuSeconds, uniqueName } from "../harness/mod.ts";
import { createProcessor } from "../../actors/pipeline/processor.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import { loadPayloadSchemas } from "../../actors/record/schema.ts";
import {
  type AttemptTracer,
  createTracing,
  type RecordTracing,
} from "../../actors/runtime/tracing.ts";
import nodeProcess from "node:process";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace";
import {
  NO_START_V8_FLAGS,
  type SluiceProcess,
  startSluiceProcess,
} from "../harness/sluice_process.ts";
import { freePort, waitFor } from "../harness/procs.ts";
import {
  sampleAllocations,
  summarizeCpuProfile,
  summarizeHeapSnapshot,
  takeHeapSnapshot,
} from "./profile.ts";
import {
  type BenchStub,
  createTopic,
  envelope,
  fillTopic,
  kafkaClient,
  listenWs,
  machine,
  metricFrom,
  offsets,
  PARTITIONS,
  percentile,
  ROW_IDS,
  sampleRss,
  startBenchStub,
  startOtlpSink,
  until,
} from "./lib.ts";

/** Sizes of one run. */
interface Sizes {
  framework: number;
  /**
   * Rounds of the framework pair (the raw loop and sluice, in alternating
   * order): its rows give the medians, the note each round.
   */
  frameworkRounds: number;
  delivery: number;
  baselineCapS: number;
  upstreamLatencyMs: number;
  shutdownRecords: number;
  shutdownInflight: number;
  latencyRate: number;
  latencySeconds: number;
  appendEvents: number;
  appendSingleEvents: number;
  appendLatencyEvents: number;
  costRecords: number;
  costRounds: number;
  /** Uncached `/metrics` requests timed. */
  metricsRenders: number;
  /** Idle local mode: seconds after ready before sampling, seconds sampled. */
  idleSettleS: number;
  idleSampleS: number;
  /** Idle local mode, then: seconds of the load generator at 1,000 records/s. */
  burstS: number;
}

const FULL: Sizes = {
  framework: 50_000,
  frameworkRounds: 3,
  delivery: 20_000,
  baselineCapS: 20,
  upstreamLatencyMs: 10,
  shutdownRecords: 40_000,
  shutdownInflight: 10_000,
  latencyRate: 200,
  latencySeconds: 20,
  appendEvents: 20_000,
  appendSingleEvents: 1_000,
  appendLatencyEvents: 3_000,
  costRecords: 20_000,
  costRounds: 3,
  metricsRenders: 20,
  idleSettleS: 10,
  idleSampleS: 10,
  burstS: 45,
};

const QUICK: Sizes = {
  framework: 600,
  frameworkRounds: 1,
  delivery: 300,
  baselineCapS: 3,
  upstreamLatencyMs: 10,
  shutdownRecords: 1_500,
  shutdownInflight: 500,
  latencyRate: 100,
  latencySeconds: 2,
  appendEvents: 500,
  appendSingleEvents: 100,
  appendLatencyEvents: 200,
  costRecords: 400,
  costRounds: 1,
  metricsRenders: 3,
  idleSettleS: 1,
  idleSampleS: 2,
  burstS: 2,
};

/** sluice's CPU per 1,000 records in the README's run before issue 17 (ms). */
const CPU_MS_PER_1K_BEFORE = 305;
/** Issue 17's goal: 25 % less. */
const CPU_MS_PER_1K_TARGET = CPU_MS_PER_1K_BEFORE * 0.75;
/**
 * sluice's and the raw loop's CPU per 1,000 records in the README's last
 * table before issue 17 (same run): a same-run ratio, comparable across days.
 */
const CPU_BEFORE_SAME_RUN = { sluice: 243, raw: 119 };
/** Gap between timed `/metrics` requests: past the endpoint's 500 ms cache. */
const METRICS_GAP_MS = 600;

/** One line of the table. */
export interface Row {
  id: string;
  benchmark: string;
  value: number;
  unit: string;
  /** e.g. `≥ 0.8`; absent for context figures. */
  target?: string;
  met?: boolean;
  note?: string;
}

const t0 = Date.now();
const say = (s: string) => console.error(`[bench +${((Date.now() - t0) / 1000).toFixed(1)}s] ${s}`);

/** Things to stop if the run is interrupted (Ctrl-C) or fails. */
const live = new Set<() => Promise<void>>();

function track(stop: () => Promise<void>): () => void {
  live.add(stop);
  return () => live.delete(stop);
}

const round = (v: number, digits = 0) => Math.round(v * 10 ** digits) / 10 ** digits;

function sluiceEnv(
  topic: string,
  group: string,
  bucket: string,
  upstreamUrl: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  const { kafka, s3 } = infra();
  return {
    SLUICE_KAFKA_BROKERS: kafka.brokers.join(","),
    SLUICE_TOPICS: topic,
    SLUICE_GROUP_ID: group,
    SLUICE_UPSTREAM_URL: upstreamUrl,
    SLUICE_S3_ENDPOINT: s3.endpoint,
    SLUICE_S3_ACCESS_KEY: s3.accessKey,
    SLUICE_S3_SECRET_KEY: s3.secretKey,
    SLUICE_S3_BUCKET: bucket,
    SLUICE_RATE_LIMIT: "0",
    SLUICE_LOG_FORMAT: "json",
    ...extra,
  };
}

/** `--profile DIR`: the framework run's sluice runs under the CPU profiler and is heap-snapshotted. */
let profileDir: string | undefined;
/** `--v8-flags FLAGS|none`: V8 flags of every sluice the bench starts instead of the start task's. */
let sluiceDenoArgs: string[] = [];

/** Starts sluice, tracked for clean-up; `fn` runs with it; it is always stopped. */
async function withSluice<T>(
  env: Record<string, string>,
  fn: (s: SluiceProcess) => Promise<T>,
  denoArgs: string[] = [],
): Promise<T> {
  const s = await startSluiceProcess({ env, denoArgs: [...sluiceDenoArgs, ...denoArgs] });
  const kill = async () => {
    await s.stop("SIGKILL");
  };
  const untrack = track(kill);
  try {
    return await fn(s);
  } catch (e) {
    console.error(`--- sluice output (last 4000 chars) ---\n${s.output().slice(-4000)}`);
    throw e;
  } finally {
    const killer = setTimeout(kill, 30_000);
    await s.stop("SIGTERM");
    clearTimeout(killer);
    untrack();
    await Deno.remove(s.dataDir, { recursive: true }).catch(() => {});
  }
}

/** Runs tests/bench/baseline.ts as its own process; returns its JSON line. */
async function baseline(args: Record<string, string | number>): Promise<{
  records: number;
  seconds: number;
  rps: number;
  cpuMsPer1k: number;
}> {
  const script = new URL("./baseline.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      script,
      ...Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]),
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const untrack = track(async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone.
    }
    await child.status;
  });
  const killer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone.
    }
  }, 180_000);
  try {
    const out = await child.output();
    const text = new TextDecoder().decode(out.stdout).trim();
    if (!out.success) {
      throw new Error(
        `baseline ${args.mode} failed (exit ${out.code}): ${
          new TextDecoder().decode(out.stderr).slice(-2000)
        }`,
      );
    }
    return JSON.parse(text.split("\n").pop()!);
  } finally {
    clearTimeout(killer);
    untrack();
  }
}

async function withStub<T>(
  opts: { latencyMs: number; track?: boolean; held?: boolean },
  fn: (s: BenchStub) => Promise<T>,
): Promise<T> {
  const stub = startBenchStub(opts);
  const untrack = track(() => stub.stop());
  try {
    return await fn(stub);
  } finally {
    untrack();
    await stub.stop();
  }
}

/** Waits until sluice delivered (and audited) `n` records and the upstream saw them all. */
async function delivered(s: SluiceProcess, stub: BenchStub, n: number, timeoutMs: number) {
  await until(() => stub.distinct >= n, timeoutMs, `${n} records at the upstream`, 20);
  await until(
    async () => (await s.metric("requests_total", { outcome: "delivered" })) >= n,
    30_000,
    `${n} records finished by sluice`,
  );
}

/** RSS samples (bytes) of the runs under load, by run. */
const rssByRun = new Map<string, number[]>();

/** CPU seconds of a sluice (`process_cpu_seconds_total`). */
async function cpuSeconds(s: SluiceProcess): Promise<number> {
  return await s.metric("process_cpu_seconds_total");
}

/** CPU seconds used so far by the broker, Ceph, and this process (the upstream stub runs here). */
function otherCpu(): OtherCpu {
  const u = nodeProcess.cpuUsage();
  return { ...infraCpuSeconds(), bench: (u.user + u.system) / 1e6 };
}
interface OtherCpu {
  kafka: number;
  ceph: number;
  bench: number;
}
/** CPU ms per 1,000 of `n` records between two {@link otherCpu} snapshots. */
function otherCpuPer1k(a: OtherCpu, b: OtherCpu, n: number): OtherCpu {
  const per1k = (x: number, y: number) => (1e6 * (y - x)) / Math.max(1, n);
  return {
    kafka: per1k(a.kafka, b.kafka),
    ceph: per1k(a.ceph, b.ceph),
    bench: per1k(a.bench, b.bench),
  };
}

/**
 * Runs sluice until it finished `n` records; returns the upstream's rate and
 * sluice's CPU milliseconds per 1000 records (from ready to the end), and
 * over the same span the broker's, Ceph's and the bench process's.
 */
async function measureSluice(
  run: string,
  s: SluiceProcess,
  stub: BenchStub,
  n: number,
  midway?: () => Promise<void>,
): Promise<{ rps: number; cpuMsPer1k: number; other: OtherCpu }> {
  const rss = sampleRss(s.url);
  try {
    const cpu0 = await cpuSeconds(s);
    const other0 = otherCpu();
    const done0 = stub.distinct;
    if (midway) {
      const third = Math.round(n / 3);
      await until(() => stub.distinct >= third, 300_000, `${third} records at the upstream`, 20);
      await midway();
    }
    await delivered(s, stub, n, 300_000);
    const cpu = (await cpuSeconds(s)) - cpu0;
    const other = otherCpuPer1k(other0, otherCpu(), n - done0);
    return { rps: stub.rate(), cpuMsPer1k: (1e6 * cpu) / Math.max(1, n - done0), other };
  } finally {
    rssByRun.set(run, await rss.stop());
    heapPeaks.set(run, rss.peaks);
  }
}

/** Peaks of the V8 heap and external memory of the runs under load, by run (bytes). */
const heapPeaks = new Map<string, Record<string, number>>();

/** `heap total / used / external` peaks of a run, in MB, for a note. */
function heapNote(run: string): string {
  const p = heapPeaks.get(run) ?? {};
  const mb = (name: string) => round((p[name] ?? NaN) / 1e6, 1);
  return `V8 heap peak ${mb("nodejs_heap_size_total_bytes")} MB total / ${
    mb("nodejs_heap_size_used_bytes")
  } MB used, external ${mb("nodejs_external_memory_bytes")} MB`;
}

async function frameworkOverhead(kafka: Kafka, z: Sizes): Promise<Row[]> {
  const topic = uniqueName("bench-framework");
  const brokers = infra().kafka.brokers.join(",");
  say(`framework: filling ${topic} with ${z.framework} records`);
  await fillTopic(kafka, topic, z.framework);
  const noop = await baseline({
    mode: "batch-noop",
    brokers,
    topic,
    group: uniqueName("bench-noop"),
    count: z.framework,
  });
  say(`framework: raw eachBatch (no work) ${round(noop.rps)} records/s`);
  const rawRun = () =>
    withStub({ latencyMs: 0 }, async (stub) => {
      // From the consumer's start to its exit (its own CPU: first record to last).
      const other0 = otherCpu();
      const b = await baseline({
        mode: "batch-post",
        brokers,
        topic,
        group: uniqueName("bench-raw"),
        url: stub.url,
        count: z.framework,
        concurrency: 256,
      });
      const other = otherCpuPer1k(other0, otherCpu(), z.framework);
      return { rps: stub.rate(), cpuMsPer1k: b.cpuMsPer1k, other };
    });
  // With --profile: CPU profile of the whole run; a third of the way in, allocations
  // sampled for 3 s, then a heap snapshot (first round only).
  const inspect = `127.0.0.1:${freePort()}`;
  let metricsMs = { render: NaN, roundTrip: NaN, busy: NaN, busyRoundTrip: NaN };
  const sluiceRun = (r: number, last: boolean) => {
    const profiled = profileDir !== undefined && r === 0;
    const profiling = profiled
      ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--inspect=${inspect}`]
      : [];
    return withStub({ latencyMs: 0 }, (stub) =>
      withSluice(
        sluiceEnv(topic, uniqueName("bench-sluice"), uniqueName("bench-audit"), stub.url, {
          SLUICE_ORDERING: "key",
          SLUICE_MAX_INFLIGHT: "1000",
        }),
        async (s) => {
          const m = await measureSluice(
            `framework-${r}`,
            s,
            stub,
            z.framework,
            !profiled ? undefined : async () => {
              const alloc = await sampleAllocations(
                inspect,
                3000,
                `${profileDir}/framework-steady.heapprofile`,
                20,
              );
              await Deno.writeTextFile(
                `${profileDir}/framework-steady.heapprofile.txt`,
                alloc + "\n",
              );
              say(`framework: allocations over 3 s:\n${alloc}`);
              const path = `${profileDir}/framework-steady.heapsnapshot`;
              await takeHeapSnapshot(inspect, path);
              say(`framework: heap snapshot ${path}`);
            },
          );
          if (last) metricsMs = await metricsRenderMs(s, z.metricsRenders);
          return m;
        },
        profiling,
      ));
  };
  // Rounds of the pair, the order alternating (raw first in odd rounds): the
  // machine's drift between two runs lands on both sides.
  type Run = { rps: number; cpuMsPer1k: number; other: OtherCpu };
  const rounds: { raw: Run; sluice: Run }[] = [];
  for (let r = 0; r < z.frameworkRounds; r++) {
    const last = r === z.frameworkRounds - 1;
    let raw, sluice;
    if (r % 2 === 0) {
      raw = await rawRun();
      sluice = await sluiceRun(r, last);
    } else {
      sluice = await sluiceRun(r, last);
      raw = await rawRun();
    }
    say(
      `framework round ${r + 1}/${z.frameworkRounds}: raw eachBatch + POST ${round(raw.rps)} ` +
        `records/s (${round(raw.cpuMsPer1k)} ms CPU per 1000), sluice ${round(sluice.rps)} ` +
        `records/s (${round(sluice.cpuMsPer1k)} ms), ratio ${round(sluice.rps / raw.rps, 2)}`,
    );
    if (profileDir !== undefined && r === 0) await printProfiles(profileDir);
    rounds.push({ raw, sluice });
  }
  // One "framework" run for the RSS rows: every round's samples and peaks.
  const runs = rounds.map((_, r) => `framework-${r}`);
  rssByRun.set("framework", runs.flatMap((r) => rssByRun.get(r) ?? []));
  const peaks: Record<string, number> = {};
  for (const r of runs) {
    for (const [k, v] of Object.entries(heapPeaks.get(r) ?? {})) {
      peaks[k] = Math.max(peaks[k] ?? 0, v);
    }
    rssByRun.delete(r);
    heapPeaks.delete(r);
  }
  heapPeaks.set("framework", peaks);
  const med = (f: (x: typeof rounds[0]) => number) => percentile(rounds.map(f), 50);
  const ratios = rounds.map((x) => x.sluice.rps / x.raw.rps);
  const ratio = percentile(ratios, 50);
  const raw = { rps: med((x) => x.raw.rps), cpuMsPer1k: med((x) => x.raw.cpuMsPer1k) };
  const sluice = { rps: med((x) => x.sluice.rps), cpuMsPer1k: med((x) => x.sluice.cpuMsPer1k) };
  const perRound = (f: (x: typeof rounds[0]) => number, digits = 0) =>
    rounds.map((x) => round(f(x), digits)).join(", ");
  const medianOf = rounds.length > 1 ? `median of ${rounds.length} rounds; ` : "";
  const cpuCut = 1 - sluice.cpuMsPer1k / CPU_MS_PER_1K_BEFORE;
  // The machine's CPU per record on each side: the consumer, the broker, Ceph
  // and the stub (with the bench's polling) share the same cores.
  const machineOf = (x: Run) => x.cpuMsPer1k + x.other.kafka + x.other.ceph + x.other.bench;
  const machine = { raw: med((x) => machineOf(x.raw)), sluice: med((x) => machineOf(x.sluice)) };
  const side = (f: (x: typeof rounds[0]) => Run) =>
    `consumer ${round(med((x) => f(x).cpuMsPer1k))}, broker ${
      round(med((x) => f(x).other.kafka))
    }, Ceph ${round(med((x) => f(x).other.ceph))}, stub and bench ${
      round(med((x) => f(x).other.bench))
    }`;
  return [
    {
      id: "framework.sluice",
      benchmark: "Framework: sluice, no-op upstream",
      value: round(sluice.rps),
      unit: "records/s",
      note: `${medianOf}${round(sluice.cpuMsPer1k)} ms CPU per 1000 records (sluice process); ` +
        `rounds ${perRound((x) => x.sluice.rps)} records/s, ${
          perRound((x) => x.sluice.cpuMsPer1k)
        } ms; RSS peak ${round(Math.max(...(rssByRun.get("framework") ?? [NaN])) / 1e6, 1)} MB; ${
          heapNote("framework")
        }`,
    },
    {
      id: "framework.raw_post",
      benchmark: "Framework: raw kafkajs eachBatch + POST, same upstream",
      value: round(raw.rps),
      unit: "records/s",
      note: `${medianOf}${round(raw.cpuMsPer1k)} ms CPU per 1000 records (consumer process); ` +
        `rounds ${perRound((x) => x.raw.rps)} records/s, ${perRound((x) => x.raw.cpuMsPer1k)} ms`,
    },
    {
      id: "framework.ratio",
      benchmark: "Framework overhead: sluice / raw eachBatch + POST",
      value: round(ratio, 2),
      unit: "×",
      target: "≥ 0.9",
      met: ratio >= 0.9,
      note: rounds.length > 1
        ? `median of the rounds' ratios (${perRound((x) => x.sluice.rps / x.raw.rps, 2)})`
        : undefined,
    },
    {
      id: "framework.machine_cpu",
      benchmark: "Framework: machine CPU per 1,000 records, raw loop / sluice",
      value: round(machine.raw / machine.sluice, 2),
      unit: "×",
      note:
        `${medianOf}ms per 1000 records, raw: ${side((x) => x.raw)} = ${
          round(machine.raw)
        }; sluice: ${side((x) => x.sluice)} = ${round(machine.sluice)}; ` +
        `context: with every core busy, the throughput ratio follows this one`,
    },
    {
      id: "framework.cpu_per_1k",
      benchmark: "Framework: sluice CPU per 1,000 records",
      value: round(sluice.cpuMsPer1k),
      unit: "ms",
      target: `≤ ${CPU_MS_PER_1K_TARGET}`,
      met: sluice.cpuMsPer1k <= CPU_MS_PER_1K_TARGET,
      note:
        `${
          cpuCut >= 0 ? `${round(100 * cpuCut)} % less` : `${round(-100 * cpuCut)} % more`
        } than the ${CPU_MS_PER_1K_BEFORE} ms of the README's earlier run (target −25 %); raw loop ` +
        `${round(raw.cpuMsPer1k)} ms in this run: sluice / raw CPU ` +
        `${round(sluice.cpuMsPer1k / raw.cpuMsPer1k, 2)}× (${CPU_BEFORE_SAME_RUN.sluice} / ` +
        `${CPU_BEFORE_SAME_RUN.raw} ms = ` +
        `${round(CPU_BEFORE_SAME_RUN.sluice / CPU_BEFORE_SAME_RUN.raw, 2)}× before issue 17)`,
    },
    {
      id: "metrics.render",
      benchmark: "/metrics render, not cached, after the framework run (median)",
      value: round(metricsMs.render, 2),
      unit: "ms",
      target: "< 2",
      met: metricsMs.render < 2,
      note: `sluice's Server-Timing, once the audit backlog is 0; ${z.metricsRenders} requests ` +
        `${METRICS_GAP_MS} ms apart (past the 500 ms cache), 6 partitions assigned; round trip ${
          round(metricsMs.roundTrip, 2)
        } ms; while the uploader still drained the run: ${round(metricsMs.busy, 2)} ms ` +
        `(round trip ${round(metricsMs.busyRoundTrip, 2)} ms)`,
    },
    {
      id: "framework.raw_noop",
      benchmark: "Framework: raw kafkajs eachBatch, no work per record",
      value: round(noop.rps),
      unit: "records/s",
    },
    {
      id: "framework.ratio_noop",
      benchmark: "Framework: sluice / raw eachBatch with no work",
      value: round(sluice.rps / noop.rps, 3),
      unit: "×",
      note: "context: the consumption ceiling, no HTTP, no audit",
    },
  ];
}

async function delivery(kafka: Kafka, z: Sizes): Promise<Row[]> {
  const topic = uniqueName("bench-delivery");
  const brokers = infra().kafka.brokers.join(",");
  say(`delivery: filling ${topic} with ${z.delivery} records`);
  await fillTopic(kafka, topic, z.delivery);
  const sluice = await withStub({ latencyMs: z.upstreamLatencyMs }, (stub) =>
    withSluice(
      sluiceEnv(topic, uniqueName("bench-sluice"), uniqueName("bench-audit"), stub.url, {
        SLUICE_ORDERING: "key",
        SLUICE_MAX_INFLIGHT: "512",
      }),
      (s) => measureSluice("delivery", s, stub, z.delivery),
    ));
  say(`delivery: sluice ${round(sluice.rps)} records/s`);
  const naive = await withStub({ latencyMs: z.upstreamLatencyMs }, async (stub) => {
    await baseline({
      mode: "message-fetch",
      brokers,
      topic,
      group: uniqueName("bench-naive"),
      url: stub.url,
      count: z.delivery,
      seconds: z.baselineCapS,
    });
    return stub.rate();
  });
  say(`delivery: eachMessage + fetch ${round(naive)} records/s`);
  const ratio = sluice.rps / naive;
  return [
    {
      id: "delivery.sluice",
      benchmark: `Delivery: sluice, ${z.upstreamLatencyMs} ms upstream`,
      value: round(sluice.rps),
      unit: "records/s",
    },
    {
      id: "delivery.naive",
      benchmark: `Delivery: kafkajs eachMessage + fetch, ${z.upstreamLatencyMs} ms upstream`,
      value: round(naive),
      unit: "records/s",
    },
    {
      id: "delivery.ratio",
      benchmark: "Delivery: sluice / eachMessage + fetch",
      value: round(ratio, 1),
      unit: "×",
      target: "≥ 5",
      met: ratio >= 5,
    },
  ];
}

async function shutdown(kafka: Kafka, z: Sizes): Promise<Row[]> {
  const topic = uniqueName("bench-shutdown");
  const group = uniqueName("bench-sluice");
  const bucket = uniqueName("bench-audit");
  say(`shutdown: filling ${topic} with ${z.shutdownRecords} records`);
  await fillTopic(kafka, topic, z.shutdownRecords);
  const perPartition = Math.ceil(z.shutdownInflight / PARTITIONS);
  // The upstream holds every call until SIGTERM: the records are in flight or
  // buffered for sure when it comes (an upstream that answers at once can
  // drain them before the count is seen, on a loaded machine), and the drain
  // then runs at the upstream's 20 ms.
  const r = await withStub({ latencyMs: 20, held: true }, async (stub) => {
    const s = await startSluiceProcess({
      denoArgs: sluiceDenoArgs,
      env: sluiceEnv(topic, group, bucket, stub.url, {
        SLUICE_ORDERING: "none",
        SLUICE_MAX_INFLIGHT: String(perPartition),
        SLUICE_AUDIT_BATCH_AGE_MS: "1000",
      }),
    });
    const untrack = track(async () => {
      await s.stop("SIGKILL");
    });
    try {
      let pending = 0;
      await until(
        async () => {
          const text = await (await fetch(`${s.url}/metrics`)).text();
          pending = metricFrom(text, "queue_depth") ?? 0;
          return pending >= z.shutdownInflight;
        },
        60_000,
        `${z.shutdownInflight} records in flight or buffered`,
        10,
      );
      const rss = metricFrom(
        await (await fetch(`${s.url}/metrics`)).text(),
        "process_resident_memory_bytes",
      ) ?? NaN;
      const start = performance.now();
      const killer = setTimeout(() => s.stop("SIGKILL"), 60_000);
      const stopped = s.stop("SIGTERM");
      stub.release();
      const code = await stopped;
      const exitMs = performance.now() - start;
      clearTimeout(killer);
      return { pending, code, exitMs, rss, output: s.output() };
    } finally {
      untrack();
      await s.stop("SIGKILL");
      await Deno.remove(s.dataDir, { recursive: true }).catch(() => {});
    }
  });
  say(`shutdown: ${r.pending} pending at SIGTERM, exit ${r.code} after ${round(r.exitMs)} ms`);
  if (r.code !== 0) console.error(`--- sluice output ---\n${r.output.slice(-4000)}`);
  const { high, committed } = await offsets(kafka, topic, group);
  const store = rgwStore(bucket);
  let events;
  try {
    events = await readAllAuditEvents(store);
  } finally {
    store.close();
  }
  const committedPositions: string[] = [];
  let reread = 0n;
  for (const [p, h] of high) {
    const c = committed.get(p) ?? 0n;
    for (let o = 0n; o < c; o++) committedPositions.push(`${topic}/${p}/${o}`);
    reread += h - c;
  }
  const ledger = checkLedger(committedPositions, events);
  const lost = ledger.missing.length;
  say(
    `shutdown: committed ${committedPositions.length}, audited ${events.length}, lost ${lost}, re-read later ${reread}`,
  );
  return [
    {
      id: "shutdown.inflight",
      benchmark: "Shutdown: records in flight or buffered at SIGTERM",
      value: r.pending,
      unit: "records",
      note: `sum of queue_depth; RSS then ${round(r.rss / 1e6, 1)} MB`,
    },
    {
      id: "shutdown.exit",
      benchmark: "Shutdown: SIGTERM → exit",
      value: round(r.exitMs / 1000, 2),
      unit: "s",
      target: "< 5",
      met: r.exitMs < 5000 && r.code === 0,
      note: `exit code ${r.code}`,
    },
    {
      id: "shutdown.lost",
      benchmark: "Shutdown: records lost (committed without an audit outcome)",
      value: lost,
      unit: "records",
      target: "0",
      met: lost === 0,
      note: `committed ${committedPositions.length}, final audit outcomes ${
        Object.values(ledger.outcomes).reduce((a, b) => a + b, 0)
      }, duplicates ${ledger.duplicates.size}, uncommitted (read again at next start) ${reread}`,
    },
  ];
}

/**
 * Median latency (ms) of audit writer appends on the run's Kafka (group
 * commit, `concurrency` appends in flight), on a fresh audit topic.
 */
async function appendLatency(kafka: Kafka, events: number, concurrency: number): Promise<number> {
  const topic = uniqueName("bench-audit-latency");
  await createTopic(kafka, topic);
  const log = createKafkaLog({ brokers: infra().kafka.brokers, clientId: "sluice-bench-audit" });
  try {
    // Warm-up: connection and partition leaders, outside the measure.
    await measureAppends(log, { topic, partitions: PARTITIONS, events: 50, concurrency: 50 });
    const m = await measureAppends(log, {
      topic,
      partitions: PARTITIONS,
      events,
      concurrency,
      from: 1_000_000,
    });
    return m.p50Ms;
  } finally {
    await log.close();
  }
}

async function latency(kafka: Kafka, z: Sizes): Promise<Row[]> {
  const topic = uniqueName("bench-latency");
  await createTopic(kafka, topic);
  const n = z.latencyRate * z.latencySeconds;
  const produced = new Map<string, number>();
  const r = await withStub({ latencyMs: z.upstreamLatencyMs, track: true }, (stub) =>
    withSluice(
      sluiceEnv(topic, uniqueName("bench-sluice"), uniqueName("bench-audit"), stub.url, {
        SLUICE_ORDERING: "key",
      }),
      async (s) => {
        const ws = await listenWs(s.url, topic);
        const rss = sampleRss(s.url);
        const producer = kafka.producer();
        await producer.connect();
        try {
          say(`latency: producing ${n} records at ${z.latencyRate}/s`);
          const tickMs = 20;
          const perTick = Math.max(1, Math.round((z.latencyRate * tickMs) / 1000));
          const begin = performance.now();
          for (let i = 0, tick = 0; i < n; tick++) {
            const due = begin + tick * tickMs;
            const wait = due - performance.now();
            if (wait > 0) await new Promise((res) => setTimeout(res, wait));
            const messages = [];
            const at = performance.now();
            for (let j = 0; j < perTick && i < n; j++, i++) {
              const id = `lat-${i}`;
              const key = `key-${i % 100}`;
              produced.set(id, at);
              messages.push({ key, value: envelope(topic, i, id, key) });
            }
            await producer.send({ topic, messages });
          }
          await until(() => ws.received.size >= n, 60_000, `${n} record.completed events`, 20);
        } finally {
          await producer.disconnect();
          await ws.close();
          rssByRun.set("latency", await rss.stop());
        }
        return { received: ws.received, wall: ws.wall, times: stub.times };
      },
    ));
  const e2e: number[] = [], processing: number[] = [], tail: number[] = [];
  const inSluice: number[] = [], hop: number[] = [];
  for (const [id, at] of r.received) {
    const p = produced.get(id);
    const st = r.times.get(id);
    const w = r.wall.get(id);
    if (p !== undefined) e2e.push(at - p);
    if (st) {
      processing.push(at - st.in);
      tail.push(at - st.out);
      // Millisecond wall clocks of the same machine: sluice's event timestamp.
      if (w) inSluice.push(w.published - st.outWall);
    }
    if (w) hop.push(w.received - w.published);
  }
  const p50 = percentile(processing, 50);
  // Appends in flight at once in that run: rate × time a record spends after its upstream answer.
  const concurrency = Math.max(1, Math.round((z.latencyRate * percentile(tail, 50)) / 1000));
  const append = await appendLatency(kafka, z.appendLatencyEvents, concurrency);
  const share = append / Math.max(1e-9, p50 - append);
  say(
    `latency: e2e p50 ${round(percentile(e2e, 50), 1)} ms, audit append p50 ${round(append, 2)} ms`,
  );
  return [
    {
      id: "ws.p50",
      benchmark: "WebSocket delay p50 (produce → record.completed on /ws/events)",
      value: round(percentile(e2e, 50), 1),
      unit: "ms",
      note: `${z.latencyRate} records/s, ${z.upstreamLatencyMs} ms upstream`,
    },
    {
      id: "ws.p99",
      benchmark: "WebSocket delay p99",
      value: round(percentile(e2e, 99), 1),
      unit: "ms",
      target: "< 2000",
      met: percentile(e2e, 99) < 2000,
    },
    {
      id: "latency.record_p50",
      benchmark: "Record latency p50 in sluice (upstream request → record.completed)",
      value: round(p50, 2),
      unit: "ms",
      note: `includes the ${z.upstreamLatencyMs} ms upstream`,
    },
    {
      id: "latency.after_upstream_p50",
      benchmark: "After the upstream answered p50 (audit append + event + WS hop)",
      value: round(percentile(tail, 50), 2),
      unit: "ms",
      note: "upper bound of the audit's cost in the record path",
    },
    {
      id: "latency.in_sluice_after_upstream_p50",
      benchmark: "  of which in sluice (answer → record.completed published) p50",
      value: round(percentile(inSluice, 50), 1),
      unit: "ms",
      note: "event timestamp, 1 ms resolution: response handling, audit append, publish",
    },
    {
      id: "latency.ws_hop_p50",
      benchmark: "  of which the WebSocket hop (published → received) p50",
      value: round(percentile(hop, 50), 1),
      unit: "ms",
    },
    {
      id: "audit.append_p50",
      benchmark: `Audit append p50 on Kafka (acks=all, group commit, ${concurrency} in flight)`,
      value: round(append, 2),
      unit: "ms",
      note: "audit writer on the run's Kafka, measured apart; that run's concurrency",
    },
    {
      id: "audit.latency_share",
      benchmark: "Audit's cost on median record latency (append p50 / (record p50 − append p50))",
      value: round(100 * share, 1),
      unit: "%",
      target: "≤ 5",
      met: share <= 0.05,
      note: "estimate: the append p50 above (measured apart, not inside sluice) over the rest",
    },
  ];
}

/**
 * `GET /metrics` with the endpoint's cache expired, `n` times: the median
 * render time sluice reports (`Server-Timing: render;dur=…`) and the median
 * round trip seen by the client (ms). `busy`: right after the run, while the
 * uploader still moves the run's audit events to RGW (other work interleaves
 * with the render's awaits, so its wall time grows); then `render` and
 * `roundTrip` once `audit_backlog_depth` is 0 and sluice has nothing left to
 * do: the render's own cost with the run's label sets.
 */
async function metricsRenderMs(
  s: SluiceProcess,
  n: number,
): Promise<{ render: number; roundTrip: number; busy: number; busyRoundTrip: number }> {
  const sample = async () => {
    const renders: number[] = [];
    const trips: number[] = [];
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setTimeout(r, METRICS_GAP_MS));
      const t = performance.now();
      const res = await fetch(`${s.url}/metrics`);
      await res.arrayBuffer();
      trips.push(performance.now() - t);
      const timing = res.headers.get("server-timing") ?? "";
      const m = timing.match(/^render;dur=([\d.]+)$/);
      if (!m) {
        throw new Error(`/metrics: expected an uncached render, got Server-Timing "${timing}"`);
      }
      renders.push(Number(m[1]));
    }
    return { render: percentile(renders, 50), roundTrip: percentile(trips, 50) };
  };
  const busy = await sample();
  await waitFor(async () => (await s.metric("audit_backlog_depth")) === 0, {
    timeoutMs: 120_000,
    intervalMs: 500,
    message: "audit_backlog_depth 0 after the run",
  });
  const rest = await sample();
  return { ...rest, busy: busy.render, busyRoundTrip: busy.roundTrip };
}

/** Prints (and writes next to them) the summaries of the profiles in `dir`. */
async function printProfiles(dir: string): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    let text: string;
    if (e.name.endsWith(".cpuprofile")) {
      text = summarizeCpuProfile(await Deno.readTextFile(path), 20);
    } else if (e.name.endsWith(".heapsnapshot")) {
      text = summarizeHeapSnapshot(await Deno.readTextFile(path), 20);
    } else continue;
    await Deno.writeTextFile(`${path}.txt`, text + "\n");
    say(`profile ${path}:\n${text}`);
  }
}

/** RSS of sluice in local mode (no configuration: embedded log, simulated upstream, 20 records/s). */
async function idleLocal(z: Sizes): Promise<Row[]> {
  say("idle: local mode, no configuration");
  /** RSS samples over `idleSampleS`, `idleSettleS` from now. */
  const idleSamples = async (s: SluiceProcess) => {
    await new Promise((r) => setTimeout(r, z.idleSettleS * 1000));
    const rss = sampleRss(s.url);
    await new Promise((r) => setTimeout(r, z.idleSampleS * 1000));
    return await rss.stop();
  };
  const samples = await withSluice({}, idleSamples);
  // Then an instance through which a burst went, back to 20 records/s: what it
  // keeps once the burst is consumed (the embedded log holds a bounded tail,
  // not what was written: actors/log/embedded/log.ts, "Memory"). Ordering
  // `none`: in `partition` ordering (the default) the simulated upstream's
  // latency holds local mode to about 240 records/s.
  say("idle: local mode after a burst of records");
  let burst = 0;
  const after = await withSluice({ SLUICE_ORDERING: "none" }, async (s) => {
    const put = (path: string, body: unknown) =>
      s.json(path, { method: "PUT", body: JSON.stringify(body) });
    await new Promise((r) => setTimeout(r, z.idleSettleS * 1000));
    const done0 = await s.metric("requests_total");
    await put("/control/upstream", { latencyMs: 0 });
    await put("/control/load", { rate: 1000 });
    await new Promise((r) => setTimeout(r, z.burstS * 1000));
    await put("/control/load", { rate: 20 });
    await waitFor(
      async () =>
        (await s.metric("kafka_consumer_lag")) < 100 && (await s.metric("queue_depth")) < 100,
      { timeoutMs: 120_000, intervalMs: 500, message: "the burst consumed" },
    );
    burst = (await s.metric("requests_total")) - done0;
    return await idleSamples(s);
  });
  const median = percentile(samples, 50);
  const medianAfter = percentile(after, 50);
  say(
    `idle: local mode RSS median ${round(median / 1e6, 1)} MB; ` +
      `${round(medianAfter / 1e6, 1)} MB after ${burst} records`,
  );
  return [{
    id: "memory.rss_idle",
    benchmark: "RSS of an idle local-mode instance (deno task start, no config), median",
    value: round(median / 1e6, 1),
    unit: "MB",
    target: "< 90",
    met: median < 90e6,
    note: `${samples.length} samples over ${z.idleSampleS} s, ${z.idleSettleS} s after ready; ` +
      "embedded log, simulated upstream, load generator at 20 records/s",
  }, {
    id: "memory.rss_idle_after_burst",
    benchmark: "RSS of a local-mode instance after a burst, back at 20 records/s, median",
    value: round(medianAfter / 1e6, 1),
    unit: "MB",
    note: `a second instance (SLUICE_ORDERING=none): ${burst} records delivered (load ` +
      `generator at 1,000 records/s for ${z.burstS} s), sampled ${z.idleSettleS} s after they ` +
      "were consumed; context: what the embedded log and the pipeline keep",
  }];
}

/**
 * An idle Kafka-mode instance (a topic with no records, audit on RGW): its CPU
 * per second over `idleSampleS` with no scrape in between (a `/metrics` read
 * at each end), and its RSS at the end. Context rows: what an instance costs
 * a host while nothing arrives. kafkajs 2.2.4 alone kept every connection's
 * request queue polling every millisecond (actors/log/kafkajs_request_queue.ts).
 */
async function idleKafka(kafka: Kafka, z: Sizes): Promise<Row[]> {
  say("idle: Kafka mode, no records");
  const topic = uniqueName("bench-idle");
  await createTopic(kafka, topic);
  const r = await withStub({ latencyMs: 0 }, (stub) =>
    withSluice(
      sluiceEnv(topic, uniqueName("bench-idle"), uniqueName("bench-audit"), stub.url),
      async (s) => {
        await new Promise((res) => setTimeout(res, z.idleSettleS * 1000));
        const cpu0 = await cpuSeconds(s);
        const t0 = performance.now();
        await new Promise((res) => setTimeout(res, z.idleSampleS * 1000));
        const cpu1 = await cpuSeconds(s);
        const seconds = (performance.now() - t0) / 1000;
        const rss = await s.metric("process_resident_memory_bytes");
        return { cpuMsPerS: (1000 * (cpu1 - cpu0)) / seconds, rss, seconds };
      },
    ));
  say(`idle: Kafka mode ${round(r.cpuMsPerS, 1)} ms CPU per s, RSS ${round(r.rss / 1e6, 1)} MB`);
  const note = `${z.idleSettleS} s after ready, then ${round(r.seconds, 1)} s with no request; ` +
    `${PARTITIONS} partitions assigned, audit on RGW`;
  return [
    {
      id: "idle_kafka.cpu",
      benchmark: "CPU of an idle Kafka-mode instance (no records)",
      value: round(r.cpuMsPerS, 1),
      unit: "ms per s",
      note,
    },
    {
      id: "idle_kafka.rss",
      benchmark: "RSS of an idle Kafka-mode instance (no records)",
      value: round(r.rss / 1e6, 1),
      unit: "MB",
      note: "at the end of the CPU window above",
    },
  ];
}

function memoryRows(): Row[] {
  const all = [...rssByRun.values()].flat();
  const peak = Math.max(...all);
  const mb = (v: number) => round(v / 1e6, 1);
  const steady = percentile(rssByRun.get("latency") ?? [], 50);
  const perRun = [...rssByRun].map(([run, v]) =>
    `${run} median ${mb(percentile(v, 50))} / peak ${mb(Math.max(...v))}`
  ).join("; ");
  return [
    {
      id: "memory.rss_peak",
      benchmark: "RSS under load, peak (framework, delivery, latency runs)",
      value: mb(peak),
      unit: "MB",
      target: "< 200",
      met: peak < 200e6,
      note: `MB = 10^6 bytes; ${perRun}`,
    },
    {
      id: "memory.rss_steady",
      benchmark: "RSS at a steady 200 records/s (latency run), median",
      value: mb(steady),
      unit: "MB",
      target: "< 120",
      met: steady < 120e6,
      note: `${all.length} samples of process_resident_memory_bytes in all`,
    },
  ];
}

async function auditThroughput(z: Sizes): Promise<Row[]> {
  say("audit: writer append throughput on Kafka with and without group commit");
  const log = createKafkaLog({ brokers: infra().kafka.brokers, clientId: "sluice-bench-audit" });
  let r;
  try {
    r = await benchWriter({
      log,
      topic: uniqueName("bench-audit"),
      partitions: PARTITIONS,
      events: z.appendEvents,
      singleEvents: z.appendSingleEvents,
      concurrency: 256,
    });
  } finally {
    await log.close();
  }
  const g = r.groupCommit, one = r.single;
  say(
    `audit: group commit ${g.eventsPerSecond}/s (${g.requests} requests), one request per event ${one.eventsPerSecond}/s`,
  );
  return [
    {
      id: "audit.group_commit",
      benchmark: "Audit append on Kafka, group commit (256 concurrent appends)",
      value: g.eventsPerSecond,
      unit: "events/s",
      note: `${g.requests} produce requests for ${g.events} events (acks=all)`,
    },
    {
      id: "audit.group_commit_p50",
      benchmark: "Audit append p50 on Kafka, 256 concurrent appends",
      value: round(g.p50Ms, 2),
      unit: "ms",
      note: `p99 ${round(g.p99Ms, 2)} ms`,
    },
    {
      id: "audit.single",
      benchmark: "Audit append on Kafka, one produce request per event",
      value: one.eventsPerSecond,
      unit: "events/s",
      note: `each append awaited before the next; p50 ${
        round(one.p50Ms, 2)
      } ms, ${one.events} events`,
    },
    {
      id: "audit.speedup",
      benchmark: "Audit append: group commit / one produce request per event",
      value: r.speedup,
      unit: "×",
    },
  ];
}

/** The payload schema of the bench records (`envelope()` of lib.ts): every record passes. */
const BENCH_PAYLOAD_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  required: ["key", "seq", "note"],
  additionalProperties: false,
  properties: {
    key: { type: "string", pattern: "^key-[0-9]+$", maxLength: 64 },
    seq: { type: "integer", minimum: 0 },
    note: { type: "string", maxLength: 1024 },
  },
};

/** One configuration of the cost runs: extra environment, set up and torn down around them. */
interface CostConfig {
  id: string;
  label: string;
  env: (topic: string) => Promise<Record<string, string>>;
  cleanup?: () => Promise<void>;
}

/**
 * Runs `configs` against the same pre-filled topic, `rounds` times in turn
 * (each run its own group); returns the mean throughput and CPU per config.
 */
async function costRuns(
  kafka: Kafka,
  z: Sizes,
  configs: CostConfig[],
): Promise<Map<string, { rps: number[]; cpuMsPer1k: number[] }>> {
  const topic = uniqueName("bench-cost");
  say(`cost: filling ${topic} with ${z.costRecords} records`);
  await fillTopic(kafka, topic, z.costRecords);
  const out = new Map(
    configs.map((c) => [c.id, { rps: [] as number[], cpuMsPer1k: [] as number[] }]),
  );
  try {
    for (let round = 0; round < z.costRounds; round++) {
      for (const c of configs) {
        const extra = await c.env(topic);
        const r = await withStub({ latencyMs: 0 }, (stub) =>
          withSluice(
            sluiceEnv(topic, uniqueName("bench-cost"), uniqueName("bench-audit"), stub.url, {
              SLUICE_ORDERING: "key",
              SLUICE_MAX_INFLIGHT: "1000",
              ...extra,
            }),
            (s) => measureSluice(`cost-${c.id}`, s, stub, z.costRecords),
          ));
        say(`cost: ${c.label} round ${round + 1}: ${round1(r.rps)} records/s`);
        out.get(c.id)!.rps.push(r.rps);
        out.get(c.id)!.cpuMsPer1k.push(r.cpuMsPer1k);
      }
    }
  } finally {
    for (const c of configs) await c.cleanup?.().catch(() => {});
  }
  return out;
}

const round1 = (v: number) => Math.round(v);
const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);

async function perRecordCost(kafka: Kafka, z: Sizes): Promise<Row[]> {
  const schemaDir = await Deno.makeTempDir({ prefix: "sluice-bench-schema-" });
  const configs: CostConfig[] = [
    { id: "base", label: "no schema", env: () => Promise.resolve({}) },
    {
      id: "schema",
      label: "payload JSON Schema",
      env: async (topic) => {
        await Deno.writeTextFile(
          `${schemaDir}/${topic}.schema.json`,
          JSON.stringify(BENCH_PAYLOAD_SCHEMA),
        );
        return { SLUICE_SCHEMA_DIR: schemaDir };
      },
    },
  ];
  const receiver = startOtlpSink();
  for (const ratio of [10, 100]) {
    configs.push({
      id: `trace${ratio}`,
      label: `traces at ${ratio} %`,
      env: () => {
        return Promise.resolve({
          SLUICE_OTLP_ENDPOINT: receiver.url,
          SLUICE_TRACE_SAMPLE_RATIO: String(ratio / 100),
        });
      },
    });
  }
  let r;
  let inproc;
  try {
    r = await costRuns(kafka, z, configs);
    inproc = await inProcessCost(z, schemaDir);
  } finally {
    await receiver.stop();
    await Deno.remove(schemaDir, { recursive: true }).catch(() => {});
  }
  const base = r.get("base")!, schema = r.get("schema")!;
  const runs = (v: number[]) => v.map(round1).join(", ");
  const ratio = mean(schema.rps) / mean(base.rps);
  const traceRows = [10, 100].flatMap((pct): Row[] => {
    const t = r.get(`trace${pct}`)!;
    const q = mean(t.rps) / mean(base.rps);
    return [
      {
        id: `cost.trace${pct}`,
        benchmark: `Per-record cost runs: same, traces over OTLP sampled at ${pct} %`,
        value: round(mean(t.rps)),
        unit: "records/s",
        note: `runs ${runs(t.rps)}; ${round(mean(t.cpuMsPer1k))} ms CPU per 1000 records`,
      },
      {
        id: `cost.trace${pct}_ratio`,
        benchmark: `Tracing at ${pct} %: throughput with / without`,
        value: round(q, 3),
        unit: "×",
        ...(pct === 10 ? { target: "≥ 0.95", met: q >= 0.95 } : {}),
        note: `CPU per record with / without: ${
          round(mean(t.cpuMsPer1k) / mean(base.cpuMsPer1k), 3)
        }×`,
      },
      ...(pct === 10
        ? [{
          id: "cost.trace10_cpu_ratio",
          benchmark: "Tracing at 10 %: sluice CPU per record with / without",
          value: round(mean(t.cpuMsPer1k) / mean(base.cpuMsPer1k), 3),
          unit: "×",
          note: "context: includes the machine's noise (Kafka, RGW, stub on the same 2 cores)",
        }]
        : []),
    ];
  });
  say(`cost: the OTLP sink received ${receiver.requests} exports, ${receiver.bytes} bytes`);
  const baseUs = mean(base.cpuMsPer1k); // ms per 1000 records = µs per record
  const share = (us: number) => round((100 * us) / baseUs, 2);
  return [
    {
      id: "cost.base",
      benchmark: "Per-record cost runs: sluice, no-op upstream, no schema",
      value: round(mean(base.rps)),
      unit: "records/s",
      note: `runs ${runs(base.rps)}; ${round(mean(base.cpuMsPer1k))} ms CPU per 1000 records`,
    },
    {
      id: "cost.schema",
      benchmark: "Per-record cost runs: same, with a payload JSON Schema (Ajv)",
      value: round(mean(schema.rps)),
      unit: "records/s",
      note: `runs ${runs(schema.rps)}; ${round(mean(schema.cpuMsPer1k))} ms CPU per 1000 records`,
    },
    {
      id: "cost.schema_ratio",
      benchmark: "Schema validation: throughput with / without",
      value: round(ratio, 3),
      unit: "×",
      note: `CPU per record with / without: ${
        round(mean(schema.cpuMsPer1k) / mean(base.cpuMsPer1k), 3)
      }×`,
    },
    ...traceRows,
    {
      id: "cost.inproc_schema_us",
      benchmark: "In-process: schema validation, extra CPU per record",
      value: round(inproc.schema, 2),
      unit: "µs",
      note: `${share(inproc.schema)} % of sluice's ${round(baseUs)} µs CPU per record above`,
    },
    {
      id: "cost.inproc_trace10_us",
      benchmark: "In-process: tracing at 10 %, extra CPU per record (OTLP export included)",
      value: round(inproc.trace10, 2),
      unit: "µs",
      note: `${share(inproc.trace10)} % of sluice's ${round(baseUs)} µs CPU per record above`,
    },
    {
      id: "cost.inproc_trace10_share",
      benchmark: "Tracing at 10 %: share of sluice's CPU per record (in-process estimate)",
      value: share(inproc.trace10),
      unit: "%",
      target: "≤ 5",
      met: share(inproc.trace10) <= 5,
    },
    {
      id: "cost.inproc_trace100_us",
      benchmark: "In-process: tracing at 100 %, extra CPU per record (OTLP export included)",
      value: round(inproc.trace100, 2),
      unit: "µs",
      note: `${share(inproc.trace100)} % of sluice's ${round(baseUs)} µs CPU per record above; ${
        round(inproc.spansPerRecord100, 2)
      } spans exported per record (the batch queue drops past 8,192 waiting spans)`,
    },
  ];
}

/**
 * The processor alone (no-op upstream and audit, no Kafka), in this process,
 * on the bench's records: microseconds per record without and with a payload
 * schema, and with tracing at 10 % and 100 % exporting over OTLP to a sink in
 * another process (so that receiving costs nothing here): CPU time of this
 * process (`process.cpuUsage`), per record. Alternated rounds; the median of
 * each is kept. The difference is the feature's own CPU cost,
 * free of the noise of a machine shared with Kafka and RGW.
 */
async function inProcessCost(z: Sizes, schemaDir: string): Promise<{
  schema: number;
  trace10: number;
  trace100: number;
  spansPerRecord100: number;
}> {
  const n = z.costRecords >= 20_000 ? 20_000 : 2_000;
  const topic = "bench-inproc";
  await Deno.writeTextFile(
    `${schemaDir}/${topic}.schema.json`,
    JSON.stringify(BENCH_PAYLOAD_SCHEMA),
  );
  const schemas = loadPayloadSchemas(schemaDir);
  const enc = new TextEncoder();
  const records: SourceRecord[] = Array.from({ length: n }, (_, i) => ({
    topic,
    partition: i % PARTITIONS,
    offset: String(i),
    key: null,
    headers: {},
    timestamp: "0",
    value: enc.encode(envelope(topic, i, `req-${i}`, `key-${i % 1000}`)),
  } as SourceRecord));
  const upstream = {
    host: "127.0.0.1:1",
    // Like the real client: one attempt, traced when the record is.
    deliver: (_e: unknown, _r: unknown, o?: { trace?: AttemptTracer }) => {
      o?.trace?.attempt(0).end({ kind: "ok", status: 200 });
      return Promise.resolve({
        outcome: "delivered" as const,
        reason: null,
        message: null,
        status: 200,
        latencyMs: 1,
        attempts: 1,
        retries: 0,
        timeouts: 0,
        timeoutType: null,
        firstFailureAt: null,
        lastFailureAt: null,
      });
    },
  };
  // The sink runs in its own process.
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `
      let n = 0;
      const s = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: ({ port }) => console.log(port) },
        async (r) => { await r.arrayBuffer(); n++; return new Response(new Uint8Array(0)); });
      await new Promise((r) => setTimeout(r, 600000));`,
    ],
    stdout: "piped",
    stderr: "null",
    stdin: "null",
  }).spawn();
  const untrack = track(async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone.
    }
    await child.status;
  });
  try {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const port = Number((await reader.read()).value?.trim());
    reader.releaseLock();
    let exported = 0;
    const run = async (opts: { schema?: boolean; ratio?: number }) => {
      let tracing: RecordTracing | undefined;
      let spans = 0;
      if (opts.ratio !== undefined) {
        // The real OTLP exporter, counting what it is handed.
        const inner = new OTLPTraceExporter({ url: `http://127.0.0.1:${port}/v1/traces` });
        const exporter: SpanExporter = {
          export(batch: ReadableSpan[], done) {
            spans += batch.length;
            inner.export(batch, done);
          },
          shutdown: () => inner.shutdown(),
          forceFlush: () => inner.forceFlush(),
        };
        tracing = createTracing({ exporter, sampleRatio: opts.ratio });
      }
      const p = createProcessor({
        consumerGroup: "g",
        upstream,
        tracing,
        validatePayload: opts.schema ? schemas.validate : undefined,
        publishDeadLetter: () => Promise.resolve(),
        audit: { append: () => Promise.resolve() },
      });
      const cpu0 = nodeProcess.cpuUsage();
      for (let i = 0; i < n; i += 200) {
        await Promise.all(records.slice(i, i + 200).map((r) => p.process(r)));
      }
      await tracing?.shutdown(10_000); // the export is part of the cost
      exported = spans;
      const cpu = nodeProcess.cpuUsage(cpu0); // µs of this process (the sink is another)
      return (cpu.user + cpu.system) / n;
    };
    const samples = {
      base: [] as number[],
      schema: [] as number[],
      t10: [] as number[],
      t100: [] as number[],
    };
    await run({}); // warm-up
    for (let round = 0; round < 5; round++) {
      samples.base.push(await run({}));
      samples.schema.push(await run({ schema: true }));
      samples.t10.push(await run({ ratio: 0.1 }));
      samples.t100.push(await run({ ratio: 1 }));
    }
    const spansPerRecord100 = exported / n;
    const med = (v: number[]) => percentile(v, 50);
    say(
      `cost in-process: base ${round(med(samples.base), 2)} µs/record, schema ${
        round(med(samples.schema), 2)
      }, traces 10 % ${round(med(samples.t10), 2)}, 100 % ${round(med(samples.t100), 2)}`,
    );
    return {
      schema: med(samples.schema) - med(samples.base),
      trace10: med(samples.t10) - med(samples.base),
      trace100: med(samples.t100) - med(samples.base),
      spansPerRecord100,
    };
  } finally {
    untrack();
    try {
      child.kill("SIGKILL");
    } catch {
      // Gone.
    }
    await child.status;
  }
}

/** The Kafka clients `--compare-clients` runs (`SLUICE_KAFKA_CLIENT`). */
export const CLIENTS = ["kafkajs", "platformatic"] as const;

/** One client's figures in the comparison: per round, then summarised. */
export interface ClientFigures {
  client: string;
  rps: number[];
  cpuMsPer1k: number[];
  rssSteady: number[];
  rssPeak: number[];
}

/**
 * `--compare-clients`: the framework run (sluice against a no-op upstream,
 * `key` ordering, 1000 in flight, audit on RGW) once per client per round on
 * the same pre-filled topic (a fresh group each time), clients alternated
 * from one round to the next so that drifts of the shared machine hit both.
 * RSS steady = median of the samples during the run; peak = their maximum.
 */
async function clientComparison(kafka: Kafka, z: Sizes): Promise<Row[]> {
  const topic = uniqueName("bench-clients");
  say(`clients: filling ${topic} with ${z.framework} records`);
  await fillTopic(kafka, topic, z.framework);
  const figures = new Map<string, ClientFigures>(
    CLIENTS.map((c) => [c, { client: c, rps: [], cpuMsPer1k: [], rssSteady: [], rssPeak: [] }]),
  );
  const rounds = Math.max(2, z.costRounds);
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? [...CLIENTS] : [...CLIENTS].reverse();
    for (const client of order) {
      const run = `clients-${client}-${r}`;
      const m = await withStub({ latencyMs: 0 }, (stub) =>
        withSluice(
          sluiceEnv(topic, uniqueName(`bench-${client}`), uniqueName("bench-audit"), stub.url, {
            SLUICE_ORDERING: "key",
            SLUICE_MAX_INFLIGHT: "1000",
            SLUICE_KAFKA_CLIENT: client,
          }),
          (s) => measureSluice(run, s, stub, z.framework),
        ));
      const rss = rssByRun.get(run) ?? [];
      // Not part of the memory rows of the default run.
      rssByRun.delete(run);
      const f = figures.get(client)!;
      f.rps.push(m.rps);
      f.cpuMsPer1k.push(m.cpuMsPer1k);
      f.rssSteady.push(rss.length ? percentile(rss, 50) : NaN);
      f.rssPeak.push(rss.length ? Math.max(...rss) : NaN);
      say(
        `clients: ${client} round ${r + 1}: ${round(m.rps)} records/s, ${
          round(m.cpuMsPer1k)
        } ms CPU/1000, RSS median ${round(f.rssSteady.at(-1)! / 1e6, 1)} MB, peak ${
          round(f.rssPeak.at(-1)! / 1e6, 1)
        } MB`,
      );
    }
  }
  lastClientFigures = [...figures.values()];
  const med = (v: number[]) => percentile(v, 50);
  const rows: Row[] = [];
  const [a, b] = CLIENTS.map((c) => figures.get(c)!);
  for (const f of [a, b]) {
    const each = (v: number[], d = 0, k = 1) => v.map((x) => round(x / k, d)).join(", ");
    rows.push(
      {
        id: `clients.${f.client}.rps`,
        benchmark: `Kafka client ${f.client}: framework run, median`,
        value: round(med(f.rps)),
        unit: "records/s",
        note: `rounds: ${each(f.rps)}`,
      },
      {
        id: `clients.${f.client}.cpu`,
        benchmark: `Kafka client ${f.client}: CPU per 1000 records, median`,
        value: round(med(f.cpuMsPer1k)),
        unit: "ms",
        note: `rounds: ${each(f.cpuMsPer1k)}`,
      },
      {
        id: `clients.${f.client}.rss_steady`,
        benchmark: `Kafka client ${f.client}: RSS during the run, median`,
        value: round(med(f.rssSteady) / 1e6, 1),
        unit: "MB",
        note: `rounds: ${each(f.rssSteady, 1, 1e6)}`,
      },
      {
        id: `clients.${f.client}.rss_peak`,
        benchmark: `Kafka client ${f.client}: RSS during the run, peak`,
        value: round(Math.max(...f.rssPeak) / 1e6, 1),
        unit: "MB",
        note: `rounds: ${each(f.rssPeak, 1, 1e6)}`,
      },
    );
  }
  return rows;
}

/** Figures of the last client comparison (for the side-by-side table). */
let lastClientFigures: ClientFigures[] | undefined;

/** The side-by-side table of `--compare-clients`: one column per client, medians of the rounds. */
export function formatClientTable(figures: ClientFigures[]): string {
  const med = (v: number[]) => percentile(v, 50);
  const lines: [string, (f: ClientFigures) => string, "low" | "high"][] = [
    ["records/s (median)", (f) => String(round(med(f.rps))), "high"],
    ["CPU ms / 1000 records (median)", (f) => String(round(med(f.cpuMsPer1k))), "low"],
    [
      "RSS steady, MB (median of run medians)",
      (f) => String(round(med(f.rssSteady) / 1e6, 1)),
      "low",
    ],
    [
      "RSS peak, MB (max over rounds)",
      (f) => String(round(Math.max(...f.rssPeak) / 1e6, 1)),
      "low",
    ],
  ];
  const head = ["Framework run", ...figures.map((f) => f.client), "Better"];
  const body = lines.map(([name, get, better]) => {
    const vals = figures.map(get);
    const nums = vals.map(Number);
    const best = better === "high" ? Math.max(...nums) : Math.min(...nums);
    const winner = nums.every((n) => n === best) ? "tie" : figures[nums.indexOf(best)].client;
    return [name, ...vals, winner];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((l) => l[i].length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [fmt(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(fmt)]
    .join("\n");
}

/** Formats rows as a Markdown table. */
export function formatTable(rows: Row[]): string {
  const head = ["Benchmark", "Result", "Target", "Met", "Notes"];
  const lines = rows.map((r) => [
    r.benchmark,
    `${r.value.toLocaleString("en-US")} ${r.unit}`,
    r.target ? `${r.target}${r.unit === "×" ? "" : ` ${r.unit}`}` : "",
    r.met === undefined ? "" : r.met ? "yes" : "**no**",
    r.note ?? "",
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i].length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
  return [fmt(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...lines.map(fmt)]
    .join("\n");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      quick: { type: "boolean", default: false },
      out: { type: "string", default: "bench-results.json" },
      only: { type: "string" },
      profile: { type: "string" },
      "v8-flags": { type: "string" },
      client: { type: "string" },
      "compare-clients": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    console.log(
      "Usage: deno task bench [--quick] [--out FILE] [--only NAME] [--profile DIR] [--v8-flags FLAGS] [--client kafkajs|platformatic] [--compare-clients]\n\n--client runs every sluice on that Kafka client (SLUICE_KAFKA_CLIENT); --compare-clients adds the framework run on each client, side by side (with --only client, only that).\nStarts Kafka and Ceph RGW (or reuses them when SLUICE_TEST_STATE is set), runs the benchmarks of the README's Benchmarks section, prints a table and writes FILE (default bench-results.json).",
    );
    return 0;
  }
  const sizes = values.quick ? QUICK : FULL;
  if (values["v8-flags"] === "none") sluiceDenoArgs = [NO_START_V8_FLAGS];
  else if (values["v8-flags"]) sluiceDenoArgs = [`--v8-flags=${values["v8-flags"]}`];
  if (values.profile !== undefined) {
    await Deno.mkdir(values.profile, { recursive: true });
    profileDir = await Deno.realPath(values.profile);
  }
  if (values.client !== undefined) {
    if (!(CLIENTS as readonly string[]).includes(values.client)) {
      console.error(`--client: expected one of ${CLIENTS.join(", ")}`);
      return 2;
    }
    // The harness passes it to every sluice it starts (tests/harness/sluice_process.ts).
    Deno.env.set("SLUICE_TEST_KAFKA_CLIENT", values.client);
  }
  let state: InfraState | undefined;
  let stopping = false;
  const cleanup = async () => {
    await Promise.all([...live].map((f) => f().catch(() => {})));
    live.clear();
    if (state) {
      const s = state;
      state = undefined;
      const left = await stopInfra(s);
      say(left > 0 ? `WARNING: ${left} infrastructure processes left` : "infrastructure stopped");
    }
  };
  const onSignal = (sig: Deno.Signal) => async () => {
    if (stopping) return;
    stopping = true;
    say(`${sig}: stopping`);
    await cleanup();
    Deno.exit(130);
  };
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const h = onSignal(sig);
    Deno.addSignalListener(sig, h);
    return () => Deno.removeSignalListener(sig, h);
  });

  const rows: Row[] = [];
  const failures: string[] = [];
  try {
    if (Deno.env.get("SLUICE_TEST_STATE")) {
      say(`using the running infrastructure of ${Deno.env.get("SLUICE_TEST_STATE")}`);
    } else {
      await ensureDebianPackages(say);
      say("starting Kafka and Ceph RGW");
      try {
        state = await startInfra(say);
      } catch (e) {
        if (state) console.error(logTails(state));
        throw e;
      }
      Deno.env.set("SLUICE_TEST_STATE", `${state.runDir}/state.json`);
    }
    const kafka = kafkaClient(infra().kafka.brokers);
    const scenarios: [string, () => Promise<Row[]>][] = [
      ["framework overhead", () => frameworkOverhead(kafka, sizes)],
      ["delivery", () => delivery(kafka, sizes)],
      ["graceful shutdown", () => shutdown(kafka, sizes)],
      ["latency", () => latency(kafka, sizes)],
      ["memory", () => Promise.resolve(memoryRows())],
      ["idle local mode", () => idleLocal(sizes)],
      ["idle Kafka mode", () => idleKafka(kafka, sizes)],
      ["audit throughput", () => auditThroughput(sizes)],
      ["per-record cost", () => perRecordCost(kafka, sizes)],
    ];
    if (values["compare-clients"]) {
      scenarios.push(["client comparison", () => clientComparison(kafka, sizes)]);
    }
    for (const [name, run] of scenarios) {
      if (values.only !== undefined && !name.includes(values.only)) continue;
      try {
        rows.push(...await run());
      } catch (e) {
        failures.push(`${name}: ${e instanceof Error ? e.message : e}`);
        say(`FAILED ${name}: ${e instanceof Error ? e.stack : e}`);
      }
    }
  } finally {
    await cleanup();
    handlers.forEach((off) => off());
  }
  // With --only, only the rows of the scenarios run are expected.
  const missing = values.only !== undefined
    ? []
    : ROW_IDS.filter((id) => !rows.some((r) => r.id === id));
  const result = {
    mode: values.quick ? "quick" : "full",
    date: new Date().toISOString(),
    seconds: round((Date.now() - t0) / 1000),
    machine: machine(),
    sizes,
    rows,
    clients: lastClientFigures,
    failures,
    missing,
  };
  await Deno.writeTextFile(values.out!, JSON.stringify(result, null, 2) + "\n");
  const m = result.machine;
  console.log(
    `\nsluice benchmarks (${result.mode}, ${result.seconds} s) on ${m.cpu}, ${m.cores} cores, ${m.memory_gib} GiB, ${m.os}, Deno ${m.deno}\n`,
  );
  console.log(formatTable(rows));
  if (lastClientFigures) {
    console.log(`\nKafka clients side by side (${sizes.framework} records per run):\n`);
    console.log(formatClientTable(lastClientFigures));
  }
  console.log(`\nwritten to ${values.out}`);
  for (const f of failures) console.log(`FAILED: ${f}`);
  return failures.length === 0 && missing.length === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main());
