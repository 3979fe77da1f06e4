/**
 * The parts of a sluice chosen by its configuration, before any child of the
 * tree starts (README, "Architecture"): the log (Kafka when brokers are
 * configured, else the embedded log), the audit store (S3 / RGW, else
 * `${dataDir}/audit`), the upstream (configured, else the simulated one),
 * payload schemas, tracing, and the log's liveness, pinged every 2 s for
 * `/health/ready`. They outlive restarts of the tree's children;
 * {@link Parts.close} releases them after the tree stopped.
 *
 * @module
 */
import type { AuditStore } from "../actors/audit/store.ts";
import { FsAuditStore, S3AuditStore } from "../actors/audit/store.ts";
import { fetchSizes } from "../actors/log/memory_budget.ts";
import type { LogClient } from "../actors/log/port.ts";
import type { SimUpstream } from "../actors/local/sim_upstream.ts";
import type { PayloadSchemas } from "../actors/record/schema.ts";
import { logger } from "../actors/runtime/logger.ts";
import { otlpTracesUrl } from "../actors/runtime/otlp_url.ts";
import { redactUrl } from "../actors/runtime/redact.ts";
import type { RecordTracing } from "../actors/runtime/tracing.ts";
import { type Config, ConfigError } from "./config.ts";

const log = logger("sluice");

/** What each part is, for the banner and `/status`. */
export interface PartsDescription {
  log: string;
  audit: string;
  upstream: string;
  load?: string;
}

/** The parts of one sluice; see the module doc. */
export interface Parts {
  readonly logClient: LogClient;
  readonly store: AuditStore;
  readonly sim?: SimUpstream;
  readonly upstreamUrl: string;
  readonly tracing?: RecordTracing;
  readonly validatePayload?: PayloadSchemas["validate"];
  readonly described: PartsDescription;
  /** Load generator rate in local mode (records/s), or undefined with Kafka. */
  readonly loadRate?: number;
  /** Whether the log answered its last ping (within 3 s), and why not. */
  logHealth(): { ok: boolean; detail: string };
  /** Flushes the last spans (once; later calls join it), bounded by `ms`. */
  flushTraces(ms: number): Promise<void>;
  /** Stops the pinger and the simulated upstream, closes the log client, flushes traces. */
  close(traceMs?: number): Promise<void>;
}

/**
 * Chooses and opens the parts. An invalid payload schema is a configuration
 * error (exit 2) thrown before anything starts.
 */
export async function chooseParts(config: Config, loadRate = 20): Promise<Parts> {
  // Modules only some configurations use are loaded only then (README,
  // "Benchmarks"): Ajv with schemas, kafkajs with brokers, the S3 SDK with an
  // S3 endpoint (actors/audit/store.ts), OpenTelemetry with tracing, the
  // embedded log and the simulated upstream in local mode.
  let validatePayload: PayloadSchemas["validate"] | undefined;
  if (config.schemaDir) {
    const { loadPayloadSchemas, SchemaDirError } = await import("../actors/record/schema.ts");
    try {
      validatePayload = loadPayloadSchemas(config.schemaDir).validate;
    } catch (e) {
      throw e instanceof SchemaDirError ? new ConfigError(e.problems) : e;
    }
  }
  const embeddedLog = config.kafkaBrokers.length > 0
    ? undefined
    : await import("../actors/log/embedded/log.ts");
  const logClient: LogClient = !embeddedLog
    ? (config.kafkaClient === "platformatic"
      ? (await import("../actors/log/platformatic.ts")).createPlatformaticLog
      : (await import("../actors/log/kafka.ts")).createKafkaLog)({
        brokers: config.kafkaBrokers,
        clientId: config.clientId,
        sessionTimeoutMs: config.kafkaSessionTimeoutMs,
        ...fetchSizes({ memoryBudgetMb: config.memoryBudgetMb, maxInflight: config.maxInflight }),
      })
    : embeddedLog.createEmbeddedLog({
      dir: embeddedLog.embeddedLogDir(config.dataDir),
      partitions: config.embeddedPartitions,
    });
  const store: AuditStore = config.s3Endpoint
    ? new S3AuditStore({
      endpoint: config.s3Endpoint,
      bucket: config.s3Bucket,
      region: config.s3Region,
      accessKey: config.s3AccessKey ?? "",
      secretKey: config.s3SecretKey ?? "",
    })
    : new FsAuditStore(`${config.dataDir}/audit`);
  // The local store exists from the start: `audit report` tells "no store here" from "no events yet".
  if (!config.s3Endpoint) await Deno.mkdir(`${config.dataDir}/audit`, { recursive: true });
  const sim = config.upstreamUrl
    ? undefined
    : await (await import("../actors/local/sim_upstream.ts")).startSimulatedUpstream({
      latencyMs: 20,
      jitterMs: 20,
    });
  const upstreamUrl = config.upstreamUrl ?? sim?.url ?? "";
  // Traces over OTLP when an endpoint is configured (actors/runtime/tracing.ts); off otherwise.
  const otlpUrl = otlpTracesUrl(config.otlpEndpoint);
  const tracing = otlpUrl
    ? (await import("../actors/runtime/tracing.ts")).createTracing({
      url: otlpUrl,
      sampleRatio: config.traceSampleRatio,
      upstreamHost: new URL(upstreamUrl).host,
      consumerGroup: config.groupId,
    })
    : undefined;
  if (otlpUrl) log.info("tracing on", { otlp: otlpUrl, sample_ratio: config.traceSampleRatio });
  const embedded = logClient.kind === "embedded";
  const described: PartsDescription = {
    log: embeddedLog
      ? `embedded log (${embeddedLog.embeddedLogDir(config.dataDir)})`
      : logClient.description,
    audit: config.s3Endpoint
      ? `S3 ${redactUrl(config.s3Endpoint)} bucket ${config.s3Bucket}`
      : `local store ${config.dataDir}/audit`,
    upstream: sim ? `simulated upstream ${sim.url}` : redactUrl(upstreamUrl),
    load: embedded
      ? `load generator ${loadRate} records/s to topic ${config.topics[0]}`
      : undefined,
  };

  // One ping at a time; one that takes over 3 s counts as down (kafkajs retries a
  // request to a stopped broker for tens of seconds before it fails).
  let pinging: Promise<boolean> | undefined, pingStarted = 0;
  const ping = async (): Promise<boolean> => {
    if (!pinging) {
      pingStarted = Date.now();
      pinging = logClient.ping().catch(() => false).finally(() => (pinging = undefined));
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), Math.max(0, 3000 - (Date.now() - pingStarted)));
    });
    const ok = await Promise.race([pinging, late]);
    clearTimeout(timer);
    return ok;
  };
  let health = { ok: false, detail: "not checked yet" };
  const check = async () => {
    const ok = await ping();
    health = { ok, detail: ok ? "" : `${described.log} does not answer` };
  };
  const pinger = setInterval(check, 2000);
  await check();
  let flushing: Promise<void> | undefined;
  const flushTraces = (ms: number) => (flushing ??= tracing?.shutdown(ms) ?? Promise.resolve());
  return {
    logClient,
    store,
    sim,
    upstreamUrl,
    tracing,
    validatePayload,
    described,
    loadRate: embedded ? loadRate : undefined,
    logHealth: () => health,
    flushTraces,
    async close(traceMs = 1500) {
      clearInterval(pinger);
      const traces = flushTraces(traceMs);
      await sim?.stop().catch(() => {});
      await logClient.close().catch(() => {});
      await traces;
    },
  };
}
