/**
 * The record envelope (README, Internals): parsing and validation.
 *
 * A record value must be a UTF-8 JSON object:
 *
 * ```json
 * {"request_id": "r-1", "timestamp": "2025-01-01T00:00:00Z", "payload": {"any": "json"},
 *  "idempotency_key": "optional", "trace_id": "optional, 32 hex digits"}
 * ```
 *
 * Field rules:
 *  - `request_id` — **required**, non-empty string of at most 256 characters.
 *  - `timestamp` — **required**, an RFC 3339 / ISO 8601 date-time string or a
 *    non-negative integer of milliseconds since the epoch. Kept as given
 *    (numbers are turned into ISO strings).
 *  - `payload` — **required**, any JSON value (`null` included), but the key
 *    must be present.
 *  - `idempotency_key` — optional, non-empty string of at most 256 characters;
 *    default `topic/partition/offset`.
 *  - `trace_id` — optional, 32 lowercase hex digits, not all zero. A valid W3C
 *    `traceparent` record header wins over it. With neither, a trace id is
 *    derived from the idempotency key (same record, same trace id, also after
 *    a re-consumption).
 *  - Other fields are ignored (kept in the raw value).
 *
 * Failures:
 *  - value larger than `maxBytes` → `VALIDATION_ERROR` (checked first, before
 *    any decoding);
 *  - null or empty value (a tombstone) → `VALIDATION_ERROR`;
 *  - not UTF-8, or not JSON → `DESERIALIZATION_ERROR`;
 *  - JSON that is not an object, or a missing/invalid field → `VALIDATION_ERROR`;
 *  - a payload rejected by {@link ParseEnvelopeOptions.validatePayload} (the
 *    topic's JSON Schema, `actors/record/schema.ts`) → `VALIDATION_ERROR` with its
 *    message (failing path and rule).
 *
 * {@link parseEnvelope} never throws.
 *
 * @module
 */
import type { FailureReason } from "../audit/event.ts";
import type { SourceRecord } from "./record.ts";

/** Default for {@link ParseEnvelopeOptions.maxBytes}: 1 MiB (`SLUICE_MAX_RECORD_BYTES`). */
export const DEFAULT_MAX_RECORD_BYTES = 1024 * 1024;

const MAX_ID_LENGTH = 256;

/** A valid envelope. */
export interface Envelope {
  request_id: string;
  idempotency_key: string;
  trace_id: string;
  /** The envelope's timestamp, as an ISO 8601 string. */
  timestamp: string;
  payload: unknown;
  /**
   * The `traceparent` to send upstream: the record's own when valid (same
   * trace, same flags, new span id), else a new one on {@link Envelope.trace_id}.
   */
  traceparent: string;
}

/** Result of {@link parseEnvelope}. */
export type EnvelopeResult =
  | { ok: true; envelope: Envelope }
  | {
    ok: false;
    reason: Extract<FailureReason, "DESERIALIZATION_ERROR" | "VALIDATION_ERROR">;
    /** Sentence case, no trailing period. */
    message: string;
    /** Best-effort ids for the audit event and the dead letter. */
    traceId: string;
    requestId: string | null;
    idempotencyKey: string;
  };

/** Options of {@link parseEnvelope}. */
export interface ParseEnvelopeOptions {
  /** Largest accepted value in bytes; default {@link DEFAULT_MAX_RECORD_BYTES}. */
  maxBytes?: number;
  /**
   * Checks the payload of a record of `topic` once the envelope is valid:
   * null when it passes, else the failure message. Default none
   * (`PayloadSchemas.validate` of `actors/record/schema.ts` with `SLUICE_SCHEMA_DIR`).
   */
  validatePayload?: (topic: string, payload: unknown) => string | null;
}

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const TRACE_ID = /^[0-9a-f]{32}$/;
const ZERO_TRACE = "0".repeat(32);
const ISO_DATE = /^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$/;

/** The default idempotency key of a record: `topic/partition/offset`. */
export function defaultIdempotencyKey(record: SourceRecord): string {
  return `${record.topic}/${record.partition}/${record.offset}`;
}

/** Parsed W3C `traceparent` header. */
export interface TraceParent {
  traceId: string;
  parentId: string;
  flags: string;
}

/**
 * Parses a W3C `traceparent` header value; null when absent or invalid
 * (version `ff`, all-zero ids, wrong shape).
 */
export function parseTraceparent(value: string | undefined): TraceParent | null {
  if (value === undefined) return null;
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return null;
  const [, version, traceId, parentId, flags, rest] = m;
  if (version === "ff" || (version === "00" && rest !== undefined)) return null;
  if (traceId === ZERO_TRACE || parentId === "0000000000000000") return null;
  return { traceId, parentId, flags };
}

/** A record header by name, case-insensitive. */
export function headerValue(headers: Record<string, string>, name: string): string | undefined {
  const direct = headers[name];
  if (direct !== undefined) return direct;
  for (const k in headers) if (k.toLowerCase() === name) return headers[k];
  return undefined;
}

/**
 * A trace id derived from `seed` (FNV-1a, 4 × 32 bits): deterministic, not
 * cryptographic, never all zero.
 */
export function deriveTraceId(seed: string): string {
  // The four lanes in one pass over the seed (each lane is its own FNV-1a).
  let h0 = (0x811c9dc5 ^ Math.imul(1, 0x9e3779b1)) >>> 0;
  let h1 = (0x811c9dc5 ^ Math.imul(2, 0x9e3779b1)) >>> 0;
  let h2 = (0x811c9dc5 ^ Math.imul(3, 0x9e3779b1)) >>> 0;
  let h3 = (0x811c9dc5 ^ Math.imul(4, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < seed.length; i++) {
    const c = seed.charCodeAt(i);
    h0 = Math.imul(h0 ^ c, 0x01000193);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x01000193);
    h3 = Math.imul(h3 ^ c, 0x01000193);
  }
  const out = laneHex(h0) + laneHex(h1) + laneHex(h2) + laneHex(h3);
  return out === ZERO_TRACE ? "0".repeat(31) + "1" : out;
}

/** The final mix of one {@link deriveTraceId} lane, as 8 hex digits. */
function laneHex(h: number): string {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return (h >>> 0).toString(16).padStart(8, "0");
}

// Random bytes drawn 4 KiB at a time (one call into the runtime per 512 span
// ids, not one per record), and the hex of every byte.
const RANDOM_POOL = new Uint8Array(4096);
let randomAt = RANDOM_POOL.length;
const HEX = Array.from({ length: 256 }, (_, i) => (i < 16 ? "0" : "") + i.toString(16));

/** A new random span id (16 hex digits, not all zero). */
export function newSpanId(): string {
  if (randomAt + 8 > RANDOM_POOL.length) {
    crypto.getRandomValues(RANDOM_POOL);
    randomAt = 0;
  }
  const b = RANDOM_POOL;
  const i = randomAt;
  randomAt += 8;
  return HEX[b[i]] + HEX[b[i + 1]] + HEX[b[i + 2]] + HEX[b[i + 3]] + HEX[b[i + 4]] +
    HEX[b[i + 5]] + HEX[b[i + 6]] + HEX[b[i + 7] | 1];
}

function idField(v: unknown): string | null {
  return typeof v === "string" && v.length > 0 && v.length <= MAX_ID_LENGTH ? v : null;
}

function timestampField(v: unknown): string | null {
  if (typeof v === "number") {
    return Number.isSafeInteger(v) && v >= 0 && v <= 8.64e15 ? new Date(v).toISOString() : null;
  }
  if (typeof v === "string" && v.length <= 64 && ISO_DATE.test(v) && !isNaN(Date.parse(v))) {
    return v;
  }
  return null;
}

/**
 * Parses and validates the envelope of `record` (rules in the module doc).
 * Never throws.
 */
export function parseEnvelope(
  record: SourceRecord,
  options: ParseEnvelopeOptions = {},
): EnvelopeResult {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_RECORD_BYTES;
  const parent = parseTraceparent(headerValue(record.headers, "traceparent"));
  let idempotencyKey = defaultIdempotencyKey(record);
  let requestId: string | null = null;
  let bodyTraceId: string | null = null;
  const fail = (
    reason: "DESERIALIZATION_ERROR" | "VALIDATION_ERROR",
    message: string,
  ): EnvelopeResult => ({
    ok: false,
    reason,
    message,
    traceId: parent?.traceId ?? bodyTraceId ?? deriveTraceId(idempotencyKey),
    requestId,
    idempotencyKey,
  });

  const value = record.value;
  if (value !== null && value.byteLength > maxBytes) {
    return fail(
      "VALIDATION_ERROR",
      `Record value is too large: ${value.byteLength} bytes, limit ${maxBytes}`,
    );
  }
  if (value === null || value.byteLength === 0) {
    return fail("VALIDATION_ERROR", "Record value is empty");
  }
  let text: string;
  try {
    text = decoder.decode(value);
  } catch {
    return fail("DESERIALIZATION_ERROR", "Record value is not valid UTF-8");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    const detail = e instanceof Error ? e.message.slice(0, 200) : String(e).slice(0, 200);
    return fail("DESERIALIZATION_ERROR", `Record value is not JSON: ${detail}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return fail("VALIDATION_ERROR", "Envelope must be a JSON object");
  }
  const obj = parsed as Record<string, unknown>;

  // Optional fields first, so a failure still reports the record's own ids.
  if (obj.idempotency_key !== undefined) {
    const k = idField(obj.idempotency_key);
    if (k === null) {
      return fail(
        "VALIDATION_ERROR",
        `Invalid envelope field idempotency_key: expected a non-empty string of at most ${MAX_ID_LENGTH} characters`,
      );
    }
    idempotencyKey = k;
  }
  if (obj.trace_id !== undefined) {
    if (
      typeof obj.trace_id !== "string" || !TRACE_ID.test(obj.trace_id) ||
      obj.trace_id === ZERO_TRACE
    ) {
      return fail(
        "VALIDATION_ERROR",
        "Invalid envelope field trace_id: expected 32 lowercase hex digits, not all zero",
      );
    }
    bodyTraceId = obj.trace_id;
  }
  requestId = idField(obj.request_id);
  if (obj.request_id === undefined) {
    return fail("VALIDATION_ERROR", "Missing envelope field: request_id");
  }
  if (requestId === null) {
    return fail(
      "VALIDATION_ERROR",
      `Invalid envelope field request_id: expected a non-empty string of at most ${MAX_ID_LENGTH} characters`,
    );
  }
  if (obj.timestamp === undefined) {
    return fail("VALIDATION_ERROR", "Missing envelope field: timestamp");
  }
  const timestamp = timestampField(obj.timestamp);
  if (timestamp === null) {
    return fail(
      "VALIDATION_ERROR",
      "Invalid envelope field timestamp: expected an ISO 8601 date-time or epoch milliseconds",
    );
  }
  if (!("payload" in obj)) {
    return fail("VALIDATION_ERROR", "Missing envelope field: payload");
  }
  const rejected = options.validatePayload?.(record.topic, obj.payload);
  if (rejected) return fail("VALIDATION_ERROR", rejected);
  const traceId = parent?.traceId ?? bodyTraceId ?? deriveTraceId(idempotencyKey);
  return {
    ok: true,
    envelope: {
      request_id: requestId,
      idempotency_key: idempotencyKey,
      trace_id: traceId,
      timestamp,
      payload: obj.payload,
      traceparent: `00-${traceId}-${newSpanId()}-${parent?.flags ?? "01"}`,
    },
  };
}
