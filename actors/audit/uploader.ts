/**
 * The audit uploader: reads the audit topic with its own consumer group (so
 * any live instance uploads any instance's events) and writes them to the
 * audit store (S3 / Ceph RGW, or `./data/audit` in local mode) as gzip JSON
 * Lines, then commits its audit-topic offsets.
 *
 * ```
 * audit topic ──▶ uploader group ──▶ batch (count / bytes / age, one UTC hour) ──▶ PUT ──▶ commit
 *                                    {prefix}/{yyyy}/{mm}/{dd}/{hh}/{auditTopic}-{p}-{first}-{last}.jsonl.gz
 * ```
 *
 * - **Deterministic keys.** A batch is a run of audit-topic offsets of one
 *   partition within one UTC hour (of the audit record's timestamp); its key
 *   names the partition and the first and last offsets (20 digits, so keys
 *   sort). Before a PUT the uploader lists `…-{p}-{first}-`: when an earlier
 *   attempt (this instance before a crash, or another instance) already
 *   stored a batch starting there, that object stands and the uploader
 *   commits past its last offset instead of writing a second copy. A retried
 *   or re-done upload therefore never duplicates an event.
 * - **Commit after PUT.** Offsets are committed only after the store
 *   acknowledged the object. A crash between the two re-reads the batch and
 *   finds the object (above).
 * - **Degraded, nothing dropped.** A failed PUT retries with exponential
 *   backoff and jitter inside the batch (the group membership kept alive by
 *   heartbeats); events wait in the audit topic, the pipeline goes on, and the
 *   uploader's lag (`audit_backlog_depth`) grows until the store answers.
 * - **Nothing stalls silently.** A commit or heartbeat that does not answer
 *   within `commitTimeoutMs` ends its batch (read again, found in the store).
 *   A progress watchdog (`stallMs`): when the log and the store answer, events
 *   wait in this uploader's partitions and nothing was committed for that long
 *   (a consumer that stopped fetching after a broker restart), the uploader is
 *   not ready, counts `audit_uploader_stalls_total` and starts its consumer
 *   anew (the batches in progress are abandoned and read again).
 * - The lifecycle is {@link auditUploaderMachine}: one event per batch.
 *
 * Metrics: `audit_writes_total` (events uploaded), `audit_write_errors_total`
 * (failed PUTs), `audit_backlog_depth` (events in the audit topic not yet
 * uploaded: the uploader group's lag), `audit_flush_lag_seconds` (age of the
 * oldest of those), `audit_spool_bytes` (bytes of audit events this instance
 * holds in memory for its next PUT).
 *
 * @module
 */
import type { Actor } from "xstate";
import { auditUploaderMachine, uploaderStateName } from "../../machines/audit_uploader.ts";
import { publishEvent } from "../runtime/events.ts";
import { logger } from "../runtime/logger.ts";
import {
  auditBacklogDepth,
  auditFlushLag,
  auditSpoolBytes,
  auditUploaderStallsTotal,
  auditWriteErrorsTotal,
  auditWritesTotal,
} from "../runtime/metrics.ts";
import { spawnActor, stopActor } from "../runtime/registry.ts";
import type { SourceRecord } from "../record/record.ts";
import type { Batch, LogClient, LogConsumer } from "../log/port.ts";
import { hourPrefix } from "./store.ts";
import type { AuditStore } from "./store.ts";
import { gzip } from "node:zlib";
import { promisify } from "node:util";

const log = logger("audit-uploader");
const gzipAsync = promisify(gzip);
const HOUR = 3_600_000;
const NL = 0x0a;

/** Options of {@link AuditUploader}. */
export interface AuditUploaderOptions {
  log: LogClient;
  /** The audit topic. */
  topic: string;
  /** The uploader's consumer group. */
  groupId: string;
  store: AuditStore;
  /** Object key prefix; default `audit`. */
  prefix?: string;
  /** Upload at this many events; default 5000. */
  batchEvents?: number;
  /** Upload at this many bytes (uncompressed); default 4 MiB. */
  batchBytes?: number;
  /** Upload a batch once its first event is this old (ms); default 5000. */
  batchAgeMs?: number;
  /** First PUT retry backoff (ms); default 500. */
  retryBaseMs?: number;
  /** Largest PUT retry backoff (ms); default 30 000. */
  retryMaxMs?: number;
  /** Gauge refresh period (ms); default 1000. */
  gaugeIntervalMs?: number;
  /** An offset commit that does not answer within this ends its batch (ms); default 10 000. */
  commitTimeoutMs?: number;
  /**
   * Progress watchdog (ms): events waiting in this uploader's partitions, the
   * log and the store answering, and nothing committed for this long → the
   * consumer is started anew (see the module doc). Default 60 000; 0 = off.
   */
  stallMs?: number;
  /** Registry id; default `audit-uploader`. */
  id?: string;
  parentId?: string;
  /**
   * Test hook: called after a PUT succeeded and before its offsets are
   * committed (a test kills the process here). Default none.
   */
  afterPut?: (key: string) => void | Promise<void>;
}

/** What {@link AuditUploader.status} returns. */
export interface AuditUploaderStatus {
  /** `idle`, `uploading`, `degraded`, `draining`, `stopped`. */
  state: string;
  degraded: boolean;
  /** Audit events in the audit topic not yet uploaded (the uploader group's lag). */
  backlogEvents: number;
  /** Bytes held in memory for the next PUT. */
  bufferedBytes: number;
  /** Age of the oldest event not yet uploaded (s); 0 when none. */
  oldestPendingAgeS: number;
  failures: number;
  lastError: string | null;
  uploadedEvents: number;
  /** Times the progress watchdog found the uploader stalled and started its consumer anew. */
  stalls: number;
  /** The last of those, or null. */
  lastStall: { at: string; reason: string } | null;
}

/** What {@link AuditUploader.flush} returns. */
export interface UploaderFlushResult {
  /** Events uploaded during the flush. */
  uploaded: number;
  /** Events still in the audit topic (safe there; any instance uploads them later). */
  remaining: number;
}

function pad20(offset: string): string {
  return offset.padStart(20, "0");
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

/** The object key of a batch (see the module doc). */
export function uploadKey(
  prefix: string,
  hourMs: number,
  topic: string,
  partition: number,
  first: string,
  last: string,
): string {
  return `${keyStem(prefix, hourMs, topic, partition, first)}${pad20(last)}.jsonl.gz`;
}

function keyStem(prefix: string, hourMs: number, topic: string, partition: number, first: string) {
  const safe = topic.replace(/[^A-Za-z0-9._-]/g, "_");
  return `${hourPrefix(prefix, new Date(hourMs))}${safe}-${partition}-${pad20(first)}-`;
}

type ResolvedOptions =
  & Required<Omit<AuditUploaderOptions, "parentId" | "afterPut">>
  & AuditUploaderOptions;

/** The audit uploader (see the module doc). */
export class AuditUploader {
  readonly #o: ResolvedOptions;
  #consumer?: LogConsumer;
  #actor?: Actor<typeof auditUploaderMachine>;
  #stop = new AbortController();
  /** Aborted when the current consumer is replaced (watchdog). */
  #session = new AbortController();
  #flushNow = false;
  /** Aborted by a flush or a stop: ends the batch-age waits at once. */
  #wake = new AbortController();
  #timer?: ReturnType<typeof setInterval>;
  #buffered = 0;
  #oldestBuffered: number | null = null;
  #backlog = 0;
  #backlogSince: number | null = null;
  #uploaded = 0;
  #lastError: string | null = null;
  /** Per audit partition: offsets up to this one are already in the store. */
  #skipUntil = new Map<number, bigint>();
  #started = false;
  #stopped = false;
  #active = new Set<Promise<void>>();
  #refreshing?: Promise<void>;
  /** Audit-topic partitions this uploader is assigned. */
  #assigned = new Set<number>();
  /** Events waiting in the assigned partitions, at the last refresh that could read them. */
  #assignedLag = 0;
  /** The last refresh read the log (it answers). */
  #lagKnown = false;
  /** Last commit, or last moment with nothing to do (performance.now()). */
  #lastProgress = performance.now();
  /** The consumer being started anew by the watchdog. */
  #restarting?: Promise<void>;
  #stallReason: string | null = null;
  #stalls = 0;
  #lastStall: { at: string; reason: string } | null = null;

  constructor(opts: AuditUploaderOptions) {
    this.#o = {
      prefix: "audit",
      batchEvents: 5000,
      batchBytes: 4 * 1024 * 1024,
      batchAgeMs: 5000,
      retryBaseMs: 500,
      retryMaxMs: 30_000,
      gaugeIntervalMs: 1000,
      commitTimeoutMs: 10_000,
      stallMs: 60_000,
      id: "audit-uploader",
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    } as ResolvedOptions;
  }

  /** Joins the uploader group and starts uploading. */
  async start(): Promise<void> {
    if (this.#started) throw new Error("Audit uploader is already started");
    this.#started = true;
    this.#actor = spawnActor(auditUploaderMachine, {
      id: this.#o.id,
      kind: "audit",
      parentId: this.#o.parentId,
      input: undefined,
      summary: () => {
        const s = this.status();
        return {
          degraded: s.degraded,
          backlog_events: s.backlogEvents,
          buffered_bytes: s.bufferedBytes,
          uploaded_events: s.uploadedEvents,
        };
      },
    });
    await this.#runConsumer();
    this.#timer = setInterval(() => void this.#refreshGauges(), this.#o.gaugeIntervalMs);
    await this.#refreshGauges();
  }

  /** Joins the group with a new consumer; its batches end when its session is aborted. */
  async #runConsumer(): Promise<void> {
    const session = new AbortController();
    this.#session = session;
    const signal = AbortSignal.any([this.#stop.signal, session.signal]);
    const consumer = this.#o.log.consumer(this.#o.groupId);
    this.#consumer = consumer;
    await consumer.run([this.#o.topic], {
      onAssignment: (assigned) => {
        if (signal.aborted) return;
        this.#skipUntil.clear();
        this.#assigned = new Set(assigned.map((tp) => tp.partition));
      },
      eachBatch: (batch) => {
        const p = this.#eachBatch(batch, signal);
        this.#active.add(p);
        return p.finally(() => this.#active.delete(p));
      },
    });
  }

  async #eachBatch(batch: Batch, signal: AbortSignal): Promise<void> {
    const o = this.#o;
    let lines: SourceRecord[] = [];
    let bytes = 0;
    let hour = -1;
    // Read at each record: an upload below may find a stored object that reaches further.
    const skipped = (r: SourceRecord) =>
      BigInt(r.offset) <= (this.#skipUntil.get(batch.partition) ?? -1n);
    for (const r of batch.records) {
      if (signal.aborted || batch.isStale()) return;
      if (skipped(r)) continue;
      const h = Math.floor(Number(r.timestamp) / HOUR) * HOUR;
      const len = (r.value?.byteLength ?? 0) + 1;
      if (
        lines.length > 0 &&
        (h !== hour || lines.length >= o.batchEvents || bytes + len > o.batchBytes)
      ) {
        if (!(await this.#upload(batch, hour, lines, signal))) return;
        lines = [];
        bytes = 0;
        this.#buffered = 0;
        if (skipped(r)) continue;
      }
      if (lines.length === 0) {
        hour = h;
        this.#oldestBuffered = Number(r.timestamp);
      }
      lines.push(r);
      bytes += len;
      this.#buffered = bytes;
    }
    if (lines.length === 0) return;
    // Wait for the batch's age (events that are already old go at once).
    const due = Number(lines[0].timestamp) + o.batchAgeMs;
    const wake = AbortSignal.any([this.#wake.signal, signal]);
    while (!this.#flushNow && !signal.aborted && Date.now() < due && !batch.isStale()) {
      await sleep(Math.min(1000, due - Date.now()), wake);
      await this.#heartbeat(batch);
    }
    if (signal.aborted || batch.isStale()) return;
    await this.#upload(batch, hour, lines, signal);
    this.#buffered = 0;
    this.#oldestBuffered = null;
  }

  /** Uploads `lines` (one partition, one hour) and commits past them; false when stopped or stale. */
  async #upload(
    batch: Batch,
    hour: number,
    lines: SourceRecord[],
    signal: AbortSignal,
  ): Promise<boolean> {
    const o = this.#o;
    while (lines.length > 0) {
      const first = lines[0].offset;
      const stem = keyStem(o.prefix, hour, o.topic, batch.partition, first);
      let n = lines.length;
      let put = true;
      const found = await this.#retry(
        batch,
        signal,
        () => o.store.list(stem, { signal }),
      );
      if (found === undefined) return false;
      if (found.length > 0) {
        // An earlier attempt stored a batch starting here: it stands.
        const last = BigInt(found[0].slice(stem.length).replace(/\.jsonl\.gz$/, ""));
        put = false;
        n = lines.findIndex((l) => BigInt(l.offset) > last);
        if (n === -1) {
          n = lines.length;
          if (BigInt(lines[n - 1].offset) < last) this.#skipUntil.set(batch.partition, last);
        }
        log.info("audit batch already in the store; not uploaded again", {
          key: found[0],
          partition: batch.partition,
        });
      }
      const chunk = lines.slice(0, n);
      const lastOffset = put ? chunk[chunk.length - 1].offset : found[0].slice(stem.length).replace(
        /\.jsonl\.gz$/,
        "",
      ).replace(/^0+(?=\d)/, "");
      if (put) {
        const key = uploadKey(o.prefix, hour, o.topic, batch.partition, first, lastOffset);
        const started = performance.now();
        const body = await encodeLines(chunk);
        const ok = await this.#retry(
          batch,
          signal,
          () => o.store.put(key, body, { signal }).then(() => true),
        );
        if (ok === undefined) return false;
        auditWritesTotal.inc(chunk.length);
        this.#uploaded += chunk.length;
        // What waits now is younger than this upload.
        if (this.#backlogSince !== null) this.#backlogSince = Date.now();
        this.#actor?.send({ type: "UPLOAD_OK" });
        publishEvent("audit.flushed", "info", {
          key,
          events: chunk.length,
          bytes: body.byteLength,
          partition: batch.partition,
          first_offset: first,
          last_offset: lastOffset,
          duration_ms: Math.round(performance.now() - started),
        });
        await o.afterPut?.(key);
      }
      const next = (BigInt(lastOffset) + 1n).toString();
      batch.resolve(next);
      // A commit can hang rather than fail (a coordinator that stopped answering):
      // the batch ends, and its events are read again and found in the store.
      const committed = await within(batch.commit(next), o.commitTimeoutMs);
      if (committed === undefined) {
        log.warn("audit offset commit did not answer; the batch is read again", {
          partition: batch.partition,
          offset: next,
          timeout_ms: o.commitTimeoutMs,
        });
        return false;
      }
      if (!committed) return false;
      this.#lastProgress = performance.now();
      lines = lines.slice(n);
    }
    return true;
  }

  /** Runs `fn` until it succeeds, with backoff; undefined when stopped or the batch went stale. */
  async #retry<T>(
    batch: Batch,
    signal: AbortSignal,
    fn: () => Promise<T>,
  ): Promise<T | undefined> {
    const o = this.#o;
    for (let n = 0;; n++) {
      if (signal.aborted || batch.isStale()) return undefined;
      try {
        return await fn();
      } catch (e) {
        if (signal.aborted) return undefined;
        auditWriteErrorsTotal.inc();
        this.#lastError = errorText(e);
        if (n === 0) {
          log.warn(
            "audit store failing: uploads retry with backoff, events wait in the audit topic",
            {
              error: this.#lastError,
              backlog_events: this.#backlog,
            },
          );
        }
        this.#actor?.send({ type: "UPLOAD_FAILED", error: this.#lastError });
        const delay = Math.min(o.retryMaxMs, o.retryBaseMs * 2 ** Math.min(n, 20));
        const end = Date.now() + delay * (0.5 + Math.random() / 2);
        while (Date.now() < end && !signal.aborted && !batch.isStale()) {
          await sleep(Math.min(1000, end - Date.now()), signal);
          await this.#heartbeat(batch);
        }
      }
    }
  }

  /** A heartbeat, bounded like a commit (it can hang the same way). */
  async #heartbeat(batch: Batch): Promise<void> {
    await within(batch.heartbeat(), this.#o.commitTimeoutMs);
  }

  async #refreshGauges(): Promise<void> {
    // One refresh at a time: while the broker is away they would pile up.
    if (this.#refreshing) return await this.#refreshing;
    this.#refreshing = this.#refreshOnce().finally(() => (this.#refreshing = undefined));
    return await this.#refreshing;
  }

  async #refreshOnce(): Promise<void> {
    try {
      const admin = await this.#o.log.admin();
      const [high, committed] = await Promise.all([
        admin.highWatermarks(this.#o.topic),
        admin.committed(this.#o.groupId, this.#o.topic),
      ]);
      const c = new Map(committed.map((p) => [p.partition, BigInt(p.offset)]));
      let lag = 0n;
      let mine = 0n;
      for (const h of high) {
        const done = c.get(h.partition) ?? -1n;
        const n = BigInt(h.offset) - (done < 0n ? 0n : done);
        lag += n;
        if (this.#assigned.has(h.partition)) mine += n;
      }
      this.#backlog = Number(lag);
      this.#assignedLag = Number(mine);
      this.#lagKnown = true;
      if (this.#backlog > 0) this.#backlogSince ??= Date.now();
      else this.#backlogSince = null;
    } catch (e) {
      this.#lagKnown = false;
      log.debug("audit backlog refresh failed", { error: errorText(e) });
    }
    this.#checkProgress();
    const s = this.status();
    auditBacklogDepth.set(s.backlogEvents);
    auditSpoolBytes.set(s.bufferedBytes);
    auditFlushLag.set(s.oldestPendingAgeS);
  }

  /**
   * The progress watchdog (module doc), after each gauge refresh. Quiet while
   * the log cannot be read (an outage: the client reconnects by itself), the
   * store fails (degraded: retrying), nothing waits in this uploader's
   * partitions, or a flush, a stop or a restart is under way.
   */
  #checkProgress(): void {
    const ms = this.#o.stallMs;
    if (ms <= 0 || this.#stopped || this.#flushNow || this.#restarting) return;
    const now = performance.now();
    if (!this.#lagKnown || this.#assignedLag === 0 || this.status().degraded) {
      this.#lastProgress = now;
      return;
    }
    const idleMs = now - this.#lastProgress;
    if (idleMs < ms) return;
    const reason = `no audit upload committed for ${Math.round(idleMs / 1000)} s with ` +
      `${this.#assignedLag} events waiting in audit partitions ${
        [...this.#assigned].sort((a, b) => a - b).join(", ")
      }`;
    this.#stallReason = reason;
    this.#stalls++;
    this.#lastStall = { at: new Date().toISOString(), reason };
    auditUploaderStallsTotal.inc();
    log.error("audit uploader stalled; starting its consumer anew", { reason });
    this.#restarting = this.#restartConsumer().finally(() => {
      this.#restarting = undefined;
      this.#lastProgress = performance.now();
    });
  }

  /** Abandons the current consumer and its batches (read again), then joins with a new one. */
  async #restartConsumer(): Promise<void> {
    this.#session.abort();
    await this.#closeConsumer();
    this.#buffered = 0;
    this.#oldestBuffered = null;
    if (this.#stopped) return;
    try {
      await this.#runConsumer();
      this.#stallReason = null;
      log.info("audit uploader consumer started anew", { group: this.#o.groupId });
    } catch (e) {
      // The watchdog tries again after another stallMs.
      log.warn("audit uploader consumer could not start again", { error: errorText(e) });
    }
  }

  /**
   * Waits (bounded) for the batches in progress, whose signal was aborted, then
   * stops the current consumer and leaves the group, bounded too: leaving during
   * a rebalance can take the session timeout; what was not committed is
   * uploaded again by another member (or the next consumer).
   */
  async #closeConsumer(): Promise<void> {
    await within(Promise.allSettled([...this.#active]), this.#o.commitTimeoutMs + 1000);
    const c = this.#consumer;
    if (!c) return;
    await within(c.stop(), 3000).catch((e) =>
      log.warn("uploader consumer stop failed", { error: errorText(e) })
    );
    await within(c.disconnect(), 3000).catch(() => {});
  }

  /** State, backlog and health. */
  status(): AuditUploaderStatus {
    const snap = this.#actor?.getSnapshot();
    const now = Date.now();
    const oldest = this.#oldestBuffered ?? (this.#backlog > 0 ? this.#backlogSince ?? now : null);
    return {
      state: snap ? uploaderStateName(snap.value) : "idle",
      degraded: (snap?.context.failures ?? 0) > 0,
      backlogEvents: this.#backlog,
      bufferedBytes: this.#buffered,
      oldestPendingAgeS: oldest === null ? 0 : Math.max(0, (now - oldest) / 1000),
      failures: snap?.context.failures ?? 0,
      lastError: (snap?.context.failures ?? 0) > 0
        ? snap?.context.lastError ?? this.#lastError
        : null,
      uploadedEvents: this.#uploaded,
      stalls: this.#stalls,
      lastStall: this.#lastStall,
    };
  }

  /** Readiness for `/health/ready`: not ready before start, after stop and while uploads fail. */
  ready(): { ready: boolean; reason?: string } {
    const s = this.status();
    if (s.state === "idle") return { ready: false, reason: "audit uploader not started" };
    if (s.state === "stopped") return { ready: false, reason: "audit uploader stopped" };
    if (this.#stallReason) {
      return { ready: false, reason: `audit uploader stalled, restarting: ${this.#stallReason}` };
    }
    if (s.degraded) {
      return {
        ready: false,
        reason: `audit store failing (${s.failures} failed uploads, ${s.backlogEvents} events ` +
          `waiting in the audit topic): ${s.lastError}`,
      };
    }
    return { ready: true };
  }

  /**
   * Shutdown phase `flush_audit`: uploads, without waiting for batch ages,
   * what waits in the audit partitions this uploader is assigned, up to their
   * end when the flush starts, for at most `deadlineMs`. Partitions of other
   * members and events written later are not waited for. Events left are
   * safe in the audit topic; any instance uploads them later.
   */
  async flush(deadlineMs = 10_000): Promise<UploaderFlushResult> {
    const before = this.#uploaded;
    this.#flushNow = true;
    this.#wake.abort();
    this.#actor?.send({ type: "DRAIN" });
    const end = Date.now() + deadlineMs;
    // What this uploader owns, up to the end of its partitions now: other
    // members upload theirs, and events written after this moment are not
    // this flush's to wait for.
    let target: Map<number, bigint>;
    try {
      const admin = await this.#o.log.admin();
      target = new Map(
        (await admin.highWatermarks(this.#o.topic))
          .filter((h) => this.#assigned.has(h.partition))
          .map((h) => [h.partition, BigInt(h.offset)]),
      );
    } catch (e) {
      log.warn("audit flush cannot read the audit topic's end; not waiting", {
        error: errorText(e),
      });
      return { uploaded: 0, remaining: this.#backlog };
    }
    const left = async (): Promise<number> => {
      const admin = await this.#o.log.admin();
      const committed = new Map(
        (await admin.committed(this.#o.groupId, this.#o.topic))
          .map((c) => [c.partition, BigInt(c.offset)]),
      );
      let n = 0n;
      for (const [p, hw] of target) {
        const c = committed.get(p) ?? -1n;
        if (c < hw) n += hw - (c < 0n ? 0n : c);
      }
      return Number(n);
    };
    let remaining = await left().catch(() => -1);
    while (remaining !== 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 200));
      remaining = await left().catch(() => -1);
    }
    await this.#refreshGauges();
    return {
      uploaded: this.#uploaded - before,
      remaining: remaining < 0 ? this.#backlog : remaining,
    };
  }

  /** Stops uploading and leaves the group (a PUT in progress is aborted; it is redone later). Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    this.#stop.abort();
    this.#wake.abort();
    await this.#restarting;
    await this.#closeConsumer();
    this.#actor?.send({ type: "STOPPED" });
    if (this.#actor) stopActor(this.#o.id);
  }
}

/** `p`, or undefined after `ms`. */
function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<undefined>((resolve) => (t = setTimeout(() => resolve(undefined), ms))),
  ]).finally(() => clearTimeout(t));
}

async function encodeLines(records: SourceRecord[]): Promise<Uint8Array> {
  let size = 0;
  for (const r of records) size += (r.value?.byteLength ?? 0) + 1;
  const text = new Uint8Array(size);
  let at = 0;
  for (const r of records) {
    if (r.value) {
      text.set(r.value, at);
      at += r.value.byteLength;
    }
    text[at++] = NL;
  }
  return new Uint8Array(await gzipAsync(text));
}
