/**
 * Dead letters (README, Internals): building them for `<topic>-dlq` and
 * reading them back (for `GET /dlq` and the DLQ replay).
 *
 * Choices:
 *  - `id` is `topic:partition:offset` of the original record (`:` cannot occur
 *    in a Kafka topic name, so the id parses back unambiguously). A record that
 *    is dead-lettered again (after a replay, or after a crash before the offset
 *    was committed) gets the same id, so consumers of the DLQ can deduplicate.
 *  - `original_payload` and `original_key` are text when the bytes are valid
 *    UTF-8, base64 otherwise; `original_payload_encoding` and
 *    `original_key_encoding` (`"utf8"` or `"base64"`, extra fields beyond §3)
 *    say which, so the bytes are recovered exactly.
 *  - `original_headers` is the record's headers object (already strings).
 *  - All times are ISO 8601; `original_timestamp` is the record's Kafka
 *    timestamp (kafkajs gives milliseconds as a string).
 *  - `is_reprocessed` is true when the record carries the
 *    {@link REPROCESSED_HEADER} header set to `true` (set by the replay driver).
 *  - The Kafka message's key is the original key; its value is the JSON; it
 *    carries the header `x-sluice-dead-letter-id`.
 *
 * @module
 */
import { FAILURE_REASONS, type FailureReason } from "../audit/event.ts";
import { headerValue } from "./envelope.ts";
import type { SourceRecord } from "./record.ts";

/** Header that marks a record re-published by a replay (`"true"`). */
export const REPROCESSED_HEADER = "x-sluice-reprocessed";
/** Header of the DLQ message carrying the dead letter id. */
export const DEAD_LETTER_ID_HEADER = "x-sluice-dead-letter-id";
/** Default suffix of the dead-letter topic (`SLUICE_DLQ_SUFFIX`). */
export const DEFAULT_DLQ_SUFFIX = "-dlq";

const FAILURE_REASON_SET: ReadonlySet<string> = new Set<string>(FAILURE_REASONS);

/** Encoding of a bytes field of a dead letter. */
export type BytesEncoding = "utf8" | "base64";

/** One dead letter, as written (JSON) to `<topic>-dlq`. */
export interface DeadLetter {
  id: string;
  /** When the dead letter was built (ISO 8601). */
  timestamp: string;
  original_topic: string;
  original_partition: number;
  original_offset: string;
  original_key: string | null;
  original_key_encoding: BytesEncoding;
  original_payload: string | null;
  original_payload_encoding: BytesEncoding;
  original_headers: Record<string, string>;
  /** The record's Kafka timestamp (ISO 8601). */
  original_timestamp: string;
  failure_reason: FailureReason;
  error_message: string;
  retry_count: number;
  /** First failed attempt (ISO 8601); the dead-lettering time when no attempt was made. */
  first_failure: string;
  /** Last failed attempt (ISO 8601). */
  last_failure: string;
  consumer_group: string;
  processing_host: string;
  trace_id: string;
  is_reprocessed: boolean;
}

/** What {@link buildDeadLetter} needs beyond the record. */
export interface DeadLetterFailure {
  reason: FailureReason;
  message: string;
  traceId: string;
  /** Default 0. */
  retryCount?: number;
  /** Default `now`. */
  firstFailure?: Date | string;
  /** Default `now`. */
  lastFailure?: Date | string;
}

/** Options of {@link buildDeadLetter}. */
export interface BuildDeadLetterOptions {
  consumerGroup: string;
  /** Default `sluice@<hostname>`. */
  processingHost?: string;
  /** Default `new Date()`. */
  now?: Date;
}

/** The id of the dead letter of a record: `topic:partition:offset`. */
export function deadLetterId(topic: string, partition: number, offset: string): string {
  return `${topic}:${partition}:${offset}`;
}

/** Splits a dead letter id back into topic, partition and offset; null when malformed. */
export function parseDeadLetterId(
  id: string,
): { topic: string; partition: number; offset: string } | null {
  const m = /^([a-zA-Z0-9._-]+):(\d+):(\d+)$/.exec(id);
  if (!m) return null;
  return { topic: m[1], partition: Number(m[2]), offset: m[3] };
}

let defaultHost: string | undefined;
function hostName(): string {
  if (defaultHost === undefined) {
    try {
      defaultHost = `sluice@${Deno.hostname()}`;
    } catch {
      defaultHost = "sluice@unknown";
    }
  }
  return defaultHost;
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

function encodeBytes(b: Uint8Array | null): { text: string | null; encoding: BytesEncoding } {
  if (b === null) return { text: null, encoding: "utf8" };
  try {
    return { text: strictUtf8.decode(b), encoding: "utf8" };
  } catch {
    return { text: toBase64(b), encoding: "base64" };
  }
}

function toBase64(b: Uint8Array): string {
  let s = "";
  const CHUNK = 0x8000;
  for (let i = 0; i < b.length; i += CHUNK) {
    s += String.fromCharCode(...b.subarray(i, i + CHUNK));
  }
  return btoa(s);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function iso(d: Date | string | undefined, fallback: Date): string {
  if (d === undefined) return fallback.toISOString();
  return typeof d === "string" ? d : d.toISOString();
}

function kafkaTimeToIso(ms: string): string {
  const n = Number(ms);
  return Number.isFinite(n) && Math.abs(n) <= 8.64e15 ? new Date(n).toISOString() : ms;
}

/** Builds the dead letter of `record` (fields in the module doc). */
export function buildDeadLetter(
  record: SourceRecord,
  failure: DeadLetterFailure,
  options: BuildDeadLetterOptions,
): DeadLetter {
  const now = options.now ?? new Date();
  const key = encodeBytes(record.key);
  const payload = encodeBytes(record.value);
  return {
    id: deadLetterId(record.topic, record.partition, record.offset),
    timestamp: now.toISOString(),
    original_topic: record.topic,
    original_partition: record.partition,
    original_offset: record.offset,
    original_key: key.text,
    original_key_encoding: key.encoding,
    original_payload: payload.text,
    original_payload_encoding: payload.encoding,
    original_headers: { ...record.headers },
    original_timestamp: kafkaTimeToIso(record.timestamp),
    failure_reason: failure.reason,
    error_message: failure.message,
    retry_count: failure.retryCount ?? 0,
    first_failure: iso(failure.firstFailure, now),
    last_failure: iso(failure.lastFailure, now),
    consumer_group: options.consumerGroup,
    processing_host: options.processingHost ?? hostName(),
    trace_id: failure.traceId,
    is_reprocessed: headerValue(record.headers, REPROCESSED_HEADER) === "true",
  };
}

/** A message ready for a Kafka producer (kafkajs `{key, value, headers}` plus its topic). */
export interface DeadLetterMessage {
  topic: string;
  key: Uint8Array | null;
  value: string;
  headers: Record<string, string>;
}

/** Options of {@link toDeadLetterMessage}. */
export interface DeadLetterMessageOptions {
  /** Default {@link DEFAULT_DLQ_SUFFIX}. */
  suffix?: string;
}

/** The Kafka message of a dead letter: topic `<topic><suffix>`, key = original key. */
export function toDeadLetterMessage(
  dl: DeadLetter,
  options: DeadLetterMessageOptions = {},
): DeadLetterMessage {
  return {
    topic: dl.original_topic + (options.suffix ?? DEFAULT_DLQ_SUFFIX),
    key: decodeBytes(dl.original_key, dl.original_key_encoding),
    value: JSON.stringify(dl),
    headers: { [DEAD_LETTER_ID_HEADER]: dl.id },
  };
}

function decodeBytes(text: string | null, encoding: BytesEncoding): Uint8Array | null {
  if (text === null) return null;
  return encoding === "base64" ? fromBase64(text) : new TextEncoder().encode(text);
}

/** A dead letter that cannot be read back. */
export class DeadLetterParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DeadLetterParseError";
  }
}

function need<T>(o: Record<string, unknown>, field: string, ok: (v: unknown) => boolean): T {
  const v = o[field];
  if (!ok(v)) throw new DeadLetterParseError(`Invalid dead letter field: ${field}`);
  return v as T;
}

const isString = (v: unknown) => typeof v === "string";
const isStringOrNull = (v: unknown) => v === null || typeof v === "string";
const isEncoding = (v: unknown) => v === "utf8" || v === "base64";
const isCount = (v: unknown) => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * Reads a dead letter from a DLQ message value.
 *
 * Missing `*_encoding` fields (dead letters written by other tools) default to
 * `utf8`.
 *
 * @throws {DeadLetterParseError} when the value is not a dead letter.
 */
export function parseDeadLetter(value: Uint8Array | string): DeadLetter {
  let obj: unknown;
  try {
    obj = JSON.parse(typeof value === "string" ? value : new TextDecoder().decode(value));
  } catch {
    throw new DeadLetterParseError("Dead letter is not JSON");
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    throw new DeadLetterParseError("Dead letter is not a JSON object");
  }
  const o = obj as Record<string, unknown>;
  o.original_key_encoding ??= "utf8";
  o.original_payload_encoding ??= "utf8";
  const headers = need<Record<string, unknown>>(
    o,
    "original_headers",
    (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  );
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v !== "string") throw new DeadLetterParseError(`Invalid dead letter header: ${k}`);
  }
  return {
    id: need(o, "id", isString),
    timestamp: need(o, "timestamp", isString),
    original_topic: need(o, "original_topic", isString),
    original_partition: need(o, "original_partition", isCount),
    original_offset: need(o, "original_offset", (v) => typeof v === "string" && /^\d+$/.test(v)),
    original_key: need(o, "original_key", isStringOrNull),
    original_key_encoding: need(o, "original_key_encoding", isEncoding),
    original_payload: need(o, "original_payload", isStringOrNull),
    original_payload_encoding: need(o, "original_payload_encoding", isEncoding),
    original_headers: headers as Record<string, string>,
    original_timestamp: need(o, "original_timestamp", isString),
    failure_reason: need(
      o,
      "failure_reason",
      (v) => typeof v === "string" && FAILURE_REASON_SET.has(v),
    ),
    error_message: need(o, "error_message", isString),
    retry_count: need(o, "retry_count", isCount),
    first_failure: need(o, "first_failure", isString),
    last_failure: need(o, "last_failure", isString),
    consumer_group: need(o, "consumer_group", isString),
    processing_host: need(o, "processing_host", isString),
    trace_id: need(o, "trace_id", isString),
    is_reprocessed: need(o, "is_reprocessed", (v) => typeof v === "boolean"),
  };
}

/**
 * The original record of a dead letter, for a replay: same topic, partition,
 * offset, key, value, headers and timestamp (milliseconds, as kafkajs gives
 * them). The replay driver adds {@link REPROCESSED_HEADER} when it republishes.
 */
export function deadLetterToRecord(dl: DeadLetter): SourceRecord {
  const ms = Date.parse(dl.original_timestamp);
  return {
    topic: dl.original_topic,
    partition: dl.original_partition,
    offset: dl.original_offset,
    key: decodeBytes(dl.original_key, dl.original_key_encoding),
    value: decodeBytes(dl.original_payload, dl.original_payload_encoding),
    headers: { ...dl.original_headers },
    timestamp: isNaN(ms) ? dl.original_timestamp : String(ms),
  };
}
