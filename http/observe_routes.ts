/**
 * Read-only routes: the dashboard (page and data), health, metrics, status,
 * the OpenAPI document (`/openapi.json`),
 * the event WebSocket and the inspector (page, tree, live WebSocket). None
 * needs a token.
 *
 * @module
 */
import type { Context, Hono } from "hono";
import { checkOrigin } from "./auth.ts";
import type { AppDeps, ReadyReport } from "./deps.ts";
import { DASHBOARD_PAGE, DashboardSampler } from "./dashboard_page.ts";
import { HttpError } from "./errors.ts";
import { type DashboardHistory, healthOf } from "./history.ts";
import type { Inspector } from "./inspector.ts";
import { INSPECT_PAGE } from "./inspect_page.ts";
import { acceptWebSocket } from "./server.ts";
import { parseSeverity, SEVERITIES, type WsHub } from "./ws_hub.ts";

function safeReady(deps: AppDeps): ReadyReport {
  try {
    return deps.ready();
  } catch (e) {
    return {
      ready: false,
      checks: { ready_probe: { ok: false, detail: e instanceof Error ? e.message : String(e) } },
    };
  }
}

function requireUpgrade(c: Context, hasRoom: boolean): void {
  if (c.req.header("upgrade")?.toLowerCase() !== "websocket") {
    throw new HttpError(426, "upgrade_required", "WebSocket route: send Upgrade: websocket", {
      upgrade: "websocket",
    });
  }
  if (!hasRoom) throw new HttpError(503, "too_many_clients", "Too many WebSocket clients");
}

const PAGE_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
};

/**
 * `fn` run at most once per `maxAgeMs`: callers within that time (or while a
 * run is in flight) share its result. An unauthenticated scrape storm then
 * costs one render per interval, not one per request.
 */
export function cachedFor<T>(maxAgeMs: number, fn: () => Promise<T>): () => Promise<T> {
  let value: Promise<T> | undefined;
  let at = 0;
  return () => {
    const now = performance.now();
    if (value === undefined || now - at >= maxAgeMs) {
      at = now;
      value = fn();
      value.catch(() => (value = undefined));
    }
    return value;
  };
}

const encoder = new TextEncoder();

/** Registers the read-only routes on `app`. */
export function observeRoutes(
  app: Hono,
  deps: AppDeps,
  hub: WsHub,
  inspector: Inspector,
  history: DashboardHistory,
): void {
  const sampler = new DashboardSampler(deps.metrics);
  const maxAge = deps.limits?.metricsMaxAgeMs ?? 500;
  // The render's own duration goes out as `Server-Timing: render;dur=…` (the
  // benchmark's /metrics row), with `cached` when the body came from the cache.
  let renders = 0;
  const metricsText = cachedFor(maxAge, async () => {
    const started = performance.now();
    const bytes = encoder.encode(await deps.metrics.metrics());
    return { bytes, ms: performance.now() - started, n: ++renders };
  });
  let lastServed = 0;
  app.get("/", (c) => c.html(DASHBOARD_PAGE, 200, PAGE_HEADERS));

  app.get("/dashboard/data", async (c) => {
    const [metrics, status] = await Promise.all([sampler.data(), deps.control.status()]);
    const ready = safeReady(deps);
    return c.json({ metrics, status, ready, ...healthOf(status, ready) }, 200, {
      "cache-control": "no-store",
    });
  });

  app.get("/dashboard/history", (c) => {
    const raw = c.req.query("since");
    const since = raw === undefined || raw === "" ? undefined : Number(raw);
    if (since !== undefined && !Number.isFinite(since)) {
      throw new HttpError(422, "validation_error", "since: expected epoch milliseconds");
    }
    return c.json(history.snapshot(since), 200, { "cache-control": "no-store" });
  });

  app.get("/health/live", (c) => c.json({ live: true }));

  // Built at the first request: the contract's zod schemas load only when
  // someone reads the document or drives the instance (README, Benchmarks).
  let openApi: Promise<string> | undefined;
  app.get("/openapi.json", async (c) => {
    openApi ??= import("./contract.ts").then((m) => JSON.stringify(m.openApiDocument()))
      .catch((e) => {
        openApi = undefined;
        throw e;
      });
    return c.body(await openApi, 200, {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
    });
  });

  app.get("/health/ready", (c) => {
    const report = safeReady(deps);
    const notReady = Object.entries(report.checks).filter(([, v]) => !v.ok).map(([k]) => k);
    if (report.ready) return c.json({ ready: true, checks: report.checks });
    const details = notReady.map((k) => {
      const d = report.checks[k].detail;
      return d ? `${k} (${d})` : k;
    });
    return c.json({
      ready: false,
      not_ready: notReady,
      checks: report.checks,
      error: { code: "not_ready", message: `Not ready: ${details.join(", ") || "unknown"}` },
    }, 503);
  });

  app.get("/metrics", async (c) => {
    const { bytes, ms, n } = await metricsText();
    const cached = n === lastServed;
    lastServed = n;
    return c.body(bytes, 200, {
      "content-type": deps.metrics.contentType,
      "server-timing": `render;dur=${ms.toFixed(3)}${cached ? ";desc=cached" : ""}`,
    });
  });

  app.get("/status", async (c) => {
    const report = safeReady(deps);
    return c.json({ ...await deps.control.status(), ready: report.ready, checks: report.checks });
  });

  app.get("/ws/events", (c) => {
    const minSeverity = parseSeverity(c.req.query("severity"));
    if (minSeverity === null) {
      throw new HttpError(
        422,
        "validation_error",
        `Invalid severity: use ${SEVERITIES.join(", ")}`,
      );
    }
    const topic = c.req.query("topic") || undefined;
    checkOrigin(c, deps.allowedOrigins);
    requireUpgrade(c, hub.hasRoom);
    const { socket, response } = acceptWebSocket(c);
    hub.attach(socket, { minSeverity, topic });
    return response;
  });

  app.get("/inspect", (c) => c.html(INSPECT_PAGE, 200, PAGE_HEADERS));

  app.get("/inspect/actors", (c) => c.json(inspector.tree()));

  app.get("/inspect/machines", (c) => c.json(inspector.machines()));

  app.get("/inspect/ws", (c) => {
    checkOrigin(c, deps.allowedOrigins);
    requireUpgrade(c, inspector.hasRoom);
    const { socket, response } = acceptWebSocket(c);
    inspector.attach(socket);
    return response;
  });
}
