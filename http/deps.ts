/**
 * What the HTTP surface needs from the rest of sluice: {@link AppDeps}, the
 * interface the pipeline implements and hands to `createApp`. Nothing in
 * `http/` reaches into the pipeline any other way (the event bus and the
 * actor registry excepted, through `WsHub` and `Inspector`).
 *
 * Every method may return a value or a promise. Implementations may throw
 * `HttpError` (from `http/errors.ts`) to choose the answer's status, or a
 * domain error (`actors/runtime/errors.ts`), which `http/errors.ts` maps to
 * its status; any other error becomes a 500.
 *
 * @module
 */
import type { Context } from "hono";
import type { Registry } from "prom-client";
import type { DashboardHistory } from "./history.ts";
import type { Inspector } from "./inspector.ts";
import type { WsHub } from "./ws_hub.ts";
import type { FailureReason } from "../actors/audit/event.ts";
import type {
  DlqBulkReplayRequest,
  DlqPage,
  DlqQuery,
  ReplayRequest,
  ReplayStart,
} from "../actors/replay/types.ts";

export type { DlqBulkReplayRequest, DlqPage, DlqQuery, ReplayRequest, ReplayStart };

/** A value or a promise of it. */
export type Awaitable<T> = T | Promise<T>;

/** One readiness check, e.g. `kafka`, `s3`, `metrics`, `audit`, `shutting_down`. */
export interface ReadyCheck {
  ok: boolean;
  /** Why it is not ok (or any useful detail): `broker unreachable`, `degraded: spool 40 MB`. */
  detail?: string;
}

/** Answer of {@link AppDeps.ready}: `ready` decides 200 or 503. */
export interface ReadyReport {
  ready: boolean;
  checks: Record<string, ReadyCheck>;
}

/** Rate limiter setting (records/s and bucket size). */
export interface RateSetting {
  /** Records per second, > 0. */
  rate: number;
  /** Bucket size in records, integer >= 1; absent: keep the current one. */
  burst?: number;
}

/** JSON summary for `GET /status` and `sluice status`. Known fields are optional. */
export interface StatusSummary {
  /** `running`, `draining`, `drained`, `shutting_down`, ... */
  state: string;
  version?: string;
  /** `local` (embedded parts) or `kafka`. */
  mode?: string;
  uptime_s?: number;
  rate?: { rate: number; burst: number };
  circuit?: string;
  /** Per-partition view. */
  partitions?: Array<
    { topic: string; partition: number; state: string; lag?: number; inflight?: number }
  >;
  [key: string]: unknown;
}

/** Control of the pipeline (`/control/*`). */
export interface ControlApi {
  /** Stops fetching; resolves once fetching stopped (not when in-flight work is done). */
  drain(): Awaitable<void>;
  /** Fetches again after a drain. */
  resume(): Awaitable<void>;
  /** Starts the graceful shutdown. Called without waiting: the answer (202) goes out first. */
  shutdown(): Awaitable<void>;
  /** Changes the rate limiter; returns the setting now in force. */
  setRate(setting: RateSetting): Awaitable<Required<RateSetting>>;
  status(): Awaitable<StatusSummary>;
}

/** Progress of one replay (`GET /control/replay/:id`). */
export interface ReplayProgress {
  id: string;
  topic: string;
  /** `planning`, `running`, `paused`, then `done`, `cancelled` or `failed`. */
  state: "planning" | "running" | "paused" | "done" | "cancelled" | "failed";
  /** Records replayed, skipped as duplicates, total in the window when known, ... */
  [key: string]: unknown;
}

/** The replay driver (`/control/replay`). */
export interface ReplayApi {
  /** Starts a replay, or reports the one already running for that topic. */
  start(req: ReplayRequest): Awaitable<ReplayStart>;
  /** Progress, or undefined for an unknown id (404). */
  get(id: string): Awaitable<ReplayProgress | undefined>;
  /** Cancels; returns the progress, or undefined for an unknown id (404). */
  cancel(id: string): Awaitable<ReplayProgress | undefined>;
}

/** A dead-letter `failure_reason` (README, Internals). */
export type FailureReasonName = FailureReason;

/** The dead-letter store (`/dlq`). */
export interface DlqApi {
  list(query: DlqQuery): Awaitable<DlqPage>;
  /**
   * Replays one dead letter; undefined for an unknown id (404). `status`:
   * `delivered`, `dead_lettered` (failed again) or `already_delivered` (no-op).
   */
  replay(id: string): Awaitable<{ id: string; status: string } | undefined>;
  /** Replays the dead letters matching the filters as a replay job (`conflict` → 409). */
  replayBulk?(req: DlqBulkReplayRequest): Awaitable<ReplayStart>;
}

/** `GET /audit/trace/:traceId`: one trace's audit timeline over a window. */
export interface AuditTraceApi {
  trace(q: { traceId: string; from: number; to: number }): Awaitable<Record<string, unknown>>;
}

/** The load generator of local mode (`PUT /control/load`). */
export interface LoadApi {
  /** Records per second, >= 0 (0 stops producing); returns the rate now in force. */
  setRate(setting: { rate: number }): Awaitable<{ rate: number }>;
}

/** Behaviour of the simulated upstream of local mode (`PUT /control/upstream`). */
export interface UpstreamSimSetting {
  /** Base latency of an answer, ms, >= 0. */
  latencyMs?: number;
  /** Share of requests answered `errorStatus`, 0..1. */
  errorRate?: number;
  /** Status of those answers, 500..599 (the simulated upstream's default: 503). */
  errorStatus?: number;
  /** True: requests get no answer until this is set back to false. */
  hang?: boolean;
}

/** The simulated upstream of local mode (`PUT /control/upstream`). */
export interface UpstreamSimApi {
  /** Changes the fields given; returns the whole behaviour now in force. */
  set(change: UpstreamSimSetting): Awaitable<Record<string, unknown>>;
}

/** Body size limits. */
export interface BodyLimits {
  /** Largest request body accepted on any route, bytes; default 64 KiB. */
  maxBytes?: number;
  /** `/metrics` is rendered at most once per this many ms (scrapes in between share it); default 500. */
  metricsMaxAgeMs?: number;
}

/** Everything `createApp` needs. */
export interface AppDeps {
  /** Readiness (`/health/ready`): kafka, s3, metrics registry, audit degraded, shutting_down. */
  ready(): ReadyReport;
  /** Served on `GET /metrics`. */
  metrics: Registry;
  control: ControlApi;
  /** Absent: replay routes answer 404 `not_available`. */
  replay?: ReplayApi;
  /** Absent: `/dlq` routes answer 404 `not_available`. */
  dlq?: DlqApi;
  /** Absent: `/audit/trace/:id` answers 404 `not_available`. */
  audit?: AuditTraceApi;
  /** Absent (not local mode): `PUT /control/load` answers 404 `not_available`. */
  load?: LoadApi;
  /** Absent (a real upstream is configured): `PUT /control/upstream` answers 404 `not_available`. */
  upstreamSim?: UpstreamSimApi;
  /** Bearer token for control and DLQ routes; unset or empty: loopback clients only. */
  controlToken?: string;
  /** Browser origins accepted besides the instance's own (`SLUICE_ALLOWED_ORIGINS`). */
  allowedOrigins?: readonly string[];
  limits?: BodyLimits;
  /** Remote address of the client; default: `getConnInfo` of hono/deno. Tests inject it. */
  clientAddress?: (c: Context) => string | undefined;
  /** Event fan-out for `/ws/events`; default: a new hub on the process event bus. */
  hub?: WsHub;
  /** Actor inspector for `/inspect*`; default: a new inspector on the actor registry. */
  inspector?: Inspector;
  /** Dashboard history (`/dashboard/history`); default: a new one, sampling from `createApp` on. */
  history?: DashboardHistory;
}
