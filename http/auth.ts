/**
 * Access rule of the control and DLQ routes (DESIGN §3):
 *  - a token is configured: `Authorization: Bearer <token>` is required from
 *    every client, loopback included (401 otherwise);
 *  - no token: only loopback clients are answered (403 otherwise).
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
