/**
 * The Hono app of sluice: every route of the README's "HTTP endpoints" on one port.
 *
 * ```
 * GET  /  /dashboard/data  /dashboard/history    (dashboard page, its JSON, its memory)
 * GET  /health/live  /health/ready  /metrics  /status  /openapi.json
 * GET  /ws/events?severity=&topic=              (WebSocket)
 * GET  /inspect  /inspect/actors  /inspect/ws   (page, JSON tree, WebSocket)
 * POST /control/drain  /control/resume  /control/shutdown  /control/replay
 * PUT  /control/rate  /control/load  /control/upstream
 * GET|DELETE /control/replay/:id
 * GET  /dlq   POST /dlq/:id/replay  POST /dlq/replay
 * GET  /audit/trace/:traceId                    (one record's audit timeline)
 * ```
 *
 * Control and DLQ routes pass `controlAuth` first (401/403). Every route has
 * a body limit (413). Errors are `{error: {code, message}}` from one
 * `onError`; unknown paths 404, wrong methods on known paths 405.
 *
 * @module
 */
import { Hono } from "hono";
import { auditRoutes } from "./audit_routes.ts";
import { controlAuth } from "./auth.ts";
import { limitBody } from "./body.ts";
import { controlRoutes } from "./control_routes.ts";
import type { AppDeps } from "./deps.ts";
import { errorHandler, installMethodNotAllowed, notFoundHandler } from "./errors.ts";
import { DashboardHistory } from "./history.ts";
import { Inspector } from "./inspector.ts";
import { observeRoutes } from "./observe_routes.ts";
import { WsHub } from "./ws_hub.ts";

const closers = new WeakMap<Hono, () => void>();

/** Builds the app. Unless given in `deps`, creates its own `WsHub` and `Inspector`. */
export function createApp(deps: AppDeps): Hono {
  const hub = deps.hub ?? new WsHub();
  const inspector = deps.inspector ?? new Inspector();
  const history = deps.history ?? new DashboardHistory({
    metrics: deps.metrics,
    status: () => deps.control.status(),
    ready: () => deps.ready(),
  });
  if (!deps.history) history.start();
  const app = new Hono();
  app.onError(errorHandler);
  app.notFound(notFoundHandler);

  const auth = controlAuth({
    token: deps.controlToken,
    clientAddress: deps.clientAddress,
    allowedOrigins: deps.allowedOrigins,
  });
  app.use("/control/*", auth);
  app.use("/dlq/*", auth);
  app.use("/audit/*", auth);
  app.use("*", limitBody({ maxBytes: deps.limits?.maxBytes }));

  observeRoutes(app, deps, hub, inspector, history);
  controlRoutes(app, deps);
  auditRoutes(app, deps);
  installMethodNotAllowed(app);

  closers.set(app, () => {
    hub.close();
    if (!deps.history) history.stop();
    // An inspector we created listens to the registry: stop it; a given one is the caller's.
    if (deps.inspector) inspector.closeClients();
    else inspector.close();
  });
  return app;
}

/**
 * Closes the app's WebSocket clients (and its own inspector's registry
 * listeners). `serveApp().shutdown()` calls it; call it directly when
 * serving the app another way. Idempotent.
 */
export function closeApp(app: Hono): void {
  closers.get(app)?.();
}
