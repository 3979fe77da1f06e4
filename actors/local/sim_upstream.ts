/**
 * The simulated upstream of local mode (README, Quick start): an HTTP server
 * on loopback that accepts the pipeline's POSTs and answers after a
 * configurable latency, with a configurable share of errors (`503` unless
 * `errorStatus` says otherwise), or never (hang).
 * The behaviour changes at runtime, so a user can watch the circuit breaker
 * open and close; requests are counted per `Idempotency-Key`, so duplicate
 * deliveries are visible.
 *
 * Besides any `POST` path (the upstream), it serves:
 *  - `GET /_sim/behaviour` and `PUT /_sim/behaviour` (JSON body, fields of
 *    {@link SimBehaviour}, all optional): read or change the behaviour;
 *  - `GET /_sim/stats`: {@link SimStats}.
 *
 * @module
 */
import { logger } from "../runtime/logger.ts";

const log = logger("sim-upstream");

/** How the simulated upstream answers. */
export interface SimBehaviour {
  /** Base latency of an answer (ms). */
  latencyMs: number;
  /** Extra random latency, uniform in `[0, jitterMs)` (ms). */
  jitterMs: number;
  /** Share of requests answered `errorStatus` (0..1). */
  errorRate: number;
  /**
   * Status of those answers, 500..599; default 503 (unavailable: sluice holds
   * the records); 500 makes a record that fails all its retries while others
   * succeed a poison record, dead-lettered.
   */
  errorStatus: number;
  /** When true, requests get no answer until the behaviour changes or the upstream stops. */
  hang: boolean;
}

/** Options of {@link startSimulatedUpstream}. */
export interface SimUpstreamOptions {
  /** Base latency (ms); default 20. */
  latencyMs?: number;
  /** Random extra latency (ms); default 0. */
  jitterMs?: number;
  /** Share of error answers (0..1); default 0. */
  errorRate?: number;
  /** Status of the error answers (500..599); default 503. */
  errorStatus?: number;
  /** Start hanging; default false. */
  hang?: boolean;
  /** Listen address; default `127.0.0.1`. */
  hostname?: string;
  /** Port; default 0 (any free port). */
  port?: number;
  /** Idempotency keys remembered for duplicate counting (oldest forgotten first); default 100 000. */
  trackKeys?: number;
  /** Largest request body accepted (bytes), larger gets `413`; default 4 MiB. */
  maxBodyBytes?: number;
}

/** Counters of the simulated upstream. */
export interface SimStats {
  /** POST requests received. */
  requests: number;
  /** Answers by status code. */
  byStatus: Record<string, number>;
  /** Requests being answered (waiting for their latency or hanging). */
  inflight: number;
  /** Requests hanging now. */
  hanging: number;
  /** Distinct idempotency keys remembered. */
  uniqueKeys: number;
  /** Requests whose idempotency key had been seen before. */
  duplicates: number;
  /** Requests without an `Idempotency-Key` header. */
  withoutKey: number;
}

/** A running simulated upstream. */
export interface SimUpstream {
  /** Base URL, e.g. `http://127.0.0.1:41234/`; POST anywhere under it. */
  readonly url: string;
  /** Changes the behaviour; fields left out keep their value. Ending a hang releases hanging requests (answered by the new behaviour). */
  setBehaviour(change: Partial<SimBehaviour>): SimBehaviour;
  behaviour(): SimBehaviour;
  stats(): SimStats;
  /** Requests seen with this idempotency key (0 when unknown or forgotten). */
  requestsFor(idempotencyKey: string): number;
  /** Answers hanging requests with `503`, stops listening, waits for open requests. */
  stop(): Promise<void>;
}

function checkBehaviour(b: Partial<SimBehaviour>): Partial<SimBehaviour> {
  const out: Partial<SimBehaviour> = {};
  for (const k of ["latencyMs", "jitterMs"] as const) {
    if (b[k] === undefined) continue;
    if (typeof b[k] !== "number" || !Number.isFinite(b[k]) || b[k]! < 0) {
      throw new RangeError(`${k}: expected a number ≥ 0`);
    }
    out[k] = b[k];
  }
  if (b.errorRate !== undefined) {
    if (typeof b.errorRate !== "number" || !(b.errorRate >= 0 && b.errorRate <= 1)) {
      throw new RangeError("errorRate: expected a number between 0 and 1");
    }
    out.errorRate = b.errorRate;
  }
  if (b.errorStatus !== undefined) {
    if (!Number.isInteger(b.errorStatus) || b.errorStatus < 500 || b.errorStatus > 599) {
      throw new RangeError("errorStatus: expected an integer from 500 to 599");
    }
    out.errorStatus = b.errorStatus;
  }
  if (b.hang !== undefined) {
    if (typeof b.hang !== "boolean") throw new RangeError("hang: expected true or false");
    out.hang = b.hang;
  }
  return out;
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

/** Starts the simulated upstream; resolves once it listens. */
export function startSimulatedUpstream(opts: SimUpstreamOptions = {}): Promise<SimUpstream> {
  let behaviour: SimBehaviour = {
    latencyMs: 20,
    jitterMs: 0,
    errorRate: 0,
    errorStatus: 503,
    hang: false,
    ...checkBehaviour(opts),
  };
  const trackKeys = opts.trackKeys ?? 100_000;
  const maxBodyBytes = opts.maxBodyBytes ?? 4 * 1024 * 1024;
  const keys = new Map<string, number>();
  const stats: SimStats = {
    requests: 0,
    byStatus: {},
    inflight: 0,
    hanging: 0,
    uniqueKeys: 0,
    duplicates: 0,
    withoutKey: 0,
  };
  /** Wakes requests waiting for latency or hanging: on behaviour change and stop. */
  const waiters = new Set<() => void>();
  let stopping = false;

  const wakeAll = () => {
    for (const w of [...waiters]) w();
  };

  /**
   * Waits `ms` (null: no limit) or until woken by a behaviour change or stop.
   * (`request.signal` is not watched: reading it makes Deno.serve warn; a
   * request whose client gave up is released like the others.)
   */
  const wait = (ms: number | null) =>
    new Promise<void>((resolve) => {
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        waiters.delete(done);
        resolve();
      };
      const timer = ms === null ? undefined : setTimeout(done, ms);
      waiters.add(done);
    });

  const answer = (status: number, body: unknown) => {
    stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
    return json(body, status);
  };

  async function upstream(req: Request): Promise<Response> {
    stats.requests++;
    const key = req.headers.get("idempotency-key");
    let seen = 0;
    if (key === null) stats.withoutKey++;
    else {
      seen = keys.get(key) ?? 0;
      if (seen > 0) stats.duplicates++;
      keys.delete(key);
      keys.set(key, seen + 1);
      while (keys.size > trackKeys) keys.delete(keys.keys().next().value!);
      stats.uniqueKeys = keys.size;
    }
    const body = new Uint8Array(await req.arrayBuffer());
    if (body.length > maxBodyBytes) {
      return answer(413, { error: { code: "TOO_LARGE", message: "request body too large" } });
    }
    stats.inflight++;
    try {
      // Hang while the behaviour says so; a change re-reads it.
      while (behaviour.hang && !stopping) {
        stats.hanging++;
        try {
          await wait(null);
        } finally {
          stats.hanging--;
        }
      }
      if (stopping) {
        return answer(503, { error: { code: "STOPPING", message: "simulated upstream stopping" } });
      }
      const b = behaviour;
      const delay = b.latencyMs + (b.jitterMs > 0 ? Math.random() * b.jitterMs : 0);
      if (delay > 0) await wait(delay);
      if (stopping) {
        return answer(503, { error: { code: "STOPPING", message: "simulated upstream stopping" } });
      }
      if (Math.random() < behaviour.errorRate) {
        return answer(behaviour.errorStatus, {
          error: { code: "SIMULATED_ERROR", message: "simulated upstream error" },
        });
      }
      return answer(200, { ok: true, idempotency_key: key, seen: seen + 1, bytes: body.length });
    } finally {
      stats.inflight--;
    }
  }

  const api: Omit<SimUpstream, "url" | "stop"> = {
    setBehaviour(change) {
      behaviour = { ...behaviour, ...checkBehaviour(change) };
      log.info("simulated upstream behaviour changed", { ...behaviour });
      wakeAll();
      return { ...behaviour };
    },
    behaviour: () => ({ ...behaviour }),
    stats: () => ({ ...stats, byStatus: { ...stats.byStatus } }),
    requestsFor: (k) => keys.get(k) ?? 0,
  };

  async function handle(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    if (path === "/_sim/behaviour") {
      if (req.method === "GET") return json(api.behaviour());
      if (req.method === "PUT") {
        try {
          const text = await req.text();
          if (text.length > 64 * 1024) throw new RangeError("body too large");
          return json(api.setBehaviour(JSON.parse(text)));
        } catch (e) {
          return json({
            error: { code: "BAD_REQUEST", message: e instanceof Error ? e.message : String(e) },
          }, 400);
        }
      }
      return json({ error: { code: "METHOD_NOT_ALLOWED", message: "use GET or PUT" } }, 405);
    }
    if (path === "/_sim/stats" && req.method === "GET") return json(api.stats());
    if (req.method !== "POST") {
      return json({ error: { code: "METHOD_NOT_ALLOWED", message: "use POST" } }, 405);
    }
    return await upstream(req);
  }

  return new Promise<SimUpstream>((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname: opts.hostname ?? "127.0.0.1",
        port: opts.port ?? 0,
        onListen: (addr) => {
          const url = `http://${addr.hostname}:${addr.port}/`;
          log.info("simulated upstream listening", { url, ...behaviour });
          resolve({
            url,
            ...api,
            async stop() {
              stopping = true;
              wakeAll();
              await server.shutdown();
            },
          });
        },
      }, handle);
    } catch (e) {
      reject(e);
    }
  });
}
