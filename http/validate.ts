/**
 * Validation of control bodies and queries. Every failure is a 422
 * `validation_error` naming the field.
 *
 * @module
 */
import type { DlqQuery, RateSetting, ReplayRequest } from "./deps.ts";
import { HttpError } from "./errors.ts";

function invalid(field: string, rule: string): HttpError {
  return new HttpError(422, "validation_error", `Invalid ${field}: ${rule}`);
}

function onlyKeys(body: Record<string, unknown>, allowed: string[]): void {
  for (const k of Object.keys(body)) {
    if (!allowed.includes(k)) throw invalid(k, `unknown field (allowed: ${allowed.join(", ")})`);
  }
}

function positiveNumber(body: Record<string, unknown>, field: string): number {
  const v = body[field];
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw invalid(field, "must be a number > 0");
  }
  return v;
}

/** Body of `PUT /control/rate`: `{rate > 0, burst?: integer >= 1}`. */
export function parseRate(body: Record<string, unknown>): RateSetting {
  onlyKeys(body, ["rate", "burst"]);
  const rate = positiveNumber(body, "rate");
  if (body.burst === undefined) return { rate };
  if (!Number.isSafeInteger(body.burst) || (body.burst as number) < 1) {
    throw invalid("burst", "must be an integer >= 1");
  }
  return { rate, burst: body.burst as number };
}

/** Body of `PUT /control/load`: `{rate >= 0}` (0 stops the generator). */
export function parseLoad(body: Record<string, unknown>): { rate: number } {
  onlyKeys(body, ["rate"]);
  const v = body.rate;
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw invalid("rate", "must be a number >= 0");
  }
  return { rate: v };
}

const TOPIC = /^[a-zA-Z0-9._-]{1,249}$/;

/** A time as ISO 8601 text or epoch milliseconds. */
function time(body: Record<string, unknown>, field: string): number {
  const v = body[field];
  const ms = typeof v === "number" ? v : typeof v === "string" ? Date.parse(v) : NaN;
  if (!Number.isFinite(ms) || ms < 0) {
    throw invalid(field, "must be an ISO 8601 time or epoch milliseconds");
  }
  return ms;
}

/** Body of `POST /control/replay`: `{topic, from, to, rate?}` with from < to. */
export function parseReplay(body: Record<string, unknown>): ReplayRequest {
  onlyKeys(body, ["topic", "from", "to", "rate"]);
  if (typeof body.topic !== "string" || !TOPIC.test(body.topic)) {
    throw invalid("topic", "must be a Kafka topic name");
  }
  const from = time(body, "from");
  const to = time(body, "to");
  if (from >= to) throw invalid("from", "must be before to");
  const req: ReplayRequest = { topic: body.topic, from, to };
  if (body.rate !== undefined) req.rate = positiveNumber(body, "rate");
  return req;
}

/** Query of `GET /dlq`: `topic?`, `limit` (1..1000, default 100), `cursor?`. */
export function parseDlqQuery(q: Record<string, string>): DlqQuery {
  onlyKeys(q, ["topic", "limit", "cursor"]);
  const query: DlqQuery = { limit: 100 };
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
  return query;
}
