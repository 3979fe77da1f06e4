/**
 * Validation of control bodies and queries with the zod schemas of
 * `http/contract.ts` (the same ones `GET /openapi.json` is built from).
 * Every failure is a 422 `validation_error` naming the field and the rule.
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
import { z } from "zod";
import { HttpError } from "./errors.ts";
import {
  DEFAULT_DLQ_LIMIT,
  DlqBulkBody,
  DlqQueryParams,
  LoadBody,
  RateBody,
  ReplayBody,
  UpstreamBody,
} from "./contract.ts";

export {
  MAX_BURST,
  MAX_DLQ_LIMIT,
  MAX_LATENCY_MS,
  MAX_LOAD_RATE,
  MAX_PAYLOAD_LIMIT,
  MAX_RATE,
  MAX_TIME_MS,
  MIN_RATE,
} from "./contract.ts";

function invalid(field: string, rule: string): HttpError {
  return new HttpError(422, "validation_error", `Invalid ${field}: ${rule}`);
}

/** Allowed keys of a (possibly refined) strict object schema. */
function keysOf(schema: z.ZodType): string[] {
  let s: unknown = schema;
  while (s && !(s instanceof z.ZodObject) && (s as z.ZodType)._zod?.def) {
    const def = (s as z.ZodType)._zod.def as { in?: unknown; innerType?: unknown };
    s = def.in ?? def.innerType;
    if (s === undefined) break;
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

/**
 * `schema.safeParse(input)`, or the 422 of its first issue: an unknown field
 * first (as `Invalid <key>: unknown field (allowed: ...)`), then the first
 * field in the schema's order (`Invalid <field>: <rule>`).
 */
function parseWith<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  const issues = r.error.issues;
  const unknown = issues.find((i) => i.code === "unrecognized_keys");
  if (unknown && unknown.code === "unrecognized_keys") {
    throw invalid(unknown.keys[0], `unknown field (allowed: ${keysOf(schema).join(", ")})`);
  }
  const first = issues[0];
  throw invalid(String(first.path[0] ?? "body"), first.message);
}

/** Body of `PUT /control/rate`: `{rate 0.001..1e6, burst?: integer 1..1e6}`. */
export function parseRate(body: Record<string, unknown>): RateSetting {
  const { rate, burst } = parseWith(RateBody, body);
  return burst === undefined ? { rate } : { rate, burst };
}

/** Body of `PUT /control/load`: `{rate 0..10000}` (0 stops the generator). */
export function parseLoad(body: Record<string, unknown>): { rate: number } {
  return parseWith(LoadBody, body);
}

/** Body of `PUT /control/upstream`: `{latencyMs? 0..600000, errorRate? 0..1, errorStatus? 500..599, hang? boolean}`, at least one. */
export function parseUpstreamSim(body: Record<string, unknown>): UpstreamSimSetting {
  const v = parseWith(UpstreamBody, body);
  const out: UpstreamSimSetting = {};
  if (v.latencyMs !== undefined) out.latencyMs = v.latencyMs;
  if (v.errorRate !== undefined) out.errorRate = v.errorRate;
  if (v.errorStatus !== undefined) out.errorStatus = v.errorStatus;
  if (v.hang !== undefined) out.hang = v.hang;
  return out;
}

/** Body of `POST /control/replay`: `{topic, from, to, rate?, partitions?}` with from < to. */
export function parseReplay(body: Record<string, unknown>): ReplayRequest {
  const v = parseWith(ReplayBody, body);
  const req: ReplayRequest = { topic: v.topic, from: v.from, to: v.to };
  if (v.rate !== undefined) req.rate = v.rate;
  if (v.partitions !== undefined) req.partitions = v.partitions;
  return req;
}

/** Body of `POST /dlq/replay`: `{topic?, reason?, from?, to?, rate?}` (from < to when both). */
export function parseDlqBulk(body: Record<string, unknown>): DlqBulkReplayRequest {
  const v = parseWith(DlqBulkBody, body);
  const req: DlqBulkReplayRequest = {};
  if (v.topic !== undefined) req.topic = v.topic;
  if (v.reason !== undefined) req.reason = v.reason as FailureReasonName;
  if (v.from !== undefined) req.from = v.from;
  if (v.to !== undefined) req.to = v.to;
  if (v.rate !== undefined) req.rate = v.rate;
  return req;
}

/**
 * Query of `GET /dlq`: `topic?`, `limit` (1..1000, default 100), `cursor?`,
 * `reason?`, `from?`/`to?` (ISO 8601 or epoch ms), `order?`, `payload_limit?`.
 */
export function parseDlqQuery(q: Record<string, string>): DlqQuery {
  const v = parseWith(DlqQueryParams, q);
  const query: DlqQuery = { limit: v.limit ?? DEFAULT_DLQ_LIMIT };
  if (v.order !== undefined) query.order = v.order;
  if (v.payload_limit !== undefined) query.payloadLimit = v.payload_limit;
  if (v.topic !== undefined) query.topic = v.topic;
  if (v.cursor !== undefined) query.cursor = v.cursor;
  if (v.reason !== undefined) query.reason = v.reason as FailureReasonName;
  if (v.from !== undefined) query.from = v.from;
  if (v.to !== undefined) query.to = v.to;
  return query;
}
