/**
 * The dashboard (`GET /`) and its data (`GET /dashboard/data`).
 *
 * The page is one self-contained HTML string (no build step, no CDN,
 * vanilla JS), made to be read at 3 a.m.: a banner saying what is wrong
 * (not ready and why, circuit open, audit degraded, upstream pause), big
 * numbers for throughput by outcome, latency percentiles, the circuit state
 * and the flow control (effective rate, ceiling, in-flight limit), a
 * throughput chart drawn from the server's memory (`/dashboard/history`,
 * http/history.ts: a page opened after an incident shows it) with a UTC
 * time axis and the breaker, drain and not-ready periods shaded, lag per
 * partition, the audit trail, the local-mode controls (load generator rate,
 * simulated upstream error rate, latency and hang) and the latest events of
 * `/ws/events`. It polls `/dashboard/data` every second and follows
 * `/ws/events` live; data goes in with `textContent` only. Every time on
 * the page is UTC, and says so. Readiness shows `DEGRADED` while the breaker
 * is not closed or the audit trail is behind. Numbers a person reads as
 * "now" are rates (records/s, errors/s, retries/s), not counters since start.
 * It fits a 390 px phone: no horizontal scroll (wide tables scroll inside
 * their panel).
 *
 * `/dashboard/data` is computed by {@link DashboardSampler} from the metrics
 * registry: records/s by outcome and p50/p95/p99 of
 * `request_latency_seconds` over the last few seconds (from the difference
 * of two samples of the counters and histogram buckets, interpolated within
 * a bucket like PromQL's `histogram_quantile`), next to `GET /status`.
 *
 * @module
 */
import type { Registry } from "prom-client";

/** Percentiles in milliseconds; null when no request finished in the window. */
export interface Percentiles {
  p50: number | null;
  p95: number | null;
  p99: number | null;
  /** Requests the percentiles are computed from. */
  count: number;
}

/** The metric part of `GET /dashboard/data`. */
export interface DashboardMetrics {
  /** Time of the newest sample (ISO 8601). */
  at: string;
  /** Seconds between the two samples the rates come from (0: first sample, no rates yet). */
  window_s: number;
  /** Records per second by outcome over the window. */
  throughput: Record<string, number>;
  /** `requests_total` by outcome since start. */
  totals: Record<string, number>;
  /** Latency over the window (ms). */
  latency: Percentiles;
  /** Latency since start (ms). */
  latency_all: Percentiles;
  /** Other counters and gauges: `errors_total{kind}`, `retries_total`, `inflight_requests`, ... */
  gauges: Record<string, number>;
  /** The counters of `gauges` (`*_total`) as per-second rates over the window: what is happening now. */
  gauge_rates: Record<string, number>;
}

interface Sample {
  at: number;
  totals: Record<string, number>;
  /** Cumulative bucket counts by upper bound (seconds), sorted, `+Inf` last. */
  buckets: Array<[number, number]>;
  gauges: Record<string, number>;
}

const LATENCY = "request_latency_seconds";
const GAUGES: Record<string, string | undefined> = {
  errors_total: "kind",
  timeouts_total: "timeout_type",
  kafka_dlq_messages_total: "failure_reason",
  retries_total: undefined,
  inflight_requests: undefined,
  audit_flush_lag_seconds: undefined,
  ws_clients: undefined,
  ws_dropped_events_total: undefined,
  rate_limit_tokens: undefined,
  kafka_consumer_rebalances_total: undefined,
};
/** Every metric a sample reads. */
const SAMPLED = ["requests_total", LATENCY, ...Object.keys(GAUGES)];

/**
 * The `q` quantile (0..1) of a cumulative histogram, linear within the
 * bucket it falls in (PromQL `histogram_quantile`); in the `+Inf` bucket the
 * largest finite bound. Null when the histogram is empty.
 */
export function histogramQuantile(q: number, buckets: Array<[number, number]>): number | null {
  if (buckets.length === 0) return null;
  const total = buckets[buckets.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let prevBound = 0, prevCount = 0;
  for (const [bound, count] of buckets) {
    if (count >= rank) {
      if (!Number.isFinite(bound)) return prevBound;
      if (count === prevCount) return bound;
      return prevBound + (bound - prevBound) * ((rank - prevCount) / (count - prevCount));
    }
    prevBound = bound;
    prevCount = count;
  }
  return prevBound;
}

function percentiles(buckets: Array<[number, number]>): Percentiles {
  const ms = (q: number) => {
    const v = histogramQuantile(q, buckets);
    return v === null ? null : Math.round(v * 10_000) / 10;
  };
  return {
    p50: ms(0.5),
    p95: ms(0.95),
    p99: ms(0.99),
    count: buckets.length ? buckets[buckets.length - 1][1] : 0,
  };
}

interface MetricJson {
  name: string;
  values: Array<{ value: number; labels: Record<string, string | number>; metricName?: string }>;
}

/**
 * Samples the registry (at most once per `minIntervalMs`, only when asked:
 * no timer) and keeps `keepMs` of samples, so rates and window percentiles
 * come from the newest sample and the one about `windowMs` older.
 */
export class DashboardSampler {
  #samples: Sample[] = [];
  #pending: Promise<Sample> | undefined;

  constructor(
    private readonly registry: Registry,
    private readonly opts: { windowMs?: number; minIntervalMs?: number; keepMs?: number } = {},
  ) {}

  async #take(): Promise<Sample> {
    // Only the metrics the dashboard reads (not the whole registry: the
    // runtime collectors would run every second for nothing).
    const metrics: MetricJson[] = [];
    for (const name of SAMPLED) {
      const m = this.registry.getSingleMetric(name);
      if (m) metrics.push(await m.get() as unknown as MetricJson);
    }
    const sample: Sample = { at: Date.now(), totals: {}, buckets: [], gauges: {} };
    for (const m of metrics) {
      if (m.name === "requests_total") {
        for (const v of m.values) sample.totals[String(v.labels.outcome)] = v.value;
      } else if (m.name === LATENCY) {
        for (const v of m.values) {
          if (v.metricName !== `${LATENCY}_bucket`) continue;
          const le = String(v.labels.le);
          sample.buckets.push([le === "+Inf" ? Infinity : Number(le), v.value]);
        }
        sample.buckets.sort((a, b) => a[0] - b[0]);
      } else if (m.name in GAUGES) {
        const label = GAUGES[m.name];
        for (const v of m.values) {
          const key = label && v.labels[label] !== undefined
            ? `${m.name}{${label}="${v.labels[label]}"}`
            : m.name;
          sample.gauges[key] = (sample.gauges[key] ?? 0) + v.value;
        }
      }
    }
    return sample;
  }

  /** Metrics for the dashboard: a new sample when the newest is older than `minIntervalMs`. */
  async data(): Promise<DashboardMetrics> {
    const minInterval = this.opts.minIntervalMs ?? 500;
    const last = this.#samples.at(-1);
    let now: Sample;
    if (last && Date.now() - last.at < minInterval) now = last;
    else {
      this.#pending ??= this.#take().finally(() => (this.#pending = undefined));
      now = await this.#pending;
      if (this.#samples.at(-1) !== now) this.#samples.push(now);
      const keep = this.opts.keepMs ?? 120_000;
      while (this.#samples.length > 2 && now.at - this.#samples[0].at > keep) this.#samples.shift();
    }
    const windowMs = this.opts.windowMs ?? 5000;
    // The newest sample at least `windowMs` older than `now`, else the oldest.
    let base: Sample | undefined;
    for (const s of this.#samples) {
      if (s === now) break;
      if (now.at - s.at >= windowMs || !base) base = s;
    }
    const windowS = base ? (now.at - base.at) / 1000 : 0;
    const throughput: Record<string, number> = {};
    for (const [k, v] of Object.entries(now.totals)) {
      throughput[k] = windowS > 0
        ? Math.max(0, Math.round(((v - (base!.totals[k] ?? 0)) / windowS) * 10) / 10)
        : 0;
    }
    const delta: Array<[number, number]> = base && base.buckets.length === now.buckets.length
      ? now.buckets.map(([le, c], i) => [le, Math.max(0, c - base!.buckets[i][1])])
      : [];
    const gaugeRates: Record<string, number> = {};
    for (const [k, v] of Object.entries(now.gauges)) {
      if (!/^[a-z_]+_total(\{|$)/.test(k)) continue;
      gaugeRates[k] = windowS > 0
        ? Math.max(0, Math.round(((v - (base!.gauges[k] ?? 0)) / windowS) * 10) / 10)
        : 0;
    }
    return {
      at: new Date(now.at).toISOString(),
      window_s: Math.round(windowS * 10) / 10,
      gauge_rates: gaugeRates,
      throughput,
      totals: now.totals,
      latency: percentiles(delta),
      latency_all: percentiles(now.buckets),
      gauges: now.gauges,
    };
  }
}

const STYLE = `
:root { --bg:#0d1117; --panel:#161b22; --line:#30363d; --text:#e6edf3; --dim:#8b949e;
  --ok:#3fb950; --warn:#d29922; --bad:#f85149; --info:#58a6ff; --idle:#6e7681; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--text);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
a { color:var(--info); }
header { display:flex; align-items:center; gap:14px; padding:12px 20px; flex-wrap:wrap;
  border-bottom:1px solid var(--line); background:var(--panel); position:sticky; top:0; z-index:1; }
h1 { font-size:18px; margin:0; font-weight:600; }
h1 span { color:var(--dim); font-weight:400; }
h2 { font-size:13px; text-transform:uppercase; letter-spacing:.8px; color:var(--dim);
  margin:0 0 10px; font-weight:600; }
.pill { padding:3px 10px; border-radius:999px; font-size:13px; font-weight:700; border:1px solid; }
.ok { color:var(--ok); border-color:var(--ok); } .bad { color:var(--bad); border-color:var(--bad); }
.warn { color:var(--warn); border-color:var(--warn); } .idle { color:var(--dim); border-color:var(--line); }
.meta { color:var(--dim); font-size:13px; }
.grow { flex:1; }
#banner { display:none; margin:14px 20px 0; padding:12px 16px; border-radius:8px; font-size:17px;
  font-weight:600; border:2px solid var(--bad); background:#f8514922; color:#ffb1ab; }
#banner.show { display:block; }
#banner div + div { margin-top:4px; }
main { display:grid; grid-template-columns: repeat(12, 1fr); gap:14px; padding:14px 20px 24px; }
section { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:14px 16px; min-width:0; }
.c3 { grid-column: span 3; } .c4 { grid-column: span 4; } .c5 { grid-column: span 5; }
.c6 { grid-column: span 6; } .c7 { grid-column: span 7; } .c8 { grid-column: span 8; } .c12 { grid-column: span 12; }
.big { font-size:40px; font-weight:700; line-height:1.1; font-variant-numeric: tabular-nums; }
.unit { font-size:15px; color:var(--dim); font-weight:400; margin-left:4px; }
.kv { display:grid; grid-template-columns:auto 1fr; gap:2px 12px; font-size:14px; margin-top:8px; }
.kv dt { color:var(--dim); } .kv dd { margin:0; font-variant-numeric: tabular-nums; }
.trio { display:flex; gap:18px; align-items:flex-end; flex-wrap:wrap; }
.trio div { min-width:80px; }
.lbl { font-size:12px; color:var(--dim); text-transform:uppercase; letter-spacing:.6px; }
.circuit { font-size:36px; font-weight:800; letter-spacing:1px; }
.circuit.closed { color:var(--ok); } .circuit.open { color:var(--bad); } .circuit.halfOpen { color:var(--warn); }
canvas { width:100%; height:170px; display:block; }
.legend { display:flex; gap:14px; font-size:13px; color:var(--dim); margin-top:6px; flex-wrap:wrap; }
.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px; }
table { width:100%; border-collapse:collapse; font-size:13.5px; }
th { text-align:left; color:var(--dim); font-weight:600; padding:4px 6px; border-bottom:1px solid var(--line); }
td { padding:4px 6px; border-bottom:1px solid #21262d; vertical-align:top; font-variant-numeric: tabular-nums; }
td.m { font-family: ui-monospace, Menlo, Consolas, monospace; font-size:12.5px; word-break:break-all; }
.sev-warn { color:var(--warn); } .sev-error { color:var(--bad); } .sev-info { color:var(--text); } .sev-debug { color:var(--dim); }
.controls { display:flex; flex-wrap:wrap; gap:14px; }
.controls fieldset { border:1px solid var(--line); border-radius:6px; padding:10px 12px; margin:0; flex:1 1 200px; }
.t-ok { color:var(--ok); } .t-warn { color:var(--warn); } .t-bad { color:var(--bad); }
legend { color:var(--dim); font-size:13px; padding:0 4px; }
label { display:flex; align-items:center; gap:8px; margin:6px 0; font-size:14px; }
input[type=number], input[type=password] { background:var(--bg); color:var(--text); border:1px solid var(--line);
  border-radius:6px; padding:5px 8px; font-size:14px; width:100px; }
input[type=range] { flex:1; }
button { background:#21262d; color:var(--text); border:1px solid var(--line); border-radius:6px;
  padding:6px 12px; font-size:14px; cursor:pointer; }
button:hover { border-color:var(--info); }
button.danger { border-color:var(--bad); color:#ffb1ab; } button.good { border-color:var(--ok); color:#aff5b4; }
#ctlmsg { font-size:13px; color:var(--dim); margin-top:8px; min-height:18px; }
.empty { color:var(--dim); font-style:italic; }
.scroll { max-height:340px; overflow-y:auto; }
#evtable { table-layout:fixed; }
#evtable td { white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
@media (max-width: 1100px) { .c3, .c4, .c5, .c6, .c7, .c8 { grid-column: span 12; } }
.xscroll { overflow-x:auto; max-width:100%; }
.range { display:inline-flex; gap:4px; float:right; }
.range button { padding:2px 8px; font-size:12px; }
.range button.on { border-color:var(--info); color:var(--info); }
.sw.hatch { background: repeating-linear-gradient(45deg, #58a6ff55 0 3px, transparent 3px 6px); border:1px solid #58a6ff88; }
#periods { margin:8px 0 0; padding:0; list-style:none; font-size:13px; color:var(--dim); }
#periods li { margin:2px 0; }
.filters { display:flex; flex-wrap:wrap; gap:8px; align-items:center; margin-bottom:10px; }
.filters input, .filters select { background:var(--bg); color:var(--text); border:1px solid var(--line);
  border-radius:6px; padding:5px 8px; font-size:14px; max-width:100%; }
.filters input { width:140px; }
#dlqtable td { white-space:nowrap; } #dlqtable td.err { white-space:normal; min-width:180px; }
#dlqtable tr.sel { background:#1f6feb33; }
.yes { color:var(--ok); font-weight:600; } .no { color:var(--dim); }
.detail { margin-top:12px; border-top:1px solid var(--line); padding-top:10px; }
.detail pre { background:var(--bg); border:1px solid var(--line); border-radius:6px; padding:8px; margin:6px 0;
  max-height:260px; overflow:auto; white-space:pre-wrap; word-break:break-all; font-size:12.5px; }
a.trace { font-family: ui-monospace, Menlo, Consolas, monospace; cursor:pointer; }
#tracebox table td { white-space:nowrap; } #tracebox td.err { white-space:normal; }
.tokenask { display:none; margin:8px 0; padding:8px 10px; border:1px solid var(--warn); border-radius:6px; }
.tokenask.show { display:flex; flex-wrap:wrap; gap:8px; align-items:center; }
@media (max-width: 640px) {
  header { padding:10px 12px; gap:8px; }
  main { padding:10px 8px 16px; gap:10px; grid-template-columns: minmax(0, 1fr); }
  .c3, .c4, .c5, .c6, .c7, .c8, .c12 { grid-column: 1 / -1; }
  section { padding:12px 10px; }
  .big { font-size:30px; }
  .circuit { font-size:28px; }
  #banner { margin:10px 8px 0; font-size:15px; }
  #evtable { min-width:640px; }
  .range { float:none; display:flex; margin-top:6px; }
}
`;

const SCRIPT = `
(function () {
"use strict";
var MAX_EVENTS = 100;
// The server's memory (GET /dashboard/history): per-second samples and periods.
var hist = { samples: [], periods: [], interval_ms: 1000, keep_ms: 7200000 };
var rangeMs = 15 * 60 * 1000, lastSampleT = 0, skew = 0;
var events = [];
var token = "", retryMs = 1000;
var COLORS = { delivered: "#3fb950", dead_lettered: "#f85149", skipped_duplicate: "#58a6ff" };

function $(id) { return document.getElementById(id); }
function el(tag, cls, text) {
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function fmt(n, digits) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (typeof n !== "number") return String(n);
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return digits === undefined ? String(Math.round(n * 10) / 10) : n.toFixed(digits);
}
function bytes(n) {
  if (typeof n !== "number") return "–";
  if (n < 1024) return n + " B";
  if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
  return (n / 1048576).toFixed(1) + " MiB";
}
function setText(id, v) { var e = $(id); if (e && e.textContent !== String(v)) e.textContent = String(v); }
function pill(id, cls, text) { var e = $(id); e.className = "pill " + cls; e.textContent = text; }
function since(s) {
  if (typeof s !== "number") return "";
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}

function render(d) {
  var s = d.status || {}, m = d.metrics || {}, ready = d.ready || { ready: false, checks: {} };
  setText("updated", "updated " + utc(Date.now()) + " UTC");
  var hp = d.health === "degraded" ? "warn" : d.health === "not_ready" ? "bad" : "ok";
  var ht = d.health === "degraded" ? "DEGRADED: " + (d.reasons || []).join(", ")
    : d.health === "not_ready" ? "NOT READY: " + (d.reasons || []).join(", ") : "READY";
  setText("mode", (s.mode || "?") + " mode · v" + (s.version || "?") + " · up " + since(s.uptime_s));
  var failing = Object.keys(ready.checks || {}).filter(function (k) { return !ready.checks[k].ok; });
  if (d.health) { pill("ready", hp, ht); $("ready").dataset.health = d.health; }
  else pill("ready", ready.ready ? "ok" : "bad", ready.ready ? "READY" : "NOT READY: " + failing.join(", "));
  pill("state", s.state === "running" ? "ok" : "warn", String(s.state || "?").toUpperCase());

  // Banner: what is wrong, in words.
  var lines = [];
  failing.forEach(function (k) {
    var c = ready.checks[k];
    lines.push("Not ready: " + k + (c.detail ? " (" + c.detail + ")" : ""));
  });
  if (s.circuit === "open") lines.push("Circuit breaker OPEN: upstream failing; partitions paused, lag will grow");
  if (s.flow && s.flow.paused_until) lines.push("Upstream asked to wait (Retry-After): every call paused until " + s.flow.paused_until);
  if (s.audit && s.audit.degraded) lines.push("Audit trail degraded: " + (s.audit.lastError || "uploads failing") + "; events wait in the audit topic");
  var b = $("banner");
  b.textContent = "";
  lines.forEach(function (l) { b.appendChild(el("div", "", l)); });
  b.className = lines.length ? "show" : "";

  // Throughput and latency.
  var tp = m.throughput || {}, tot = m.totals || {};
  // No window yet (first sample): say nothing rather than a false 0.
  var measured = m.window_s > 0;
  setText("tp-delivered", measured ? fmt(tp.delivered || 0) : "–");
  setText("tp-dead", measured ? fmt(tp.dead_lettered || 0) : "–");
  setText("tp-skipped", measured ? fmt(tp.skipped_duplicate || 0) : "–");
  void tot;
  recentTotals();
  setText("tp-window", m.window_s ? "records/s, last " + m.window_s + " s" : "records/s (measuring…)");
  var lat = (m.latency && m.latency.count > 0) ? m.latency : null;
  setText("p50", lat ? fmt(lat.p50) : "–");
  setText("p95", lat ? fmt(lat.p95) : "–");
  setText("p99", lat ? fmt(lat.p99) : "–");
  var all = m.latency_all || {};
  setText("lat-all", "since start: p50 " + fmt(all.p50) + " · p95 " + fmt(all.p95) + " · p99 " + fmt(all.p99) + " ms (" + fmt(all.count || 0) + " requests)");
  var g = m.gauges || {};
  setText("inflight", fmt(g.inflight_requests || 0));
  var gr = m.gauge_rates || {};
  setText("retries", fmt(gr.retries_total || 0) + "/s");
  var errs = Object.keys(gr).filter(function (k) { return k.indexOf("errors_total{") === 0 && gr[k] > 0; })
    .map(function (k) { return k.replace(/^[^"]*"|"}$/g, "") + " " + fmt(gr[k]) + "/s"; });
  setText("errors", errs.length ? errs.join(", ") : "none now");
  var tos = Object.keys(gr).filter(function (k) { return k.indexOf("timeouts_total{") === 0 && gr[k] > 0; })
    .map(function (k) { return k.replace(/^[^"]*"|"}$/g, "") + " " + fmt(gr[k]) + "/s"; });
  setText("timeouts", tos.length ? tos.join(", ") : "none now");

  // Circuit.
  var c = $("circuit");
  var cs = s.circuit || "unknown";
  c.className = "circuit " + cs;
  c.dataset.state = cs;
  setText("circuit", cs === "halfOpen" ? "HALF-OPEN" : cs.toUpperCase());
  setText("pause", (s.pause_reasons && s.pause_reasons.length) ? "paused by: " + s.pause_reasons.join(", ") : "not paused");
  setText("rate", s.rate ? fmt(s.rate.rate) + "/s, burst " + s.rate.burst : "–");

  // Flow control (SLUICE_ADAPTIVE).
  var r = s.flow || {};
  if (r.adaptive) {
    var unlimited = !r.effective;
    setText("flow-rate", unlimited ? "∞" : fmt(r.effective));
    setText("flow-ceiling", r.ceiling ? fmt(r.ceiling) + "/s" : "unlimited");
    setText("flow-conc", fmt(r.concurrency) + " (" + fmt(r.inflight || 0) + " in flight)");
    setText("flow-state", r.paused_until ? "PAUSED until " + String(r.paused_until).slice(11, 19) + " UTC (Retry-After)"
      : (!unlimited && r.ceiling && r.effective < r.ceiling) || (!unlimited && !r.ceiling) ? "throttled (" + (r.reason || "?") + ")" : "at ceiling");
    $("flow-state").className = r.paused_until ? "t-bad" : (!unlimited && r.effective < (r.ceiling || Infinity)) ? "t-warn" : "t-ok";
  } else {
    setText("flow-rate", s.rate ? fmt(s.rate.rate) : "–");
    setText("flow-ceiling", "fixed (SLUICE_ADAPTIVE=off)");
    setText("flow-conc", "–");
    setText("flow-state", "adaptive off");
    $("flow-state").className = "";
  }


  // Audit.
  var a = s.audit || {};
  setText("backlog", fmt(a.backlogEvents));
  setText("spool", bytes(a.bufferedBytes));
  setText("audit-state", (a.state || "?") + (a.degraded ? " · DEGRADED" : ""));
  $("audit-state").className = a.degraded ? "t-bad" : "";
  setText("audit-fail", fmt(a.failures || 0) + (a.lastError ? " (" + a.lastError + ")" : ""));
  setText("audit-oldest", a.oldestPendingAgeS === undefined || a.oldestPendingAgeS === null ? "–" : fmt(a.oldestPendingAgeS) + " s");

  // Partitions.
  var body = $("partitions");
  body.textContent = "";
  var parts = s.partitions || [];
  var lagSum = 0;
  parts.forEach(function (p) {
    var tr = el("tr");
    tr.dataset.partition = p.topic + ":" + p.partition;
    tr.appendChild(el("td", "", p.topic));
    tr.appendChild(el("td", "", p.partition));
    var st = el("td", p.state === "running" ? "t-ok" : "t-warn", p.state);
    tr.appendChild(st);
    var lag = typeof p.lag === "number" ? p.lag : null;
    if (lag !== null) lagSum += lag;
    tr.appendChild(el("td", lag !== null && lag > 1000 ? "t-bad" : lag ? "t-warn" : "", lag === null ? "–" : fmt(lag)));
    tr.appendChild(el("td", "", fmt(p.inflight || 0)));
    tr.appendChild(el("td", "", p.committed === undefined ? "–" : p.committed));
    body.appendChild(tr);
  });
  if (!parts.length) {
    var tr = el("tr"), td = el("td", "empty", "No partition assigned");
    td.colSpan = 6; tr.appendChild(td); body.appendChild(tr);
  }
  setText("lag-total", parts.length + " partitions · total lag " + fmt(lagSum));

  // Local mode: load generator and simulated upstream.
  $("fs-load").style.display = s.load ? "" : "none";
  $("fs-sim").style.display = s.upstream_sim ? "" : "none";
  var focus = document.activeElement;
  if (s.load) {
    var l = s.load;
    setText("load-now", fmt(l.rate) + "/s target · " + fmt(l.produced) + " produced" + (l.lastError ? " · " + l.lastError : ""));
    if (focus !== $("load-rate")) $("load-rate").value = l.rate === undefined ? "" : l.rate;
  }
  if (s.upstream_sim) {
    var u = s.upstream_sim;
    setText("sim-now", "errors " + Math.round((u.errorRate || 0) * 100) + "% · latency " + fmt(u.latencyMs) + " ms" + (u.hang ? " · HANGING" : ""));
    if (focus !== $("err") && focus !== $("err-n")) { $("err").value = Math.round((u.errorRate || 0) * 100); $("err-n").value = Math.round((u.errorRate || 0) * 100); }
    if (focus !== $("lat")) $("lat").value = u.latencyMs === undefined ? "" : u.latencyMs;
    if (focus !== $("hang")) $("hang").checked = !!u.hang;
  }

}

function utc(ms) { return new Date(ms).toISOString().slice(11, 19); }

var PERIOD_STYLE = {
  breaker_open: { fill: "rgba(248,81,73,0.22)", label: "breaker open" },
  breaker_half_open: { fill: "rgba(210,153,34,0.22)", label: "breaker half-open" },
  not_ready: { fill: "rgba(248,81,73,0.10)", label: "not ready" },
  drained: { hatch: "rgba(88,166,255,0.35)", label: "drained" },
  backpressure: { hatch: "rgba(210,153,34,0.35)", label: "backpressure" },
  audit_behind: { hatch: "rgba(163,113,247,0.35)", label: "audit behind" },
};

function loadHistory(full) {
  var q = full || !lastSampleT ? "" : "?since=" + lastSampleT;
  return fetch("/dashboard/history" + q, { cache: "no-store" }).then(function (r) { return r.json(); })
    .then(function (h) {
      skew = Date.now() - h.now;
      hist.interval_ms = h.interval_ms; hist.keep_ms = h.keep_ms; hist.periods = h.periods;
      if (full || !lastSampleT) hist.samples = h.samples;
      else hist.samples = hist.samples.concat(h.samples);
      var oldest = h.now - h.keep_ms;
      while (hist.samples.length && hist.samples[0].t < oldest) hist.samples.shift();
      if (hist.samples.length) lastSampleT = hist.samples[hist.samples.length - 1].t;
      if (full && hist.samples.length) {
        // First load: the smallest range that shows everything the server remembers.
        var span = h.now - hist.samples[0].t, fit = [60000, 300000, 900000, 3600000, 7200000].filter(function (r) { return r >= span; })[0] || 7200000;
        rangeMs = fit; setRange(fit);
      }
      $("chart").dataset.samples = String(hist.samples.length);
      $("chart").dataset.periods = String(hist.periods.length);
      draw(); listPeriods(); recentTotals();
    }).catch(function () {});
}

function recentTotals() {
  var since = Date.now() - skew - rangeMs, sum = { delivered: 0, dead_lettered: 0, skipped_duplicate: 0 };
  var step = (hist.interval_ms || 1000) / 1000;
  hist.samples.forEach(function (p) {
    if (p.t < since) return;
    sum.delivered += p.delivered * step; sum.dead_lettered += p.dead_lettered * step; sum.skipped_duplicate += p.skipped_duplicate * step;
  });
  var label = rangeLabel();
  setText("tot-label-d", "delivered, last " + label); setText("tot-delivered", fmt(Math.round(sum.delivered)));
  setText("tot-label-x", "dead-lettered, last " + label); setText("tot-dead", fmt(Math.round(sum.dead_lettered)));
  setText("tot-label-s", "skipped, last " + label); setText("tot-skipped", fmt(Math.round(sum.skipped_duplicate)));
}

function rangeLabel() { return rangeMs >= 3600000 ? (rangeMs / 3600000) + " h" : (rangeMs / 60000) + " min"; }

function listPeriods() {
  var ul = $("periods"), since = Date.now() - skew - rangeMs;
  ul.textContent = "";
  var shown = hist.periods.filter(function (p) { return (p.to === null || p.to >= since) && PERIOD_STYLE[p.kind]; })
    .slice(-8).reverse();
  shown.forEach(function (p) {
    var dur = ((p.to === null ? Date.now() - skew : p.to) - p.from) / 1000;
    var li = el("li", "", PERIOD_STYLE[p.kind].label + ": " + utc(p.from) + " → " + (p.to === null ? "now" : utc(p.to)) +
      " UTC (" + (dur < 90 ? Math.round(dur) + " s" : Math.round(dur / 60) + " min") + ")" + (p.detail ? " · " + p.detail : ""));
    li.dataset.kind = p.kind;
    ul.appendChild(li);
  });
  if (!shown.length) ul.appendChild(el("li", "", "No breaker, drain or readiness incident in the last " + rangeLabel()));
}

function draw() {
  var cv = $("chart"), ctx = cv.getContext("2d");
  var w = cv.clientWidth, h = cv.clientHeight, dpr = window.devicePixelRatio || 1;
  if (cv.width !== w * dpr || cv.height !== h * dpr) { cv.width = w * dpr; cv.height = h * dpr; }
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  var axisH = 18, ch = h - axisH, t1 = Date.now() - skew, t0 = t1 - rangeMs;
  var X = function (t) { return (t - t0) / rangeMs * w; };
  hist.periods.forEach(function (p) {
    var st = PERIOD_STYLE[p.kind]; if (!st) return;
    var a = Math.max(X(p.from), 0), b = Math.min(X(p.to === null ? t1 : p.to), w);
    if (b <= 0 || a >= w) return;
    b = Math.max(b, a + 2);
    if (st.fill) { ctx.fillStyle = st.fill; ctx.fillRect(a, 0, b - a, ch); }
    else {
      ctx.save(); ctx.beginPath(); ctx.rect(a, 0, b - a, ch); ctx.clip();
      ctx.strokeStyle = st.hatch; ctx.lineWidth = 1;
      for (var x = a - ch; x < b; x += 7) { ctx.beginPath(); ctx.moveTo(x, ch); ctx.lineTo(x + ch, 0); ctx.stroke(); }
      ctx.restore();
    }
  });
  var pts = hist.samples.filter(function (p) { return p.t >= t0 - 2000; });
  // Downsample to about one point per pixel column (max of the bucket, so spikes stay visible).
  var bucketMs = Math.max(hist.interval_ms || 1000, rangeMs / Math.max(w, 1));
  var keys = Object.keys(COLORS), buckets = [];
  pts.forEach(function (p) {
    var k = Math.floor(p.t / bucketMs), last = buckets[buckets.length - 1];
    if (!last || last.k !== k) { last = { k: k, t: p.t }; keys.forEach(function (c) { last[c] = 0; }); buckets.push(last); }
    keys.forEach(function (c) { last[c] = Math.max(last[c], p[c] || 0); });
  });
  var max = 1;
  buckets.forEach(function (p) { keys.forEach(function (c) { max = Math.max(max, p[c]); }); });
  max = max * 1.15;
  ctx.strokeStyle = "#30363d"; ctx.lineWidth = 1; ctx.fillStyle = "#8b949e"; ctx.font = "11px system-ui";
  [0.5, 1].forEach(function (f) {
    var y = ch - (ch - 4) * f / 1.15;
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(fmt(max / 1.15 * f) + "/s", 4, y - 3);
  });
  // Time axis (UTC): about one label per 90 px, on round minutes.
  var steps = [5000, 10000, 30000, 60000, 120000, 300000, 600000, 900000, 1800000, 3600000];
  var tick = steps.filter(function (s) { return rangeMs / s <= Math.max(2, w / 90); })[0] || 3600000;
  ctx.beginPath(); ctx.moveTo(0, ch + 0.5); ctx.lineTo(w, ch + 0.5); ctx.stroke();
  ctx.textAlign = "center";
  for (var t = Math.ceil(t0 / tick) * tick; t <= t1; t += tick) {
    var x = X(t);
    ctx.beginPath(); ctx.moveTo(x, ch); ctx.lineTo(x, ch + 4); ctx.stroke();
    if (x > 20 && x < w - 20) ctx.fillText(new Date(t).toISOString().slice(11, tick < 60000 ? 19 : 16), x, h - 3);
  }
  ctx.textAlign = "start";
  keys.forEach(function (k) {
    ctx.strokeStyle = COLORS[k]; ctx.lineWidth = 2; ctx.beginPath();
    var prev = null;
    buckets.forEach(function (p) {
      var x = X(p.t), y = ch - 2 - (ch - 4) * (p[k] / max);
      // A gap of more than 3 buckets (sluice was down) breaks the line.
      if (prev === null || p.t - prev > bucketMs * 3 + (hist.interval_ms || 1000)) ctx.moveTo(x, y); else ctx.lineTo(x, y);
      prev = p.t;
    });
    ctx.stroke();
  });
  if (!pts.length) { ctx.fillStyle = "#8b949e"; ctx.fillText("no samples yet", w / 2 - 40, ch / 2); }
}

function setRange(ms) {
  rangeMs = ms;
  Array.prototype.forEach.call(document.querySelectorAll(".range button"), function (b) {
    b.className = Number(b.dataset.ms) === ms ? "on" : "";
  });
  draw(); listPeriods(); recentTotals();
}

function summary(ev) {
  var d = ev.data || {}, parts = [];
  if (ev.type === "record.completed") parts.push("status " + d.status, fmt(d.latency_ms) + " ms", d.retries ? d.retries + " retries" : "");
  else if (ev.type === "record.dead_lettered") parts.push(d.failure_reason, d.error_message || "");
  else if (ev.type === "circuit.changed") parts.push(d.from + " → " + d.to);
  else if (ev.type === "rate.adjusted") parts.push((d.rate ? fmt(d.rate) + "/s" : "unlimited") + " of " + (d.ceiling ? fmt(d.ceiling) + "/s" : "unlimited"), "in flight ≤ " + d.concurrency, d.reason, d.paused_until ? "paused until " + d.paused_until : "");
  else Object.keys(d).slice(0, 5).forEach(function (k) { parts.push(k + "=" + (typeof d[k] === "object" ? JSON.stringify(d[k]) : d[k])); });
  var text = parts.filter(Boolean).join(" · ");
  return text.length > 240 ? text.slice(0, 239) + "…" : text;
}

function eventRow(ev) {
  var tr = el("tr", "sev-" + ev.severity);
  tr.dataset.type = ev.type;
  tr.appendChild(el("td", "m", (ev.timestamp || "").slice(11, 23)));
  tr.title = ev.timestamp || "";
  tr.appendChild(el("td", "", ev.type));
  var where = ev.topic !== undefined ? ev.topic + (ev.partition !== undefined ? "/" + ev.partition : "") +
    (ev.data && ev.data.offset !== undefined ? "@" + ev.data.offset : "") : "";
  tr.appendChild(el("td", "m", where));
  var tdTrace = el("td", "m");
  if (ev.trace_id) tdTrace.appendChild(traceLink(ev.trace_id, ev.timestamp));
  tr.appendChild(tdTrace);
  var sum = summary(ev);
  var td = el("td", "", sum);
  td.title = sum;
  tr.appendChild(td);
  return tr;
}

// While the pointer is on the list, new events wait (the newest MAX_EVENTS), so the row
// under it does not move away; they are shown when the pointer leaves.
var eventsHeld = null;

function addEvent(ev) {
  if (ev.type === "system.heartbeat") { setText("hb", "heartbeat " + utc(Date.now()) + " UTC"); return; }
  if (ev.type === "record.completed" && !$("show-completed").checked) return;
  if (ev.type === "circuit.changed" || ev.type === "rate.adjusted") poll();
  if (ev.type === "record.dead_lettered") dlqDirty = true;
  if (eventsHeld) {
    eventsHeld.push(ev);
    if (eventsHeld.length > MAX_EVENTS) eventsHeld.shift();
    setText("events-held", "paused while the pointer is on the list: " + eventsHeld.length + " new");
    return;
  }
  showEvent(ev);
}

function showEvent(ev) {
  var body = $("events");
  if (body.querySelector(".empty")) body.textContent = "";
  body.insertBefore(eventRow(ev), body.firstChild);
  while (body.children.length > MAX_EVENTS) body.removeChild(body.lastChild);
}

function holdEvents(hold) {
  if (hold) { eventsHeld = eventsHeld || []; return; }
  var held = eventsHeld || [];
  eventsHeld = null;
  setText("events-held", "");
  held.forEach(showEvent);
}

function connect() {
  var proto = location.protocol === "https:" ? "wss://" : "ws://";
  var ws = new WebSocket(proto + location.host + "/ws/events");
  pill("conn", "warn", "events: connecting");
  ws.onopen = function () { retryMs = 1000; pill("conn", "ok", "events: live"); };
  ws.onmessage = function (m) {
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    if (ev.type === "system.ws.drop_notice") setText("hb", "some events dropped (browser too slow)");
    addEvent(ev);
  };
  ws.onclose = function () {
    pill("conn", "bad", "events: disconnected, retrying in " + Math.round(retryMs / 1000) + "s");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 10000);
  };
}

var polling = false, dlqDirty = false;
setInterval(function () { if (dlqDirty) { dlqDirty = false; loadDlq(); } }, 3000);
function poll() {
  if (polling) return;
  polling = true;
  fetch("/dashboard/data", { cache: "no-store" }).then(function (r) { return r.json(); })
    .then(function (d) { render(d); })
    .catch(function () { pill("ready", "bad", "SLUICE UNREACHABLE"); })
    .finally(function () { polling = false; });
}

function control(method, path, body) {
  var headers = { "content-type": "application/json" };
  if ($("token").value.trim()) token = $("token").value.trim();
  if (token) headers.authorization = "Bearer " + token;
  setText("ctlmsg", method + " " + path + " …");
  return fetch(path, { method: method, headers: headers, body: JSON.stringify(body) })
    .then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) {
          var msg = (j.error && j.error.message) || r.statusText;
          if (r.status === 401 || r.status === 403) { $("tokenbox").style.display = ""; msg += ": enter the control token"; }
          setText("ctlmsg", "✗ " + method + " " + path + ": " + r.status + " " + msg);
        } else setText("ctlmsg", "✓ " + method + " " + path + " " + JSON.stringify(body));
        poll();
      });
    })
    .catch(function (e) { setText("ctlmsg", "✗ " + e); });
}

// ---- Control token: asked once (kept for this browser tab), sent on /control, /dlq and /audit.
try { token = sessionStorage.getItem("sluiceToken") || ""; } catch (e) { token = ""; }
var pendingRetry = null;
function api(method, path, body) {
  var headers = {};
  // Mutating calls always say JSON: without a token the server refuses anything else.
  if (body !== undefined || method !== "GET") headers["content-type"] = "application/json";
  if (token) headers.authorization = "Bearer " + token;
  return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" })
    .then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (r.status === 401 || r.status === 403) {
          askToken((j.error && j.error.message) || "control token required");
          return new Promise(function (resolve, reject) {
            pendingRetry = function () { api(method, path, body).then(resolve, reject); };
          });
        }
        if (!r.ok) throw new Error(r.status + " " + ((j.error && j.error.message) || r.statusText));
        return j;
      });
    });
}
function askToken(why) {
  Array.prototype.forEach.call(document.querySelectorAll(".tokenask"), function (b) {
    b.classList.add("show");
    b.querySelector(".why").textContent = why + ": enter the control token (asked once)";
  });
}
Array.prototype.forEach.call(document.querySelectorAll(".tokenask"), function (b) {
  b.querySelector("button").onclick = function () {
    token = b.querySelector("input").value.trim();
    $("token").value = token;
    try { sessionStorage.setItem("sluiceToken", token); } catch (e) { /* private mode */ }
    Array.prototype.forEach.call(document.querySelectorAll(".tokenask"), function (x) { x.classList.remove("show"); });
    var retry = pendingRetry; pendingRetry = null; if (retry) retry();
  };
});

// ---- Dead letters.
var dlqItems = [], dlqOpen = null;
function dlqQuery() {
  var q = new URLSearchParams();
  if ($("dlq-topic").value.trim()) q.set("topic", $("dlq-topic").value.trim());
  if ($("dlq-reason").value) q.set("reason", $("dlq-reason").value);
  return q;
}
function loadDlq() {
  var q = dlqQuery();
  q.set("order", "newest"); q.set("limit", "50"); q.set("payload_limit", "4096");
  setText("dlq-msg", "loading…");
  return api("GET", "/dlq?" + q.toString()).then(function (page) {
    dlqItems = page.items || [];
    renderDlq(page);
  }).catch(function (e) { setText("dlq-msg", "✗ " + e.message); });
}
function keyOf(d) {
  if (d.original_key === null || d.original_key === undefined) return "(none)";
  return d.original_key_encoding === "base64" ? "b64:" + d.original_key : d.original_key;
}
function traceLink(id, atIso) {
  var a = el("a", "trace", id);
  a.href = "#trace=" + id;
  a.dataset.trace = id;
  a.onclick = function (ev) { ev.preventDefault(); openTrace(id, atIso); };
  return a;
}
function renderDlq(page) {
  var body = $("dlq-rows");
  body.textContent = "";
  dlqItems.forEach(function (d) {
    var tr = el("tr");
    tr.dataset.id = d.id;
    if (dlqOpen === d.id) tr.className = "sel";
    tr.appendChild(el("td", "m", (d.timestamp || "").slice(0, 19).replace("T", " ")));
    tr.appendChild(el("td", "m", d.id));
    tr.appendChild(el("td", "", d.failure_reason));
    tr.appendChild(el("td", "m", keyOf(d)));
    tr.appendChild(el("td", "err", d.error_message));
    var del = el("td", d.delivered_since ? "yes delivered" : "no delivered", d.delivered_since ? "yes" : "no");
    tr.appendChild(del);
    var act = el("td"), open = el("button", "", "Open"), rep = el("button", "good", "Replay");
    open.className = "open"; rep.className = "good replay";
    open.onclick = function () { showDlq(d.id); };
    rep.onclick = function () { replayOne(d.id); };
    act.appendChild(open); act.appendChild(document.createTextNode(" ")); act.appendChild(rep);
    tr.appendChild(act);
    body.appendChild(tr);
  });
  if (!dlqItems.length) {
    var tr = el("tr"), td = el("td", "empty", "No dead letters" + (dlqQuery().toString() ? " matching the filter" : ""));
    td.colSpan = 7; tr.appendChild(td); body.appendChild(tr);
  }
  setText("dlq-msg", dlqItems.length + " shown, newest first" + (page.next_cursor ? " (older ones: sluice dlq list)" : "") +
    " · updated " + utc(Date.now()) + " UTC");
  if (dlqOpen) showDlq(dlqOpen, true);
}
function showDlq(id, quiet) {
  var d = dlqItems.filter(function (x) { return x.id === id; })[0];
  var box = $("dlq-detail");
  if (!d) { if (!quiet) box.textContent = ""; return; }
  dlqOpen = id;
  Array.prototype.forEach.call(document.querySelectorAll("#dlq-rows tr"), function (r) { r.className = r.dataset.id === id ? "sel" : ""; });
  box.textContent = "";
  box.dataset.id = id;
  box.appendChild(el("h2", "", "Dead letter " + id));
  var dl = el("dl", "kv");
  var add = function (k, v) { dl.appendChild(el("dt", "", k)); var dd = el("dd"); if (v instanceof Node) dd.appendChild(v); else dd.textContent = String(v); dl.appendChild(dd); };
  add("dead-lettered", (d.timestamp || "") + " (UTC)");
  add("reason", d.failure_reason + ": " + d.error_message);
  add("retries", d.retry_count + " (first " + d.first_failure + ", last " + d.last_failure + ")");
  add("key", keyOf(d));
  add("trace", traceLink(d.trace_id, d.timestamp));
  add("delivered since", d.delivered_since ? "yes" : "no");
  box.appendChild(dl);
  var pl = d.original_payload === null ? "(no payload)" : d.original_payload;
  box.appendChild(el("div", "lbl", "payload (" + d.original_payload_encoding + ")" +
    (d.original_payload_truncated ? ": first 4096 of " + d.original_payload_length + " characters" : "")));
  var pre = el("pre", "payload", pl); box.appendChild(pre);
  var hs = Object.keys(d.original_headers || {});
  box.appendChild(el("div", "lbl", "headers (" + hs.length + ")"));
  var hpre = el("pre", "headers", hs.length ? hs.slice(0, 50).map(function (k) {
    var v = String(d.original_headers[k]); return k + ": " + (v.length > 300 ? v.slice(0, 300) + "…" : v);
  }).join("\\n") : "(none)");
  box.appendChild(hpre);
  var b = el("button", "good", "Replay this dead letter"); b.onclick = function () { replayOne(id); };
  box.appendChild(b);
}
function replayOne(id) {
  setText("dlq-msg", "POST /dlq/" + id + "/replay …");
  return api("POST", "/dlq/" + encodeURIComponent(id) + "/replay").then(function (r) {
    setText("dlq-result", id + ": " + r.status + (r.status === "already_delivered" ? " (nothing sent)" : "") +
      (r.failure_reason ? " · " + r.failure_reason + " " + (r.error_message || "") : ""));
    $("dlq-result").dataset.status = r.status;
    return loadDlq();
  }).catch(function (e) { setText("dlq-result", "✗ " + e.message); });
}
function replayFiltered() {
  var q = dlqQuery(), body = {};
  if (q.get("topic")) body.topic = q.get("topic");
  if (q.get("reason")) body.reason = q.get("reason");
  var what = Object.keys(body).length ? JSON.stringify(body) : "every dead letter of every topic";
  if (!window.confirm("Replay " + what + "? Records already delivered are skipped.")) return;
  api("POST", "/dlq/replay", body).then(function (r) {
    setText("dlq-result", "bulk replay " + r.id + " started: progress in the events below (replay.progress)");
    setTimeout(loadDlq, 1500);
  }).catch(function (e) { setText("dlq-result", "✗ " + e.message); });
}
$("evtable").onmouseenter = function () { holdEvents(true); };
$("evtable").onmouseleave = function () { holdEvents(false); };
$("dlq-refresh").onclick = loadDlq;
$("dlq-replay-all").onclick = replayFiltered;
$("dlq-topic").onchange = loadDlq;
$("dlq-reason").onchange = loadDlq;

// ---- Trace timeline (the audit report of one trace).
function openTrace(id, atIso) {
  var at = atIso ? Date.parse(atIso) : Date.now();
  var from = at - 10 * 60000, to = Math.max(at + 5 * 60000, Date.now() + 60000);
  var box = $("tracebox");
  box.style.display = "";
  box.dataset.trace = id;
  setText("trace-title", "Audit timeline of trace " + id);
  setText("trace-msg", "reading the audit store (" + new Date(from).toISOString().slice(11, 19) + "–" + new Date(to).toISOString().slice(11, 19) + " UTC)…");
  $("trace-rows").textContent = "";
  try { history.replaceState(null, "", "#trace=" + id); } catch (e) { /* ignore */ }
  api("GET", "/audit/trace/" + id + "?from=" + from + "&to=" + to).then(function (r) {
    var rows = r.timeline || [];
    setText("trace-msg", rows.length + " audit events from " + (r.store || "the audit store") +
      (rows.length ? "" : " (events reach the store in batches: retry in a few seconds)"));
    rows.forEach(function (e) {
      var tr = el("tr");
      tr.dataset.type = e.event_type;
      tr.appendChild(el("td", "m", (e.timestamp || "").slice(11, 23)));
      tr.appendChild(el("td", "", e.event_type));
      tr.appendChild(el("td", "", e.outcome));
      tr.appendChild(el("td", "m", e.topic + "/" + e.partition + "@" + e.offset));
      tr.appendChild(el("td", "", e.status_code === null ? "–" : e.status_code));
      tr.appendChild(el("td", "", e.latency_ms === null ? "–" : fmt(e.latency_ms) + " ms"));
      tr.appendChild(el("td", "", e.retry_count));
      tr.appendChild(el("td", "err", [e.error_code, e.timeout_type, e.error_message].filter(Boolean).join(" · ")));
      $("trace-rows").appendChild(tr);
    });
    box.scrollIntoView({ block: "nearest" });
  }).catch(function (e) { setText("trace-msg", "✗ " + e.message); });
}
$("trace-close").onclick = function () { $("tracebox").style.display = "none"; try { history.replaceState(null, "", "#"); } catch (e) { /* ignore */ } };
if (/^#trace=[0-9a-f]{32}$/.test(location.hash)) openTrace(location.hash.slice(7));
loadDlq();
setInterval(function () { if (document.visibilityState !== "hidden") loadDlq(); }, 10000);

$("apply-load").onclick = function () { control("PUT", "/control/load", { rate: Number($("load-rate").value) }); };
$("apply-sim").onclick = function () {
  control("PUT", "/control/upstream", { errorRate: Number($("err-n").value) / 100, latencyMs: Number($("lat").value), hang: $("hang").checked });
};
$("err").oninput = function () { $("err-n").value = $("err").value; };
$("err-n").oninput = function () { $("err").value = $("err-n").value; };
$("break").onclick = function () { control("PUT", "/control/upstream", { errorRate: 1 }); };
$("heal").onclick = function () { control("PUT", "/control/upstream", { errorRate: 0, hang: false }); };
$("drain").onclick = function () { control("POST", "/control/drain", {}); };
$("resume").onclick = function () { control("POST", "/control/resume", {}); };
Array.prototype.forEach.call(document.querySelectorAll(".range button"), function (b) {
  b.onclick = function () { setRange(Number(b.dataset.ms)); };
});
window.addEventListener("resize", draw);
poll();
setInterval(poll, 1000);
loadHistory(true);
setInterval(function () { loadHistory(false); }, 2000);
connect();
})();
`;

/** The complete dashboard page. */
export const DASHBOARD_PAGE: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>sluice · dashboard</title>
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>sluice <span>dashboard</span></h1>
  <span id="ready" class="pill idle">…</span>
  <span id="state" class="pill idle">…</span>
  <span id="conn" class="pill idle">events</span>
  <span id="mode" class="meta"></span>
  <span class="grow"></span>
  <span id="updated" class="meta"></span>
  <a href="/inspect">actor inspector →</a>
  <a href="/metrics">metrics</a>
</header>
<div id="banner" role="alert"></div>
<main>
  <section class="c4" id="throughput">
    <h2>Throughput</h2>
    <div class="trio">
      <div><div class="lbl">delivered</div><div class="big ok-t" id="tp-delivered">–</div></div>
      <div><div class="lbl">dead-lettered</div><div class="big" id="tp-dead">–</div></div>
      <div><div class="lbl">skipped dup.</div><div class="big" id="tp-skipped">–</div></div>
    </div>
    <div class="meta" id="tp-window">records/s</div>
    <dl class="kv">
      <dt id="tot-label-d">delivered, last 15 min</dt><dd id="tot-delivered">–</dd>
      <dt id="tot-label-x">dead-lettered, last 15 min</dt><dd id="tot-dead">–</dd>
      <dt id="tot-label-s">skipped, last 15 min</dt><dd id="tot-skipped">–</dd>
    </dl>
  </section>
  <section class="c4" id="latency">
    <h2>Upstream latency (last seconds)</h2>
    <div class="trio">
      <div><div class="lbl">p50</div><div class="big"><span id="p50">–</span><span class="unit">ms</span></div></div>
      <div><div class="lbl">p95</div><div class="big"><span id="p95">–</span><span class="unit">ms</span></div></div>
      <div><div class="lbl">p99</div><div class="big"><span id="p99">–</span><span class="unit">ms</span></div></div>
    </div>
    <div class="meta" id="lat-all"></div>
    <dl class="kv">
      <dt>in flight</dt><dd id="inflight">–</dd>
      <dt>retries</dt><dd id="retries">–</dd>
      <dt>errors</dt><dd id="errors">–</dd>
      <dt>timeouts</dt><dd id="timeouts">–</dd>
    </dl>
  </section>
  <section class="c4" id="breaker">
    <h2>Circuit breaker</h2>
    <div id="circuit" class="circuit">–</div>
    <dl class="kv">
      <dt>pipeline</dt><dd id="pause">–</dd>
      <dt>rate limit</dt><dd id="rate">–</dd>
    </dl>
  </section>
  <section class="c4" id="flow">
    <h2>Flow control</h2>
    <div class="big"><span id="flow-rate">–</span><span class="unit">records/s now</span></div>
    <dl class="kv">
      <dt>ceiling</dt><dd id="flow-ceiling">–</dd>
      <dt>in-flight limit</dt><dd id="flow-conc">–</dd>
      <dt>state</dt><dd id="flow-state">–</dd>
    </dl>
  </section>
  <section class="c8" id="history">
    <h2>Records/s by outcome <span class="meta">(time in UTC, kept by the server for 2 h)</span>
      <span class="range"><button data-ms="60000">1 min</button><button data-ms="300000">5 min</button><button data-ms="900000" class="on">15 min</button><button data-ms="3600000">1 h</button><button data-ms="7200000">2 h</button></span></h2>
    <canvas id="chart"></canvas>
    <div class="legend">
      <span><i class="sw" style="background:#3fb950"></i>delivered</span>
      <span><i class="sw" style="background:#f85149"></i>dead-lettered</span>
      <span><i class="sw" style="background:#58a6ff"></i>skipped duplicate</span>
      <span><i class="sw" style="background:rgba(248,81,73,0.45)"></i>breaker open</span>
      <span><i class="sw" style="background:rgba(210,153,34,0.45)"></i>half-open</span>
      <span><i class="sw hatch"></i>drained</span>
    </div>
    <ul id="periods"></ul>
  </section>
  <section class="c4" id="audit">
    <h2>Audit trail</h2>
    <div class="trio">
      <div><div class="lbl">not yet uploaded</div><div class="big" id="backlog">–</div></div>
      <div><div class="lbl">buffered</div><div class="big" style="font-size:28px" id="spool">–</div></div>
    </div>
    <dl class="kv">
      <dt>state</dt><dd id="audit-state">–</dd>
      <dt>oldest pending</dt><dd id="audit-oldest">–</dd>
      <dt>failed uploads</dt><dd id="audit-fail">–</dd>
    </dl>
  </section>
  <section class="c8">
    <h2>Partitions <span class="meta" id="lag-total"></span></h2>
    <div class="xscroll"><table>
      <thead><tr><th>Topic</th><th>Part.</th><th>State</th><th>Lag</th><th>In flight</th><th>Committed</th></tr></thead>
      <tbody id="partitions"><tr><td colspan="6" class="empty">Loading…</td></tr></tbody>
    </table></div>
  </section>
  <section class="c12" id="controls">
    <h2>Controls</h2>
    <div class="controls">
      <fieldset id="fs-load" style="display:none"><legend>Load generator (local mode)</legend>
        <label>rate <input id="load-rate" type="number" min="0" step="10"> records/s</label>
        <button id="apply-load">Apply</button>
        <div class="meta" id="load-now"></div>
      </fieldset>
      <fieldset id="fs-sim" style="display:none"><legend>Simulated upstream (local mode)</legend>
        <label>errors <input id="err" type="range" min="0" max="100" step="5"><input id="err-n" type="number" min="0" max="100" style="width:64px">%</label>
        <label>latency <input id="lat" type="number" min="0" step="10"> ms</label>
        <label><input id="hang" type="checkbox"> hang (never answer)</label>
        <button id="apply-sim">Apply</button>
        <button id="break" class="danger">Fail 100%</button>
        <button id="heal" class="good">Heal</button>
        <div class="meta" id="sim-now"></div>
      </fieldset>
      <fieldset><legend>Pipeline</legend>
        <button id="drain">Drain</button> <button id="resume">Resume</button>
        <label id="tokenbox" style="display:none">token <input id="token" type="password" autocomplete="off"></label>
      </fieldset>
    </div>
    <div id="ctlmsg"></div>
  </section>
  <section class="c12" id="dlq">
    <h2>Dead letters <span class="meta" id="dlq-msg"></span></h2>
    <div class="filters">
      <input id="dlq-topic" placeholder="topic (all)" aria-label="topic">
      <select id="dlq-reason" aria-label="reason"><option value="">every reason</option>
        <option>DESERIALIZATION_ERROR</option><option>VALIDATION_ERROR</option><option>PROCESSING_ERROR</option>
        <option>TIMEOUT_ERROR</option><option>CIRCUIT_OPEN</option><option>UNKNOWN_ERROR</option></select>
      <button id="dlq-refresh">Refresh</button>
      <button id="dlq-replay-all" class="good">Replay filtered…</button>
    </div>
    <div class="tokenask"><span class="why"></span><input type="password" autocomplete="off" aria-label="control token"><button>Use token</button></div>
    <div class="meta" id="dlq-result"></div>
    <div class="xscroll scroll"><table id="dlqtable">
      <thead><tr><th>Dead-lettered (UTC)</th><th>Id</th><th>Reason</th><th>Key</th><th>Error</th><th>Delivered since</th><th></th></tr></thead>
      <tbody id="dlq-rows"><tr><td colspan="7" class="empty">Loading…</td></tr></tbody>
    </table></div>
    <div class="detail" id="dlq-detail"></div>
  </section>
  <section class="c12" id="tracebox" style="display:none">
    <h2><span id="trace-title">Audit timeline</span> <button id="trace-close" style="float:right">Close</button></h2>
    <div class="meta" id="trace-msg"></div>
    <div class="xscroll"><table>
      <thead><tr><th>Time (UTC)</th><th>Event</th><th>Outcome</th><th>Record</th><th>Status</th><th>Latency</th><th>Retries</th><th>Error</th></tr></thead>
      <tbody id="trace-rows"></tbody>
    </table></div>
  </section>
  <section class="c12">
    <h2>Latest events <span class="meta" id="hb"></span> <span class="meta" id="events-held"></span>
      <label style="display:inline-flex;float:right;margin:0;text-transform:none;letter-spacing:0"><input id="show-completed" type="checkbox" checked> show record.completed</label></h2>
    <div class="scroll xscroll"><table id="evtable">
      <colgroup><col style="width:105px"><col style="width:190px"><col style="width:130px"><col style="width:300px"><col></colgroup>
      <thead><tr><th>Time (UTC)</th><th>Type</th><th>Where</th><th>Trace id</th><th>Detail</th></tr></thead>
      <tbody id="events"><tr><td colspan="5" class="empty">Waiting for events…</td></tr></tbody>
    </table></div>
  </section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;
