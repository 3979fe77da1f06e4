/**
 * Routes that change things: `/control/*` and `/dlq*`. The access rule
 * (`controlAuth`) is applied by `createApp` before any of these run, so an
 * unauthenticated call never reaches the pipeline.
 *
 * @module
 */
import type { Hono } from "hono";
import { logger } from "../actors/runtime/logger.ts";
import { readJsonObject } from "./body.ts";
import type { AppDeps } from "./deps.ts";
import { HttpError } from "./errors.ts";
import type * as Validate from "./validate.ts";

const log = logger("http");

let validateModule: Promise<typeof Validate> | undefined;

/**
 * The body and query validation (zod and the contract's schemas: 3.7 MB of
 * heap loaded alone), loaded at the first control or DLQ request rather than at start:
 * an instance nobody drives never holds it (README, Benchmarks). A failed
 * load is not kept, so the next request tries again.
 */
function validation(): Promise<typeof Validate> {
  return validateModule ??= import("./validate.ts").catch((e) => {
    validateModule = undefined;
    throw e;
  });
}

function unavailable(what: string): HttpError {
  return new HttpError(404, "not_available", `Not available in this instance: ${what}`);
}

/** Registers the control and DLQ routes on `app`. */
export function controlRoutes(app: Hono, deps: AppDeps): void {
  const { control } = deps;

  app.post("/control/drain", async (c) => {
    await control.drain();
    return c.json({ ok: true, status: await control.status() });
  });

  app.post("/control/resume", async (c) => {
    await control.resume();
    return c.json({ ok: true, status: await control.status() });
  });

  app.post("/control/shutdown", (c) => {
    // Not awaited: the shutdown stops HTTP last, and this answer must go out first.
    Promise.resolve().then(() => control.shutdown()).catch((error) =>
      log.error("shutdown failed", { error })
    );
    return c.json({ ok: true, state: "shutting_down" }, 202);
  });

  app.put("/control/rate", async (c) => {
    const setting = (await validation()).parseRate(await readJsonObject(c));
    return c.json({ ok: true, rate: await control.setRate(setting) });
  });

  app.put("/control/load", async (c) => {
    const setting = (await validation()).parseLoad(await readJsonObject(c));
    if (!deps.load) throw unavailable("load generator (local mode only)");
    return c.json({ ok: true, load: await deps.load.setRate(setting) });
  });

  app.put("/control/upstream", async (c) => {
    const change = (await validation()).parseUpstreamSim(await readJsonObject(c));
    if (!deps.upstreamSim) throw unavailable("simulated upstream (local mode only)");
    return c.json({ ok: true, upstream: await deps.upstreamSim.set(change) });
  });

  app.post("/control/replay", async (c) => {
    const req = (await validation()).parseReplay(await readJsonObject(c));
    if (!deps.replay) throw unavailable("replay");
    const started = await deps.replay.start(req);
    if (started.status === "conflict") {
      throw new HttpError(
        409,
        "replay_running",
        `A replay of topic ${req.topic} is already running: ${started.runningId}`,
      );
    }
    c.header("location", `/control/replay/${encodeURIComponent(started.id)}`);
    return c.json({ ok: true, id: started.id }, 202);
  });

  app.get("/control/replay/:id", async (c) => {
    if (!deps.replay) throw unavailable("replay");
    const id = c.req.param("id");
    const progress = await deps.replay.get(id);
    if (!progress) throw new HttpError(404, "not_found", `Unknown replay: ${id}`);
    return c.json(progress);
  });

  app.delete("/control/replay/:id", async (c) => {
    if (!deps.replay) throw unavailable("replay");
    const id = c.req.param("id");
    const progress = await deps.replay.cancel(id);
    if (!progress) throw new HttpError(404, "not_found", `Unknown replay: ${id}`);
    return c.json(progress);
  });

  app.get("/dlq", async (c) => {
    const query = (await validation()).parseDlqQuery(c.req.query());
    if (!deps.dlq) throw unavailable("dead-letter store");
    return c.json(await deps.dlq.list(query));
  });

  app.post("/dlq/replay", async (c) => {
    const req = (await validation()).parseDlqBulk(await readJsonObject(c));
    if (!deps.dlq?.replayBulk) throw unavailable("dead-letter bulk replay");
    const started = await deps.dlq.replayBulk(req);
    if (started.status === "conflict") {
      throw new HttpError(
        409,
        "replay_running",
        `A dead-letter replay of ${
          req.topic ?? "every topic"
        } is already running: ${started.runningId}`,
      );
    }
    c.header("location", `/control/replay/${encodeURIComponent(started.id)}`);
    return c.json({ ok: true, id: started.id }, 202);
  });

  app.post("/dlq/:id/replay", async (c) => {
    if (!deps.dlq) throw unavailable("dead-letter store");
    const id = c.req.param("id");
    const result = await deps.dlq.replay(id);
    if (!result) throw new HttpError(404, "not_found", `Unknown dead letter: ${id}`);
    return c.json({ ok: true, ...result }, 202);
  });
}
