/**
 * The process and runtime metrics of `/metrics` (prom-client's default set:
 * `process_*`, `nodejs_*`), with the event-loop lag measured by sluice
 * itself, so that a scrape costs well under a millisecond.
 *
 * ```ts
 * registerRuntimeMetrics(registry);
 * ```
 *
 * Why not `collectDefaultMetrics`: under Deno its event-loop collector
 * (`perf_hooks.monitorEventLoopDelay`) made each scrape compute the mean,
 * standard deviation and three percentiles over every delay recorded since
 * the previous scrape, and wait for a `setImmediate`; measured in the
 * framework benchmark (README, Benchmarks) it was two thirds of the CPU of
 * every scrape. The memory and open-descriptor gauges are sluice's too
 * ({@link processMemory}, {@link openFileDescriptors}: same names, help and
 * values, read through Deno instead of Node's `fs`; measured on a scrape
 * 300 ms after the last, with 105 descriptors open: 0.75 ms for
 * prom-client's two collectors against 0.28 ms), and so are the CPU
 * counters ({@link processCpu}: prom-client's file loads OpenTelemetry's API).
 * Every other default collector is prom-client's own, registered one by one.
 *
 * **Event-loop lag here.** A timer armed every {@link LAG_INTERVAL_MS} ms
 * measures how late it fires; the delays since the last scrape (at most
 * {@link LAG_SAMPLES} kept) give `nodejs_eventloop_lag_{min,max,mean,
 * stddev,p50,p90,p99}_seconds`, and the last one
 * `nodejs_eventloop_lag_seconds`. Same names, units and help as
 * prom-client's; the resolution is {@link LAG_INTERVAL_MS} ms instead of 10
 * (the idle process wakes 10 times a second for it, not 100). With no
 * sample since the last scrape the gauges keep their values.
 *
 * @module
 */
import process from "node:process";
import type { Registry } from "prom-client";
import client from "./prom.ts";
import processStartTime from "prom-client/lib/metrics/processStartTime.js";
import processMaxFileDescriptors from "prom-client/lib/metrics/processMaxFileDescriptors.js";
import processResources from "prom-client/lib/metrics/processResources.js";
import processHandles from "prom-client/lib/metrics/processHandles.js";
import processRequests from "prom-client/lib/metrics/processRequests.js";
import heapSizeAndUsed from "prom-client/lib/metrics/heapSizeAndUsed.js";
import heapSpacesSizeAndUsed from "prom-client/lib/metrics/heapSpacesSizeAndUsed.js";
import version from "prom-client/lib/metrics/version.js";
import gc from "prom-client/lib/metrics/gc.js";

/** Period of the event-loop lag timer (ms). */
export const LAG_INTERVAL_MS = 100;
/** Delays kept between two scrapes, at most (the newest). */
export const LAG_SAMPLES = 1024;

type Collector = (registry: Registry, config: Record<string, unknown>) => void;

/** Registers the runtime metrics on `registry` (see the module doc). Once per registry. */
export function registerRuntimeMetrics(registry: Registry): void {
  const config = { register: registry };
  for (
    const collect of [
      processStartTime,
      processMaxFileDescriptors,
      processResources,
      processHandles,
      processRequests,
      heapSizeAndUsed,
      heapSpacesSizeAndUsed,
      version,
      gc,
    ] as Collector[]
  ) collect(registry, config);
  processCpu(registry);
  processMemory(registry);
  openFileDescriptors(registry);
  eventLoopLag(registry);
}

/**
 * `process_cpu_user_seconds_total`, `process_cpu_system_seconds_total` and
 * `process_cpu_seconds_total`: prom-client's names and help, from
 * `process.cpuUsage()` as prom-client's collector. Its file loads
 * OpenTelemetry's API (for exemplars, which sluice does not use); and where it
 * counts from its registration, these count the process's CPU since it
 * started, as Prometheus's own client libraries do.
 */
export function processCpu(registry: Registry): void {
  const registers = [registry];
  let last = { user: 0, system: 0 };
  // Registered first: its collect sets the two others.
  new client.Counter({
    name: "process_cpu_user_seconds_total",
    help: "Total user CPU time spent in seconds.",
    registers,
    collect() {
      const now = process.cpuUsage();
      const user = Math.max(0, now.user - last.user) / 1e6;
      const system = Math.max(0, now.system - last.system) / 1e6;
      last = now;
      this.inc(user);
      systemSeconds.inc(system);
      total.inc(user + system);
    },
  });
  const systemSeconds = new client.Counter({
    name: "process_cpu_system_seconds_total",
    help: "Total system CPU time spent in seconds.",
    registers,
  });
  const total = new client.Counter({
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
    registers,
  });
}

/**
 * `process_resident_memory_bytes`, `process_virtual_memory_bytes` and
 * `process_heap_bytes`: prom-client's names, help and values (`VmRSS`,
 * `VmSize`, `VmData` of `/proc/self/status`), read with one Deno call and
 * three `indexOf`s instead of prom-client's Node `fs` read and line split.
 * Elsewhere than Linux, the resident memory alone, from `Deno.memoryUsage()`
 * (as prom-client).
 */
export function processMemory(registry: Registry): void {
  const registers = [registry];
  if (Deno.build.os !== "linux") {
    new client.Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident memory size in bytes.",
      registers,
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
    return;
  }
  // Registered first: its collect sets the two others.
  new client.Gauge({
    name: "process_resident_memory_bytes",
    help: "Resident memory size in bytes.",
    registers,
    collect() {
      let status: string;
      try {
        status = Deno.readTextFileSync("/proc/self/status");
      } catch {
        return;
      }
      const kib = (field: string) => {
        const at = status.indexOf(`\n${field}:`);
        return at < 0 ? NaN : parseInt(status.slice(at + field.length + 2, at + field.length + 40));
      };
      const rss = kib("VmRSS"), size = kib("VmSize"), data = kib("VmData");
      if (rss >= 0) this.set(rss * 1024);
      if (size >= 0) virtual.set(size * 1024);
      if (data >= 0) heap.set(data * 1024);
    },
  });
  const virtual = new client.Gauge({
    name: "process_virtual_memory_bytes",
    help: "Virtual memory size in bytes.",
    registers,
  });
  const heap = new client.Gauge({
    name: "process_heap_bytes",
    help: "Process heap size in bytes.",
    registers,
  });
}

/**
 * `process_open_fds` (Linux only, as prom-client's): the size Linux gives
 * `/proc/self/fd` in `stat` (the number of open descriptors, since Linux
 * 6.2), else the directory's entries counted as prom-client does. One
 * `stat` costs the same whatever the number of sockets open; listing the
 * directory built one entry per descriptor at every scrape.
 */
export function openFileDescriptors(registry: Registry): void {
  if (Deno.build.os !== "linux") return;
  new client.Gauge({
    name: "process_open_fds",
    help: "Number of open file descriptors.",
    registers: [registry],
    collect() {
      try {
        const size = Deno.statSync("/proc/self/fd").size;
        if (size > 0) return this.set(size);
        let n = 0;
        for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
        this.set(n - 1); // the descriptor that listed the directory
      } catch {
        // No /proc: no value, as prom-client.
      }
    },
  });
}

function eventLoopLag(registry: Registry): void {
  const delays = new Float64Array(LAG_SAMPLES);
  let n = 0;
  let last = 0;
  let due = performance.now() + LAG_INTERVAL_MS;
  const tick = () => {
    const now = performance.now();
    last = Math.max(0, now - due) / 1000;
    delays[n % LAG_SAMPLES] = last;
    n++;
    due = now + LAG_INTERVAL_MS;
    Deno.unrefTimer(setTimeout(tick, LAG_INTERVAL_MS));
  };
  Deno.unrefTimer(setTimeout(tick, LAG_INTERVAL_MS));

  const gauge = (name: string, help: string) =>
    new client.Gauge({ name, help, registers: [registry] });
  // Registered first: its collect sets every gauge below, then forgets the
  // delays (as prom-client's histogram reset does).
  new client.Gauge({
    name: "nodejs_eventloop_lag_seconds",
    help: "Lag of event loop in seconds.",
    registers: [registry],
    collect() {
      this.set(last);
      const k = Math.min(n, LAG_SAMPLES);
      if (k === 0) return;
      const s = delays.slice(0, k).sort();
      let sum = 0;
      for (const v of s) sum += v;
      const m = sum / k;
      let sq = 0;
      for (const v of s) sq += (v - m) ** 2;
      const at = (q: number) => s[Math.min(k - 1, Math.floor(q * k))];
      min.set(s[0]);
      max.set(s[k - 1]);
      mean.set(m);
      stddev.set(Math.sqrt(sq / k));
      p50.set(at(0.5));
      p90.set(at(0.9));
      p99.set(at(0.99));
      n = 0;
    },
  });
  const min = gauge("nodejs_eventloop_lag_min_seconds", "The minimum recorded event loop delay.");
  const max = gauge("nodejs_eventloop_lag_max_seconds", "The maximum recorded event loop delay.");
  const mean = gauge(
    "nodejs_eventloop_lag_mean_seconds",
    "The mean of the recorded event loop delays.",
  );
  const stddev = gauge(
    "nodejs_eventloop_lag_stddev_seconds",
    "The standard deviation of the recorded event loop delays.",
  );
  const p50 = gauge(
    "nodejs_eventloop_lag_p50_seconds",
    "The 50th percentile of the recorded event loop delays.",
  );
  const p90 = gauge(
    "nodejs_eventloop_lag_p90_seconds",
    "The 90th percentile of the recorded event loop delays.",
  );
  const p99 = gauge(
    "nodejs_eventloop_lag_p99_seconds",
    "The 99th percentile of the recorded event loop delays.",
  );
}
