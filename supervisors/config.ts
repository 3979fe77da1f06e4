/**
 * sluice's configuration: one declarative schema, validated once at start.
 *
 * Every option has a name, an environment variable (always `SLUICE_`-prefixed),
 * a type, a default and a one-line doc. {@link loadConfig} reads the
 * environment, reports every problem at once in a {@link ConfigError}, and
 * returns a frozen {@link Config}. The README's configuration table is checked
 * against {@link CONFIG_SCHEMA} by `tests/unit/config_test.ts`.
 *
 * The config lives beside the supervisor tree because the tree is what is
 * built from it: every actor receives its slice of the config from there.
 *
 * @module
 */

/** The kinds of value an option can take. */
export type OptionType =
  | "string"
  | "secret"
  | "int"
  | "number"
  | "bool"
  | "list"
  | "url"
  | "enum";

/** One entry of the schema. */
export interface OptionSpec {
  /** Key in the {@link Config} object. */
  readonly key: string;
  /** Environment variable. */
  readonly env: string;
  readonly type: OptionType;
  /** Default value (already parsed); `undefined` means "unset". */
  readonly default: unknown;
  /** One line for the README and `--help`. */
  readonly doc: string;
  /** Allowed values, for `enum`. */
  readonly choices?: readonly string[];
  /** Inclusive bounds, for `int` and `number`. */
  readonly min?: number;
  readonly max?: number;
}

import { redactUrl } from "../actors/runtime/redact.ts";

const MiB = 1024 * 1024;

/** Largest delay a JavaScript timer honours (2^31 − 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;
/** Largest records/s accepted for the rate limiter, a replay or the load generator's bound below. */
export const MAX_RATE = 1_000_000;
/** Smallest non-zero records/s: one record per 1,000 s keeps the limiter's timer in range. */
export const MIN_RATE = 0.001;
/** Largest token bucket. */
export const MAX_BURST = 1_000_000;
/** Largest load generator rate (local mode test load), records/s. */
export const MAX_LOAD_RATE = 10_000;

/**
 * The schema. Order is the order of the README table and of `--print-config`.
 */
export const CONFIG_SCHEMA = [
  // Kafka
  {
    key: "kafkaBrokers",
    env: "SLUICE_KAFKA_BROKERS",
    type: "list",
    default: [],
    doc: "Kafka bootstrap servers, comma-separated; unset = embedded in-process log",
  },
  {
    key: "topics",
    env: "SLUICE_TOPICS",
    type: "list",
    default: ["events"],
    doc: "Topics to consume, comma-separated; dead letters go to `<topic><dlq suffix>`",
  },
  {
    key: "groupId",
    env: "SLUICE_GROUP_ID",
    type: "string",
    default: "sluice",
    doc: "Kafka consumer group id",
  },
  {
    key: "clientId",
    env: "SLUICE_CLIENT_ID",
    type: "string",
    default: "sluice",
    doc: "Kafka client id (also the `processing_host` prefix in dead letters)",
  },
  {
    key: "dlqSuffix",
    env: "SLUICE_DLQ_SUFFIX",
    type: "string",
    default: "-dlq",
    doc: "Suffix of the dead-letter topic",
  },
  {
    key: "kafkaSessionTimeoutMs",
    env: "SLUICE_KAFKA_SESSION_TIMEOUT_MS",
    type: "int",
    default: 30000,
    min: 6000,
    max: 1_800_000,
    doc: "Consumer group session timeout: how long a crashed instance keeps its partitions (ms)",
  },
  {
    key: "kafkaClient",
    env: "SLUICE_KAFKA_CLIENT",
    type: "enum",
    choices: ["kafkajs", "platformatic"],
    default: "kafkajs",
    doc:
      "Kafka client library: `kafkajs` (default) or `platformatic` (`@platformatic/kafka`; README: Kafka client choice)",
  },
  {
    key: "embeddedPartitions",
    env: "SLUICE_EMBEDDED_PARTITIONS",
    type: "int",
    default: 3,
    min: 1,
    max: 256,
    doc: "Partitions per topic of the embedded log (local mode only)",
  },
  // Pipeline
  {
    key: "orderingMode",
    env: "SLUICE_ORDERING",
    type: "enum",
    choices: ["partition", "key", "none"],
    default: "partition",
    doc: "Ordering: `partition` (strict), `key` (in order per key), `none`",
  },
  {
    key: "maxInflight",
    env: "SLUICE_MAX_INFLIGHT",
    type: "int",
    default: 64,
    min: 1,
    max: 100_000,
    doc: "Records in flight per partition before the partition is paused",
  },
  {
    key: "memoryBudgetMb",
    env: "SLUICE_MEMORY_BUDGET_MB",
    type: "int",
    default: 64,
    min: 16,
    max: 65_536,
    doc: "Memory for fetched records: a Kafka fetch takes at most 1/8 of it, a partition at most " +
      "`SLUICE_MAX_INFLIGHT` × 256 B (64 KiB–1 MiB) of that",
  },
  {
    key: "maxRecordBytes",
    env: "SLUICE_MAX_RECORD_BYTES",
    type: "int",
    default: 1 * MiB,
    min: 1,
    max: 64 * MiB,
    doc: "Largest record value accepted; larger ones are dead-lettered (VALIDATION_ERROR)",
  },
  {
    key: "schemaDir",
    env: "SLUICE_SCHEMA_DIR",
    type: "string",
    default: undefined,
    doc:
      "Directory of `<topic>.schema.json` payload JSON Schemas (checked at start); unset = no schema check",
  },
  {
    key: "otlpEndpoint",
    env: "SLUICE_OTLP_ENDPOINT",
    type: "url",
    default: undefined,
    doc:
      "OTLP/HTTP base URL for traces (+`/v1/traces`); unset = `OTEL_EXPORTER_OTLP_ENDPOINT`; neither = off",
  },
  {
    key: "traceSampleRatio",
    env: "SLUICE_TRACE_SAMPLE_RATIO",
    type: "number",
    default: 0.1,
    min: 0,
    max: 1,
    doc:
      "Share of records traced, by trace id (a record whose `traceparent` is sampled is always traced)",
  },
  {
    key: "rateLimit",
    env: "SLUICE_RATE_LIMIT",
    type: "number",
    default: 1000,
    min: 0,
    max: MAX_RATE,
    doc: "Records per second sent upstream (token bucket); 0 = unlimited, else 0.001 to 1000000",
  },
  {
    key: "rateBurst",
    env: "SLUICE_RATE_BURST",
    type: "int",
    default: 100,
    min: 1,
    max: MAX_BURST,
    doc: "Token bucket size (burst)",
  },
  {
    key: "adaptive",
    env: "SLUICE_ADAPTIVE",
    type: "enum",
    choices: ["on", "off"],
    default: "on",
    doc:
      "Adapt to the upstream: rate, in-flight limit, Retry-After, outage holds; `off` = fixed rate",
  },
  // Upstream
  {
    key: "upstreamUrl",
    env: "SLUICE_UPSTREAM_URL",
    type: "url",
    default: undefined,
    doc: "Upstream endpoint each record is POSTed to; unset = simulated upstream",
  },
  {
    key: "connectTimeoutMs",
    env: "SLUICE_CONNECT_TIMEOUT_MS",
    type: "int",
    default: 2000,
    min: 1,
    max: MAX_TIMER_MS,
    doc: "Upstream connect timeout (ms)",
  },
  {
    key: "readTimeoutMs",
    env: "SLUICE_READ_TIMEOUT_MS",
    type: "int",
    default: 5000,
    min: 1,
    max: MAX_TIMER_MS,
    doc: "Upstream read timeout: from request sent to full response (ms)",
  },
  {
    key: "globalTimeoutMs",
    env: "SLUICE_GLOBAL_TIMEOUT_MS",
    type: "int",
    default: 30000,
    min: 1,
    max: MAX_TIMER_MS,
    doc: "Upper bound for one record's delivery, all retries included (ms)",
  },
  {
    key: "maxRetries",
    env: "SLUICE_MAX_RETRIES",
    type: "int",
    default: 3,
    min: 0,
    max: 100,
    doc: "Retries for 408/429/5xx/timeouts before dead-lettering",
  },
  {
    key: "retryBaseMs",
    env: "SLUICE_RETRY_BASE_MS",
    type: "int",
    default: 100,
    min: 1,
    max: MAX_TIMER_MS,
    doc: "First retry backoff (ms); doubles each retry, with full jitter",
  },
  {
    key: "retryMaxMs",
    env: "SLUICE_RETRY_MAX_MS",
    type: "int",
    default: 5000,
    min: 1,
    max: MAX_TIMER_MS,
    doc: "Largest retry backoff (ms)",
  },
  // Circuit breaker
  {
    key: "breakerPolicy",
    env: "SLUICE_BREAKER_POLICY",
    type: "enum",
    choices: ["pause", "dlq"],
    default: "pause",
    doc: "While open: `pause` partitions (lag grows) or `dlq` (dead-letter with CIRCUIT_OPEN)",
  },
  {
    key: "breakerErrorPercent",
    env: "SLUICE_BREAKER_ERROR_PERCENT",
    type: "number",
    default: 50,
    min: 1,
    max: 100,
    doc: "Failure percentage over the rolling window that opens the breaker",
  },
  {
    key: "breakerVolume",
    env: "SLUICE_BREAKER_VOLUME",
    type: "int",
    default: 10,
    min: 1,
    max: 1_000_000,
    doc: "Calls in the rolling window before the breaker may open",
  },
  {
    key: "breakerWindowMs",
    env: "SLUICE_BREAKER_WINDOW_MS",
    type: "int",
    default: 10000,
    min: 100,
    max: MAX_TIMER_MS,
    doc: "Rolling window of the breaker statistics (ms)",
  },
  {
    key: "breakerResetMs",
    env: "SLUICE_BREAKER_RESET_MS",
    type: "int",
    default: 10000,
    min: 10,
    max: MAX_TIMER_MS,
    doc: "Time open before a half-open probe (ms)",
  },
  // Audit
  {
    key: "s3Endpoint",
    env: "SLUICE_S3_ENDPOINT",
    type: "url",
    default: undefined,
    doc: "S3 / Ceph RGW endpoint; unset = local audit store under `<data dir>/audit`",
  },
  {
    key: "s3Bucket",
    env: "SLUICE_S3_BUCKET",
    type: "string",
    default: "sluice-audit",
    doc: "Audit bucket (created at start when missing)",
  },
  {
    key: "s3Region",
    env: "SLUICE_S3_REGION",
    type: "string",
    default: "us-east-1",
    doc: "S3 region",
  },
  {
    key: "s3AccessKey",
    env: "SLUICE_S3_ACCESS_KEY",
    type: "secret",
    default: undefined,
    doc: "S3 access key",
  },
  {
    key: "s3SecretKey",
    env: "SLUICE_S3_SECRET_KEY",
    type: "secret",
    default: undefined,
    doc: "S3 secret key",
  },
  {
    key: "auditPrefix",
    env: "SLUICE_AUDIT_PREFIX",
    type: "string",
    default: "audit",
    doc: "Object key prefix of audit batches",
  },
  {
    key: "auditBatchEvents",
    env: "SLUICE_AUDIT_BATCH_EVENTS",
    type: "int",
    default: 5000,
    min: 1,
    max: 1_000_000,
    doc: "Upload a batch when it holds this many events",
  },
  {
    key: "auditBatchBytes",
    env: "SLUICE_AUDIT_BATCH_BYTES",
    type: "int",
    default: 4 * MiB,
    min: 1024,
    max: 1024 * MiB,
    doc: "Upload a batch when it holds this many bytes (uncompressed)",
  },
  {
    key: "auditBatchAgeMs",
    env: "SLUICE_AUDIT_BATCH_AGE_MS",
    type: "int",
    default: 5000,
    min: 10,
    max: MAX_TIMER_MS,
    doc: "Upload a batch when its oldest event is this old (ms)",
  },
  {
    key: "auditTopic",
    env: "SLUICE_AUDIT_TOPIC",
    type: "string",
    default: undefined,
    doc:
      "Audit topic (created at start when missing); unset = `<group id>-audit`. Offsets commit only after their audit events are acknowledged here",
  },
  {
    key: "auditMinRetentionHours",
    env: "SLUICE_AUDIT_MIN_RETENTION_HOURS",
    type: "int",
    default: 24,
    min: 1,
    max: 87600,
    doc:
      "Warn at start when the audit topic keeps events for less than this (hours): the longest RGW outage it rides out",
  },
  {
    key: "auditDedupeLookbackMs",
    env: "SLUICE_AUDIT_DEDUPE_LOOKBACK_MS",
    type: "int",
    default: 600000,
    min: 0,
    max: 86400000,
    doc:
      "On assignment, how far back the audit topic is read to skip records already audited but not committed (ms)",
  },
  {
    key: "auditDedupeTailEvents",
    env: "SLUICE_AUDIT_DEDUPE_TAIL_EVENTS",
    type: "int",
    default: 20000,
    min: 0,
    max: 10000000,
    doc: "On assignment, read at least this many of the last events of the audit partition",
  },
  // Storage and HTTP
  {
    key: "dataDir",
    env: "SLUICE_DATA_DIR",
    type: "string",
    default: "./data",
    doc: "Embedded log (local mode), idempotency store (Deno KV) and local audit store",
  },
  {
    key: "httpPort",
    env: "SLUICE_HTTP_PORT",
    type: "int",
    default: 9090,
    min: 0,
    max: 65535,
    doc: "HTTP port (health, metrics, WebSocket, control, inspector)",
  },
  {
    key: "httpHost",
    env: "SLUICE_HTTP_HOST",
    type: "string",
    default: "0.0.0.0",
    doc: "HTTP listen address",
  },
  {
    key: "controlToken",
    env: "SLUICE_CONTROL_TOKEN",
    type: "secret",
    default: undefined,
    doc:
      "Bearer token for /control and /dlq; unset = those routes answer loopback clients only, and no browser",
  },
  {
    key: "allowedOrigins",
    env: "SLUICE_ALLOWED_ORIGINS",
    type: "list",
    default: [],
    doc:
      "Browser origins allowed besides the instance's own (`https://ops.example.com`), for WebSockets and no-token control",
  },
  {
    key: "httpHeadersTimeoutMs",
    env: "SLUICE_HTTP_HEADERS_TIMEOUT_MS",
    type: "int",
    default: 10000,
    min: 100,
    max: 600_000,
    doc: "Time a client has to send its request headers before the connection is closed (408) (ms)",
  },
  {
    key: "httpRequestTimeoutMs",
    env: "SLUICE_HTTP_REQUEST_TIMEOUT_MS",
    type: "int",
    default: 30000,
    min: 100,
    max: 600_000,
    doc: "Time a client has to send its whole request, body included (408) (ms)",
  },
  {
    key: "commitTimeoutMs",
    env: "SLUICE_COMMIT_TIMEOUT_MS",
    type: "int",
    default: 10000,
    min: 100,
    max: 600000,
    doc: "An offset commit that does not answer within this time counts as failed (ms)",
  },
  {
    key: "watchdogMs",
    env: "SLUICE_WATCHDOG_MS",
    type: "int",
    default: 60000,
    min: 0,
    max: 3600000,
    doc:
      "Progress watchdogs: no record finished (pipeline) or no audit upload committed (uploader) for this long with work waiting → not ready, restarted (ms; 0 = off)",
  },
  {
    key: "shutdownDrainMs",
    env: "SLUICE_SHUTDOWN_DRAIN_MS",
    type: "int",
    default: 15000,
    min: 1,
    max: 3_600_000,
    doc: "Shutdown: deadline to finish in-flight records (ms)",
  },
  {
    key: "shutdownCommitMs",
    env: "SLUICE_SHUTDOWN_COMMIT_MS",
    type: "int",
    default: 5000,
    min: 1,
    max: 3_600_000,
    doc: "Shutdown: deadline to commit offsets and leave the group (ms)",
  },
  {
    key: "shutdownFlushMs",
    env: "SLUICE_SHUTDOWN_FLUSH_MS",
    type: "int",
    default: 10000,
    min: 1,
    max: 3_600_000,
    doc: "Shutdown: deadline to upload what waits in the audit topic (ms)",
  },
  // Logging
  {
    key: "logLevel",
    env: "SLUICE_LOG_LEVEL",
    type: "enum",
    choices: ["debug", "info", "warn", "error"],
    default: "info",
    doc: "Log level",
  },
  {
    key: "logFormat",
    env: "SLUICE_LOG_FORMAT",
    type: "enum",
    choices: ["auto", "json", "pretty"],
    default: "auto",
    doc: "Log format: `auto` = human-readable on a terminal, one JSON object per line otherwise",
  },
  // Replay and idempotency
  {
    key: "idempotencyTtlHours",
    env: "SLUICE_IDEMPOTENCY_TTL_HOURS",
    type: "int",
    default: 168,
    min: 1,
    max: 24 * 365,
    doc:
      "How long delivered idempotency keys are remembered (`${dataDir}/idempotency.kv`); replays skip them (h)",
  },
  {
    key: "idempotencyFlushMs",
    env: "SLUICE_IDEMPOTENCY_FLUSH_MS",
    type: "int",
    default: 100,
    min: 10,
    max: 10000,
    doc:
      "Write-behind period of delivered keys to the idempotency store; a crash loses at most this much (ms)",
  },
  {
    key: "replayRate",
    env: "SLUICE_REPLAY_RATE",
    type: "number",
    default: 100,
    min: MIN_RATE,
    max: MAX_RATE,
    doc: "Default rate of a replay (window or dead letters) when the request sets none (records/s)",
  },
] as const satisfies readonly OptionSpec[];

type Spec = (typeof CONFIG_SCHEMA)[number];
type ValueOf<S extends Spec> = S["type"] extends "int" | "number" ? number
  : S["type"] extends "bool" ? boolean
  : S["type"] extends "list" ? string[]
  : S["type"] extends "enum" ? S extends { choices: readonly (infer C)[] } ? C : string
  : S["default"] extends undefined ? string | undefined
  : string;

/** The validated configuration. */
export type Config = { readonly [S in Spec as S["key"]]: ValueOf<S> };

/** Every problem found in the environment, reported at once. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

function parseValue(spec: OptionSpec, raw: string): { value?: unknown; problem?: string } {
  const where = `${spec.env}=${JSON.stringify(raw)}`;
  switch (spec.type) {
    case "string":
    case "secret":
      if (raw.trim() === "") return { problem: `${where}: must not be empty` };
      return { value: raw.trim() };
    case "int":
    case "number": {
      // Plain decimal only: `0x10`, `1e20`, `Infinity` are refused, not reinterpreted.
      const text = raw.trim();
      const n = Number(text);
      const shape = spec.type === "int" ? /^-?\d{1,16}$/ : /^-?\d{1,16}(\.\d{1,16})?$/;
      if (
        !shape.test(text) || !Number.isFinite(n) ||
        (spec.type === "int" && !Number.isSafeInteger(n))
      ) {
        return { problem: `${where}: expected ${spec.type === "int" ? "an integer" : "a number"}` };
      }
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) {
        const range = spec.max === undefined
          ? `at least ${spec.min}`
          : spec.min === undefined
          ? `at most ${spec.max}`
          : `from ${spec.min} to ${spec.max}`;
        return { problem: `${where}: must be ${range}` };
      }
      return { value: n };
    }
    case "bool": {
      const v = raw.trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(v)) return { value: true };
      if (["0", "false", "no", "off"].includes(v)) return { value: false };
      return { problem: `${where}: expected true or false` };
    }
    case "list": {
      const items = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
      if (items.length === 0) return { problem: `${where}: expected a comma-separated list` };
      return { value: items };
    }
    case "url": {
      try {
        const u = new URL(raw.trim());
        if (u.protocol !== "http:" && u.protocol !== "https:") {
          return { problem: `${where}: expected an http:// or https:// URL` };
        }
        return { value: u.toString() };
      } catch {
        return { problem: `${where}: expected an http:// or https:// URL` };
      }
    }
    case "enum": {
      const v = raw.trim();
      if (!spec.choices?.includes(v)) {
        return { problem: `${where}: expected one of ${spec.choices?.join(", ")}` };
      }
      return { value: v };
    }
  }
}

/**
 * Reads and validates the configuration from `env` (default: the process
 * environment). Unknown `SLUICE_` variables are reported too, since a typo
 * there silently changes behaviour.
 *
 * @throws {ConfigError} listing every problem.
 */
export function loadConfig(
  env: Record<string, string | undefined> = Deno.env.toObject(),
  overrides: Partial<Record<string, unknown>> = {},
): Config {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  const known = new Set<string>(CONFIG_SCHEMA.map((s) => s.env));
  for (const spec of CONFIG_SCHEMA as readonly OptionSpec[]) {
    const raw = env[spec.env];
    if (raw === undefined || (raw === "" && spec.default === undefined)) {
      out[spec.key] = spec.default;
      continue;
    }
    const { value, problem } = parseValue(spec, raw);
    if (problem) problems.push(problem);
    else out[spec.key] = value;
  }
  for (const name of Object.keys(env)) {
    if (
      name.startsWith("SLUICE_") && !known.has(name) && !IGNORED_ENV.has(name) &&
      !name.startsWith("SLUICE_TEST_")
    ) {
      problems.push(`${name}: unknown variable (see \`sluice start --help\` for the list)`);
    }
  }
  Object.assign(out, overrides);
  if (out.s3Endpoint !== undefined) {
    if (out.s3AccessKey === undefined) {
      problems.push("SLUICE_S3_ACCESS_KEY: required when SLUICE_S3_ENDPOINT is set");
    }
    if (out.s3SecretKey === undefined) {
      problems.push("SLUICE_S3_SECRET_KEY: required when SLUICE_S3_ENDPOINT is set");
    }
  }
  if ((out.retryMaxMs as number) < (out.retryBaseMs as number)) {
    problems.push("SLUICE_RETRY_MAX_MS: must be at least SLUICE_RETRY_BASE_MS");
  }
  problems.push(...crossChecks(out));
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(out) as unknown as Config;
}

/** Kafka's rule for a topic name. */
export const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;
const PREFIX_SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
const HOST_NAME =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

function isHost(h: string): boolean {
  if (HOST_NAME.test(h)) return true;
  const v6 = h.replace(/^\[|\]$/g, "");
  return /^[0-9a-fA-F:.]+$/.test(v6) && v6.includes(":");
}

/** Checks that values are usable, not only well-typed: every problem, before anything starts. */
function crossChecks(out: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const rate = out.rateLimit as number;
  if (rate > 0 && rate < MIN_RATE) {
    problems.push(
      `SLUICE_RATE_LIMIT=${rate}: must be 0 (unlimited) or from ${MIN_RATE} to ${MAX_RATE}`,
    );
  }
  const suffix = out.dlqSuffix as string;
  if (!/^[a-zA-Z0-9._-]{1,200}$/.test(suffix)) {
    problems.push(
      `SLUICE_DLQ_SUFFIX=${
        JSON.stringify(suffix)
      }: 1 to 200 of a-z A-Z 0-9 . _ - (Kafka topic characters)`,
    );
  }
  for (const t of out.topics as string[]) {
    if (!TOPIC_NAME.test(t) || t === "." || t === "..") {
      problems.push(
        `SLUICE_TOPICS: ${
          JSON.stringify(t)
        } is not a Kafka topic name (1 to 249 of a-z A-Z 0-9 . _ -)`,
      );
    } else if (`${t}${suffix}`.length > 249) {
      problems.push(`SLUICE_TOPICS: dead-letter topic ${t}${suffix} is longer than 249 characters`);
    }
  }
  const prefix = out.auditPrefix as string;
  if (!prefix.split("/").every((seg) => PREFIX_SEGMENT.test(seg) && seg !== "..")) {
    problems.push(
      `SLUICE_AUDIT_PREFIX=${
        JSON.stringify(prefix)
      }: must be key segments of a-z A-Z 0-9 . _ - separated by /, none empty, . or ..`,
    );
  }
  if (!isHost(out.httpHost as string)) {
    problems.push(
      `SLUICE_HTTP_HOST=${JSON.stringify(out.httpHost)}: expected an IP address or a host name`,
    );
  }
  for (const b of out.kafkaBrokers as string[]) {
    const m = /^(.+):(\d{1,5})$/.exec(b);
    if (!m || !isHost(m[1]) || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      problems.push(`SLUICE_KAFKA_BROKERS: ${JSON.stringify(b)} is not host:port`);
    }
  }
  for (const o of out.allowedOrigins as string[]) {
    let ok = false;
    try {
      const u = new URL(o);
      ok = (u.protocol === "http:" || u.protocol === "https:") && u.origin === o.replace(/\/$/, "");
    } catch {
      ok = false;
    }
    if (!ok) {
      problems.push(
        `SLUICE_ALLOWED_ORIGINS: ${
          JSON.stringify(o)
        } is not an origin (scheme://host[:port], no path)`,
      );
    }
  }
  if ((out.httpHeadersTimeoutMs as number) > (out.httpRequestTimeoutMs as number)) {
    problems.push("SLUICE_HTTP_HEADERS_TIMEOUT_MS: must be at most SLUICE_HTTP_REQUEST_TIMEOUT_MS");
  }
  return problems;
}

/** `SLUICE_` variables read by tools rather than by the service (and every `SLUICE_TEST_*`). */
const IGNORED_ENV = new Set(["SLUICE_URL"]);

/** The effective configuration as printable lines, secrets masked. */
export function describeConfig(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of CONFIG_SCHEMA as readonly OptionSpec[]) {
    const v = (config as Record<string, unknown>)[spec.key];
    out[spec.env] = spec.type === "secret" && v !== undefined
      ? "********"
      : spec.type === "url" && typeof v === "string"
      ? redactUrl(v)
      : v ?? null;
  }
  return out;
}

/** The schema as a Markdown table (used by the README check). */
export function configTable(): string {
  const rows = (CONFIG_SCHEMA as readonly OptionSpec[]).map((s) => {
    const d = s.default === undefined
      ? "(unset)"
      : Array.isArray(s.default)
      ? (s.default.length ? `\`${s.default.join(",")}\`` : "(unset)")
      : `\`${String(s.default)}\``;
    return `| \`${s.env}\` | ${
      s.type === "enum" ? s.choices?.join(" \\| ") : s.type
    } | ${d} | ${s.doc} |`;
  });
  return ["| Variable | Type | Default | Meaning |", "| --- | --- | --- | --- |", ...rows].join(
    "\n",
  );
}

/** Tokens seen in examples and defaults: never a real secret. */
const WELL_KNOWN_TOKENS = new Set([
  "local-dev-token-change-me",
  "change-me",
  "changeme",
  "secret",
  "token",
  "password",
  "admin",
  "sluice",
  "test",
]);

/** Shortest control token not warned about (characters). */
export const MIN_TOKEN_LENGTH = 16;

/** A warning for a control token that is short or well known; undefined when it looks fine. */
export function controlTokenWarning(token: string | undefined): string | undefined {
  if (token === undefined || token === "") return undefined;
  if (WELL_KNOWN_TOKENS.has(token.toLowerCase())) {
    return "SLUICE_CONTROL_TOKEN is a well-known example value: anyone can use it; generate one with openssl rand -hex 32";
  }
  if (token.length < MIN_TOKEN_LENGTH) {
    return `SLUICE_CONTROL_TOKEN is short (${token.length} characters, fewer than ${MIN_TOKEN_LENGTH}): generate one with openssl rand -hex 32`;
  }
  return undefined;
}

/**
 * A warning when the memory budget for fetched records does not fit the V8
 * heap limit the process runs with (`--max-old-space-size` in the start task,
 * the launcher and the binary: README, Benchmarks, "Memory"): the decoded
 * records of a budget take up to about twice its size in the heap, and the
 * rest of sluice needs room beside them. Undefined when it fits.
 */
export function memoryBudgetWarning(budgetMb: number, heapLimitMb: number): string | undefined {
  if (budgetMb * 2 + 32 <= heapLimitMb) return undefined;
  const need = budgetMb * 2 + 32;
  return `SLUICE_MEMORY_BUDGET_MB=${budgetMb} needs a V8 heap of about ${need} MB, above this process's limit of ${
    Math.round(heapLimitMb)
  } MB: under load it may run out of memory; start Deno with --v8-flags=--max-old-space-size=${need} or lower the budget`;
}
