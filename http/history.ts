/**
 * The dashboard's memory: the server samples sluice once a second and keeps
 * the last {@link DEFAULT_KEEP_MS} (2 h) of samples, and every period the
 * breaker was open or half-open, the pipeline drained by an operator,
 * paused by backpressure, not ready, or the audit trail behind. A page
 * opened after an incident (`GET /dashboard/history`) draws it.
 *
 * Breaker periods come from the `circuit.changed` events (exact to the
 * millisecond, even for a half-open probe shorter than a sample); the others
 * from the per-second samples. Memory: a sample is about 200 bytes, so two
 * hours (7,200 samples) is about 1.5 MB; periods are capped at
 * {@link MAX_PERIODS} (the oldest closed ones go first).
 *
 * Health, as the dashboard shows it ({@link healthOf}): `not_ready` when
 * `/health/ready` fails; `degraded` when ready but the breaker is not closed
 * or the audit trail is behind (degraded, backpressure, or its oldest event
 * waiting more than {@link AUDIT_BEHIND_S} s); else `ready`. `/health/ready`
 * itself is unchanged (an open breaker must not take the pod out of
 * service).
 *
 * @module
 */
import type { Registry } from "prom-client";
import { subscribeEvents } from "../actors/runtime/events.ts";
import { DashboardSampler } from "./dashboard_page.ts";
import type { ReadyReport, StatusSummary } from "./deps.ts";
import { Ring } from "./ring.ts";

/** Samples kept by default: two hours (the issue asks for at least one). */
export const DEFAULT_KEEP_MS = 2 * 3600_000;
/** Periods kept at most. */
export const MAX_PERIODS = 2000;
/** The audit trail counts as behind when its oldest pending event is older than this (s). */
export const AUDIT_BEHIND_S = 30;

/** One per-second sample. Rates are per second over the last sample interval. */
export interface HistorySample {
  /** Epoch ms. */
  t: number;
  delivered: number;
  dead_lettered: number;
  skipped_duplicate: number;
  /** `errors_total` (every kind), per second. */
  errors: number;
  /** Upstream latency p95 over the interval (ms), null when no request finished. */
  p95: number | null;
  /** Sum of `kafka_consumer_lag` over the assigned partitions (records). */
  lag: number | null;
  /** Audit events not yet in the store. */
  audit_backlog: number | null;
  inflight: number;
  circuit: string;
  health: Health;
}

/** What the dashboard shows as readiness. */
export type Health = "ready" | "degraded" | "not_ready";

/** Kinds of periods. */
export type PeriodKind =
  | "breaker_open"
  | "breaker_half_open"
  | "drained"
  | "backpressure"
  | "not_ready"
  | "audit_behind";

/** One period; `to` null while it lasts. */
export interface HistoryPeriod {
  kind: PeriodKind;
  from: number;
  to: number | null;
  detail?: string;
}

/** Answer of `GET /dashboard/history`. */
export interface HistorySnapshot {
  now: number;
  interval_ms: number;
  keep_ms: number;
  samples: HistorySample[];
  periods: HistoryPeriod[];
}

/** Readiness as the dashboard shows it, with the reasons in words. */
export function healthOf(
  status: Partial<StatusSummary>,
  ready: ReadyReport,
): { health: Health; reasons: string[] } {
  if (!ready.ready) {
    const failing = Object.entries(ready.checks).filter(([, c]) => !c.ok);
    return {
      health: "not_ready",
      reasons: failing.map(([k, c]) => (c.detail ? `${k}: ${c.detail}` : k)),
    };
  }
  const reasons: string[] = [];
  if (status.circuit === "open") reasons.push("circuit breaker open");
  if (status.circuit === "halfOpen") reasons.push("circuit breaker half-open (probing)");
  const behind = auditBehind(status);
  if (behind) reasons.push(behind);
  return { health: reasons.length ? "degraded" : "ready", reasons };
}

function auditBehind(status: Partial<StatusSummary>): string | undefined {
  const a = status.audit as
    | { degraded?: boolean; backpressure?: boolean; oldestPendingAgeS?: number | null }
    | undefined;
  if (!a) return undefined;
  if (a.degraded) return "audit trail degraded (uploads failing)";
  if (typeof a.oldestPendingAgeS === "number" && a.oldestPendingAgeS > AUDIT_BEHIND_S) {
    return `audit trail behind (oldest event waiting ${Math.round(a.oldestPendingAgeS)} s)`;
  }
  return undefined;
}

/** What a sample reads. */
export interface HistorySources {
  metrics: Registry;
  status(): StatusSummary | Promise<StatusSummary>;
  ready(): ReadyReport;
}

/** Options of {@link DashboardHistory}. */
export interface HistoryOptions {
  /** Sampling period (ms); default 1000. */
  intervalMs?: number;
  /** How long samples are kept (ms); default {@link DEFAULT_KEEP_MS}. */
  keepMs?: number;
  /** Clock; default `Date.now`. */
  now?: () => number;
}

/** Per-second samples and incident periods, kept server-side. */
export class DashboardHistory {
  #samples: Ring<HistorySample>;
  #periods: HistoryPeriod[] = [];
  #open = new Map<PeriodKind, HistoryPeriod>();
  #sampler: DashboardSampler;
  #timer: ReturnType<typeof setInterval> | undefined;
  #unsubscribe: (() => void) | undefined;
  #chain: Promise<void> = Promise.resolve();
  #busy = 0;
  readonly intervalMs: number;
  readonly keepMs: number;
  readonly #now: () => number;

  constructor(private readonly sources: HistorySources, opts: HistoryOptions = {}) {
    this.intervalMs = opts.intervalMs ?? 1000;
    this.keepMs = opts.keepMs ?? DEFAULT_KEEP_MS;
    this.#now = opts.now ?? Date.now;
    this.#samples = new Ring(Math.ceil(this.keepMs / this.intervalMs) + 1);
    this.#sampler = new DashboardSampler(sources.metrics, {
      windowMs: this.intervalMs,
      minIntervalMs: 0,
      keepMs: this.intervalMs * 4,
    });
  }

  /** Starts sampling (and following breaker events). Idempotent. */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#unsubscribe = subscribeEvents((e) => {
      const to = String(e.data.to);
      const at = Date.parse(e.timestamp) || this.#now();
      this.#flag("breaker_open", to === "open", at);
      this.#flag("breaker_half_open", to === "halfOpen", at);
    }, { types: ["circuit.changed"] });
    void this.tick();
    // A tick still running (slow status) makes the timer skip one, not pile up.
    this.#timer = setInterval(() => this.#busy === 0 && void this.tick(), this.intervalMs);
  }

  /** Stops sampling. Idempotent. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  /** Takes one sample, after any sample in progress (the timer calls it; tests too). */
  tick(): Promise<void> {
    this.#busy++;
    this.#chain = this.#chain.then(() => this.#sample()).finally(() => this.#busy--);
    return this.#chain;
  }

  async #sample(): Promise<void> {
    try {
      const [m, status] = await Promise.all([
        this.#sampler.data(),
        Promise.resolve(this.sources.status()),
      ]);
      let ready: ReadyReport;
      try {
        ready = this.sources.ready();
      } catch (e) {
        ready = {
          ready: false,
          checks: {
            ready_probe: { ok: false, detail: e instanceof Error ? e.message : String(e) },
          },
        };
      }
      const t = this.#now();
      const { health, reasons } = healthOf(status, ready);
      const errors = Object.entries(m.gauge_rates ?? {})
        .filter(([k]) => k.startsWith("errors_total"))
        .reduce((a, [, v]) => a + v, 0);
      const parts = status.partitions ?? [];
      const lags = parts.map((p) => p.lag).filter((l): l is number => typeof l === "number");
      const audit = status.audit as { backlogEvents?: number } | undefined;
      this.#samples.push({
        t,
        delivered: m.throughput.delivered ?? 0,
        dead_lettered: m.throughput.dead_lettered ?? 0,
        skipped_duplicate: m.throughput.skipped_duplicate ?? 0,
        errors: Math.round(errors * 10) / 10,
        p95: m.latency.p95,
        lag: lags.length ? lags.reduce((a, b) => a + b, 0) : null,
        audit_backlog: typeof audit?.backlogEvents === "number" ? audit.backlogEvents : null,
        inflight: m.gauges.inflight_requests ?? 0,
        circuit: String(status.circuit ?? "unknown"),
        health,
      });
      const pauses = (status.pause_reasons as string[] | undefined) ?? [];
      // Breaker periods follow the events (exact); a sample corrects a missed one.
      if (
        status.circuit === "open" || status.circuit === "closed" || status.circuit === "halfOpen"
      ) {
        this.#flag("breaker_open", status.circuit === "open", t);
        this.#flag("breaker_half_open", status.circuit === "halfOpen", t);
      }
      this.#flag("drained", pauses.includes("operator"), t);
      this.#flag("backpressure", pauses.includes("backpressure"), t);
      this.#flag("not_ready", health === "not_ready", t, reasons.join("; "));
      const behind = reasons.find((r) => r.startsWith("audit trail"));
      this.#flag("audit_behind", behind !== undefined, t, behind);
    } catch {
      // A failed sample is a gap in the chart, not a crash.
    }
  }

  #flag(kind: PeriodKind, active: boolean, at: number, detail?: string): void {
    const open = this.#open.get(kind);
    if (active && !open) {
      const p: HistoryPeriod = { kind, from: at, to: null, ...(detail ? { detail } : {}) };
      this.#open.set(kind, p);
      this.#periods.push(p);
      if (this.#periods.length > MAX_PERIODS) {
        const i = this.#periods.findIndex((x) => x.to !== null);
        this.#periods.splice(i >= 0 ? i : 0, 1);
      }
    } else if (!active && open) {
      open.to = at;
      this.#open.delete(kind);
    }
  }

  /** Samples newer than `sinceMs` (all when absent) and every period that overlaps them. */
  snapshot(sinceMs?: number): HistorySnapshot {
    const now = this.#now();
    const oldest = now - this.keepMs;
    const samples = this.#samples.toArray().filter((s) =>
      s.t >= oldest && (sinceMs === undefined || s.t > sinceMs)
    );
    const periods = this.#periods.filter((p) => p.to === null || p.to >= oldest)
      .map((p) => ({ ...p }));
    return { now, interval_ms: this.intervalMs, keep_ms: this.keepMs, samples, periods };
  }
}
