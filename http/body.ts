/**
 * Request bodies: a size limit on every route (413) and JSON reading for the
 * routes that take a JSON body (415 for another content type, 400 for
 * malformed JSON, 422 when it is not an object).
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HttpError } from "./errors.ts";

/** Options of {@link limitBody}. */
export interface LimitBodyOptions {
  /** Largest body accepted, bytes; default 64 KiB. */
  maxBytes?: number;
}

/** Middleware answering 413 for bodies over the limit (declared or streamed). */
export function limitBody(opts: LimitBodyOptions = {}): MiddlewareHandler {
  const maxSize = opts.maxBytes ?? 64 * 1024;
  return bodyLimit({
    maxSize,
    onError: () => {
      throw new HttpError(
        413,
        "payload_too_large",
        `Request body over the limit: ${maxSize} bytes`,
      );
    },
  });
}

/** Reads a JSON object body. */
export async function readJsonObject(c: Context): Promise<Record<string, unknown>> {
  const type = c.req.header("content-type") ?? "";
  const mediaType = type.split(";")[0].trim().toLowerCase();
  if (mediaType !== "application/json" && !/^application\/[\w.+-]+\+json$/.test(mediaType)) {
    throw new HttpError(
      415,
      "unsupported_media_type",
      `Expected Content-Type application/json: got ${type || "none"}`,
    );
  }
  const text = await c.req.text();
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, "invalid_json", `Malformed JSON body: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new HttpError(422, "validation_error", "Body must be a JSON object");
  }
  return value as Record<string, unknown>;
}
