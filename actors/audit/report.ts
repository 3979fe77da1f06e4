/**
 * The audit report (`sluice audit report`): rebuilds what happened in a time
 * window from the audit store.
 *
 * Lists the objects under the hour prefixes of `[from, to)` (day prefixes
 * for windows longer than two days), reads them, keeps the events whose
 * `timestamp` is in the window, merges them chronologically and counts:
 * outcomes, event types, error causes (error code, timeout kind, upstream
 * status code, retries), duplicates by idempotency key, and, with a trace
 * id, that trace's timeline. Output as Markdown or JSON.
 *
 * ```
 * sluice audit report --from 2025-01-01T10:00Z --to 2025-01-01T11:00Z [--trace-id X] [--format md|json]
 * ```
 *
 * @module
 */
import { UsageError } from "../../supervisors/cli/common.ts";
import type { AuditEvent } from "./event.ts";
import { type AuditStore, decodeBatch, hourPrefix } from "./store.ts";

/** Options of {@link buildReport}. */
export interface ReportOptions {
  /** Window start (inclusive). */
  from: Date;
  /** Window end (exclusive). */
  to: Date;
  /** Object key prefix; default `audit`. */
  prefix?: string;
  /** Adds the timeline of this trace. */
  traceId?: string;
  /** Duplicate keys listed in full (the count is always complete); default 50. */
  maxDuplicates?: number;
  /** Objects read in parallel; default 8. */
  concurrency?: number;
}

/** One line of a trace timeline. */
export interface TimelineEntry {
  timestamp: string;
  event_type: string;
  topic: string;
  partition: number;
  offset: string;
  request_id: string | null;
  idempotency_key: string;
  outcome: string;
  status_code: number | null;
  latency_ms: number | null;
  retry_count: number;
  timeout_type: string | null;
  error_code: string | null;
  error_message: string | null;
}

/** An idempotency key seen more than once. */
export interface DuplicateKey {
  idempotency_key: string;
  events: number;
  /** Of which `delivered` (more than one means the upstream got it twice). */
  delivered: number;
  outcomes: Record<string, number>;
  first: string;
  last: string;
}

/** The audit report. */
export interface AuditReport {
  from: string;
  to: string;
  store: string;
  objects: number;
  /** Events in the window. */
  events: number;
  /** Lines of objects that were not JSON objects. */
  invalidLines: number;
  firstEvent: string | null;
  lastEvent: string | null;
  byOutcome: Record<string, number>;
  byEventType: Record<string, number>;
  errors: {
    byErrorCode: Record<string, number>;
    byTimeoutType: Record<string, number>;
    byStatusCode: Record<string, number>;
    /** Events with at least one timeout, and the sum of their timeouts. */
    timeouts: { events: number; total: number };
    /** Events retried at least once, the sum of retries and the largest count. */
    retries: { events: number; total: number; max: number };
  };
  duplicates: { keys: number; extraEvents: number; deliveredTwice: number; list: DuplicateKey[] };
  trace?: { traceId: string; events: number; timeline: TimelineEntry[] };
}

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** The prefixes to list for `[from, to)`: hours, or days for windows longer than 48 h. */
export function windowPrefixes(prefix: string, from: Date, to: Date): string[] {
  const out: string[] = [];
  if (to.getTime() - from.getTime() <= 48 * HOUR) {
    for (let t = Math.floor(from.getTime() / HOUR) * HOUR; t < to.getTime(); t += HOUR) {
      out.push(hourPrefix(prefix, new Date(t)));
    }
  } else {
    for (let t = Math.floor(from.getTime() / DAY) * DAY; t < to.getTime(); t += DAY) {
      out.push(hourPrefix(prefix, new Date(t)).replace(/\d\d\/$/, ""));
    }
  }
  return out;
}

function inc(map: Record<string, number>, key: string | number | null | undefined, by = 1) {
  const k = key === null || key === undefined ? "none" : String(key);
  map[k] = (map[k] ?? 0) + by;
}

function compareEvents(a: AuditEvent, b: AuditEvent): number {
  if (a.timestamp !== b.timestamp) {
    const d = Date.parse(a.timestamp) - Date.parse(b.timestamp);
    if (d !== 0) return d;
  }
  if (a.topic !== b.topic) return a.topic < b.topic ? -1 : 1;
  if (a.partition !== b.partition) return a.partition - b.partition;
  const ao = BigInt(/^\d+$/.test(a.offset) ? a.offset : "0");
  const bo = BigInt(/^\d+$/.test(b.offset) ? b.offset : "0");
  return ao < bo ? -1 : ao > bo ? 1 : 0;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Reads the events of `[from, to)` from the store, oldest first. */
export async function readWindow(
  store: AuditStore,
  opts: Pick<ReportOptions, "from" | "to" | "prefix" | "concurrency">,
): Promise<{ events: AuditEvent[]; objects: number; invalidLines: number }> {
  const prefix = opts.prefix ?? "audit";
  const keys: string[] = [];
  // Objects sit under the hour of their audit record, which can be a moment
  // after the event's own timestamp: list one hour past the window too (the
  // events are filtered by their timestamp afterwards).
  const until = new Date(opts.to.getTime() + HOUR);
  for (const p of windowPrefixes(prefix, opts.from, until)) keys.push(...await store.list(p));
  const from = opts.from.getTime(), to = opts.to.getTime();
  let invalidLines = 0;
  const parts = await mapLimit(keys, opts.concurrency ?? 8, async (key) => {
    const { events, invalid } = await decodeBatch(await store.get(key));
    invalidLines += invalid;
    return events.filter((e) => {
      const t = Date.parse(e.timestamp);
      return t >= from && t < to;
    });
  });
  const events = parts.flat().sort(compareEvents);
  return { events, objects: keys.length, invalidLines };
}

/** Builds the report of `[from, to)` from the store. */
export async function buildReport(store: AuditStore, opts: ReportOptions): Promise<AuditReport> {
  const { events, objects, invalidLines } = await readWindow(store, opts);
  return summarize(events, {
    from: opts.from,
    to: opts.to,
    store: store.describe(),
    objects,
    invalidLines,
    traceId: opts.traceId,
    maxDuplicates: opts.maxDuplicates,
  });
}

/** Computes the report over events already read (sorted chronologically). */
export function summarize(
  events: AuditEvent[],
  meta: {
    from: Date;
    to: Date;
    store: string;
    objects: number;
    invalidLines: number;
    traceId?: string;
    maxDuplicates?: number;
  },
): AuditReport {
  const report: AuditReport = {
    from: meta.from.toISOString(),
    to: meta.to.toISOString(),
    store: meta.store,
    objects: meta.objects,
    events: events.length,
    invalidLines: meta.invalidLines,
    firstEvent: events[0]?.timestamp ?? null,
    lastEvent: events.at(-1)?.timestamp ?? null,
    byOutcome: {},
    byEventType: {},
    errors: {
      byErrorCode: {},
      byTimeoutType: {},
      byStatusCode: {},
      timeouts: { events: 0, total: 0 },
      retries: { events: 0, total: 0, max: 0 },
    },
    duplicates: { keys: 0, extraEvents: 0, deliveredTwice: 0, list: [] },
  };
  const byKey = new Map<string, AuditEvent[]>();
  for (const e of events) {
    inc(report.byOutcome, e.result?.outcome);
    inc(report.byEventType, e.event_type);
    if (e.result?.error_code) inc(report.errors.byErrorCode, e.result.error_code);
    const status = e.upstream?.status_code;
    if (status !== null && status !== undefined) inc(report.errors.byStatusCode, status);
    const timeouts = e.resilience?.timeout_count ?? 0;
    if (timeouts > 0 || e.resilience?.timeout_type) {
      report.errors.timeouts.events++;
      report.errors.timeouts.total += timeouts;
      inc(
        report.errors.byTimeoutType,
        e.resilience?.timeout_type ?? "unknown",
        Math.max(1, timeouts),
      );
    }
    const retries = e.resilience?.retry_count ?? 0;
    if (retries > 0) {
      report.errors.retries.events++;
      report.errors.retries.total += retries;
      report.errors.retries.max = Math.max(report.errors.retries.max, retries);
    }
    let list = byKey.get(e.idempotency_key);
    if (!list) byKey.set(e.idempotency_key, list = []);
    list.push(e);
  }
  const dups: DuplicateKey[] = [];
  for (const [key, list] of byKey) {
    if (list.length < 2) continue;
    const outcomes: Record<string, number> = {};
    for (const e of list) inc(outcomes, e.result?.outcome);
    const delivered = outcomes.delivered ?? 0;
    dups.push({
      idempotency_key: key,
      events: list.length,
      delivered,
      outcomes,
      first: list[0].timestamp,
      last: list.at(-1)!.timestamp,
    });
    report.duplicates.extraEvents += list.length - 1;
    if (delivered > 1) report.duplicates.deliveredTwice++;
  }
  dups.sort((a, b) =>
    b.delivered - a.delivered || b.events - a.events || a.first.localeCompare(b.first)
  );
  report.duplicates.keys = dups.length;
  report.duplicates.list = dups.slice(0, meta.maxDuplicates ?? 50);
  if (meta.traceId !== undefined) {
    const timeline = events.filter((e) => e.trace_id === meta.traceId).map((e) => ({
      timestamp: e.timestamp,
      event_type: e.event_type,
      topic: e.topic,
      partition: e.partition,
      offset: e.offset,
      request_id: e.request_id,
      idempotency_key: e.idempotency_key,
      outcome: e.result?.outcome,
      status_code: e.upstream?.status_code ?? null,
      latency_ms: e.upstream?.latency_ms ?? null,
      retry_count: e.resilience?.retry_count ?? 0,
      timeout_type: e.resilience?.timeout_type ?? null,
      error_code: e.result?.error_code ?? null,
      error_message: e.result?.error_message ?? null,
    }));
    report.trace = { traceId: meta.traceId, events: timeline.length, timeline };
  }
  return report;
}

function table(head: string[], rows: (string | number | null)[][]): string {
  const cell = (v: string | number | null) => String(v ?? "").replaceAll("|", "\\|");
  return [
    `| ${head.join(" | ")} |`,
    `| ${head.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.map(cell).join(" | ")} |`),
  ].join("\n");
}

function countTable(title: string, map: Record<string, number>, total: number): string {
  const rows = Object.entries(map).sort((a, b) => b[1] - a[1]).map(([k, n]) => [
    k,
    n,
    total > 0 ? `${(100 * n / total).toFixed(1)}%` : "",
  ]);
  if (rows.length === 0) return `${title}: none`;
  return table([title, "count", "share"], rows);
}

/** Renders the report as Markdown. */
export function renderMarkdown(r: AuditReport): string {
  const out: string[] = [
    `# Audit report ${r.from} to ${r.to}`,
    "",
    `Store: ${r.store}. Objects read: ${r.objects}. Events in the window: ${r.events}` +
    (r.invalidLines > 0 ? ` (${r.invalidLines} unreadable lines skipped)` : "") + ".",
    r.firstEvent ? `First event ${r.firstEvent}, last ${r.lastEvent}.` : "No events in the window.",
    "",
    "## Outcomes",
    "",
    countTable("outcome", r.byOutcome, r.events),
    "",
    countTable("event type", r.byEventType, r.events),
    "",
    "## Errors by cause",
    "",
    countTable("error code", r.errors.byErrorCode, r.events),
    "",
    countTable("upstream status", r.errors.byStatusCode, r.events),
    "",
    countTable("timeout type", r.errors.byTimeoutType, r.errors.timeouts.total),
    "",
    `Timeouts: ${r.errors.timeouts.total} in ${r.errors.timeouts.events} events. ` +
    `Retries: ${r.errors.retries.total} in ${r.errors.retries.events} events (at most ${r.errors.retries.max} for one record).`,
    "",
    "## Duplicates by idempotency key",
    "",
  ];
  if (r.duplicates.keys === 0) {
    out.push("No idempotency key appears twice.");
  } else {
    out.push(
      `${r.duplicates.keys} keys appear more than once (${r.duplicates.extraEvents} extra events); ` +
        `${r.duplicates.deliveredTwice} were delivered more than once.`,
      "",
      table(
        ["idempotency key", "events", "delivered", "outcomes", "first", "last"],
        r.duplicates.list.map((d) => [
          d.idempotency_key,
          d.events,
          d.delivered,
          Object.entries(d.outcomes).map(([k, n]) => `${k} ${n}`).join(", "),
          d.first,
          d.last,
        ]),
      ),
    );
    if (r.duplicates.list.length < r.duplicates.keys) {
      out.push("", `(${r.duplicates.keys - r.duplicates.list.length} more not listed)`);
    }
  }
  if (r.trace) {
    out.push("", `## Timeline of trace ${r.trace.traceId}`, "");
    if (r.trace.events === 0) out.push("No event of this trace in the window.");
    else {
      out.push(table(
        [
          "time",
          "event",
          "topic/partition@offset",
          "outcome",
          "status",
          "latency ms",
          "retries",
          "timeout",
          "error",
        ],
        r.trace.timeline.map((e) => [
          e.timestamp,
          e.event_type,
          `${e.topic}/${e.partition}@${e.offset}`,
          e.outcome,
          e.status_code,
          e.latency_ms,
          e.retry_count,
          e.timeout_type,
          e.error_code ? `${e.error_code}${e.error_message ? `: ${e.error_message}` : ""}` : "",
        ]),
      ));
    }
  }
  return out.join("\n") + "\n";
}

const RELATIVE = /^(?:now)?-(\d+(?:\.\d+)?)(s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: HOUR, d: DAY };

/**
 * Parses a time argument: ISO 8601 (`2025-01-31T10:00:00Z`, `2025-01-31`),
 * `now`, or relative to now (`now-15m`, `now-2h`, `now-1d`; also `-15m` when
 * written `--from=-15m`).
 *
 * @throws {UsageError} when it is none of those.
 */
export function parseTime(value: string, option: string, now = Date.now()): Date {
  const v = value.trim();
  if (v === "now") return new Date(now);
  const rel = RELATIVE.exec(v);
  if (rel) return new Date(now - Number(rel[1]) * UNIT_MS[rel[2]]);
  const t = Date.parse(v);
  if (v === "" || Number.isNaN(t)) {
    throw new UsageError(
      `${option}: cannot read ${
        JSON.stringify(value)
      } as a time: use ISO 8601 (2025-01-31T10:00:00Z), now, or now-15m/now-2h/now-1d`,
    );
  }
  return new Date(t);
}
