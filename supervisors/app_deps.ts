/**
 * What the HTTP app (http/) sees of a running sluice: readiness, `/status`,
 * the control, load, replay, dead-letter and audit-trace operations. Each
 * reads the live values of the tree's children from their slots
 * (supervisors/tree.ts), so it follows restarts; before a child first
 * started, its operations answer 503 `not_ready`.
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };
import { buildReport } from "../actors/audit/report.ts";
import { logger } from "../actors/runtime/logger.ts";
import { registry } from "../actors/runtime/metrics.ts";
import { ConflictError, UnavailableError } from "../actors/runtime/errors.ts";
import type { AppDeps, ReadyCheck, StatusSummary } from "../http/deps.ts";
import type { Env } from "./children.ts";
import type { ShutdownStatus } from "./shutdown.ts";
import type { Slot, Slots } from "./slots.ts";

const log = logger("sluice");

/** The process-level state the app reports and acts on. */
export interface Lifecycle {
  /** When sluice started (epoch ms). */
  started: number;
  shutdown: ShutdownStatus;
  /** True once the shutdown marked sluice not ready. */
  shuttingDown(): boolean;
  /** Starts the graceful shutdown (`POST /control/shutdown`). */
  requestShutdown(reason: string): void;
}

function need<T>(slot: Slot<T>, message: string): T {
  const v = slot.peek();
  if (v === undefined) throw new UnavailableError("not_ready", message);
  return v;
}

/** The app's dependencies over the tree's slots. */
export function appDeps({ config, parts }: Env, s: Slots, life: Lifecycle): AppDeps {
  const { described, sim, logClient } = parts;
  const ready = (): ReturnType<AppDeps["ready"]> => {
    const pipeline = s.consumer.peek()?.pipeline;
    const stalled = s.stalls.reason(pipeline);
    const health = parts.logHealth();
    const uploader = s.audit.peek()?.uploader;
    const up = uploader?.ready();
    const checks: Record<string, ReadyCheck> = {
      kafka: health.ok ? { ok: true, detail: described.log } : { ok: false, detail: health.detail },
      s3: !up
        ? { ok: false, detail: "audit uploader not started" }
        : up.ready
        ? { ok: true, detail: described.audit }
        : { ok: false, detail: up.reason },
      metrics: { ok: true },
      pipeline: stalled
        ? { ok: false, detail: `stalled, restarting: ${stalled}` }
        : pipeline?.joined
        ? { ok: true }
        : { ok: false, detail: "consumer has not joined its group yet" },
      shutting_down: life.shuttingDown()
        ? { ok: false, detail: life.shutdown.describe() }
        : { ok: true },
    };
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  };

  const status = (): StatusSummary => {
    const pipeline = s.consumer.peek()?.pipeline;
    const res = s.resilience.peek();
    const audit = s.audit.peek();
    return {
      state: life.shuttingDown()
        ? "shutting_down"
        : pipeline?.pauseReasons().includes("operator")
        ? "drained"
        : "running",
      version: denoJson.version,
      mode: logClient.kind === "embedded" || !config.s3Endpoint || sim ? "local" : "kafka",
      parts: described,
      uptime_s: Math.round((Date.now() - life.started) / 1000),
      rate: res
        ? { rate: res.limiter.status().rate, burst: res.limiter.status().burst }
        : undefined,
      flow: res ? (res.flow ? res.flow.status() : { adaptive: false }) : undefined,
      circuit: res?.breaker.state,
      pause_reasons: pipeline?.pauseReasons() ?? [],
      watchdog: {
        stalled: s.stalls.reason(pipeline) !== null,
        stalls: s.stalls.count,
        last_stall: s.stalls.last,
      },
      partitions: pipeline?.status().map((p) => ({ ...p, lag: p.lag })) ?? [],
      audit: audit
        ? { ...audit.uploader.status(), topic: audit.topic, writer: audit.writer.status() }
        : undefined,
      load: s.load.peek()?.stats(),
      upstream_sim: sim?.behaviour(),
      shutdown: life.shutdown.describe(),
    };
  };

  const notShuttingDown = () => {
    if (life.shuttingDown()) throw new ConflictError("shutting_down", "Sluice is shutting down");
  };
  const replays = () => need(s.replay, "Replay driver not started").manager;
  const dlq = () => need(s.replay, "Dead-letter store not started").deadLetters;
  return {
    ready,
    metrics: registry,
    controlToken: config.controlToken,
    allowedOrigins: config.allowedOrigins,
    control: {
      drain() {
        notShuttingDown();
        s.consumer.peek()?.pipeline.pause("operator");
      },
      resume() {
        notShuttingDown();
        s.consumer.peek()?.pipeline.resume("operator");
      },
      shutdown() {
        life.requestShutdown("POST /control/shutdown");
      },
      setRate({ rate, burst }) {
        const limiter = need(s.resilience, "Rate limiter not started").limiter;
        limiter.setRate(rate, burst);
        const st = limiter.status();
        return { rate: st.rate, burst: st.burst };
      },
      status,
    },
    load: sim || logClient.kind === "embedded"
      ? {
        setRate({ rate }) {
          const load = need(s.load, "Load generator not running");
          load.setRate(rate);
          return { rate: load.stats().rate };
        },
      }
      : undefined,
    upstreamSim: sim
      ? {
        set(change) {
          const b = sim.setBehaviour(change);
          log.warn("simulated upstream behaviour changed over HTTP", { ...b });
          return { ...b };
        },
      }
      : undefined,
    replay: {
      start: (req) => replays().start(req),
      get: (id) => replays().get(id),
      cancel: (id) => replays().cancel(id),
    },
    audit: {
      async trace({ traceId, from, to }) {
        const r = await buildReport(parts.store, {
          from: new Date(from),
          to: new Date(to),
          prefix: config.auditPrefix,
          traceId,
        });
        return { store: r.store, objects: r.objects, ...r.trace };
      },
    },
    dlq: {
      list: (query) => dlq().list(query),
      replay: (id) => dlq().replay(id),
      replayBulk: (req) => dlq().replayBulk(req),
    },
  };
}
