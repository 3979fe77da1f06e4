/**
 * The audit trail: every final outcome of a record is appended here, made
 * durable in the local spool, and uploaded in batches to the audit store.
 *
 * ```
 * append(event) ──▶ Spool (group commit, fsync) ──▶ sealed segment ──▶ AuditStore
 *   plain code       segment opened / sealed           │ one object per topic-partition-hour
 *                          └──▶ auditBatcherMachine ───┘ (collecting, flushing, degraded,
 *                                                          draining, stopped)
 * ```
 *
 * - `append` is plain code: it resolves when the event is on local disk, and
 *   never sends the machine an event per record.
 * - A batch is one spool segment, sealed at `batchEvents` events,
 *   `batchBytes` bytes or `batchAgeMs` after its first event, whichever comes
 *   first. Segments are uploaded oldest first and deleted only after the
 *   store acknowledged every object made from them.
 * - A failed upload puts the batcher in `degraded`: uploads retry with
 *   exponential backoff and jitter (`retryBaseMs` … `retryMaxMs`), appends go
 *   on into the spool, {@link AuditTrail.ready} answers not ready, and the
 *   `audit_*` metrics show it.
 * - Past `spoolBudgetBytes` the trail signals backpressure (callbacks of
 *   {@link AuditTrail.onBackpressure} and a `system.backpressure` event):
 *   the consumer should pause. Nothing is dropped. The signal is released
 *   once the spool is back under `resumeFraction` of the budget.
 * - At start, segments left by an earlier process are uploaded first.
 *
 * @module
 */
import { type Actor, fromPromise, waitFor } from "xstate";
import {
  auditBatcherMachine,
  batcherStateName,
  type UploadInput,
  type UploadOutput,
} from "../../machines/audit_batcher.ts";
import { listActors, spawnActor, stopActor } from "../registry.ts";
import { publishEvent } from "../events.ts";
import { logger } from "../log.ts";
import {
  auditBacklogDepth,
  auditFlushLag,
  auditSpoolBytes,
  auditWriteErrorsTotal,
  auditWritesTotal,
} from "../metrics.ts";
import type { AuditEvent } from "./event.ts";
import { type RecoveryReport, Spool } from "./spool.ts";
import { type AuditStore, encodeBatch, groupSegment } from "./store.ts";

const log = logger("audit");
const MiB = 1024 * 1024;

/** Options of {@link createAuditTrail}. */
export interface AuditTrailOptions {
  /** Spool directory (created if missing). */
  dir: string;
  /** Where batches go. The trail does not close it. */
  store: AuditStore;
  /** Object key prefix; default `audit`. */
  prefix?: string;
  /** Seal a batch at this many events; default 5000. */
  batchEvents?: number;
  /** Seal a batch at this many bytes (uncompressed); default 4 MiB. */
  batchBytes?: number;
  /** Seal a batch this long after its first event (ms); default 5000. */
  batchAgeMs?: number;
  /** Spool size past which backpressure is signalled (bytes); default 1 GiB. */
  spoolBudgetBytes?: number;
  /** Backpressure is released under this fraction of the budget; default 0.5. */
  resumeFraction?: number;
  /** First upload retry backoff (ms); default 500. */
  retryBaseMs?: number;
  /** Largest upload retry backoff (ms); default 30000. */
  retryMaxMs?: number;
  /** Share one write + fsync between concurrent appends; default true. */
  groupCommit?: boolean;
  /** Registry id of the batcher actor; default `audit-batcher`. */
  id?: string;
  /** Parent in the actor tree (a supervisor id); default none. */
  parentId?: string;
  /** Refresh period of the `audit_*` gauges (ms); default 1000. */
  gaugeIntervalMs?: number;
}

/** What {@link AuditTrail.status} returns. */
export interface AuditTrailStatus {
  /** `idle` (not started), `collecting`, `flushing`, `degraded`, `draining`, `stopped`. */
  state: string;
  /** Uploads are failing (consecutive failures since the last success). */
  degraded: boolean;
  backpressure: boolean;
  /** Events durable in the spool, not yet uploaded. */
  backlogEvents: number;
  spoolBytes: number;
  /** Age of the oldest event not yet uploaded (s); 0 when none. */
  oldestPendingAgeS: number;
  /** Consecutive failed uploads. */
  failures: number;
  lastError: string | null;
}

/** What {@link AuditTrail.ready} returns. */
export interface Readiness {
  ready: boolean;
  /** Why not, when not ready. */
  reason?: string;
}

/** What {@link AuditTrail.flush} returns: events uploaded by the flush, events left in the spool. */
export interface FlushResult {
  uploaded: number;
  remaining: number;
}

type ResolvedOptions = Required<Omit<AuditTrailOptions, "parentId">> & { parentId?: string };

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The audit trail. Create it with {@link createAuditTrail}. */
export class AuditTrail {
  readonly #o: ResolvedOptions;
  #spool: Spool | null = null;
  #actor: Actor<typeof auditBatcherMachine> | null = null;
  #stopped = false;
  #timer: ReturnType<typeof setInterval> | undefined;
  #uploadedTotal = 0;
  #lastError: string | null = null;
  #uploadTail: Promise<void> = Promise.resolve();
  #listeners = new Set<(on: boolean) => void>();
  #backpressure = false;
  #recovery: RecoveryReport | null = null;

  constructor(opts: AuditTrailOptions) {
    this.#o = {
      prefix: "audit",
      batchEvents: 5000,
      batchBytes: 4 * MiB,
      batchAgeMs: 5000,
      spoolBudgetBytes: 1024 * MiB,
      resumeFraction: 0.5,
      retryBaseMs: 500,
      retryMaxMs: 30_000,
      groupCommit: true,
      id: "audit-batcher",
      gaugeIntervalMs: 1000,
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    } as ResolvedOptions;
  }

  /**
   * Opens the spool, starts the batcher actor and uploads the segments left
   * by an earlier process first: resolves after that first upload attempt
   * (succeeded, or failed and retrying in `degraded`).
   *
   * @returns what was found in the spool.
   */
  async start(): Promise<RecoveryReport> {
    if (this.#spool) throw new Error("Audit trail is already started");
    const o = this.#o;
    const { spool, report } = await Spool.open(o.dir, {
      segmentEvents: o.batchEvents,
      segmentBytes: o.batchBytes,
      groupCommit: o.groupCommit,
      onOpen: () => this.#actor?.send({ type: "SEGMENT_OPENED" }),
      onSeal: () => this.#actor?.send({ type: "SEGMENT_SEALED" }),
    });
    this.#spool = spool;
    this.#recovery = report;
    const logic = auditBatcherMachine.provide({
      actors: {
        uploadSealed: fromPromise<UploadOutput, UploadInput>(({ input, signal }) =>
          this.#exclusive(() => this.#upload(input, signal))
        ),
      },
      actions: {
        sealActive: () => {
          spool.rotate().catch((e) => log.error("cannot seal the audit batch", { error: e }));
        },
        onDegraded: (_, params) => {
          log.warn("audit store failing: uploads retry with backoff, events stay in the spool", {
            error: params.error,
            backlog_events: spool.pendingEvents,
          });
        },
        onRecovered: () => {
          log.info("audit store answering again", { backlog_events: spool.pendingEvents });
        },
        onBackpressure: (_, params) => this.#signalBackpressure(params.on),
      },
    });
    this.#actor = spawnActor(logic, {
      id: o.id,
      kind: "audit",
      parentId: o.parentId,
      input: {
        batchAgeMs: o.batchAgeMs,
        retryBaseMs: o.retryBaseMs,
        retryMaxMs: o.retryMaxMs,
        sealed: spool.sealed().length,
      },
      summary: () => {
        const s = this.status();
        return {
          degraded: s.degraded,
          backpressure: s.backpressure,
          backlog_events: s.backlogEvents,
          spool_bytes: s.spoolBytes,
        };
      },
    });
    this.#actor.subscribe({
      error: (e: unknown) => log.error("audit batcher failed", { error: e }),
    });
    this.#timer = setInterval(() => this.#updateGauges(), o.gaugeIntervalMs);
    this.#updateGauges();
    this.#checkBudget();
    if (report.segments > 0) {
      await waitFor(this.#actor, (s) => batcherStateName(s) !== "flushing");
    }
    return report;
  }

  /**
   * Appends one audit event. Resolves when it is durable in the local spool
   * (written and fsync'd), whatever the state of the store.
   *
   * @throws {TypeError} when the event lacks a valid timestamp, topic, partition or offset.
   * @throws when the trail is not started or stopped, or the disk write fails.
   */
  async append(event: AuditEvent): Promise<void> {
    const spool = this.#spool;
    if (!spool) throw new Error("Audit trail is not started");
    if (this.#stopped) throw new Error("Audit trail is stopped");
    if (
      typeof event?.timestamp !== "string" || Number.isNaN(Date.parse(event.timestamp)) ||
      typeof event.topic !== "string" || !Number.isInteger(event.partition) ||
      typeof event.offset !== "string"
    ) {
      throw new TypeError(
        `Invalid audit event: needs timestamp, topic, partition and offset: ${
          JSON.stringify(event)?.slice(0, 200)
        }`,
      );
    }
    await spool.append(event);
    this.#checkBudget();
  }

  /**
   * Shutdown flush: seals the current batch and uploads everything in the
   * spool, retrying with backoff, for at most `deadlineMs`. The batcher is
   * `stopped` afterwards: events appended later stay in the spool for the
   * next start.
   *
   * @param deadlineMs default 10000.
   */
  async flush(deadlineMs = 10_000): Promise<FlushResult> {
    const spool = this.#spool;
    if (!spool || !this.#actor) throw new Error("Audit trail is not started");
    const before = this.#uploadedTotal;
    if (this.#actor.getSnapshot().status === "active") {
      this.#actor.send({ type: "DRAIN", deadlineMs });
      await waitFor(this.#actor, (s) => batcherStateName(s) === "stopped");
    }
    this.#updateGauges();
    const result = { uploaded: this.#uploadedTotal - before, remaining: spool.pendingEvents };
    if (result.remaining > 0) {
      log.warn("audit flush ended at its deadline with events left in the spool", {
        ...result,
        deadline_ms: deadlineMs,
      });
    }
    return result;
  }

  /**
   * Stops the batcher (an upload in progress is aborted; its segment stays
   * in the spool), waits for pending appends and closes the spool. Idempotent.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    const actor = this.#actor;
    if (actor && actor.getSnapshot().status === "active") actor.send({ type: "STOP" });
    await this.#uploadTail;
    await this.#spool?.close();
    if (actor) {
      const entry = listActors().find((a) => a.id === this.#o.id);
      if (entry?.actor === actor) stopActor(this.#o.id);
      else actor.stop();
    }
    this.#updateGauges();
  }

  /** The trail's state, backlog and health. */
  status(): AuditTrailStatus {
    const spool = this.#spool;
    const snap = this.#actor?.getSnapshot();
    const oldest = spool?.oldestAt ?? null;
    return {
      state: snap ? batcherStateName(snap) : "idle",
      degraded: (snap?.context.failures ?? 0) > 0,
      backpressure: this.#backpressure,
      backlogEvents: spool?.pendingEvents ?? 0,
      spoolBytes: spool?.bytes ?? 0,
      oldestPendingAgeS: oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000),
      failures: snap?.context.failures ?? 0,
      lastError: snap?.context.lastError ?? this.#lastError,
    };
  }

  /** Readiness for `/health/ready`: not ready before start, after stop and while degraded. */
  ready(): Readiness {
    const s = this.status();
    if (s.state === "idle") return { ready: false, reason: "audit trail not started" };
    if (s.state === "stopped") return { ready: false, reason: "audit trail stopped" };
    if (s.degraded) {
      return {
        ready: false,
        reason: `audit store failing (${s.failures} failed uploads, ${s.backlogEvents} events ` +
          `in the spool): ${s.lastError}`,
      };
    }
    return { ready: true };
  }

  /** Calls `cb(true)` when backpressure starts and `cb(false)` when it ends; returns the unsubscribe function. */
  onBackpressure(cb: (on: boolean) => void): () => void {
    this.#listeners.add(cb);
    return () => this.#listeners.delete(cb);
  }

  /** What the start found in the spool, or null before start. */
  get recovery(): RecoveryReport | null {
    return this.#recovery;
  }

  /**
   * Runs uploads one at a time: an upload aborted by a state change may still
   * be finishing when the next one starts.
   */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#uploadTail.then(fn);
    this.#uploadTail = p.then(() => {}, () => {});
    return p;
  }

  async #upload(input: UploadInput, signal: AbortSignal): Promise<UploadOutput> {
    const spool = this.#spool!;
    const o = this.#o;
    if (input.seal) await spool.rotate();
    let uploaded = 0;
    for (let seg = spool.sealed()[0]; seg; seg = spool.sealed()[0]) {
      signal.throwIfAborted();
      const started = performance.now();
      const { events } = await spool.read(seg);
      const groups = groupSegment(o.prefix, seg.id, events);
      let bytes = 0;
      try {
        for (const g of groups) {
          const body = await encodeBatch(g.events);
          bytes += body.length;
          await o.store.put(g.key, body, { signal });
        }
      } catch (e) {
        if (signal.aborted) throw e;
        auditWriteErrorsTotal.inc();
        this.#lastError = errorText(e);
        log.debug("audit upload failed", { segment: seg.name, error: e });
        throw e;
      }
      this.#lastError = null; // recovered: `status().lastError` no longer shows an old failure
      if (!(await spool.remove(seg))) continue;
      auditWritesTotal.inc(events.length);
      uploaded += events.length;
      this.#uploadedTotal += events.length;
      publishEvent("audit.flushed", "info", {
        segment: seg.name,
        events: events.length,
        objects: groups.length,
        bytes,
        keys: groups.map((g) => g.key),
        duration_ms: Math.round(performance.now() - started),
        backlog_events: spool.pendingEvents,
      });
      this.#updateGauges();
      this.#checkBudget();
    }
    return { uploaded, remaining: spool.pendingEvents };
  }

  #checkBudget(): void {
    const spool = this.#spool;
    const actor = this.#actor;
    if (!spool || !actor || actor.getSnapshot().status !== "active") return;
    const bytes = spool.bytes;
    if (!this.#backpressure && bytes > this.#o.spoolBudgetBytes) {
      actor.send({ type: "OVER_BUDGET" });
    } else if (
      this.#backpressure && bytes <= this.#o.spoolBudgetBytes * this.#o.resumeFraction
    ) {
      actor.send({ type: "UNDER_BUDGET" });
    }
  }

  #signalBackpressure(on: boolean): void {
    this.#backpressure = on;
    const data = {
      source: "audit",
      on,
      spool_bytes: this.#spool?.bytes ?? 0,
      budget_bytes: this.#o.spoolBudgetBytes,
    };
    if (on) log.warn("audit spool over its disk budget: backpressure on", data);
    else log.info("audit spool back under its budget: backpressure off", data);
    publishEvent("system.backpressure", on ? "warn" : "info", data);
    for (const cb of this.#listeners) {
      try {
        cb(on);
      } catch (e) {
        log.error("backpressure listener failed", { error: e });
      }
    }
  }

  #updateGauges(): void {
    const s = this.status();
    auditBacklogDepth.set(s.backlogEvents);
    auditSpoolBytes.set(s.spoolBytes);
    auditFlushLag.set(s.oldestPendingAgeS);
  }
}

/** Creates an audit trail (not started: call {@link AuditTrail.start}). */
export function createAuditTrail(opts: AuditTrailOptions): AuditTrail {
  return new AuditTrail(opts);
}
