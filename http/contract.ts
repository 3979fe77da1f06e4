/**
 * The HTTP contract of the control, dead-letter, replay, status and health
 * routes, written once as zod schemas: `http/validate.ts` parses requests
 * with them and `GET /openapi.json` is built from them (OpenAPI 3.1, JSON
 * Schema from `z.toJSONSchema`). Plain zod and the small builder below
 * rather than a Hono OpenAPI integration: no extra dependency, nothing to
 * fetch at run time, and the routes stay plain Hono handlers.
 *
 * Every field schema carries the rule of its 422 message (`Invalid <field>:
 * <rule>`) as its zod error, so the message names the allowed range.
 *
 * @module
 */
import { z } from "zod";
import { FAILURE_REASONS } from "../actors/audit/event.ts";
import { MAX_BURST, MAX_LOAD_RATE, MAX_RATE, MIN_RATE, TOPIC_NAME } from "../supervisors/config.ts";

export { MAX_BURST, MAX_LOAD_RATE, MAX_RATE, MIN_RATE };

/** Largest time accepted (ms since the epoch): the last instant a JavaScript `Date` holds. */
export const MAX_TIME_MS = 8.64e15;
/** Largest simulated upstream latency, ms (`PUT /control/upstream`). */
export const MAX_LATENCY_MS = 600_000;
/** Largest page of `GET /dlq`. */
export const MAX_DLQ_LIMIT = 1000;
/** Default page of `GET /dlq`. */
export const DEFAULT_DLQ_LIMIT = 100;
/** Largest `payload_limit` of `GET /dlq`, characters. */
export const MAX_PAYLOAD_LIMIT = 1_048_576;

// ---- rules (the text after `Invalid <field>: `) ----

const RATE_RULE = `must be a number from ${MIN_RATE} to ${MAX_RATE} (records/s)`;
const BURST_RULE = `must be an integer from 1 to ${MAX_BURST}`;
const LOAD_RULE = `must be a number from 0 to ${MAX_LOAD_RATE} (records/s)`;
const LATENCY_RULE = `must be a number from 0 to ${MAX_LATENCY_MS}`;
const ERROR_RATE_RULE = "must be a number from 0 to 1";
const ERROR_STATUS_RULE = "must be an integer from 500 to 599";
const TOPIC_RULE = "must be a Kafka topic name";
const TIME_RULE = `must be an ISO 8601 time or epoch milliseconds from 0 to ${MAX_TIME_MS}`;
const REASON_RULE = `must be one of ${FAILURE_REASONS.join(", ")}`;
const PARTITIONS_RULE = "must be a non-empty list of distinct partition numbers";
const LIMIT_RULE = `must be an integer from 1 to ${MAX_DLQ_LIMIT}`;
const PAYLOAD_LIMIT_RULE = `must be an integer from 1 to ${MAX_PAYLOAD_LIMIT}`;

function num(min: number, max: number, rule: string) {
  return z.number({ error: rule }).min(min, { error: rule }).max(max, { error: rule });
}

function int(min: number, max: number, rule: string) {
  return num(min, max, rule).int({ error: rule });
}

const rate = () => num(MIN_RATE, MAX_RATE, RATE_RULE).describe("Records per second");
const topic = () =>
  z.string({ error: TOPIC_RULE }).regex(TOPIC_NAME, { error: TOPIC_RULE }).describe(
    "Kafka topic name",
  );
const reason = () =>
  z.enum(FAILURE_REASONS as [string, ...string[]], { error: REASON_RULE }).describe(
    "Dead-letter failure_reason",
  );

/** Epoch ms of an ISO 8601 text or a number; `undefined` when out of range or unreadable. */
function timeMs(v: number | string): number | undefined {
  const ms = typeof v === "number" ? v : Date.parse(v);
  return Number.isFinite(ms) && ms >= 0 && ms <= MAX_TIME_MS ? ms : undefined;
}

/** A time in a JSON body: ISO 8601 text or epoch milliseconds, parsed to epoch ms. */
const time = () =>
  z.union([
    z.number({ error: TIME_RULE }).min(0).max(MAX_TIME_MS),
    z.string({ error: TIME_RULE }).meta({ format: "date-time" }),
  ], { error: TIME_RULE }).transform((v, ctx) => {
    const ms = timeMs(v);
    if (ms === undefined) {
      ctx.issues.push({ code: "custom", message: TIME_RULE, input: v });
      return z.NEVER;
    }
    return ms;
  }).describe("ISO 8601 time or epoch milliseconds");

/** A time in a query string: digits are epoch milliseconds, anything else ISO 8601. */
const queryTime = () =>
  z.string({ error: TIME_RULE }).transform((v, ctx) => {
    const ms = timeMs(/^\d+$/.test(v) ? Number(v) : v);
    if (ms === undefined) {
      ctx.issues.push({ code: "custom", message: TIME_RULE, input: v });
      return z.NEVER;
    }
    return ms;
  }).describe("ISO 8601 time or epoch milliseconds");

/** An integer in a query string. */
const queryInt = (min: number, max: number, rule: string) =>
  z.string({ error: rule }).regex(/^\d+$/, { error: rule }).transform(Number).pipe(
    int(min, max, rule),
  );

function beforeTo(v: { from?: number; to?: number }): boolean {
  return v.from === undefined || v.to === undefined || v.from < v.to;
}

const FROM_BEFORE_TO = { error: "must be before to", path: ["from"] };

// ---- request schemas ----

/** Body of `PUT /control/rate`. */
export const RateBody = z.strictObject({
  rate: rate(),
  burst: int(1, MAX_BURST, BURST_RULE).optional().describe("Bucket size, records"),
});

/** Body of `PUT /control/load` (0 stops the generator). */
export const LoadBody = z.strictObject({
  rate: num(0, MAX_LOAD_RATE, LOAD_RULE).describe("Records per second; 0 stops the generator"),
});

/** Body of `PUT /control/upstream`: at least one field. */
export const UpstreamBody = z.strictObject({
  latencyMs: num(0, MAX_LATENCY_MS, LATENCY_RULE).optional(),
  errorRate: num(0, 1, ERROR_RATE_RULE).optional(),
  errorStatus: int(500, 599, ERROR_STATUS_RULE).optional().describe(
    "Status of the error answers; default 503 (records wait), 500 makes poison records",
  ),
  hang: z.boolean({ error: "must be true or false" }).optional(),
}).refine((v) => Object.values(v).some((x) => x !== undefined), {
  error: "give at least one of latencyMs, errorRate, errorStatus, hang",
  path: ["body"],
});

/** Body of `POST /control/replay` (from < to). */
export const ReplayBody = z.strictObject({
  topic: topic(),
  from: time(),
  to: time(),
  rate: rate().optional(),
  partitions: z.array(
    z.number({ error: PARTITIONS_RULE }).int({ error: PARTITIONS_RULE }).min(0, {
      error: PARTITIONS_RULE,
    }),
    { error: PARTITIONS_RULE },
  ).min(1, { error: PARTITIONS_RULE }).refine(
    (ps) => new Set(ps).size === ps.length,
    { error: PARTITIONS_RULE },
  ).optional(),
}).refine(beforeTo, FROM_BEFORE_TO);

/** Body of `POST /dlq/replay`: every filter optional (from < to when both). */
export const DlqBulkBody = z.strictObject({
  topic: topic().optional(),
  reason: reason().optional(),
  from: time().optional(),
  to: time().optional(),
  rate: rate().optional(),
}).refine(beforeTo, FROM_BEFORE_TO);

/** Query of `GET /dlq` (in the order the fields are checked). */
export const DlqQueryParams = z.strictObject({
  order: z.enum(["oldest", "newest"], { error: "must be oldest or newest" }).optional(),
  payload_limit: queryInt(1, MAX_PAYLOAD_LIMIT, PAYLOAD_LIMIT_RULE).optional().describe(
    "Cut original_payload to this many characters",
  ),
  topic: topic().optional(),
  limit: queryInt(1, MAX_DLQ_LIMIT, LIMIT_RULE).optional().describe(
    `Page size, default ${DEFAULT_DLQ_LIMIT}`,
  ),
  cursor: z.string().optional().describe("next_cursor of the previous page"),
  reason: reason().optional(),
  from: queryTime().optional(),
  to: queryTime().optional(),
}).refine(beforeTo, FROM_BEFORE_TO);

// ---- response schemas ----

/** Every error answer. */
export const ErrorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string() }),
});

const ReadyCheck = z.looseObject({ ok: z.boolean(), detail: z.string().optional() });

/** `GET /status` without the readiness (the pipeline's summary). */
const StatusSummary = z.looseObject({
  state: z.string(),
  version: z.string().optional(),
  mode: z.string().optional(),
  uptime_s: z.number().optional(),
  rate: z.looseObject({ rate: z.number(), burst: z.number() }).optional(),
  circuit: z.string().optional(),
  partitions: z.array(z.looseObject({
    topic: z.string(),
    partition: z.number(),
    state: z.string(),
    lag: z.number().optional(),
    inflight: z.number().optional(),
  })).optional(),
});

export const StatusResponse = StatusSummary.extend({
  ready: z.boolean(),
  checks: z.record(z.string(), ReadyCheck),
});

const OkStatus = z.object({ ok: z.literal(true), status: StatusSummary });
const Started = z.object({ ok: z.literal(true), id: z.string() });
const ReplayProgress = z.looseObject({
  id: z.string(),
  topic: z.string(),
  state: z.enum(["planning", "running", "paused", "done", "cancelled", "failed"]),
});

// ---- the OpenAPI document ----

type Schema = z.ZodType;

interface Operation {
  method: "get" | "post" | "put" | "delete";
  path: string;
  summary: string;
  auth: boolean;
  body?: Schema;
  query?: z.ZodObject | z.ZodPipe | Schema;
  pathParams?: string[];
  responses: Record<string, { description: string; schema?: Schema }>;
}

const OPERATIONS: Operation[] = [
  {
    method: "get",
    path: "/health/live",
    summary: "Liveness: the process answers",
    auth: false,
    responses: { "200": { description: "Live", schema: z.object({ live: z.literal(true) }) } },
  },
  {
    method: "get",
    path: "/health/ready",
    summary: "Readiness: every check passes",
    auth: false,
    responses: {
      "200": {
        description: "Ready",
        schema: z.object({ ready: z.literal(true), checks: z.record(z.string(), ReadyCheck) }),
      },
      "503": {
        description: "Not ready: the failing checks",
        schema: z.object({
          ready: z.literal(false),
          not_ready: z.array(z.string()),
          checks: z.record(z.string(), ReadyCheck),
          error: ErrorResponse.shape.error,
        }),
      },
    },
  },
  {
    method: "get",
    path: "/status",
    summary: "Pipeline state, rate, circuit, partitions and readiness",
    auth: false,
    responses: { "200": { description: "Status", schema: StatusResponse } },
  },
  {
    method: "post",
    path: "/control/drain",
    summary: "Stop fetching (in-flight records finish)",
    auth: true,
    responses: { "200": { description: "Draining", schema: OkStatus } },
  },
  {
    method: "post",
    path: "/control/resume",
    summary: "Fetch again after a drain",
    auth: true,
    responses: { "200": { description: "Resumed", schema: OkStatus } },
  },
  {
    method: "post",
    path: "/control/shutdown",
    summary: "Start the graceful shutdown",
    auth: true,
    responses: {
      "202": {
        description: "Shutting down",
        schema: z.object({ ok: z.literal(true), state: z.literal("shutting_down") }),
      },
    },
  },
  {
    method: "put",
    path: "/control/rate",
    summary: "Change the rate limiter",
    auth: true,
    body: RateBody,
    responses: {
      "200": {
        description: "Setting now in force",
        schema: z.object({
          ok: z.literal(true),
          rate: z.looseObject({ rate: z.number(), burst: z.number() }),
        }),
      },
    },
  },
  {
    method: "put",
    path: "/control/load",
    summary: "Change the local load generator's rate (local mode)",
    auth: true,
    body: LoadBody,
    responses: {
      "200": {
        description: "Rate now in force",
        schema: z.object({ ok: z.literal(true), load: z.looseObject({ rate: z.number() }) }),
      },
    },
  },
  {
    method: "put",
    path: "/control/upstream",
    summary: "Change the simulated upstream (local mode)",
    auth: true,
    body: UpstreamBody,
    responses: {
      "200": {
        description: "Simulation now in force",
        schema: z.object({ ok: z.literal(true), upstream: z.looseObject({}) }),
      },
    },
  },
  {
    method: "post",
    path: "/control/replay",
    summary: "Replay a topic's time window from the audit trail",
    auth: true,
    body: ReplayBody,
    responses: {
      "202": { description: "Replay started (Location: its progress)", schema: Started },
    },
  },
  {
    method: "get",
    path: "/control/replay/{id}",
    summary: "Progress of a replay",
    auth: true,
    pathParams: ["id"],
    responses: { "200": { description: "Progress", schema: ReplayProgress } },
  },
  {
    method: "delete",
    path: "/control/replay/{id}",
    summary: "Cancel a replay",
    auth: true,
    pathParams: ["id"],
    responses: { "200": { description: "Progress after the cancel", schema: ReplayProgress } },
  },
  {
    method: "get",
    path: "/dlq",
    summary: "List dead letters, one page",
    auth: true,
    query: DlqQueryParams,
    responses: {
      "200": {
        description: "One page",
        schema: z.object({
          items: z.array(z.looseObject({})),
          next_cursor: z.string().optional(),
        }),
      },
    },
  },
  {
    method: "post",
    path: "/dlq/replay",
    summary: "Replay the dead letters matching the filters",
    auth: true,
    body: DlqBulkBody,
    responses: {
      "202": { description: "Replay started (Location: its progress)", schema: Started },
    },
  },
  {
    method: "post",
    path: "/dlq/{id}/replay",
    summary: "Replay one dead letter",
    auth: true,
    pathParams: ["id"],
    responses: {
      "202": {
        description: "Outcome",
        schema: z.looseObject({ ok: z.literal(true), id: z.string(), status: z.string() }),
      },
      "503": { description: "Breaker open: nothing sent (circuit_open)", schema: ErrorResponse },
      "504": {
        description: "Delivery did not finish in time: nothing recorded (replay_timeout)",
        schema: ErrorResponse,
      },
    },
  },
];

function jsonSchema(s: Schema): Record<string, unknown> {
  const out = z.toJSONSchema(s, { io: "input", unrepresentable: "any", target: "draft-2020-12" });
  delete (out as Record<string, unknown>).$schema;
  return out as Record<string, unknown>;
}

function queryParameters(s: Schema): unknown[] {
  const json = jsonSchema(s) as {
    properties?: Record<string, Record<string, unknown>>;
    required?: string[];
  };
  return Object.entries(json.properties ?? {}).map(([name, schema]) => {
    const { description, ...rest } = schema;
    return {
      name,
      in: "query",
      required: json.required?.includes(name) ?? false,
      ...(description ? { description } : {}),
      schema: rest,
    };
  });
}

/** The OpenAPI 3.1 document served at `GET /openapi.json`. */
export function openApiDocument(version = "0.1.0"): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) {
    const responses: Record<string, unknown> = {};
    for (const [status, r] of Object.entries(op.responses)) {
      responses[status] = {
        description: r.description,
        ...(r.schema ? { content: { "application/json": { schema: jsonSchema(r.schema) } } } : {}),
      };
    }
    responses.default = {
      description: "Error (401/403 without a valid token, 404, 409, 413, 415, 422 ...)",
      content: { "application/json": { schema: jsonSchema(ErrorResponse) } },
    };
    const parameters = [
      ...(op.pathParams ?? []).map((name) => ({
        name,
        in: "path",
        required: true,
        schema: { type: "string" },
      })),
      ...(op.query ? queryParameters(op.query) : []),
    ];
    (paths[op.path] ??= {})[op.method] = {
      summary: op.summary,
      operationId: `${op.method}${
        op.path.replace(/\{(\w+)\}/g, "By_$1").replace(/[^a-zA-Z0-9]+(.)?/g, (_, ch) =>
          ch ? ch.toUpperCase() : "")
      }`,
      ...(op.auth ? { security: [{ bearer: [] }] } : { security: [] }),
      ...(parameters.length ? { parameters } : {}),
      ...(op.body
        ? {
          requestBody: {
            required: true,
            content: { "application/json": { schema: jsonSchema(op.body) } },
          },
        }
        : {}),
      responses,
    };
  }
  paths["/openapi.json"] = {
    get: {
      summary: "This document",
      operationId: "getOpenapiJson",
      security: [],
      responses: {
        "200": {
          description: "OpenAPI 3.1 document",
          content: { "application/json": { schema: { type: "object" } } },
        },
      },
    },
  };
  return {
    openapi: "3.1.0",
    info: {
      title: "sluice",
      version,
      description:
        "Control, dead-letter, replay, status and health routes of sluice. Control and dead-letter routes need `Authorization: Bearer <SLUICE_CONTROL_TOKEN>` (or a loopback client when no token is set).",
    },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    security: [{ bearer: [] }],
    paths,
  };
}
