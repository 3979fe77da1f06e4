/**
 * A loopback upstream for integration tests: records every request (headers,
 * body, arrival order) and answers with a programmable behaviour (status,
 * latency, hang, a capacity in records/s answered with 429 above it, a worker
 * pool that queues beyond its size, `Retry-After`, poison keys), changeable
 * while sluice runs.
 *
 * @module
 */

/** One received request. */
export interface StubRequest {
  idempotencyKey: string | null;
  traceparent: string | null;
  requestId: string | null;
  body: string;
  at: number;
  /** Status answered. */
  status?: number;
}

/** How the stub answers. */
export interface StubBehaviour {
  /** Status to answer; default 200. */
  status: number;
  /** Delay before answering (ms); default 0. */
  latencyMs: number;
  /** Never answer (until the behaviour changes or the stub stops). */
  hang: boolean;
  /**
   * Records/s the stub accepts (token bucket, burst of a tenth of a
   * second); above it, 429 with `Retry-After: capacityRetryAfter`. 0 = no limit.
   */
  capacity: number;
  /** `Retry-After` of the capacity's 429 (seconds); default 1. */
  capacityRetryAfter: number;
  /** Requests served at once; the others queue (FIFO) before their latency starts. 0 = no limit. */
  workers: number;
  /** `Retry-After` header sent with non-2xx answers of `status`; default none. */
  retryAfter?: string;
  /** Idempotency keys always answered 500 (poison records), whatever `status` says. */
  poisonKeys: Set<string>;
}

/** A running stub. */
export interface UpstreamStub {
  url: string;
  requests: StubRequest[];
  /** Requests answered 2xx, by idempotency key. */
  delivered: Map<string, number>;
  inflight(): number;
  maxInflight(): number;
  set(b: Partial<StubBehaviour>): void;
  stop(): Promise<void>;
}

/** Starts a stub on 127.0.0.1, a free port. */
export function startUpstreamStub(initial: Partial<StubBehaviour> = {}): UpstreamStub {
  let behaviour: StubBehaviour = {
    status: 200,
    latencyMs: 0,
    hang: false,
    capacity: 0,
    capacityRetryAfter: 1,
    workers: 0,
    poisonKeys: new Set(),
    ...initial,
  };
  let tokens = 0, refilled = performance.now();
  const takeCapacity = (): boolean => {
    const c = behaviour.capacity;
    if (!(c > 0)) return true;
    const now = performance.now();
    const burst = Math.max(1, c / 10);
    tokens = Math.min(burst, tokens + ((now - refilled) * c) / 1000);
    refilled = now;
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  };
  let busy = 0;
  const queue: (() => void)[] = [];
  const enter = async () => {
    if (behaviour.workers > 0 && busy >= behaviour.workers) {
      await new Promise<void>((r) => queue.push(r));
    } else busy++;
  };
  const leave = () => {
    const next = queue.shift();
    if (next) next();
    else busy--;
  };
  const requests: StubRequest[] = [];
  const delivered = new Map<string, number>();
  let inflight = 0, maxInflight = 0;
  let release = Promise.withResolvers<void>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    inflight++;
    maxInflight = Math.max(maxInflight, inflight);
    try {
      const body = await req.text();
      const r: StubRequest = {
        idempotencyKey: req.headers.get("idempotency-key"),
        traceparent: req.headers.get("traceparent"),
        requestId: req.headers.get("x-request-id"),
        body,
        at: Date.now(),
      };
      requests.push(r);
      while (behaviour.hang) await release.promise;
      if (!takeCapacity()) {
        r.status = 429;
        return new Response("stub over capacity", {
          status: 429,
          headers: { "retry-after": String(behaviour.capacityRetryAfter) },
        });
      }
      await enter();
      let b: StubBehaviour;
      try {
        b = behaviour;
        if (b.latencyMs > 0) await new Promise((res) => setTimeout(res, b.latencyMs));
      } finally {
        leave();
      }
      const status = r.idempotencyKey && b.poisonKeys.has(r.idempotencyKey) ? 500 : b.status;
      r.status = status;
      if (status >= 200 && status < 300 && r.idempotencyKey) {
        delivered.set(r.idempotencyKey, (delivered.get(r.idempotencyKey) ?? 0) + 1);
      }
      const headers: Record<string, string> = {};
      if (status >= 300 && b.retryAfter !== undefined && status === b.status) {
        headers["retry-after"] = b.retryAfter;
      }
      return new Response(status >= 300 ? `stub answers ${status}` : "ok", { status, headers });
    } finally {
      inflight--;
    }
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/ingest`,
    requests,
    delivered,
    inflight: () => inflight,
    maxInflight: () => maxInflight,
    set(b) {
      behaviour = { ...behaviour, ...b };
      const old = release;
      release = Promise.withResolvers<void>();
      old.resolve();
    },
    async stop() {
      behaviour = { ...behaviour, hang: false, status: 503 };
      release.resolve();
      await server.shutdown();
    },
  };
}
