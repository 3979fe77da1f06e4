/**
 * `GET /audit/trace/:traceId?from=&to=`: one record's audit timeline, built
 * like `sluice audit report --trace-id` from the audit store (the dashboard's
 * trace links open it). Behind the control access rule, like `/dlq`: it
 * names topics, offsets and error messages.
 *
 * The window defaults to the last hour; the dashboard sends a few minutes
 * around the event it was clicked from (a report reads every object of the
 * window, so it is capped at 24 h). Events reach the store in batches: the
 * newest seconds may not be there yet.
 *
 * @module
 */
import type { Hono } from "hono";
import type { AppDeps } from "./deps.ts";
import { HttpError } from "./errors.ts";

const TRACE_ID = /^[0-9a-f]{32}$/;
const MAX_WINDOW_MS = 24 * 3600_000;

function epoch(v: string | undefined, name: string, fallback: number): number {
  if (v === undefined || v === "") return fallback;
  const n = /^\d+$/.test(v) ? Number(v) : Date.parse(v);
  if (!Number.isFinite(n)) {
    throw new HttpError(
      422,
      "validation_error",
      `${name}: expected ISO 8601 or epoch milliseconds`,
    );
  }
  return n;
}

/** Registers the audit routes on `app`. */
export function auditRoutes(app: Hono, deps: AppDeps): void {
  app.get("/audit/trace/:traceId", async (c) => {
    const traceId = c.req.param("traceId").toLowerCase();
    if (!TRACE_ID.test(traceId)) {
      throw new HttpError(422, "validation_error", "traceId: expected 32 hexadecimal characters");
    }
    const now = Date.now();
    const to = epoch(c.req.query("to"), "to", now + 60_000);
    const from = epoch(c.req.query("from"), "from", to - 3600_000 - 60_000);
    if (from >= to) throw new HttpError(422, "validation_error", "from: must be before to");
    if (to - from > MAX_WINDOW_MS) {
      throw new HttpError(422, "validation_error", "window: at most 24 h");
    }
    if (!deps.audit) {
      throw new HttpError(404, "not_available", "Not available in this instance: audit store");
    }
    const result = await deps.audit.trace({ traceId, from, to });
    return c.json(
      {
        trace_id: traceId,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        ...result,
      },
      200,
      { "cache-control": "no-store" },
    );
  });
}
