/**
 * Serves the app with `Deno.serve`. Port 0 picks a free port (tests).
 *
 * @module
 */
import type { Hono } from "hono";
import { logger } from "../actors/log.ts";
import { closeApp } from "./app.ts";

const log = logger("http");

/** Options of {@link serveApp}. */
export interface ServeOptions {
  /** Interface to listen on; default `127.0.0.1`. */
  host?: string;
  /** Port; default 9090; 0 picks a free one. */
  port?: number;
  /** Aborting it shuts the server down, like {@link RunningServer.shutdown}. */
  signal?: AbortSignal;
}

/** A listening server. */
export interface RunningServer {
  /** The port actually bound. */
  port: number;
  /** Closes WebSocket clients, then stops accepting and waits for in-flight requests. Idempotent. */
  shutdown(): Promise<void>;
}

/** Starts serving `app`. Resolves once listening. */
export function serveApp(app: Hono, opts: ServeOptions = {}): RunningServer {
  const server = Deno.serve({
    hostname: opts.host ?? "127.0.0.1",
    port: opts.port ?? 9090,
    onListen: ({ hostname, port }) => log.info("http listening", { host: hostname, port }),
  }, app.fetch);
  let done: Promise<void> | undefined;
  const shutdown = () => {
    done ??= (async () => {
      closeApp(app);
      await server.shutdown();
    })();
    return done;
  };
  if (opts.signal) {
    if (opts.signal.aborted) void shutdown();
    else opts.signal.addEventListener("abort", () => void shutdown(), { once: true });
  }
  return { port: server.addr.port, shutdown };
}
