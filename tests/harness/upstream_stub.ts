/**
 * A loopback upstream for integration tests: records every request (headers,
 * body, arrival order) and answers with a programmable behaviour (status,
 * latency, hang), changeable while sluice runs.
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
}

/** How the stub answers. */
export interface StubBehaviour {
  /** Status to answer; default 200. */
  status: number;
  /** Delay before answering (ms); default 0. */
  latencyMs: number;
  /** Never answer (until the behaviour changes or the stub stops). */
  hang: boolean;
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
  let behaviour: StubBehaviour = { status: 200, latencyMs: 0, hang: false, ...initial };
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
      const b = behaviour;
      if (b.latencyMs > 0) await new Promise((res) => setTimeout(res, b.latencyMs));
      if (b.status >= 200 && b.status < 300 && r.idempotencyKey) {
        delivered.set(r.idempotencyKey, (delivered.get(r.idempotencyKey) ?? 0) + 1);
      }
      return new Response(b.status >= 300 ? `stub answers ${b.status}` : "ok", {
        status: b.status,
      });
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
