/**
 * Graceful shutdown as one phased, observable protocol (README, Architecture,
 * netscope runbook §4 "Arrêt contrôlé"). SIGTERM, SIGINT and
 * `POST /control/shutdown` all end up in {@link runShutdown}.
 *
 * ```
 * stop_load ─▶ mark_not_ready ─▶ drain ─▶ close_consumer ─▶ flush_audit ─▶ stop_http
 *  (load gen,    (/health/ready   (finish     (commit, leave   (spool → S3,    (last: the
 *   replays)      → 503)           in-flight)  the group)       bounded)        status stays visible)
 * ```
 *
 * - Phases run one after the other, in the order given (use
 *   {@link canonicalPhases} for sluice's order).
 * - Each phase has its own deadline. Past it, the phase's `AbortSignal` is
 *   aborted, the phase is recorded as failed (`timedOut`), and the protocol
 *   moves on. A phase that throws is recorded as failed too. The protocol
 *   always reaches the last phase, so the audit is flushed even when the
 *   drain overran; the report is then not `clean`.
 * - Every phase logs its start and its end (duration, or timeout, or error)
 *   and sets `shutdown_phase_duration_seconds{phase}`.
 * - {@link shutdownStatus} (or the `status` option) tells listeners where the
 *   protocol is, so HTTP can answer "shutting down: phase drain (3/6)".
 *
 * @module
 */
import { logger } from "../actors/runtime/logger.ts";
import { shutdownPhaseDuration } from "../actors/runtime/metrics.ts";

const log = logger("shutdown");

/** sluice's shutdown phases, in the order they run. */
export const SHUTDOWN_PHASES = [
  "stop_load",
  "mark_not_ready",
  "drain",
  "close_consumer",
  "flush_audit",
  "stop_http",
] as const;

/** One of {@link SHUTDOWN_PHASES}. */
export type ShutdownPhaseName = (typeof SHUTDOWN_PHASES)[number];

/**
 * Default deadline of each canonical phase, in ms: the README's shutdown
 * table with the default configuration (`drain`, `close_consumer` and
 * `flush_audit` are `SLUICE_SHUTDOWN_DRAIN_MS`, `_COMMIT_MS` and `_FLUSH_MS`;
 * see {@link phaseDeadlines}). They add up to 37.25 s, under the 60 s of
 * `terminationGracePeriodSeconds` in `compose/k8s/deployment.yaml`.
 */
export const DEFAULT_PHASE_DEADLINES_MS: Readonly<Record<ShutdownPhaseName, number>> = {
  stop_load: 2_000,
  mark_not_ready: 250,
  drain: 15_000,
  close_consumer: 5_000,
  flush_audit: 10_000,
  stop_http: 5_000,
};

/** The deadline of each phase with the configured drain, commit and flush deadlines. */
export function phaseDeadlines(config: {
  shutdownDrainMs: number;
  shutdownCommitMs: number;
  shutdownFlushMs: number;
}): Record<ShutdownPhaseName, number> {
  return {
    ...DEFAULT_PHASE_DEADLINES_MS,
    drain: config.shutdownDrainMs,
    close_consumer: config.shutdownCommitMs,
    flush_audit: config.shutdownFlushMs,
  };
}

/** One step of the protocol. */
export interface ShutdownPhase {
  /** Metric label and log field; unique within one run. */
  name: string;
  /** Time the phase may take, in ms (finite, > 0). */
  deadlineMs: number;
  /** Does the work; should give up promptly once `signal` is aborted (the deadline passed). */
  run(signal: AbortSignal): Promise<void>;
}

/** How one phase went. */
export interface PhaseReport {
  /** The phase's name. */
  name: string;
  /** Duration in ms (the deadline when it timed out). */
  ms: number;
  /** Completed within its deadline without throwing. */
  ok: boolean;
  /** It was still running at its deadline (its signal was aborted). */
  timedOut: boolean;
  /** Why it failed: the thrown message, or the timeout. */
  error?: string;
}

/** Result of {@link runShutdown}. */
export interface ShutdownReport {
  /** Every phase completed: the only case where the process should exit 0. */
  clean: boolean;
  /** Total duration in ms. */
  ms: number;
  /** What started the shutdown (`SIGTERM`, `http`, ...), when given. */
  reason?: string;
  /** One report per phase, in the order they ran. */
  phases: PhaseReport[];
}

/** Where the protocol is; see {@link ShutdownStatus}. */
export type ShutdownSnapshot =
  | { state: "idle" }
  | {
    state: "running";
    reason?: string;
    /** The phase running now, its 1-based position and the number of phases. */
    phase: string;
    index: number;
    total: number;
    startedAt: string;
    /** Phases already finished. */
    done: PhaseReport[];
  }
  | { state: "done"; report: ShutdownReport };

/** Listener of {@link ShutdownStatus}. */
export type ShutdownListener = (snapshot: ShutdownSnapshot) => void;

/**
 * The observable state of the shutdown protocol. One per process
 * ({@link shutdownStatus}); tests make their own.
 */
export class ShutdownStatus {
  #snapshot: ShutdownSnapshot = { state: "idle" };
  #listeners = new Set<ShutdownListener>();
  /** The run in progress or finished: a second request joins it. */
  running?: Promise<ShutdownReport>;

  /** The current state. */
  get snapshot(): ShutdownSnapshot {
    return this.#snapshot;
  }

  /** Whether a shutdown has started (running or done). */
  get started(): boolean {
    return this.#snapshot.state !== "idle";
  }

  /** One line for humans: `running`, `shutting down: phase drain (3/6)`, `shut down (clean)`. */
  describe(): string {
    const s = this.#snapshot;
    if (s.state === "idle") return "running";
    if (s.state === "running") return `shutting down: phase ${s.phase} (${s.index}/${s.total})`;
    return `shut down (${s.report.clean ? "clean" : "not clean"})`;
  }

  /** Calls `listener` on every change; returns the function that removes it. */
  subscribe(listener: ShutdownListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sets the state and notifies listeners (used by {@link runShutdown}). */
  set(snapshot: ShutdownSnapshot): void {
    this.#snapshot = snapshot;
    for (const listener of this.#listeners) {
      try {
        listener(snapshot);
      } catch (e) {
        log.warn("shutdown listener failed", { error: e });
      }
    }
  }
}

/** The process-wide shutdown status (read by `/health/ready`, `/inspect`, the signal handlers). */
export const shutdownStatus: ShutdownStatus = new ShutdownStatus();

/** Options of {@link runShutdown}. */
export interface ShutdownOptions {
  /** Where to publish progress. Default {@link shutdownStatus}. */
  status?: ShutdownStatus;
  /** What started the shutdown, for logs and the report (`SIGTERM`, `http`). Default none. */
  reason?: string;
}

/**
 * Runs `phases` in order, each within its deadline, and resolves with the
 * report; it never rejects. Calling it again on the same `status` (a signal
 * after `POST /control/shutdown`, say) returns the first run's report
 * instead of starting another.
 *
 * @throws {TypeError} when phase names repeat or a deadline is not a positive finite number.
 */
export function runShutdown(
  phases: readonly ShutdownPhase[],
  opts: ShutdownOptions = {},
): Promise<ShutdownReport> {
  const status = opts.status ?? shutdownStatus;
  if (status.running) return status.running;
  const names = new Set<string>();
  for (const phase of phases) {
    if (names.has(phase.name)) throw new TypeError(`Duplicate shutdown phase: ${phase.name}`);
    names.add(phase.name);
    if (!(phase.deadlineMs > 0 && Number.isFinite(phase.deadlineMs))) {
      throw new TypeError(`Invalid deadline for shutdown phase ${phase.name}: ${phase.deadlineMs}`);
    }
  }
  status.running = run(phases, status, opts.reason);
  return status.running;
}

async function run(
  phases: readonly ShutdownPhase[],
  status: ShutdownStatus,
  reason: string | undefined,
): Promise<ShutdownReport> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const done: PhaseReport[] = [];
  log.info("shutdown started", { reason, phases: phases.map((p) => p.name) });
  for (const [i, phase] of phases.entries()) {
    status.set({
      state: "running",
      reason,
      phase: phase.name,
      index: i + 1,
      total: phases.length,
      startedAt,
      done: [...done],
    });
    done.push(await runPhase(phase, i + 1, phases.length));
  }
  const report: ShutdownReport = {
    clean: done.every((p) => p.ok),
    ms: Math.round(performance.now() - started),
    ...(reason === undefined ? {} : { reason }),
    phases: done,
  };
  const failed = done.filter((p) => !p.ok).map((p) => p.name);
  if (report.clean) log.info("shutdown completed", { clean: true, ms: report.ms });
  else log.warn("shutdown completed with failed phases", { clean: false, ms: report.ms, failed });
  status.set({ state: "done", report });
  return report;
}

async function runPhase(phase: ShutdownPhase, index: number, total: number): Promise<PhaseReport> {
  const { name, deadlineMs } = phase;
  log.info("shutdown phase started", { phase: name, index, total, deadlineMs });
  const controller = new AbortController();
  const started = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), deadlineMs);
  });
  // Never rejects: a phase failing after its deadline must not become an unhandled rejection.
  const work = Promise.resolve()
    .then(() => phase.run(controller.signal))
    .then(() => "ok" as const, (e) => e instanceof Error ? e : new Error(String(e)));
  const outcome = await Promise.race([work, deadline]);
  clearTimeout(timer);
  const ms = Math.round(performance.now() - started);
  shutdownPhaseDuration.set({ phase: name }, ms / 1000);
  if (outcome === "ok") {
    log.info("shutdown phase completed", { phase: name, ms });
    return { name, ms, ok: true, timedOut: false };
  }
  if (outcome === "timeout") {
    const error = `Shutdown phase ${name} exceeded its deadline of ${deadlineMs} ms`;
    controller.abort(new DOMException(error, "TimeoutError"));
    log.error("shutdown phase timed out", { phase: name, ms, deadlineMs });
    return { name, ms, ok: false, timedOut: true, error };
  }
  log.error("shutdown phase failed", { phase: name, ms, error: outcome });
  return { name, ms, ok: false, timedOut: false, error: outcome.message };
}

/** What a stage provides for one canonical phase. */
export interface PhaseImpl {
  /** The phase's work; see {@link ShutdownPhase.run}. */
  run(signal: AbortSignal): Promise<void>;
  /** Default from {@link DEFAULT_PHASE_DEADLINES_MS}. */
  deadlineMs?: number;
}

/**
 * sluice's phases in canonical order from what each stage provides. A phase
 * nobody provides still appears (it does nothing), so every shutdown logs
 * and measures the same six phases.
 */
export function canonicalPhases(
  impls: Partial<Record<ShutdownPhaseName, PhaseImpl>>,
): ShutdownPhase[] {
  return SHUTDOWN_PHASES.map((name) => {
    const impl = impls[name];
    return {
      name,
      deadlineMs: impl?.deadlineMs ?? DEFAULT_PHASE_DEADLINES_MS[name],
      run: impl ? (signal) => impl.run(signal) : () => Promise.resolve(),
    };
  });
}
