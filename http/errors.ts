/**
 * The one error type of the HTTP surface and its mapping to responses.
 *
 * Handlers and middleware throw {@link HttpError}; {@link errorHandler} (the
 * app's single `onError`) turns it into `{error: {code, message}}` with its
 * status. Any other error is a 500 whose detail stays in the log.
 * Implementations of `AppDeps` may throw `HttpError` too, to pick a status
 * (e.g. 409 when a drain is asked during shutdown). Domain errors
 * (`SluiceError` of `actors/runtime/errors.ts`, with a `kind`, a `code` and
 * `retriable`) are mapped to statuses here, in {@link toHttpError}, and
 * nowhere else.
 *
 * @module
 */
import type { Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { logger } from "../actors/runtime/logger.ts";
import { type ErrorKind, SluiceError } from "../actors/runtime/errors.ts";

const log = logger("http");

/** The JSON body of every error answer. */
export interface ErrorBody {
  error: { code: string; message: string };
}

/** An error that carries its HTTP status and a stable, machine-readable code. */
export class HttpError extends Error {
  override name = "HttpError";
  /**
   * @param status HTTP status of the answer.
   * @param code Stable snake_case code, e.g. `validation_error`.
   * @param message Human-readable message (sentence case, no trailing period).
   * @param headers Extra response headers (`Allow`, `WWW-Authenticate`).
   */
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** Codes for statuses reached through Hono's own `HTTPException`. */
const CODE_BY_STATUS: Record<number, string> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  422: "validation_error",
  503: "unavailable",
};

/** The HTTP status of each kind of domain error: the one place they are mapped. */
const STATUS_BY_KIND: Record<ErrorKind, ContentfulStatusCode> = {
  invalid: 422,
  not_found: 404,
  conflict: 409,
  unavailable: 503,
  timeout: 504,
};

/**
 * The HTTP answer of an error: itself for an {@link HttpError}, the mapped
 * status with the error's own code and message for a domain error, else
 * undefined (the caller decides, e.g. a 500).
 */
export function toHttpError(err: unknown): HttpError | undefined {
  if (err instanceof HttpError) return err;
  if (err instanceof SluiceError) {
    return new HttpError(STATUS_BY_KIND[err.kind], err.code, err.message);
  }
  return undefined;
}

/** Builds the JSON error answer. */
export function errorResponse(c: Context, err: HttpError): Response {
  for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
  const body: ErrorBody = { error: { code: err.code, message: err.message } };
  return c.json(body, err.status);
}

/** The app's `onError`: every failure becomes `{error: {code, message}}`. */
export function errorHandler(err: Error, c: Context): Response {
  const mapped = toHttpError(err);
  if (mapped) return errorResponse(c, mapped);
  if (isClientAbort(err)) {
    // The client went away mid-body: nobody reads this answer, and it is no server fault.
    log.debug("client closed the connection mid-request", {
      method: c.req.method,
      path: c.req.path,
    });
    return errorResponse(
      c,
      new HttpError(
        400,
        "incomplete_request",
        "Request body incomplete: the client closed the connection",
      ),
    );
  }
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode;
    const code = CODE_BY_STATUS[status] ?? "http_error";
    return errorResponse(c, new HttpError(status, code, err.message || code.replaceAll("_", " ")));
  }
  log.error("unhandled error in HTTP handler", {
    method: c.req.method,
    path: c.req.path,
    error: err,
  });
  return errorResponse(c, new HttpError(500, "internal", "Internal error: see the server log"));
}

/** True for the error of a request body whose client closed the connection (see http/server.ts). */
function isClientAbort(err: unknown): boolean {
  for (let e = err, i = 0; e instanceof Error && i < 5; e = e.cause, i++) {
    if (e.name === "ClientAbortError") return true;
  }
  return false;
}

/** The app's `notFound`: a JSON 404. */
export function notFoundHandler(c: Context): Response {
  return errorResponse(
    c,
    new HttpError(404, "not_found", `No route: ${c.req.method} ${c.req.path}`),
  );
}

/**
 * Answers 405 (with `Allow`) for every method not registered on a known
 * path. Call once, after every route is registered.
 */
export function installMethodNotAllowed(app: Hono): void {
  const allowed = new Map<string, Set<string>>();
  for (const r of app.routes) {
    if (r.method === "ALL") continue;
    const set = allowed.get(r.path) ?? new Set<string>();
    set.add(r.method);
    if (r.method === "GET") set.add("HEAD");
    allowed.set(r.path, set);
  }
  for (const [path, methods] of allowed) {
    const allow = [...methods].sort().join(", ");
    app.all(path, function methodNotAllowed(c) {
      throw new HttpError(
        405,
        "method_not_allowed",
        `Method ${c.req.method} not allowed on ${c.req.path}: use ${allow}`,
        { allow },
      );
    });
  }
}
