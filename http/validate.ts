/**
 * Validation of control bodies and queries. Every failure is a 422
 * `validation_error` naming the field.
 *
 * @module
 */
import type {
  DlqBulkReplayRequest,
  DlqQuery,
  FailureReasonName,
  RateSetting,
  ReplayRequest,
  UpstreamSimSetting,
} from "./deps.ts";
import { HttpError } from "./errors.ts";
import { FAILURE_REASONS } from "../actors/audit/event.ts";
import { MAX_BURST, MAX_LOAD_RATE, MAX_RATE, MIN_RATE, TOPIC_NAME } from "../supervisors/config.ts";

/** Largest time accepted (ms since the epoch): the last instant a JavaScript `Date` holds. */
const MAX_TIME_MS = 8.64e15;

function invalid(field: string, rule: string): HttpError {
  return new HttpError(422, "validation_error", `Invalid ${field}: ${rule}`);
}

function onlyKeys(body: Record<string, unknown>, allowed: string[]): void {
  for (const k of Object.keys(body)) {
    if (!allowed.includes(k)) throw invalid(k, `unknown field (allowed: ${allowed.join(", ")})`);
  }
}

/** A records/s value: from {@link MIN_RATE} to {@link MAX_RATE}. */
function rateField(body: Record<string, unknown>, field: string): number {
  const v = body[field];
  if (typeof v !== "number" || !(v >= MIN_RATE && v <= MAX_RATE)) {
    throw invalid(field, `must be a number from ${MIN_RATE} to ${MAX_RATE} (records/s)`);
  }
  return v;
}

/** Body of `PUT /control/rate`: `{rate 0.001..1e6, burst?: integer 1..1e6}`. */
export function parseRate(body: Record<string, unknown>): RateSetting {
  onlyKeys(body, ["rate", "burst"]);
  const rate = rateField(body, "rate");
  if (body.burst === undefined) return { rate };
  if (
    !Number.isSafeInteger(body.burst) || (body.burst as number) < 1 ||
    (body.burst as number) > MAX_BURST
  ) {
    throw invalid("burst", `must be an integer from 1 to ${MAX_BURST}`);
  }
  return { rate, burst: body.burst as number };
}

/** Body of `PUT /control/load`: `{rate 0..10000}` (0 stops the generator). */
export function parseLoad(body: Record<string, unknown>): { rate: number } {
  onlyKeys(body, ["rate"]);
  const v = body.rate;
  if (typeof v !== "number" || !(v >= 0 && v <= MAX_LOAD_RATE)) {
    throw invalid("rate", `must be a number from 0 to ${MAX_LOAD_RATE} (records/s)`);
  }
  return { rate: v };
}

/** Body of `PUT /control/upstream`: `{latencyMs? >= 0, errorRate? 0..1, hang? boolean}`, at least one. */
export function parseUpstreamSim(body: Record<string, unknown>): UpstreamSimSetting {
  onlyKeys(body, ["latencyMs", "errorRate", "hang"]);
  const out: UpstreamSimSetting = {};
  if (body.latencyMs !== undefined) {
    const v = body.latencyMs;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0 || v > 600_000) {
      throw invalid("latencyMs", "must be a number from 0 to 600000");
    }
    out.latencyMs = v;
  }
  if (body.errorRate !== undefined) {
    const v = body.errorRate;
    if (typeof v !== "number" || !(v >= 0 && v <= 1)) {
      throw invalid("errorRate", "must be a number from 0 to 1");
    }
    out.errorRate = v;
  }
  if (body.hang !== undefined) {
    if (typeof body.hang !== "boolean") throw invalid("hang", "must be true or false");
    out.hang = body.hang;
  }
  if (Object.keys(out).length === 0) {
    throw invalid("body", "give at least one of latencyMs, errorRate, hang");
  }
  return out;
}

const TOPIC = TOPIC_NAME;

/** A time as ISO 8601 text or epoch milliseconds. */
function time(body: Record<string, unknown>, field: string): number {
  const v = body[field];
  const ms = typeof v === "number" ? v : typeof v === "string" ? Date.parse(v) : NaN;
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_TIME_MS) {
    throw invalid(
      field,
      `must be an ISO 8601 time or epoch milliseconds from 0 to ${MAX_TIME_MS}`,
    );
  }
  return ms;
}

/** Body of `POST /control/replay`: `{topic, from, to, rate?, partitions?}` with from < to. */
export function parseReplay(body: Record<string, unknown>): ReplayRequest {
  onlyKeys(body, ["topic", "from", "to", "rate", "partitions"]);
  if (typeof body.topic !== "string" || !TOPIC.test(body.topic)) {
    throw invalid("topic", "must be a Kafka topic name");
  }
  const from = time(body, "from");
  const to = time(body, "to");
  if (from >= to) throw invalid("from", "must be before to");
  const req: ReplayRequest = { topic: body.topic, from, to };
  if (body.rate !== undefined) req.rate = rateField(body, "rate");
  if (body.partitions !== undefined) {
    const ps = body.partitions;
    if (
      !Array.isArray(ps) || ps.length === 0 ||
      !ps.every((p) => Number.isSafeInteger(p) && p >= 0) || new Set(ps).size !== ps.length
    ) {
      throw invalid("partitions", "must be a non-empty list of distinct partition numbers");
    }
    req.partitions = ps as number[];
  }
  return req;
}

const REASONS: readonly FailureReasonName[] = FAILURE_REASONS;

function reason(v: unknown): FailureReasonName {
  if (typeof v !== "string" || !REASONS.includes(v as FailureReasonName)) {
    throw invalid("reason", `must be one of ${REASONS.join(", ")}`);
  }
  return v as FailureReasonName;
}

/** Body of `POST /dlq/replay`: `{topic?, reason?, from?, to?, rate?}` (from < to when both). */
export function parseDlqBulk(body: Record<string, unknown>): DlqBulkReplayRequest {
  onlyKeys(body, ["topic", "reason", "from", "to", "rate"]);
  const req: DlqBulkReplayRequest = {};
  if (body.topic !== undefined) {
    if (typeof body.topic !== "string" || !TOPIC.test(body.topic)) {
      throw invalid("topic", "must be a Kafka topic name");
    }
    req.topic = body.topic;
  }
  if (body.reason !== undefined) req.reason = reason(body.reason);
  if (body.from !== undefined) req.from = time(body, "from");
  if (body.to !== undefined) req.to = time(body, "to");
  if (req.from !== undefined && req.to !== undefined && req.from >= req.to) {
    throw invalid("from", "must be before to");
  }
  if (body.rate !== undefined) req.rate = rateField(body, "rate");
  return req;
}

/**
 * Query of `GET /dlq`: `topic?`, `limit` (1..1000, default 100), `cursor?`,
 * `reason?`, `from?`/`to?` (ISO 8601 or epoch ms).
 */
export function parseDlqQuery(q: Record<string, string>): DlqQuery {
  onlyKeys(q, ["topic", "limit", "cursor", "reason", "from", "to", "order", "payload_limit"]);
  const query: DlqQuery = { limit: 100 };
  if (q.order !== undefined) {
    if (q.order !== "oldest" && q.order !== "newest") {
      throw invalid("order", "must be oldest or newest");
    }
    query.order = q.order;
  }
  if (q.payload_limit !== undefined) {
    const n = Number(q.payload_limit);
    if (!/^\d+$/.test(q.payload_limit) || n < 1 || n > 1_048_576) {
      throw invalid("payload_limit", "must be an integer from 1 to 1048576");
    }
    query.payloadLimit = n;
  }
  if (q.topic !== undefined) {
    if (!TOPIC.test(q.topic)) throw invalid("topic", "must be a Kafka topic name");
    query.topic = q.topic;
  }
  if (q.limit !== undefined) {
    const n = Number(q.limit);
    if (!/^\d+$/.test(q.limit) || n < 1 || n > 1000) {
      throw invalid("limit", "must be an integer from 1 to 1000");
    }
    query.limit = n;
  }
  if (q.cursor !== undefined) query.cursor = q.cursor;
  if (q.reason !== undefined) query.reason = reason(q.reason);
  const t = (v: string) => (/^\d+$/.test(v) ? Number(v) : v);
  if (q.from !== undefined) query.from = time({ from: t(q.from) }, "from");
  if (q.to !== undefined) query.to = time({ to: t(q.to) }, "to");
  if (query.from !== undefined && query.to !== undefined && query.from >= query.to) {
    throw invalid("from", "must be before to");
  }
  return query;
}
