/**
 * A running sluice: choose the parts, build the tree, start it, shut it down.
 *
 * The tree (every child, its strategy, restart limit and shutdown deadline)
 * is `supervisors/tree.ts`; how each child starts and stops,
 * `supervisors/children.ts`; what HTTP sees of it, `supervisors/app_deps.ts`.
 * The graceful shutdown (SIGTERM, SIGINT, `POST /control/shutdown`) is the
 * tree's ordered stop in six phases, each with its own deadline, log line and
 * `shutdown_phase_duration_seconds{phase}` (README, "Architecture"):
 *
 * 1. `stop_load`: load generator and replays stop;
 * 2. `mark_not_ready`: `/health/ready` answers 503;
 * 3. `drain`: no new record starts; in-flight records finish, offsets commit;
 * 4. `close_consumer`: the consumer leaves the group, producers close;
 * 5. `flush_audit`: what waits in the audit topic is uploaded (bounded; what
 *    is left stays in the topic, where any instance uploads it);
 * 6. `stop_http`: the rest of the tree stops, HTTP last.
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };
import { configureLog, flushRepeatedLogs, logFormat, logger } from "../actors/runtime/logger.ts";
import { appDeps } from "./app_deps.ts";
import v8 from "node:v8";
import { type Config, controlTokenWarning, memoryBudgetWarning } from "./config.ts";
import { lockDataDir } from "./data_dir_lock.ts";
import { chooseParts, type PartsDescription } from "./parts.ts";
import { runShutdown, type ShutdownReport, ShutdownStatus } from "./shutdown.ts";
import { exitCodeFor, installSignalHandlers } from "./signals.ts";
import type { Supervisor } from "./supervisor.ts";
import { newSlots } from "./slots.ts";
import { shutdownPhases, startTree } from "./tree.ts";

const log = logger("sluice");

/** A running sluice. */
export interface Sluice {
  /** Port of the HTTP server. */
  readonly port: number;
  /** What each part is (`local` parts when embedded). */
  readonly parts: PartsDescription;
  /** Runs the graceful shutdown once (later calls return the same report). */
  shutdown(reason: string): Promise<ShutdownReport>;
  /** Resolves with the exit code: after a shutdown, or when the tree gave up. */
  readonly exited: Promise<number>;
  readonly supervisor: Supervisor;
}

/** Options of {@link startSluice} (tests). */
export interface StartOptions {
  /** Load generator rate in local mode (records/s); default 20. */
  loadRate?: number;
}

/** Starts every part of sluice under its supervision tree. */
export async function startSluice(config: Config, opts: StartOptions = {}): Promise<Sluice> {
  const started = Date.now();
  const shutdownStatus = new ShutdownStatus();
  const exited = Promise.withResolvers<number>();
  let shuttingDown = false;
  let shutdownRun: Promise<ShutdownReport> | undefined;
  // Choose the parts (an invalid payload schema is exit 2, before anything starts) ...
  const parts = await chooseParts(config, opts.loadRate ?? 20);
  // ... then, before any child touches the data directory: one sluice per directory.
  let dataDirLock;
  try {
    dataDirLock = lockDataDir(config.dataDir);
  } catch (e) {
    await parts.close(500);
    throw e;
  }
  exited.promise.finally(() => dataDirLock.release());
  const env = { config, parts };

  // Build and start the tree.
  const slots = newSlots();
  const deps = appDeps(env, slots, {
    started,
    shutdown: shutdownStatus,
    shuttingDown: () => shuttingDown,
    requestShutdown: (reason) => void sluice.shutdown(reason),
  });
  let supervisor: Supervisor;
  try {
    supervisor = await startTree(env, slots, deps);
  } catch (e) {
    dataDirLock.release();
    await parts.close(500);
    throw e;
  }

  // Shut down: the tree's ordered stop, in phases.
  const sluice: Sluice = {
    port: slots.server.get().port,
    parts: parts.described,
    supervisor,
    exited: exited.promise,
    shutdown(reason) {
      shutdownRun ??= (async () => {
        shuttingDown = true;
        log.info("graceful shutdown", { reason });
        const phases = shutdownPhases(env, supervisor, slots, () => (shuttingDown = true));
        const report = await runShutdown(phases, { status: shutdownStatus, reason });
        log.info("shutdown complete", { clean: report.clean, ms: report.ms });
        exited.resolve(exitCodeFor(report));
        return report;
      })();
      return shutdownRun;
    },
  };
  supervisor.exited.then(async (exit) => {
    if (shutdownRun) return;
    const reason = exit.reason instanceof Error ? exit.reason.message : exit.reason;
    log.error("supervisor tree stopped", { reason });
    await parts.close();
    exited.resolve(exit.reason instanceof Error ? 1 : 0);
  });
  return sluice;
}

/** `sluice start`: runs until a signal or `POST /control/shutdown`; returns the exit code. */
export async function runSluice(config: Config): Promise<number> {
  configureLog({ level: config.logLevel, format: config.logFormat });
  const weak = controlTokenWarning(config.controlToken);
  if (weak) log.warn(weak);
  const heapLimitMb = v8.getHeapStatistics().heap_size_limit / 2 ** 20;
  const tight = memoryBudgetWarning(config.memoryBudgetMb, heapLimitMb);
  if (tight) log.warn(tight);
  const sluice = await startSluice(config);
  const signals = installSignalHandlers((s) => sluice.shutdown(s), {
    exit: (code) => Deno.exit(code),
  });
  const base = `http://${
    config.httpHost === "0.0.0.0" ? "127.0.0.1" : config.httpHost
  }:${sluice.port}`;
  const info = {
    version: denoJson.version,
    pid: Deno.pid,
    ...sluice.parts,
    dashboard: `${base}/`,
    inspector: `${base}/inspect`,
    stop: `Ctrl-C, or kill -TERM ${Deno.pid}`,
  };
  if (logFormat() === "json") {
    // A log collector reads JSON lines: the banner is one of them.
    log.info("sluice is running", info);
  } else {
    const banner = [
      "",
      `sluice ${denoJson.version} is running (pid ${Deno.pid})`,
      `  log:       ${sluice.parts.log}`,
      `  audit:     ${sluice.parts.audit}`,
      `  upstream:  ${sluice.parts.upstream}`,
      ...(sluice.parts.load
        ? [`  load:      ${sluice.parts.load} (change: PUT ${base}/control/load)`]
        : []),
      `  dashboard: ${base}/`,
      `  inspector: ${base}/inspect`,
      `  metrics:   ${base}/metrics    ready: ${base}/health/ready`,
      config.controlToken
        ? `  control:   ${base}/control/* (bearer token required)`
        : `  control:   ${base}/control/* (no SLUICE_CONTROL_TOKEN: loopback clients only)`,
      `  stop:      Ctrl-C, or kill -TERM ${Deno.pid} (ordered shutdown, exit 0 when clean;`,
      `             the same signal again after 1 s forces exit 3)`,
      "",
    ].join("\n");
    console.error(banner);
  }
  const code = await sluice.exited;
  signals.remove();
  flushRepeatedLogs();
  return code;
}
