/**
 * Access rule of the control and DLQ routes (README, "Security"):
 *  - a token is configured: `Authorization: Bearer <token>` is required from
 *    every client, loopback included (401 otherwise);
 *  - no token: only loopback clients are answered (403 otherwise), and no
 *    browser: the `Host` must be a loopback name (DNS rebinding), an `Origin`
 *    must be the instance's own (or one of `SLUICE_ALLOWED_ORIGINS`), and
 *    every request other than GET/HEAD must say `Content-Type:
 *    application/json`, which no cross-site "simple" request can (403/415).
 *
 * The bearer comparison is constant-time (SHA-256 of both sides, then
 * `timingSafeEqual`, so neither content nor length leaks).
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { getConnInfo } from "hono/deno";
import { HttpError } from "./errors.ts";

/** Options of {@link controlAuth}. */
export interface ControlAuthOptions {
  /** Expected bearer token; undefined or empty: loopback clients only. */
  token?: string;
  /** Remote address of the client; default {@link defaultClientAddress}. */
  clientAddress?: (c: Context) => string | undefined;
  /** Browser origins accepted besides the instance's own (`SLUICE_ALLOWED_ORIGINS`). */
  allowedOrigins?: readonly string[];
}

/** The `Host` of a request (header, else the URL's: `app.request` sets none). */
export function requestHost(c: Context): string {
  const h = c.req.header("host");
  if (h !== undefined) return h;
  try {
    return new URL(c.req.url).host;
  } catch {
    return "";
  }
}

/** True when a `Host` value (`name[:port]`) names the loopback: `localhost`, 127.0.0.0/8, `[::1]`. */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const h = host.toLowerCase();
  const name = h.startsWith("[") ? h.slice(0, h.indexOf("]") + 1) : h.replace(/:\d+$/, "");
  return name === "localhost" || name === "localhost." || isLoopback(name);
}

/**
 * True when a request may come from `origin`: no `Origin` (not a browser, or
 * a same-origin GET), the instance's own origin (same `host:port` as the
 * request's `Host`), or one of `allowed`.
 */
export function originAllowed(
  origin: string | undefined,
  host: string,
  allowed: readonly string[] = [],
): boolean {
  if (origin === undefined) return true;
  if (allowed.includes(origin)) return true;
  try {
    const u = new URL(origin);
    return (u.protocol === "http:" || u.protocol === "https:") && host !== "" &&
      u.host === new URL(`http://${host}`).host;
  } catch {
    return false;
  }
}

/** Refuses a request whose `Origin` is not allowed (403), for WebSockets and no-token control. */
export function checkOrigin(c: Context, allowed: readonly string[] = []): void {
  const origin = c.req.header("origin");
  if (!originAllowed(origin, requestHost(c), allowed)) {
    throw new HttpError(
      403,
      "forbidden_origin",
      `Cross-origin request refused: Origin ${origin} is not this instance's (add it to SLUICE_ALLOWED_ORIGINS to allow it)`,
    );
  }
}

/** Remote address from Deno's connection info; undefined when unknown (e.g. `app.request`). */
export function defaultClientAddress(c: Context): string | undefined {
  try {
    return getConnInfo(c).remote.address;
  } catch {
    return undefined;
  }
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (`::ffff:127.x.y.z`). */
export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.toLowerCase().replace(/^\[|\]$/g, "");
  if (a === "::1" || a === "0:0:0:0:0:0:0:1") return true;
  const v4 = a.startsWith("::ffff:") ? a.slice(7) : a;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

function digest(s: string): Uint8Array {
  return createHash("sha256").update(s).digest();
}

/** Middleware enforcing the control access rule. */
export function controlAuth(opts: ControlAuthOptions = {}): MiddlewareHandler {
  const token = opts.token ? opts.token : undefined;
  const expected = token === undefined ? undefined : digest(token);
  const clientAddress = opts.clientAddress ?? defaultClientAddress;
  return async function controlAuth(c, next) {
    if (expected === undefined) {
      const address = clientAddress(c);
      if (!isLoopback(address)) {
        throw new HttpError(
          403,
          "forbidden",
          `Control routes answer only loopback clients when SLUICE_CONTROL_TOKEN is not set: client ${
            address ?? "unknown"
          }`,
        );
      }
      const host = requestHost(c);
      if (!isLoopbackHost(host)) {
        throw new HttpError(
          403,
          "forbidden",
          `Control routes without SLUICE_CONTROL_TOKEN answer only requests addressed to 127.0.0.1, localhost or [::1]: Host ${
            host || "none"
          }`,
        );
      }
      checkOrigin(c, opts.allowedOrigins);
      if (c.req.method !== "GET" && c.req.method !== "HEAD") {
        const type = c.req.header("content-type") ?? "";
        const media = type.split(";")[0].trim().toLowerCase();
        if (media !== "application/json") {
          throw new HttpError(
            415,
            "unsupported_media_type",
            `Control requests without SLUICE_CONTROL_TOKEN must send Content-Type: application/json (got ${
              type || "none"
            })`,
          );
        }
      }
      return await next();
    }
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    if (!match) {
      throw new HttpError(401, "unauthorized", "Missing bearer token: send Authorization: Bearer", {
        "www-authenticate": 'Bearer realm="sluice"',
      });
    }
    if (!timingSafeEqual(digest(match[1]), expected)) {
      throw new HttpError(401, "unauthorized", "Invalid bearer token", {
        "www-authenticate": 'Bearer realm="sluice", error="invalid_token"',
      });
    }
    await next();
  };
}
