/**
 * sluice's supervisor tree, declared in one place, and its graceful shutdown.
 *
 * ```
 * sluice (rest_for_one, 5 restarts / 60 s)
 * ├── http             Hono on node:http: health, metrics, WS, control, inspector
 * ├── audit            audit writer (→ audit topic, before every commit) + audit uploader
 * │                    (audit topic → S3 / RGW or ./data/audit, its own consumer group)
 * ├── resilience       rate limiter + circuit breaker + upstream client
 * ├── idempotency      delivered idempotency keys (Deno KV, ${dataDir}/idempotency.kv)
 * ├── pipeline         consumer group → one partition actor per assigned partition
 * ├── replay           replay driver (time windows, dead letters)
 * └── load-generator   local mode only
 * ```
 *
 * Children start in this order and stop in reverse order, so a crash of the
 * audit trail restarts everything that depends on it (`rest_for_one`), and a
 * plain supervisor stop already stops the load first and the HTTP server
 * last. The graceful shutdown (SIGTERM, SIGINT, `POST /control/shutdown`)
 * runs the same order as explicit phases, each with its own deadline, log
 * line and `shutdown_phase_duration_seconds{phase}`:
 *
 * 1. `stop_load`: load generator and replays stop;
 * 2. `mark_not_ready`: `/health/ready` answers 503;
 * 3. `drain`: no new record starts; in-flight records finish, offsets commit;
 * 4. `close_consumer`: the consumer leaves the group, producers close;
 * 5. `flush_audit`: what waits in the audit topic is uploaded (bounded; what
 *    is left stays in the topic, where any instance uploads it);
 * 6. `stop_http`: the HTTP server stops; the tree stops.
 *
 * @module
 */
import { hostname } from "node:os";
import denoJson from "../deno.json" with { type: "json" };
import { type AdaptiveLimiter, createAdaptiveLimiter } from "../actors/adaptive_limiter.ts";
import { buildReport } from "../actors/audit/report.ts";
import { type AuditStore, FsAuditStore, S3AuditStore } from "../actors/audit/store.ts";
import { AuditUploader } from "../actors/audit/uploader.ts";
import {
  type AuditWriter,
  AuditWriter as Writer,
  ensureAuditTopic,
  scanAudited,
} from "../actors/audit/writer.ts";
import { type CircuitBreaker, createCircuitBreaker } from "../actors/circuit_breaker.ts";
import { toDeadLetterMessage } from "../actors/dead_letter.ts";
import { DeadLetterStore } from "../actors/dlq.ts";
import { createEmbeddedLog, embeddedLogDir } from "../actors/embedded_log.ts";
import { type IdempotencyStore, openIdempotencyStore } from "../actors/idempotency.ts";
import { createKafkaLog } from "../actors/kafka_log.ts";
import { createPlatformaticLog } from "../actors/platformatic_log.ts";
import { type LoadGenerator, startLoadGenerator } from "../actors/load_generator.ts";
import { configureLog, flushRepeatedLogs, logFormat, logger } from "../actors/log.ts";
import { redactUrl } from "../actors/redact.ts";
import { rateLimitCeiling, rateLimitEffective, registry } from "../actors/metrics.ts";
import { Pipeline } from "../actors/pipeline.ts";
import { createProcessor } from "../actors/processor.ts";
import { createRateLimiter, type RateLimiter } from "../actors/rate_limiter.ts";
import { ReplayManager } from "../actors/replay.ts";
import { type SimUpstream, startSimulatedUpstream } from "../actors/sim_upstream.ts";
import type { LogClient, LogProducer } from "../actors/source.ts";
import { createUpstreamClient, type UpstreamClient } from "../actors/upstream.ts";
import { createApp } from "../http/app.ts";
import type { AppDeps, ReadyCheck, StatusSummary } from "../http/deps.ts";
import { HttpError } from "../http/errors.ts";
import { type RunningServer, serveApp } from "../http/server.ts";
import { type Config, ConfigError, controlTokenWarning } from "./config.ts";
import { lockDataDir } from "./data_dir_lock.ts";
import { loadPayloadSchemas, SchemaDirError } from "../actors/schema.ts";
import { createTracing, otlpTracesUrl } from "../actors/tracing.ts";
import { canonicalPhases, runShutdown, type ShutdownReport, ShutdownStatus } from "./shutdown.ts";
import { exitCodeFor, installSignalHandlers } from "./signals.ts";
import {
  type ChildHandle,
  type ChildSpec,
  startSupervisor,
  type Supervisor,
} from "./supervisor.ts";

const log = logger("sluice");

/** A running sluice. */
export interface Sluice {
  /** Port of the HTTP server. */
  readonly port: number;
  /** `local` when any part is embedded. */
  readonly parts: { log: string; audit: string; upstream: string; load?: string };
  /** Runs the graceful shutdown once (later calls return the same report). */
  shutdown(reason: string): Promise<ShutdownReport>;
  /** Resolves with the exit code: after a shutdown, or when the tree gave up. */
  readonly exited: Promise<number>;
  readonly supervisor: Supervisor;
}

/** Options of {@link startSluice} (tests). */
export interface StartOptions {
  /** Load generator rate in local mode (records/s); default 20. */
  loadRate?: number;
}

/** A child handle whose `exited` resolves when `stop` is called or `fail` fires. */
function handle(
  stop: (reason: "shutdown") => Promise<void>,
  onFailure?: (fail: (e: Error) => void) => void,
  status?: () => Record<string, unknown>,
): ChildHandle {
  const exited = Promise.withResolvers<{ reason: "normal" | "shutdown" | Error }>();
  onFailure?.((e) => exited.resolve({ reason: e }));
  let stopping: Promise<void> | undefined;
  return {
    stop(reason) {
      stopping ??= stop(reason).finally(() => exited.resolve({ reason: "shutdown" }));
      return stopping;
    },
    exited: exited.promise,
    status,
  };
}

/**
 * Test hook: with `SLUICE_TEST_KILL_AFTER_PUT=N`, the process kills itself
 * (SIGKILL) right after its N-th audit upload and before the commit of its
 * audit-topic offsets, the worst moment for an uploader to die.
 */
function testHookAfterPut(): ((key: string) => void) | undefined {
  const n = Number(Deno.env.get("SLUICE_TEST_KILL_AFTER_PUT") ?? "0");
  if (!Number.isInteger(n) || n <= 0) return undefined;
  let puts = 0;
  return (key) => {
    if (++puts < n) return;
    log.warn("test hook: killing this process after an audit upload, before its commit", { key });
    Deno.kill(Deno.pid, "SIGKILL");
  };
}

/** Starts every part of sluice under its supervisor. */
export async function startSluice(config: Config, opts: StartOptions = {}): Promise<Sluice> {
  const started = Date.now();
  const shutdownStatus = new ShutdownStatus();
  let shuttingDown = false;
  let shutdownRun: Promise<ShutdownReport> | undefined;
  const exited = Promise.withResolvers<number>();
  // Payload schemas: an invalid one is a configuration error (exit 2), before anything starts.
  let schemas;
  try {
    schemas = config.schemaDir ? loadPayloadSchemas(config.schemaDir) : undefined;
  } catch (e) {
    throw e instanceof SchemaDirError ? new ConfigError(e.problems) : e;
  }
  // Then, before any part touches the data directory: one sluice per directory.
  const dataDirLock = lockDataDir(config.dataDir);
  exited.promise.finally(() => dataDirLock.release());
  const validatePayload = schemas?.validate;
  // The parts chosen by the configuration: real when configured, else embedded.
  const logClient: LogClient = config.kafkaBrokers.length > 0
    ? (config.kafkaClient === "platformatic" ? createPlatformaticLog : createKafkaLog)({
      brokers: config.kafkaBrokers,
      clientId: config.clientId,
      sessionTimeoutMs: config.kafkaSessionTimeoutMs,
    })
    : createEmbeddedLog({
      dir: embeddedLogDir(config.dataDir),
      partitions: config.embeddedPartitions,
    });
  const store: AuditStore = config.s3Endpoint
    ? new S3AuditStore({
      endpoint: config.s3Endpoint,
      bucket: config.s3Bucket,
      region: config.s3Region,
      accessKey: config.s3AccessKey!,
      secretKey: config.s3SecretKey!,
    })
    : new FsAuditStore(`${config.dataDir}/audit`);
  // The local store exists from the start: `audit report` tells "no store here" from "no events yet".
  if (!config.s3Endpoint) await Deno.mkdir(`${config.dataDir}/audit`, { recursive: true });
  let sim: SimUpstream | undefined;
  if (!config.upstreamUrl) sim = await startSimulatedUpstream({ latencyMs: 20, jitterMs: 20 });
  const upstreamUrl = config.upstreamUrl ?? sim!.url;
  // Traces over OTLP when an endpoint is configured (actors/tracing.ts); off otherwise.
  const otlpUrl = otlpTracesUrl(config.otlpEndpoint);
  const tracing = otlpUrl
    ? createTracing({
      url: otlpUrl,
      sampleRatio: config.traceSampleRatio,
      upstreamHost: new URL(upstreamUrl).host,
      consumerGroup: config.groupId,
    })
    : undefined;
  if (otlpUrl) log.info("tracing on", { otlp: otlpUrl, sample_ratio: config.traceSampleRatio });
  const parts = {
    log: logClient.kind === "kafka"
      ? logClient.description
      : `embedded log (${embeddedLogDir(config.dataDir)})`,
    audit: config.s3Endpoint
      ? `S3 ${redactUrl(config.s3Endpoint)} bucket ${config.s3Bucket}`
      : `local store ${config.dataDir}/audit`,
    upstream: sim ? `simulated upstream ${sim.url}` : redactUrl(upstreamUrl),
    load: logClient.kind === "embedded"
      ? `load generator ${opts.loadRate ?? 20} records/s to topic ${config.topics[0]}`
      : undefined,
  };

  // Live instances, replaced when the supervisor restarts a child.
  let audit: AuditWriter | undefined;
  let uploader: AuditUploader | undefined;
  let auditPartitions = 1;
  const auditTopic = config.auditTopic ?? `${config.groupId}-audit`;
  /** Set when the progress watchdog fired; cleared once a record finishes again. */
  let stalled: string | null = null;
  let stalledBy: Pipeline | undefined;
  let lastStall: { at: string; reason: string } | null = null;
  let stallCount = 0;
  let limiter: RateLimiter | undefined;
  let flow: AdaptiveLimiter | undefined;
  let breaker: CircuitBreaker | undefined;
  let upstream: UpstreamClient | undefined;
  let pipeline: Pipeline | undefined;
  let producer: LogProducer | undefined;
  let load: LoadGenerator | undefined;
  let idempotency: IdempotencyStore | undefined;
  let replays: ReplayManager | undefined;
  let deadLetters: DeadLetterStore | undefined;
  const replayDriver = () => {
    if (!replays) throw new HttpError(503, "not_ready", "Replay driver not started");
    return replays;
  };
  const dlqStore = () => {
    if (!deadLetters) throw new HttpError(503, "not_ready", "Dead-letter store not started");
    return deadLetters;
  };
  let server: RunningServer | undefined;
  let kafkaOk = false, kafkaDetail = "not checked yet";

  // One ping at a time; one that takes over 3 s counts as down (kafkajs retries a
  // request to a stopped broker for tens of seconds before it fails).
  let pinging: Promise<boolean> | undefined, pingStarted = 0;
  const pingLog = async (): Promise<boolean> => {
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
  const pinger = setInterval(async () => {
    kafkaOk = await pingLog();
    kafkaDetail = kafkaOk ? "" : `${parts.log} does not answer`;
  }, 2000);
  kafkaOk = await pingLog();
  if (!kafkaOk) kafkaDetail = `${parts.log} does not answer`;

  const ready = (): ReturnType<AppDeps["ready"]> => {
    if (stalled && pipeline && pipeline !== stalledBy && pipeline.finished > 0) stalled = null;
    const checks: Record<string, ReadyCheck> = {
      kafka: kafkaOk ? { ok: true, detail: parts.log } : { ok: false, detail: kafkaDetail },
      s3: uploader
        ? (() => {
          const r = uploader.ready();
          return r.ready ? { ok: true, detail: parts.audit } : { ok: false, detail: r.reason };
        })()
        : { ok: false, detail: "audit uploader not started" },
      metrics: { ok: true },
      pipeline: stalled
        ? { ok: false, detail: `stalled, restarting: ${stalled}` }
        : pipeline?.joined
        ? { ok: true }
        : { ok: false, detail: "consumer has not joined its group yet" },
      shutting_down: shuttingDown ? { ok: false, detail: shutdownStatus.describe() } : { ok: true },
    };
    return { ready: Object.values(checks).every((c) => c.ok), checks };
  };

  const status = (): StatusSummary => ({
    state: shuttingDown
      ? "shutting_down"
      : pipeline?.pauseReasons().includes("operator")
      ? "drained"
      : "running",
    version: denoJson.version,
    mode: logClient.kind === "embedded" || !config.s3Endpoint || sim ? "local" : "kafka",
    parts,
    uptime_s: Math.round((Date.now() - started) / 1000),
    rate: limiter ? { rate: limiter.status().rate, burst: limiter.status().burst } : undefined,
    flow: limiter ? (flow ? flow.status() : { adaptive: false }) : undefined,
    circuit: breaker?.state,
    pause_reasons: pipeline?.pauseReasons() ?? [],
    watchdog: { stalled: stalled !== null, stalls: stallCount, last_stall: lastStall },
    partitions: pipeline?.status().map((p) => ({ ...p, lag: p.lag })) ?? [],
    audit: uploader
      ? { ...uploader.status(), topic: auditTopic, writer: audit?.status() }
      : undefined,
    load: load?.stats(),
    upstream_sim: sim?.behaviour(),
    shutdown: shutdownStatus.describe(),
  });

  const deps: AppDeps = {
    ready,
    metrics: registry,
    controlToken: config.controlToken,
    allowedOrigins: config.allowedOrigins,
    control: {
      drain() {
        if (shuttingDown) throw new HttpError(409, "shutting_down", "Sluice is shutting down");
        pipeline?.pause("operator");
      },
      resume() {
        if (shuttingDown) throw new HttpError(409, "shutting_down", "Sluice is shutting down");
        pipeline?.resume("operator");
      },
      shutdown() {
        void sluice.shutdown("POST /control/shutdown");
      },
      setRate({ rate, burst }) {
        if (!limiter) throw new HttpError(503, "not_ready", "Rate limiter not started");
        limiter.setRate(rate, burst);
        const s = limiter.status();
        return { rate: s.rate, burst: s.burst };
      },
      status,
    },
    load: sim || logClient.kind === "embedded"
      ? {
        setRate({ rate }) {
          if (!load) throw new HttpError(503, "not_ready", "Load generator not running");
          load.setRate(rate);
          return { rate: load.stats().rate };
        },
      }
      : undefined,
    upstreamSim: sim
      ? {
        set(change) {
          const b = sim!.setBehaviour(change);
          log.warn("simulated upstream behaviour changed over HTTP", { ...b });
          return { ...b };
        },
      }
      : undefined,
    replay: {
      start: (req) => replayDriver().start(req),
      get: (id) => replayDriver().get(id),
      cancel: (id) => replayDriver().cancel(id),
    },
    audit: {
      async trace({ traceId, from, to }) {
        const r = await buildReport(store, {
          from: new Date(from),
          to: new Date(to),
          prefix: config.auditPrefix,
          traceId,
        });
        return { store: r.store, objects: r.objects, ...r.trace };
      },
    },
    dlq: {
      list: (query) => dlqStore().list(query),
      replay: (id) => dlqStore().replay(id),
      replayBulk: (req) => dlqStore().replayBulk(req),
    },
  };

  const children: ChildSpec[] = [
    {
      id: "http",
      shutdownMs: 5000,
      start: async () => {
        server = await serveApp(createApp(deps), {
          host: config.httpHost,
          port: config.httpPort,
          headersTimeoutMs: config.httpHeadersTimeoutMs,
          requestTimeoutMs: config.httpRequestTimeoutMs,
        });
        const s = server;
        return handle(() => s.shutdown());
      },
    },
    {
      id: "audit",
      shutdownMs: config.shutdownFlushMs + config.shutdownCommitMs + 1000,
      start: async (ctx) => {
        const admin = await logClient.admin();
        if (logClient.kind === "embedded") {
          await admin.ensureTopics(
            config.topics.map((topic) => ({ topic, partitions: config.embeddedPartitions })),
          );
        }
        try {
          auditPartitions = await ensureAuditTopic(admin, {
            topic: auditTopic,
            sources: config.topics,
          });
        } catch (e) {
          throw new ConfigError([
            `SLUICE_AUDIT_TOPIC=${JSON.stringify(auditTopic)}: ${
              e instanceof Error ? e.message : String(e)
            } (check the ACLs and the cluster's default replication factor)`,
          ]);
        }
        const retention = await admin.retentionMs?.(auditTopic).catch(() => null) ?? null;
        const minMs = config.auditMinRetentionHours * 3_600_000;
        if (retention !== null && retention >= 0 && retention < minMs) {
          log.warn("the audit topic keeps events for less than SLUICE_AUDIT_MIN_RETENTION_HOURS", {
            topic: auditTopic,
            retention_hours: Math.round(retention / 36_000) / 100,
            min_hours: config.auditMinRetentionHours,
            risk: "an audit store outage longer than the retention loses audit events",
          });
        }
        const producer = await logClient.producer();
        const w = new Writer(producer, { topic: auditTopic, partitions: auditPartitions });
        const u = new AuditUploader({
          log: logClient,
          topic: auditTopic,
          groupId: `${config.groupId}-audit-uploader`,
          store,
          prefix: config.auditPrefix,
          batchEvents: config.auditBatchEvents,
          batchBytes: config.auditBatchBytes,
          batchAgeMs: config.auditBatchAgeMs,
          parentId: ctx.parentId,
          afterPut: testHookAfterPut(),
        });
        await u.start();
        audit = w;
        uploader = u;
        log.info("audit started", {
          topic: auditTopic,
          partitions: auditPartitions,
          store: parts.audit,
        });
        return handle(
          async () => {
            w.close();
            await u.stop();
            await producer.disconnect().catch(() => {});
          },
          undefined,
          () => ({ ...u.status(), topic: auditTopic }),
        );
      },
    },
    {
      id: "resilience",
      shutdownMs: 5000,
      start: (ctx) => {
        const l = createRateLimiter({
          rate: config.rateLimit,
          burst: config.rateBurst,
          parentId: ctx.parentId,
        });
        // SLUICE_ADAPTIVE=on: every upstream call takes a permit from the
        // adaptive limiter, under the configured rate (the ceiling).
        const f = config.adaptive === "on"
          ? createAdaptiveLimiter({
            ceiling: config.rateLimit,
            burst: config.rateBurst,
            judge: {
              volume: config.breakerVolume,
              errorPercent: config.breakerErrorPercent,
              windowMs: config.breakerWindowMs,
            },
            id: "adaptive-limiter",
            parentId: ctx.parentId,
          })
          : undefined;
        // The ceiling follows PUT /control/rate; with adaptive off, the
        // effective rate is the configured one (the gauges say so).
        const sub = l.actor.subscribe((s) => {
          if (f) f.setCeiling(s.context.rate, s.context.burst);
          else {
            rateLimitEffective.set(s.context.rate);
            rateLimitCeiling.set(s.context.rate);
          }
        });
        const offCeiling = () => sub.unsubscribe();
        const b = createCircuitBreaker({
          policy: config.breakerPolicy,
          errorThresholdPercentage: config.breakerErrorPercent,
          volumeThreshold: config.breakerVolume,
          rollingCountTimeout: config.breakerWindowMs,
          resetTimeout: config.breakerResetMs,
          parentId: ctx.parentId,
        });
        const u = createUpstreamClient({
          url: upstreamUrl,
          connectTimeoutMs: config.connectTimeoutMs,
          readTimeoutMs: config.readTimeoutMs,
          globalTimeoutMs: config.globalTimeoutMs,
          maxRetries: config.maxRetries,
          retryBaseMs: config.retryBaseMs,
          retryMaxMs: config.retryMaxMs,
          breaker: b,
          flow: f,
        });
        limiter = l;
        flow = f;
        breaker = b;
        upstream = u;
        const off = b.onStateChange((to) => {
          if (b.policy !== "pause") return;
          if (to === "open") pipeline?.pause("circuit");
          else pipeline?.resume("circuit");
        });
        return Promise.resolve(handle(async () => {
          off();
          offCeiling();
          b.stop();
          f?.stop();
          l.stop();
          await u.close();
        }));
      },
    },
    {
      id: "idempotency",
      shutdownMs: 2000,
      start: async () => {
        await Deno.mkdir(config.dataDir, { recursive: true });
        const s = await openIdempotencyStore({
          path: `${config.dataDir}/idempotency.kv`,
          ttlMs: config.idempotencyTtlHours * 3600_000,
          flushMs: config.idempotencyFlushMs,
        });
        idempotency = s;
        return handle(() => s.close(), undefined, () => ({ ...s.stats() }));
      },
    },
    {
      id: "pipeline",
      shutdownMs: config.shutdownDrainMs + config.shutdownCommitMs,
      start: async (ctx) => {
        const admin = await logClient.admin();
        // Dead-letter topics get as many partitions as their source topic.
        const dlqSpecs = [];
        for (const topic of config.topics) {
          const n = (await admin.partitions(topic)).length;
          dlqSpecs.push({ topic: `${topic}${config.dlqSuffix}`, partitions: n });
        }
        await admin.ensureTopics(dlqSpecs);
        const p = await logClient.producer();
        producer = p;
        const processor = createProcessor({
          upstream: upstream!,
          audit: audit!,
          // With flow control the upstream client paces every call itself.
          rateLimiter: flow ? undefined : limiter,
          breaker,
          consumerGroup: config.groupId,
          processingHost: `${config.clientId}@${hostname()}`,
          maxRecordBytes: config.maxRecordBytes,
          validatePayload,
          tracing,
          onDelivered: (key) => idempotency?.record(key),
          publishDeadLetter: async (dl) => {
            const m = toDeadLetterMessage(dl, { suffix: config.dlqSuffix });
            await p.send(m.topic, [{ key: m.key, value: m.value, headers: m.headers }]);
          },
        });
        const pl = new Pipeline({
          log: logClient,
          topics: config.topics,
          groupId: config.groupId,
          process: (r, signal) => processor.process(r, signal),
          orderingMode: config.orderingMode,
          maxInflight: config.maxInflight,
          parentId: ctx.parentId,
          audited: async (tp, signal) => {
            const [c] = (await admin.committed(config.groupId, tp.topic))
              .filter((o) => o.partition === tp.partition);
            const from = c && BigInt(c.offset) >= 0n ? c.offset : "0";
            return scanAudited(logClient, tp, from, {
              topic: auditTopic,
              partitions: auditPartitions,
              lookbackMs: config.auditDedupeLookbackMs,
              tailEvents: config.auditDedupeTailEvents,
              signal,
            });
          },
          skip: (record, signal) => processor.skipAudited(record, signal),
          commitTimeoutMs: config.commitTimeoutMs,
          closeTimeoutMs: config.shutdownCommitMs,
          watchdogMs: config.watchdogMs === 0
            ? 0
            : Math.max(config.watchdogMs, config.globalTimeoutMs + 5000),
          blocked: () => (kafkaOk ? null : "kafka"),
        });
        pipeline = pl;
        pl.onFailure(() => {
          const why = pl.stallReason();
          if (why) {
            [stalled, stalledBy] = [why, pl];
            lastStall = { at: new Date().toISOString(), reason: why };
            stallCount++;
          }
        });
        if (breaker?.state === "open" && breaker.policy === "pause") pl.pause("circuit");
        await pl.start();
        return handle(async () => {
          await pl.drain(AbortSignal.timeout(config.shutdownDrainMs));
          await pl.close();
          await p.disconnect().catch(() => {});
        }, (fail) =>
          pl.onFailure(async (e) => {
            // The child is dead: release the group and the producer before the
            // supervisor starts a new one (records not committed are re-read).
            await pl.close().catch(() => {});
            await p.disconnect().catch(() => {});
            fail(e);
          }));
      },
    },
  ];
  children.push({
    id: "replay",
    shutdownMs: 3000,
    start: async (ctx) => {
      const p = await logClient.producer();
      const admin = await logClient.admin();
      // A replayed topic may not be a consumed one: its DLQ topic is created on first use.
      const dlqReady = new Map<string, Promise<void>>();
      const ensureDlq = (topic: string) => {
        let ready = dlqReady.get(topic);
        if (!ready) {
          ready = admin.partitions(topic).then((ps) =>
            admin.ensureTopics([{ topic: `${topic}${config.dlqSuffix}`, partitions: ps.length }])
          );
          ready.catch(() => dlqReady.delete(topic));
          dlqReady.set(topic, ready);
        }
        return ready;
      };
      const processorFor = (replay: { replay_id: string; source: "window" | "dlq" }) =>
        createProcessor({
          upstream: upstream!,
          audit: audit!,
          breaker,
          consumerGroup: config.groupId,
          processingHost: `${config.clientId}@${hostname()}`,
          maxRecordBytes: config.maxRecordBytes,
          validatePayload,
          tracing,
          replay,
          publishDeadLetter: async (dl) => {
            await ensureDlq(dl.original_topic);
            const m = toDeadLetterMessage(dl, { suffix: config.dlqSuffix });
            await p.send(m.topic, [{ key: m.key, value: m.value, headers: m.headers }]);
          },
        });
      const m = new ReplayManager({
        log: logClient,
        store: idempotency!,
        audit: audit!,
        processor: processorFor,
        breaker,
        defaultRate: config.replayRate,
        maxRecordBytes: config.maxRecordBytes,
        parentId: ctx.parentId,
      });
      const d = new DeadLetterStore({
        log: logClient,
        topics: config.topics,
        suffix: config.dlqSuffix,
        store: idempotency!,
        audit: audit!,
        processor: processorFor,
        replays: m,
        breaker,
        maxRecordBytes: config.maxRecordBytes,
      });
      replays = m;
      deadLetters = d;
      return handle(
        async () => {
          await m.close();
          await p.disconnect().catch(() => {});
        },
        undefined,
        () => ({ running: m.running().length, ...d.stats() }),
      );
    },
  });
  if (logClient.kind === "embedded") {
    children.push({
      id: "load-generator",
      shutdownMs: 2000,
      start: async (ctx) => {
        const p = await logClient.producer();
        const g = startLoadGenerator({
          producer: p,
          topic: config.topics[0],
          rate: opts.loadRate ?? 20,
          parentId: ctx.parentId,
        });
        load = g;
        return handle(async () => {
          await g.stop();
          await p.disconnect();
        });
      },
    });
  }

  let supervisor: Supervisor;
  try {
    supervisor = await startSupervisor(children, {
      id: "sluice",
      strategy: "rest_for_one",
      intensity: { maxRestarts: 5, periodMs: 60_000 },
    });
  } catch (e) {
    dataDirLock.release();
    clearInterval(pinger);
    await sim?.stop();
    await logClient.close().catch(() => {});
    await tracing?.shutdown(500);
    throw e;
  }

  const phases = () =>
    canonicalPhases({
      stop_load: {
        deadlineMs: 2000,
        run: async () => {
          await Promise.all([load?.stop(), replays?.stopAll()]);
        },
      },
      mark_not_ready: {
        run: () => {
          shuttingDown = true;
          return Promise.resolve();
        },
      },
      drain: {
        deadlineMs: config.shutdownDrainMs,
        run: async (signal) => {
          const left = await pipeline?.drain(signal) ?? 0;
          if (left > 0) {
            throw new Error(
              `${left} records still in flight at the drain deadline; they will be consumed again`,
            );
          }
        },
      },
      close_consumer: {
        deadlineMs: config.shutdownCommitMs,
        run: async () => {
          await pipeline?.close();
          await producer?.disconnect().catch(() => {});
        },
      },
      flush_audit: {
        deadlineMs: config.shutdownFlushMs,
        run: async () => {
          if (!uploader) return;
          // Inside the phase's deadline: events left are safe in the audit topic, a warning not a failure.
          const r = await uploader.flush(Math.max(0, config.shutdownFlushMs - 500));
          if (r.remaining > 0) {
            log.warn(
              "audit events not uploaded at the flush deadline; they stay in the audit topic",
              {
                remaining: r.remaining,
                topic: auditTopic,
              },
            );
          }
        },
      },
      stop_http: {
        deadlineMs: 5000,
        run: async () => {
          // Every record span ended with the drain: export the last ones meanwhile.
          const traces = tracing?.shutdown(1500);
          await supervisor.stop("shutdown");
          clearInterval(pinger);
          await sim?.stop();
          await logClient.close().catch(() => {});
          await traces;
        },
      },
    });

  const sluice: Sluice = {
    port: server!.port,
    parts,
    supervisor,
    exited: exited.promise,
    shutdown(reason) {
      shutdownRun ??= (async () => {
        shuttingDown = true;
        log.info("graceful shutdown", { reason });
        const report = await runShutdown(phases(), { status: shutdownStatus, reason });
        log.info("shutdown complete", { clean: report.clean, ms: report.ms });
        exited.resolve(exitCodeFor(report));
        return report;
      })();
      return shutdownRun;
    },
  };

  supervisor.exited.then(async (exit) => {
    if (shutdownRun) return;
    const reason = exit.reason instanceof Error ? exit.reason.message : exit.reason;
    log.error("supervisor tree stopped", { reason });
    clearInterval(pinger);
    await sim?.stop().catch(() => {});
    await logClient.close().catch(() => {});
    await tracing?.shutdown(1500);
    exited.resolve(exit.reason instanceof Error ? 1 : 0);
  });
  return sluice;
}

/** `sluice start`: runs until a signal or `POST /control/shutdown`; returns the exit code. */
export async function runSluice(config: Config): Promise<number> {
  configureLog({ level: config.logLevel, format: config.logFormat });
  const weak = controlTokenWarning(config.controlToken);
  if (weak) log.warn(weak);
  const sluice = await startSluice(config);
  const signals = installSignalHandlers((s) => sluice.shutdown(s), {
    exit: (code) => Deno.exit(code),
  });
  const base = `http://${
    config.httpHost === "0.0.0.0" ? "127.0.0.1" : config.httpHost
  }:${sluice.port}`;
  const info = {
    version: denoJson.version,
    pid: Deno.pid,
    ...sluice.parts,
    dashboard: `${base}/`,
    inspector: `${base}/inspect`,
    stop: `Ctrl-C, or kill -TERM ${Deno.pid}`,
  };
  if (logFormat() === "json") {
    // A log collector reads JSON lines: the banner is one of them.
    log.info("sluice is running", info);
  } else {
    const banner = [
      "",
      `sluice ${denoJson.version} is running (pid ${Deno.pid})`,
      `  log:       ${sluice.parts.log}`,
      `  audit:     ${sluice.parts.audit}`,
      `  upstream:  ${sluice.parts.upstream}`,
      ...(sluice.parts.load
        ? [`  load:      ${sluice.parts.load} (change: PUT ${base}/control/load)`]
        : []),
      `  dashboard: ${base}/`,
      `  inspector: ${base}/inspect`,
      `  metrics:   ${base}/metrics    ready: ${base}/health/ready`,
      config.controlToken
        ? `  control:   ${base}/control/* (bearer token required)`
        : `  control:   ${base}/control/* (no SLUICE_CONTROL_TOKEN: loopback clients only)`,
      `  stop:      Ctrl-C, or kill -TERM ${Deno.pid} (ordered shutdown, exit 0 when clean;`,
      `             the same signal again after 1 s forces exit 3)`,
      "",
    ].join("\n");
    console.error(banner);
  }
  const code = await sluice.exited;
  signals.remove();
  flushRepeatedLogs();
  return code;
}
