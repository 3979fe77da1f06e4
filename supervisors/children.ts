/**
 * How each child of sluice's tree starts and stops (the tree itself, with
 * strategies, restart limits and deadlines, is `supervisors/tree.ts`).
 *
 * Each `start*` function receives what it needs as arguments (the
 * configuration, the parts, the values of the children started before it)
 * and returns {@link Started}: the handle the supervisor drives and the
 * value later children receive. A child's `stop` is the only place its stop
 * work is written; the work a graceful shutdown runs as an earlier phase
 * (the pipeline's drain, the audit flush) is a method of the value that runs
 * once ({@link once}), which the stop then reuses instead of repeating.
 *
 * @module
 */
import { hostname } from "node:os";
import { createAdaptiveLimiter } from "../actors/pipeline/adaptive_limiter.ts";
import type { AdaptiveLimiter } from "../actors/pipeline/adaptive_limiter.ts";
import { AuditUploader } from "../actors/audit/uploader.ts";
import { AuditWriter, ensureAuditTopic, scanAudited } from "../actors/audit/writer.ts";
import { type CircuitBreaker, createCircuitBreaker } from "../actors/pipeline/circuit_breaker.ts";
import { toDeadLetterMessage } from "../actors/record/dead_letter.ts";
import { DeadLetterStore } from "../actors/replay/dlq.ts";
import { type IdempotencyStore, openIdempotencyStore } from "../actors/pipeline/idempotency.ts";
import type { LoadGenerator } from "../actors/local/load_generator.ts";
import { logger } from "../actors/runtime/logger.ts";
import { rateLimitCeiling, rateLimitEffective } from "../actors/runtime/metrics.ts";
import { Pipeline } from "../actors/pipeline/pipeline.ts";
import { createProcessor, type ProcessorDeps } from "../actors/pipeline/processor.ts";
import { createRateLimiter, type RateLimiter } from "../actors/pipeline/rate_limiter.ts";
import { ReplayManager } from "../actors/replay/replay.ts";
import type { LogProducer } from "../actors/log/port.ts";
import { createUpstreamClient, type UpstreamClient } from "../actors/pipeline/upstream.ts";
import { type Config, ConfigError } from "./config.ts";
import type { Parts } from "./parts.ts";
import type { ChildContext, ChildHandle } from "./supervisor.ts";

const log = logger("sluice");

/** What every child receives. */
export interface Env {
  config: Config;
  parts: Parts;
}

/** A started child: the handle its supervisor drives, and the value later children use. */
export interface Started<T> {
  value: T;
  handle: ChildHandle;
}

/** `fn` run at most once: later calls return the first call's promise. */
export function once<A extends unknown[], T>(fn: (...a: A) => Promise<T>): (...a: A) => Promise<T> {
  let p: Promise<T> | undefined;
  return (...a) => (p ??= fn(...a));
}

/** A child handle whose `exited` resolves when `stop` (run once) ends or `fail` fires. */
export function handle(
  stop: () => Promise<void>,
  onFailure?: (fail: (e: Error) => void) => void,
  status?: () => Record<string, unknown>,
): ChildHandle {
  const exited = Promise.withResolvers<{ reason: "normal" | "shutdown" | Error }>();
  onFailure?.((e) => exited.resolve({ reason: e }));
  const stopOnce = once(() => stop().finally(() => exited.resolve({ reason: "shutdown" })));
  return { stop: () => stopOnce(), exited: exited.promise, status };
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

/** The audit child's value. */
export interface Audit {
  writer: AuditWriter;
  uploader: AuditUploader;
  topic: string;
  partitions: number;
  /** Shutdown phase `flush_audit`: uploads what waits in the audit topic (once, bounded). */
  flush(): Promise<void>;
}

/** Audit writer (→ audit topic) and uploader (audit topic → store); the source topics in local mode. */
export async function startAudit(
  { config, parts }: Env,
  ctx: ChildContext,
): Promise<Started<Audit>> {
  const { logClient } = parts;
  const topic = config.auditTopic ?? `${config.groupId}-audit`;
  const admin = await logClient.admin();
  if (logClient.kind === "embedded") {
    await admin.ensureTopics(
      config.topics.map((t) => ({ topic: t, partitions: config.embeddedPartitions })),
    );
  }
  let partitions: number;
  try {
    partitions = await ensureAuditTopic(admin, { topic, sources: config.topics });
  } catch (e) {
    throw new ConfigError([
      `SLUICE_AUDIT_TOPIC=${JSON.stringify(topic)}: ${
        e instanceof Error ? e.message : String(e)
      } (check the ACLs and the cluster's default replication factor)`,
    ]);
  }
  const retention = await admin.retentionMs?.(topic).catch(() => null) ?? null;
  const minMs = config.auditMinRetentionHours * 3_600_000;
  if (retention !== null && retention >= 0 && retention < minMs) {
    log.warn("the audit topic keeps events for less than SLUICE_AUDIT_MIN_RETENTION_HOURS", {
      topic,
      retention_hours: Math.round(retention / 36_000) / 100,
      min_hours: config.auditMinRetentionHours,
      risk: "an audit store outage longer than the retention loses audit events",
    });
  }
  const producer = await logClient.producer();
  const writer = new AuditWriter(producer, { topic, partitions });
  const uploader = new AuditUploader({
    log: logClient,
    topic,
    groupId: `${config.groupId}-audit-uploader`,
    store: parts.store,
    prefix: config.auditPrefix,
    batchEvents: config.auditBatchEvents,
    batchBytes: config.auditBatchBytes,
    batchAgeMs: config.auditBatchAgeMs,
    commitTimeoutMs: config.commitTimeoutMs,
    // The same watchdog as the pipeline's, and never shorter than two batch ages.
    stallMs: config.watchdogMs === 0 ? 0 : Math.max(config.watchdogMs, 2 * config.auditBatchAgeMs),
    parentId: ctx.parentId,
    afterPut: testHookAfterPut(),
  });
  await uploader.start();
  log.info("audit started", { topic, partitions, store: parts.described.audit });
  const flush = once(async () => {
    // Inside the phase's deadline: events left are safe in the audit topic, a warning not a failure.
    const r = await uploader.flush(Math.max(0, config.shutdownFlushMs - 500));
    if (r.remaining > 0) {
      log.warn("audit events not uploaded at the flush deadline; they stay in the audit topic", {
        remaining: r.remaining,
        topic,
      });
    }
  });
  return {
    value: { writer, uploader, topic, partitions, flush },
    handle: handle(
      async () => {
        writer.close();
        await uploader.stop();
        await producer.disconnect().catch(() => {});
      },
      undefined,
      () => ({ ...uploader.status(), topic }),
    ),
  };
}

/** The resilience child's value: what paces, guards and makes every upstream call. */
export interface Resilience {
  limiter: RateLimiter;
  flow?: AdaptiveLimiter;
  breaker: CircuitBreaker;
  upstream: UpstreamClient;
}

/** Rate limiter, adaptive limiter (`SLUICE_ADAPTIVE=on`), circuit breaker, upstream client. */
export function startResilience(
  { config, parts }: Env,
  ctx: ChildContext,
  onCircuit: (open: boolean) => void,
): Promise<Started<Resilience>> {
  const limiter = createRateLimiter({
    rate: config.rateLimit,
    burst: config.rateBurst,
    parentId: ctx.parentId,
  });
  // Every upstream call takes a permit from the adaptive limiter, under the configured rate (the ceiling).
  const flow = config.adaptive === "on"
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
  // The ceiling follows PUT /control/rate; with adaptive off, the effective rate is the configured one.
  const sub = limiter.actor.subscribe((s) => {
    if (flow) flow.setCeiling(s.context.rate, s.context.burst);
    else {
      rateLimitEffective.set(s.context.rate);
      rateLimitCeiling.set(s.context.rate);
    }
  });
  const breaker = createCircuitBreaker({
    policy: config.breakerPolicy,
    errorThresholdPercentage: config.breakerErrorPercent,
    volumeThreshold: config.breakerVolume,
    rollingCountTimeout: config.breakerWindowMs,
    resetTimeout: config.breakerResetMs,
    parentId: ctx.parentId,
  });
  const upstream = createUpstreamClient({
    url: parts.upstreamUrl,
    connectTimeoutMs: config.connectTimeoutMs,
    readTimeoutMs: config.readTimeoutMs,
    globalTimeoutMs: config.globalTimeoutMs,
    maxRetries: config.maxRetries,
    retryBaseMs: config.retryBaseMs,
    retryMaxMs: config.retryMaxMs,
    breaker,
    flow,
  });
  const off = breaker.onStateChange((to) => {
    if (breaker.policy === "pause") onCircuit(to === "open");
  });
  return Promise.resolve({
    value: { limiter, flow, breaker, upstream },
    handle: handle(async () => {
      off();
      sub.unsubscribe();
      breaker.stop();
      flow?.stop();
      limiter.stop();
      await upstream.close();
    }),
  });
}

/** Delivered idempotency keys (Deno KV, `${dataDir}/idempotency.kv`). */
export async function startIdempotency({ config }: Env): Promise<Started<IdempotencyStore>> {
  await Deno.mkdir(config.dataDir, { recursive: true });
  const s = await openIdempotencyStore({
    path: `${config.dataDir}/idempotency.kv`,
    ttlMs: config.idempotencyTtlHours * 3600_000,
    flushMs: config.idempotencyFlushMs,
  });
  return { value: s, handle: handle(() => s.close(), undefined, () => ({ ...s.stats() })) };
}

/** What the progress watchdog found, for `/health/ready` and `/status`. */
export class Stalls {
  /** Why the pipeline stalled, until a record finishes again in its successor. */
  current: string | null = null;
  by?: Pipeline;
  last: { at: string; reason: string } | null = null;
  count = 0;
  /** Notes a stall of `pipeline`. */
  note(pipeline: Pipeline, reason: string): void {
    [this.current, this.by] = [reason, pipeline];
    this.last = { at: new Date().toISOString(), reason };
    this.count++;
  }
  /** The stall reason, cleared once `now` (a successor) finished a record. */
  reason(now: Pipeline | undefined): string | null {
    if (this.current && now && now !== this.by && now.finished > 0) this.current = null;
    return this.current;
  }
}

/** The consumer child's value. */
export interface Consumer {
  pipeline: Pipeline;
  /** Shutdown phase `drain` (once): returns the records still in flight at its signal. */
  drain(signal: AbortSignal): Promise<number>;
}

/** Processor options shared by the pipeline and replays. */
function processorBase(
  { config, parts }: Env,
  audit: Audit,
  res: Resilience,
): Omit<ProcessorDeps, "publishDeadLetter"> {
  return {
    upstream: res.upstream,
    audit: audit.writer,
    breaker: res.breaker,
    consumerGroup: config.groupId,
    processingHost: `${config.clientId}@${hostname()}`,
    maxRecordBytes: config.maxRecordBytes,
    validatePayload: parts.validatePayload,
    tracing: parts.tracing,
  };
}

/** What the consumer child needs from the tree around it. */
export interface ConsumerNeeds {
  audit: Audit;
  resilience: Resilience;
  idempotency: IdempotencyStore;
  stalls: Stalls;
  /** Parent id of partition `actorId`'s actor, and its announcement as a child of the tree. */
  partitionParent(actorId: string): string;
  onPartition(actorId: string): void;
}

/** The consumer group: dead-letter topics, the processor, one partition actor per assigned partition. */
export async function startConsumer(
  env: Env,
  ctx: ChildContext,
  needs: ConsumerNeeds,
): Promise<Started<Consumer>> {
  const { config, parts: { logClient } } = env;
  const { audit, resilience: res } = needs;
  const admin = await logClient.admin();
  // Dead-letter topics get as many partitions as their source topic.
  const dlqSpecs = [];
  for (const topic of config.topics) {
    const n = (await admin.partitions(topic)).length;
    dlqSpecs.push({ topic: `${topic}${config.dlqSuffix}`, partitions: n });
  }
  await admin.ensureTopics(dlqSpecs);
  const p = await logClient.producer();
  const processor = createProcessor({
    ...processorBase(env, audit, res),
    // With flow control the upstream client paces every call itself.
    rateLimiter: res.flow ? undefined : res.limiter,
    onDelivered: (key) => needs.idempotency.record(key),
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
    partitionParent: needs.partitionParent,
    onPartition: needs.onPartition,
    audited: async (tp, signal) => {
      const [c] = (await admin.committed(config.groupId, tp.topic))
        .filter((o) => o.partition === tp.partition);
      const from = c && BigInt(c.offset) >= 0n ? c.offset : "0";
      return scanAudited(logClient, tp, from, {
        topic: audit.topic,
        partitions: audit.partitions,
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
    blocked: () => (env.parts.logHealth().ok ? null : "kafka"),
  });
  pl.onFailure(() => {
    const why = pl.stallReason();
    if (why) needs.stalls.note(pl, why);
  });
  if (res.breaker.state === "open" && res.breaker.policy === "pause") pl.pause("circuit");
  await pl.start();
  const drain = once((signal: AbortSignal) => pl.drain(signal));
  return {
    value: { pipeline: pl, drain },
    handle: handle(async () => {
      await drain(AbortSignal.timeout(config.shutdownDrainMs));
      await pl.close();
      await p.disconnect().catch(() => {});
    }, (fail) =>
      pl.onFailure(async (e) => {
        // The child is dead: release the group and the producer before the
        // supervisor starts a new one (records not committed are re-read).
        await pl.close().catch(() => {});
        await p.disconnect().catch(() => {});
        fail(e);
      })),
  };
}

/** The replay child's value. */
export interface Replays {
  manager: ReplayManager;
  deadLetters: DeadLetterStore;
}

/** Replay driver (time windows) and dead-letter store (list, replay). */
export async function startReplay(
  env: Env,
  ctx: ChildContext,
  audit: Audit,
  res: Resilience,
  idempotency: IdempotencyStore,
): Promise<Started<Replays>> {
  const { config, parts: { logClient } } = env;
  const p: LogProducer = await logClient.producer();
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
      ...processorBase(env, audit, res),
      replay,
      publishDeadLetter: async (dl) => {
        await ensureDlq(dl.original_topic);
        const m = toDeadLetterMessage(dl, { suffix: config.dlqSuffix });
        await p.send(m.topic, [{ key: m.key, value: m.value, headers: m.headers }]);
      },
    });
  const common = { log: logClient, store: idempotency, audit: audit.writer, breaker: res.breaker };
  const manager = new ReplayManager({
    ...common,
    processor: processorFor,
    defaultRate: config.replayRate,
    maxRecordBytes: config.maxRecordBytes,
    parentId: ctx.parentId,
  });
  const deadLetters = new DeadLetterStore({
    ...common,
    topics: config.topics,
    suffix: config.dlqSuffix,
    processor: processorFor,
    replays: manager,
    maxRecordBytes: config.maxRecordBytes,
  });
  return {
    value: { manager, deadLetters },
    handle: handle(
      async () => {
        await manager.close();
        await p.disconnect().catch(() => {});
      },
      undefined,
      () => ({ running: manager.running().length, ...deadLetters.stats() }),
    ),
  };
}

/** The load generator (local mode): records at a settable rate to the first topic. */
export async function startLoad(
  { config, parts }: Env,
  ctx: ChildContext,
): Promise<Started<LoadGenerator>> {
  const p = await parts.logClient.producer();
  const { startLoadGenerator } = await import("../actors/local/load_generator.ts");
  const g = startLoadGenerator({
    producer: p,
    topic: config.topics[0],
    rate: parts.loadRate ?? 20,
    parentId: ctx.parentId,
  });
  return {
    value: g,
    handle: handle(async () => {
      await g.stop();
      await p.disconnect();
    }),
  };
}
