/**
 * Domain errors of sluice, modelled on kafkajs's `errors.js`: every error
 * carries a stable, machine-readable `code` and a `retriable` flag, so a
 * policy decides on the type, never on the text of a message. Each error has
 * a `kind` (what went wrong, in domain terms); the HTTP surface maps kinds to
 * statuses in one place (`errorHandler` of the HTTP errors module), the domain
 * never names a status.
 *
 * @module
 */

/** What went wrong, in domain terms (the HTTP surface maps each to one status). */
export type ErrorKind = "invalid" | "not_found" | "conflict" | "unavailable" | "timeout";

/** Options of a {@link SluiceError}. */
export interface SluiceErrorOptions {
  /** True when the same call may succeed later (default false). */
  retriable?: boolean;
  /** The underlying error. */
  cause?: unknown;
}

/** The base of every domain error: a `kind`, a stable snake_case `code` and `retriable`. */
export class SluiceError extends Error {
  override name = "SluiceError";
  /** True when the same call may succeed later. */
  readonly retriable: boolean;
  /**
   * @param kind What went wrong, in domain terms.
   * @param code Stable snake_case code, e.g. `validation_error`.
   * @param message Human-readable message (sentence case, no trailing period).
   */
  constructor(
    readonly kind: ErrorKind,
    readonly code: string,
    message: string,
    opts: SluiceErrorOptions = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.retriable = opts.retriable ?? false;
  }
}

/** A request the domain rejects as invalid (bad window, rate, cursor, partition). */
export class ValidationError extends SluiceError {
  override name = "ValidationError";
  constructor(message: string, opts: SluiceErrorOptions = {}) {
    super("invalid", "validation_error", message, opts);
  }
}

/**
 * A topic the log does not have. Both log adapters (Kafka and the embedded
 * log) throw it, so callers test the type, never the message.
 */
export class UnknownTopicError extends SluiceError {
  override name = "UnknownTopicError";
  constructor(readonly topic: string, opts: SluiceErrorOptions = {}) {
    super("not_found", "unknown_topic", `unknown topic: ${topic}`, opts);
  }
}

/** The call contradicts the current state (e.g. a drain asked while shutting down). */
export class ConflictError extends SluiceError {
  override name = "ConflictError";
  constructor(code: string, message: string, opts: SluiceErrorOptions = {}) {
    super("conflict", code, message, opts);
  }
}

/** A dependency or the process itself cannot serve the call now; it may succeed later. */
export class UnavailableError extends SluiceError {
  override name = "UnavailableError";
  constructor(code: string, message: string, opts: SluiceErrorOptions = {}) {
    super("unavailable", code, message, { retriable: true, ...opts });
  }
}

/** The call did not finish in time; nothing was recorded, it may be tried again. */
export class TimeoutError extends SluiceError {
  override name = "TimeoutError";
  constructor(code: string, message: string, opts: SluiceErrorOptions = {}) {
    super("timeout", code, message, { retriable: true, ...opts });
  }
}
