/**
 * The HTTP surface of sluice: `createApp(deps)` builds the Hono app,
 * that call it. `AppDeps` (deps.ts) is what the pipeline implements.
 *
 * @module
 */
export { closeApp, createApp } from "./app.ts";
export { serveApp } from "./server.ts";
export type { RunningServer, ServeOptions } from "./server.ts";
export { HttpError } from "./errors.ts";
export { WsHub } from "./ws_hub.ts";
export { Inspector } from "./inspector.ts";
export type * from "./deps.ts";
