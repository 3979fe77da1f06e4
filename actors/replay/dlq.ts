/**
 * The dead-letter store behind `GET /dlq`, `POST /dlq/:id/replay` and
 * `POST /dlq/replay` (README, Internals; pubsubkafka runbook INC-002,
 * "dlq replay --id").
 *
 * ```ts
 * const dlq = new DeadLetterStore({ log, topics: ["orders"], store, audit, processor, replays });
 * await dlq.list({ topic: "orders", reason: "PROCESSING_ERROR", limit: 100 });
 * await dlq.replay("orders:0:42");          // {status: "delivered"} then {status: "already_delivered"}
 * dlq.replayBulk({ reason: "TIMEOUT_ERROR", from, to });  // a replay job, progress on /control/replay/:id
 * ```
 *
 * **Reading.** The `<topic><suffix>` topics (suffix `SLUICE_DLQ_SUFFIX`,
 * default `-dlq`) are read with `LogClient.readRange`, outside any consumer
 * group (nothing is committed). An in-memory index is filled incrementally:
 * each call reads only what was appended since the previous one (per
 * partition, up to the high watermark). The index holds the parsed dead
 * letters, so its memory grows with the DLQ (fine for an operator's DLQ of
 * thousands; a DLQ of millions wants a retention policy first). Values that
 * are not dead letters are counted and skipped.
 *
 * **Listing.** Filters: original `topic` (default: every configured topic),
 * `reason` (`failure_reason`), `from`/`to` on the dead letter's `timestamp`
 * (when it was dead-lettered). Order: by that time, then DLQ partition and
 * offset. `cursor` is opaque (the position of the last item returned), so a
 * page is stable while new dead letters arrive. Each item is the dead letter
 * (README, "Internals: the contracts") plus `dlq_partition` and `dlq_offset`.
 *
 * **Replaying one** (by `id` = `topic:partition:offset` of the original
 * record; the latest dead letter with that id): the original record
 * (`deadLetterToRecord`, header `x-sluice-reprocessed: true`) goes through a
 * processor made with `replay: {replay_id, source: "dlq"}`, so the outcome is
 * audited (`replay.record.*`). When its idempotency key is already in the
 * idempotency store (delivered live, by a window replay, or by an earlier
 * DLQ replay) nothing is sent: the answer is `{status: "already_delivered"}`
 * (and a `replay.record.skipped_duplicate` audit event). Delivered → the key
 * is written to the store before answering. While the breaker is open the
 * answer is 503 `circuit_open` (nothing sent). Two concurrent replays of one
 * id share one attempt.
 *
 * **Bulk replay** selects the latest dead letter per id matching the filters
 * and runs it as a replay job of the {@link ReplayManager} (`source: "dlq"`,
 * its rate, progress, cancel, skip of delivered keys).
 *
 * @module
 */
import type { AuditEvent, FailureReason } from "../audit/event.ts";
import {
  type DeadLetter,
  deadLetterToRecord,
  DEFAULT_DLQ_SUFFIX,
  parseDeadLetter,
  parseDeadLetterId,
  REPROCESSED_HEADER,
} from "../record/dead_letter.ts";
import { parseEnvelope } from "../record/envelope.ts";
import type { IdempotencyStore } from "../pipeline/idempotency.ts";
import { logger } from "../runtime/logger.ts";
import { replayRecordsTotal, requestsTotal } from "../runtime/metrics.ts";
import type { Processor } from "../pipeline/processor.ts";
import type { SourceRecord } from "../record/record.ts";
import { type ReplayManager, type ReplaySource, skippedDuplicateEvent } from "./replay.ts";
import type { LogClient } from "../log/port.ts";
import {
  TimeoutError,
  UnavailableError,
  UnknownTopicError,
  ValidationError,
} from "../runtime/errors.ts";
import type { DlqBulkReplayRequest, DlqPage, DlqQuery, ReplayStart } from "./types.ts";

const log = logger("dlq");

/** Options of {@link DeadLetterStore}. */
export interface DeadLetterStoreOptions {
  log: Pick<LogClient, "admin" | "readRange">;
  /** Configured source topics (listed when the query names none). */
  topics: readonly string[];
  /** Dead-letter topic suffix. Default `-dlq`. */
  suffix?: string;
  store: Pick<IdempotencyStore, "has" | "markDelivered">;
  /** The audit trail (for the skipped duplicate of an already delivered id). */
  audit: { append(event: AuditEvent): Promise<void> };
  /** Creates the processor of one replay: the live deps plus `replay`. */
  processor(replay: { replay_id: string; source: ReplaySource }): Pick<Processor, "process">;
  /** Runs bulk replays. */
  replays: Pick<ReplayManager, "startPlanned">;
  /** The shared breaker: one replay answers 503 while it is open. Default none. */
  breaker?: { readonly state: string };
  /** Deadline of one replay (ms). Default 60000. */
  replayTimeoutMs?: number;
  maxRecordBytes?: number;
}

/** One indexed dead letter. */
interface Entry {
  dl: DeadLetter;
  /** `dl.timestamp` in ms (0 when unreadable). */
  at: number;
  dlqTopic: string;
  partition: number;
  offset: bigint;
}

interface TopicIndex {
  next: Map<number, bigint>;
  entries: Entry[];
  refreshing?: Promise<void>;
}

type Cursor = [number, string, number, string];

function encodeCursor(e: Entry): string {
  const c: Cursor = [e.at, e.dlqTopic, e.partition, String(e.offset)];
  return btoa(JSON.stringify(c)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function decodeCursor(s: string): Cursor {
  try {
    const c = JSON.parse(atob(s.replaceAll("-", "+").replaceAll("_", "/")));
    if (
      Array.isArray(c) && c.length === 4 && typeof c[0] === "number" &&
      typeof c[1] === "string" && typeof c[2] === "number" && /^\d+$/.test(c[3])
    ) return c as Cursor;
  } catch {
    // Falls through.
  }
  throw new ValidationError("Invalid cursor: not a cursor of GET /dlq");
}

function compare(a: Entry, c: Cursor): number {
  return a.at - c[0] || (a.dlqTopic < c[1] ? -1 : a.dlqTopic > c[1] ? 1 : 0) ||
    a.partition - c[2] || (a.offset < BigInt(c[3]) ? -1 : a.offset > BigInt(c[3]) ? 1 : 0);
}

function order(a: Entry, b: Entry): number {
  return compare(a, [b.at, b.dlqTopic, b.partition, String(b.offset)]);
}

/** The payload cut to `limit` characters, with its full length, when it is longer. */
function bounded(payload: string | null, limit: number | undefined): Record<string, unknown> {
  if (limit === undefined || payload === null || payload.length <= limit) return {};
  return {
    original_payload: payload.slice(0, limit),
    original_payload_truncated: true,
    original_payload_length: payload.length,
  };
}

/** The dead-letter store: list, replay one, and bulk replay (what the `/dlq` routes call). */
export class DeadLetterStore {
  readonly #opts: DeadLetterStoreOptions;
  readonly #index = new Map<string, TopicIndex>();
  readonly #inflight = new Map<string, Promise<{ id: string; status: string }>>();
  #unreadable = 0;

  constructor(opts: DeadLetterStoreOptions) {
    this.#opts = opts;
  }

  get #suffix(): string {
    return this.#opts.suffix ?? DEFAULT_DLQ_SUFFIX;
  }

  /** Reads what was appended to `<topic><suffix>` since the last call. */
  #refresh(topic: string): Promise<void> {
    const dlqTopic = `${topic}${this.#suffix}`;
    let idx = this.#index.get(dlqTopic);
    if (!idx) {
      idx = { next: new Map(), entries: [] };
      this.#index.set(dlqTopic, idx);
    }
    const index = idx;
    index.refreshing ??= (async () => {
      const admin = await this.#opts.log.admin();
      let high;
      try {
        high = await admin.highWatermarks(dlqTopic);
      } catch (e) {
        if (e instanceof UnknownTopicError) return;
        throw e;
      }
      await Promise.all(high.map(async ({ partition, offset }) => {
        const from = index.next.get(partition) ?? 0n;
        const to = BigInt(offset);
        if (from >= to) return;
        for await (
          const batch of this.#opts.log.readRange({ topic: dlqTopic, partition }, {
            from: String(from),
            to: String(to),
          })
        ) {
          for (const m of batch) {
            try {
              if (!m.value) throw new Error("empty value");
              const dl = parseDeadLetter(m.value);
              const at = Date.parse(dl.timestamp);
              index.entries.push({
                dl,
                at: Number.isNaN(at) ? 0 : at,
                dlqTopic,
                partition,
                offset: BigInt(m.offset),
              });
            } catch (e) {
              this.#unreadable++;
              log.warn("not a dead letter; skipped", {
                topic: dlqTopic,
                partition,
                offset: m.offset,
                error: e,
              });
            }
            index.next.set(partition, BigInt(m.offset) + 1n);
          }
        }
        // Offsets may have gaps (transaction markers): the high watermark is read.
        index.next.set(partition, to);
      }));
      index.entries.sort(order);
    })().finally(() => (index.refreshing = undefined));
    return index.refreshing;
  }

  async #entries(query: {
    topic?: string;
    reason?: FailureReason;
    from?: number;
    to?: number;
  }): Promise<Entry[]> {
    const topics = query.topic ? [query.topic] : [...this.#opts.topics];
    await Promise.all(topics.map((t) => this.#refresh(t)));
    const out: Entry[] = [];
    for (const t of topics) {
      for (const e of this.#index.get(`${t}${this.#suffix}`)?.entries ?? []) {
        if (query.reason && e.dl.failure_reason !== query.reason) continue;
        if (query.from !== undefined && e.at < query.from) continue;
        if (query.to !== undefined && e.at >= query.to) continue;
        out.push(e);
      }
    }
    return out.sort(order);
  }

  /** `GET /dlq`: one page of dead letters, oldest first (or newest first). */
  async list(query: DlqQuery): Promise<DlqPage> {
    let entries = await this.#entries(query);
    const newest = query.order === "newest";
    if (newest) entries.reverse();
    if (query.cursor) {
      const c = decodeCursor(query.cursor);
      entries = entries.filter((e) => newest ? compare(e, c) < 0 : compare(e, c) > 0);
    }
    const page = entries.slice(0, query.limit);
    // Replayed = the original record was delivered since, whichever way: this
    // letter's replay, a bulk or a window replay, or the live consumer again.
    const keys = page.map((e) => this.#idempotencyKey(e.dl));
    const delivered = await this.#opts.store.has(keys);
    return {
      items: page.map((e, i) => ({
        ...e.dl,
        ...bounded(e.dl.original_payload, query.payloadLimit),
        dlq_partition: e.partition,
        dlq_offset: String(e.offset),
        idempotency_key: keys[i],
        delivered_since: delivered.has(keys[i]),
      })),
      ...(entries.length > page.length && page.length > 0
        ? { next_cursor: encodeCursor(page[page.length - 1]) }
        : {}),
    };
  }

  /** The idempotency key of a dead letter's original record (the envelope's, else derived). */
  #idempotencyKey(dl: DeadLetter): string {
    const env = parseEnvelope(deadLetterToRecord(dl), { maxBytes: this.#opts.maxRecordBytes });
    return env.ok ? env.envelope.idempotency_key : env.idempotencyKey;
  }

  /** The latest dead letter with `id`, or undefined. */
  async find(id: string): Promise<DeadLetter | undefined> {
    const where = parseDeadLetterId(id);
    if (!where) return undefined;
    const entries = await this.#entries({ topic: where.topic });
    for (let i = entries.length - 1; i >= 0; i--) {
      if (entries[i].dl.id === id) return entries[i].dl;
    }
    return undefined;
  }

  /** `POST /dlq/:id/replay` (module doc); undefined for an unknown id. */
  async replay(
    id: string,
  ): Promise<Record<string, unknown> & { id: string; status: string } | undefined> {
    const dl = await this.find(id);
    if (!dl) return undefined;
    let p = this.#inflight.get(id);
    if (!p) {
      p = this.#replayOne(dl).finally(() => this.#inflight.delete(id));
      this.#inflight.set(id, p);
    }
    return await p;
  }

  async #replayOne(dl: DeadLetter): Promise<{ id: string; status: string }> {
    const replayId = `dlq-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}`;
    const original = deadLetterToRecord(dl);
    const record: SourceRecord = {
      ...original,
      headers: { ...original.headers, [REPROCESSED_HEADER]: "true" },
    };
    const env = parseEnvelope(record, { maxBytes: this.#opts.maxRecordBytes });
    const key = env.ok ? env.envelope.idempotency_key : env.idempotencyKey;
    if ((await this.#opts.store.has([key])).has(key)) {
      await this.#opts.audit.append(
        skippedDuplicateEvent(
          record,
          key,
          { replay_id: replayId, source: "dlq" },
          this.#opts.maxRecordBytes,
        ),
      );
      replayRecordsTotal.inc({ result: "skipped_duplicate" });
      requestsTotal.inc({ outcome: "skipped_duplicate" });
      return {
        id: dl.id,
        status: "already_delivered",
        idempotency_key: key,
        message: "This record was already delivered (idempotency key in the store): nothing sent",
      } as { id: string; status: string };
    }
    if (this.#opts.breaker?.state === "open") {
      throw new UnavailableError(
        "circuit_open",
        "The circuit breaker is open: the upstream is failing; replay when it has recovered",
      );
    }
    const processor = this.#opts.processor({ replay_id: replayId, source: "dlq" });
    const signal = AbortSignal.timeout(this.#opts.replayTimeoutMs ?? 60_000);
    let outcome;
    try {
      outcome = await processor.process(record, signal);
    } catch {
      throw new TimeoutError(
        "replay_timeout",
        `The replay of ${dl.id} did not finish in time; nothing was recorded, try again`,
      );
    }
    replayRecordsTotal.inc({ result: outcome.outcome });
    log.info("dead letter replayed", { id: dl.id, replay_id: replayId, outcome: outcome.outcome });
    if (outcome.outcome === "delivered") {
      await this.#opts.store.markDelivered([key]);
      return {
        id: dl.id,
        status: "delivered",
        replay_id: replayId,
        idempotency_key: key,
        upstream_status: outcome.status,
      } as { id: string; status: string };
    }
    return {
      id: dl.id,
      status: "dead_lettered",
      replay_id: replayId,
      idempotency_key: key,
      failure_reason: outcome.reason,
      error_message: outcome.message,
      dead_letter_id: outcome.deadLetterId,
    } as { id: string; status: string };
  }

  /**
   * `POST /dlq/replay`: replays every dead letter matching the filters (the
   * latest per id) as a replay job; progress on `/control/replay/:id`.
   */
  async replayBulk(req: DlqBulkReplayRequest): Promise<ReplayStart> {
    const entries = await this.#entries(req);
    const latest = new Map<string, Entry>();
    for (const e of entries) latest.set(e.dl.id, e);
    const chosen = [...latest.values()].sort(order);
    return this.#opts.replays.startPlanned({
      key: `dlq:${req.topic ?? "*"}`,
      source: "dlq",
      topic: req.topic ?? "*",
      rate: req.rate,
      from: req.from,
      to: req.to,
      plan: () =>
        Promise.resolve({
          total: chosen.length,
          lanes: [async function* (signal: AbortSignal) {
            for (let i = 0; i < chosen.length && !signal.aborted; i += 100) {
              yield chosen.slice(i, i + 100).map((e) => deadLetterToRecord(e.dl));
            }
          }],
        }),
    });
  }

  /** Counters for `/status`. */
  stats(): { indexed: number; unreadable: number } {
    let n = 0;
    for (const i of this.#index.values()) n += i.entries.length;
    return { indexed: n, unreadable: this.#unreadable };
  }
}
