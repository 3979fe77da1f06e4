/**
 * The durable step of the record path: every final outcome becomes one audit
 * event produced to the **audit topic** of the log (real Kafka: idempotent
 * producer, `acks=all`; local mode: the embedded log, fsync'd on disk). A
 * source offset is committed only after {@link AuditWriter.append} resolved
 * for every record before it, so what was delivered survives the loss of the
 * instance that delivered it: any instance's audit uploader
 * (`actors/audit/uploader.ts`) uploads it to S3 / Ceph RGW.
 *
 * ```
 * append(event) ──▶ queue ──▶ one produce request for every queued event (group commit)
 *   plain code       │            acks=all ──▶ each append resolves
 *                    └─ partition = source partition mod audit partitions, key = topic/partition/offset
 * ```
 *
 * - Group commit: appends that arrive while a produce request is in flight
 *   share the next one (at most `maxRequestBytes` per request), so the cost
 *   per record is a fraction of one round trip.
 * - An event larger than `maxEventBytes` is trimmed before it is produced: its
 *   error message is cut and `trimmed: true` is set (the outcome and reason
 *   stay); a broker refusal for size (`MESSAGE_TOO_LARGE`) trims it further.
 *   A large event never blocks its partition.
 * - A failed produce rejects the appends of that request; the caller (the
 *   processor) retries with backoff, so a broker outage stalls the partitions
 *   (lag grows) and loses nothing.
 *
 * The message key `topic/partition/offset` lets the pipeline find, on
 * assignment, the records whose outcome is already audited (see
 * {@link scanAudited}).
 *
 * @module
 */
import { logger } from "../runtime/logger.ts";
import { auditTopicWritesTotal } from "../runtime/metrics.ts";
import type { LogAdmin, LogClient, LogProducer, OutgoingMessage } from "../log/port.ts";
import type { AuditEvent } from "./event.ts";

const log = logger("audit-writer");
const decoder = new TextDecoder();

/** Options of {@link AuditWriter}. */
export interface AuditWriterOptions {
  /** The audit topic. */
  topic: string;
  /** Partitions of the audit topic (from {@link ensureAuditTopic}). */
  partitions: number;
  /** Largest audit event (bytes of JSON); larger ones are trimmed. Default 64 KiB. */
  maxEventBytes?: number;
  /** Largest produce request (bytes of values); default 512 KiB. */
  maxRequestBytes?: number;
}

interface Pending {
  partition: number;
  key: string;
  value: string;
  outcome: string;
  bytes: number;
  /** Already in its smallest form (a size refusal does not trim it again). */
  minimal?: boolean;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** The message key of an audit event: `topic/partition/offset`. */
export function auditKey(topic: string, partition: number, offset: string): string {
  return `${topic}/${partition}/${offset}`;
}

/**
 * True for a broker's refusal of a message for its size: the kafkajs error
 * type on the error or its causes (never its message).
 */
function isTooLarge(e: unknown): boolean {
  for (let c = e, n = 0; c && n < 5; c = (c as { cause?: unknown }).cause, n++) {
    const t = (c as { type?: unknown }).type;
    if (t === "MESSAGE_TOO_LARGE" || t === "RECORD_LIST_TOO_LARGE") return true;
  }
  return false;
}

/**
 * Bytes of `s` in UTF-8 (as `TextEncoder` writes it: a lone surrogate is
 * U+FFFD, 3 bytes), without encoding it: no buffer per audit event.
 */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 2; // 4 bytes for 2 code units
        i++;
      } else n += 2;
    } else n += 2;
  }
  return n;
}

/**
 * Serializes `event`, trimming it under `max` bytes: the error message is cut
 * first, then dropped; `trimmed: true` says so. The outcome, reason and
 * position are always kept.
 */
export function encodeAuditEvent(event: AuditEvent, max: number): string {
  let text = JSON.stringify(event);
  // A UTF-16 code unit is at most 3 bytes of UTF-8: most events need no count.
  if (text.length * 3 <= max || utf8Length(text) <= max) return text;
  const msg = event.result.error_message ?? "";
  for (const keep of [4096, 512, 0]) {
    const trimmed: AuditEvent & { trimmed: true } = {
      ...event,
      result: {
        ...event.result,
        error_message: keep === 0 && msg.length > 0
          ? "(error message dropped: audit event over its size limit)"
          : msg.length > keep
          ? `${msg.slice(0, keep)}… (cut from ${msg.length} characters)`
          : event.result.error_message,
      },
      trimmed: true,
    };
    text = JSON.stringify(trimmed);
    if (utf8Length(text) <= max) return text;
  }
  return minimalAuditEvent(event);
}

/**
 * The smallest form of an audit event, for a log whose message size limit
 * refused the full one: position, outcome and reason, with identifiers cut to
 * 64 characters, the upstream and resilience details left out, and
 * `trimmed: true`.
 */
export function minimalAuditEvent(event: AuditEvent): string {
  const cut = (v: string | null) => (v !== null && v.length > 64 ? `${v.slice(0, 64)}…` : v);
  return JSON.stringify({
    event_version: event.event_version,
    event_type: event.event_type,
    timestamp: event.timestamp,
    trace_id: cut(event.trace_id),
    request_id: cut(event.request_id),
    idempotency_key: cut(event.idempotency_key),
    topic: event.topic,
    partition: event.partition,
    offset: event.offset,
    result: {
      outcome: event.result.outcome,
      error_code: event.result.error_code,
      error_message: event.result.error_message === null
        ? null
        : "(dropped: audit event over the log's message size limit)",
    },
    ...(event.replay ? { replay: event.replay } : {}),
    trimmed: true,
  });
}

/** Produces audit events to the audit topic with group commit. */
export class AuditWriter {
  readonly #producer: LogProducer;
  readonly #o: Required<AuditWriterOptions>;
  #queue: Pending[] = [];
  #sending = false;
  #closed = false;
  #errors = 0;
  #lastError: string | null = null;
  #written = 0;

  constructor(producer: LogProducer, opts: AuditWriterOptions) {
    this.#producer = producer;
    this.#o = {
      maxEventBytes: 64 * 1024,
      maxRequestBytes: 512 * 1024,
      ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)),
    } as Required<AuditWriterOptions>;
  }

  /**
   * Appends one event; resolves once the log acknowledged it (replicated).
   *
   * @throws {TypeError} when the event lacks a valid timestamp, topic, partition or offset.
   * @throws when the produce request fails (the caller retries).
   */
  append(event: AuditEvent): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("Audit writer is closed"));
    if (
      typeof event?.timestamp !== "string" || Number.isNaN(Date.parse(event.timestamp)) ||
      typeof event.topic !== "string" || !Number.isInteger(event.partition) ||
      typeof event.offset !== "string"
    ) {
      return Promise.reject(
        new TypeError(
          `Invalid audit event: needs timestamp, topic, partition and offset: ${
            JSON.stringify(event)?.slice(0, 200)
          }`,
        ),
      );
    }
    const value = encodeAuditEvent(event, this.#o.maxEventBytes);
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    this.#queue.push({
      partition: event.partition % this.#o.partitions,
      key: auditKey(event.topic, event.partition, event.offset),
      value,
      outcome: event.result.outcome,
      bytes: utf8Length(value),
      resolve,
      reject,
    });
    if (!this.#sending) void this.#drain();
    return promise;
  }

  async #drain(): Promise<void> {
    this.#sending = true;
    try {
      while (this.#queue.length > 0) {
        let n = 0, bytes = 0;
        while (
          n < this.#queue.length &&
          (n === 0 || bytes + this.#queue[n].bytes <= this.#o.maxRequestBytes)
        ) {
          bytes += this.#queue[n].bytes;
          n++;
        }
        const chunk = this.#queue.splice(0, n);
        await this.#send(chunk);
      }
    } finally {
      this.#sending = false;
    }
  }

  async #send(chunk: Pending[]): Promise<void> {
    try {
      await this.#producer.send(this.#o.topic, chunk.map(toMessage));
      this.#written += chunk.length;
      auditTopicWritesTotal.inc(chunk.length);
      for (const p of chunk) p.resolve();
    } catch (e) {
      if (isTooLarge(e) && chunk.length > 1) {
        // One message too large fails the whole request: halve until it is alone.
        const half = Math.ceil(chunk.length / 2);
        await this.#send(chunk.slice(0, half));
        await this.#send(chunk.slice(half));
        return;
      }
      if (isTooLarge(e) && chunk.length === 1 && !chunk[0].minimal) {
        const p = chunk[0];
        log.warn("audit event refused for its size by the log; trimming it", {
          key: p.key,
          bytes: p.bytes,
        });
        p.value = minimalAuditEvent(JSON.parse(p.value));
        p.bytes = utf8Length(p.value);
        p.minimal = true;
        await this.#send([p]);
        return;
      }
      this.#errors++;
      this.#lastError = e instanceof Error ? e.message : String(e);
      for (const p of chunk) p.reject(e);
    }
  }

  /** Counters for `/status`. */
  status(): { written: number; errors: number; lastError: string | null; queued: number } {
    return {
      written: this.#written,
      errors: this.#errors,
      lastError: this.#lastError,
      queued: this.#queue.length,
    };
  }

  /** Refuses new appends; those queued still go out. */
  close(): void {
    this.#closed = true;
  }
}

function toMessage(p: Pending): OutgoingMessage {
  return { key: p.key, value: p.value, partition: p.partition, headers: { outcome: p.outcome } };
}

/** Options of {@link ensureAuditTopic}. */
export interface EnsureAuditTopicOptions {
  topic: string;
  /** Source topics: the audit topic gets as many partitions as the largest. */
  sources: string[];
}

/**
 * Creates the audit topic when missing, with as many partitions as the
 * largest source topic (and the cluster's default replication). Returns its
 * partition count.
 *
 * @throws an error naming the topic when it cannot be created or read.
 */
export async function ensureAuditTopic(
  admin: LogAdmin,
  opts: EnsureAuditTopicOptions,
): Promise<number> {
  let want = 1;
  for (const t of opts.sources) want = Math.max(want, (await admin.partitions(t)).length);
  try {
    await admin.ensureTopics([{ topic: opts.topic, partitions: want }]);
    return (await admin.partitions(opts.topic)).length;
  } catch (e) {
    throw new Error(
      `Cannot create or read the audit topic ${opts.topic}: ${
        e instanceof Error ? e.message : String(e)
      }`,
      { cause: e },
    );
  }
}

/** Options of {@link scanAudited}. */
export interface ScanOptions {
  /** The audit topic and its partition count. */
  topic: string;
  partitions: number;
  /** Read at least this far back in time (ms); default 10 minutes. */
  lookbackMs?: number;
  /** Read at least this many of the last events of the audit partition; default 20 000. */
  tailEvents?: number;
  signal?: AbortSignal;
}

/**
 * The offsets `≥ from` of source partition `tp` whose final outcome is
 * already in the audit topic: what an instance that died had finished but
 * not committed. Reads the audit partition that holds `tp`'s events, from the
 * earlier of (now − `lookbackMs`) and (its end − `tailEvents`), to its end.
 *
 * Events older than that window are not seen: duplicates are then possible
 * (never losses); the README's "Delivery guarantees" section says how to size
 * the window.
 */
export async function scanAudited(
  client: LogClient,
  tp: { topic: string; partition: number },
  from: string,
  opts: ScanOptions,
): Promise<Set<string>> {
  const done = new Set<string>();
  const ap = tp.partition % opts.partitions;
  const admin = await client.admin();
  const [high] = (await admin.highWatermarks(opts.topic)).filter((h) => h.partition === ap);
  if (!high) return done;
  const end = BigInt(high.offset);
  if (end === 0n) return done;
  const [byTime] =
    (await admin.offsetsForTimes(opts.topic, Date.now() - (opts.lookbackMs ?? 600_000)))
      .filter((o) => o.partition === ap);
  let start = end - BigInt(opts.tailEvents ?? 20_000);
  if (byTime && BigInt(byTime.offset) < start) start = BigInt(byTime.offset);
  if (start < 0n) start = 0n;
  const prefix = `${tp.topic}/${tp.partition}/`;
  const min = BigInt(from);
  for await (
    const records of client.readRange({ topic: opts.topic, partition: ap }, {
      from: start.toString(),
      to: end.toString(),
      signal: opts.signal,
    })
  ) {
    for (const r of records) {
      if (!r.key) continue;
      const key = decoder.decode(r.key);
      if (!key.startsWith(prefix)) continue;
      const offset = key.slice(prefix.length);
      try {
        if (BigInt(offset) >= min) done.add(offset);
      } catch {
        // Not an audit key of ours.
      }
    }
  }
  return done;
}
