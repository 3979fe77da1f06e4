/**
 * The upstream client of two checkouts, side by side: CPU per 1,000
 * deliveries (`createUpstreamClient(...).deliver`, through a circuit breaker,
 * with a caller signal shared by every delivery as a partition worker passes
 * one) against one loopback `Deno.serve` answering `204`. Each side runs in a
 * process of its own, with the start task's V8 flags, alternated round by
 * round: 3,000 deliveries to warm up, then 20,000, 256 at once; the child's
 * CPU time (`process.cpuUsage`) over the 20,000.
 *
 * ```
 * git worktree add /tmp/before HEAD~1
 * deno run -A --lock=tests/deno.lock tests/bench/upstream_ab.ts --a /tmp/before --b . [--rounds 10]
 * ```
 *
 * Prints each round and the medians; the ratio (b / a) compares the medians
 * of this run only (README, Benchmarks: "A cancellation without
 * `AbortController`").
 *
 * @module
 */
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { alternate, median } from "./alternate.ts";

const WARM = 3_000;
const MEASURED = 20_000;
const CONCURRENCY = 256;

/** One side, in a child process: prints its CPU ms per 1,000 deliveries. */
async function child(dir: string, port: number): Promise<void> {
  const from = (path: string) => import(pathToFileURL(resolve(dir, path)).href);
  const { createUpstreamClient } = await from("actors/pipeline/upstream.ts");
  const { createCircuitBreaker } = await from("actors/pipeline/circuit_breaker.ts");
  const { parseEnvelope } = await from("actors/record/envelope.ts");
  const breaker = createCircuitBreaker({ id: "bench-breaker" });
  const client = createUpstreamClient({
    url: `http://127.0.0.1:${port}/ingest`,
    maxConnections: CONCURRENCY,
    breaker,
  });
  const worker = new AbortController();
  const record = (n: number) => ({
    topic: "orders",
    partition: 0,
    offset: String(n),
    key: null,
    value: new TextEncoder().encode(
      JSON.stringify({
        request_id: `req-${n}`,
        timestamp: "2026-12-07T00:00:00Z",
        payload: { n, note: "x".repeat(120) },
      }),
    ),
    headers: {},
    timestamp: String(Date.now()),
  });
  let next = 0;
  const run = async (n: number) => {
    const end = next + n;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < end) {
        const r = record(next++);
        const env = parseEnvelope(r);
        if (!env.ok) throw new Error(`invalid envelope: ${env.message}`);
        const res = await client.deliver(env.envelope, r, { signal: worker.signal });
        if (res.outcome !== "delivered") throw new Error(`not delivered: ${res.message}`);
      }
    }));
  };
  await run(WARM);
  const before = process.cpuUsage();
  await run(MEASURED);
  const used = process.cpuUsage(before);
  console.log(((used.user + used.system) / 1000 / (MEASURED / 1000)).toFixed(1));
  await client.close();
  breaker.stop();
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      a: { type: "string" },
      b: { type: "string" },
      rounds: { type: "string", default: "10" },
      child: { type: "string" },
      port: { type: "string" },
    },
  });
  if (values.child) {
    await child(values.child, Number(values.port));
  } else {
    if (!values.a || !values.b) {
      console.error("Usage: upstream_ab.ts --a DIR --b DIR [--rounds N] (two checkouts of sluice)");
      Deno.exit(2);
    }
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      async (req) => {
        await req.arrayBuffer();
        return new Response(null, { status: 204 });
      },
    );
    const rounds = Number(values.rounds);
    const side = (name: string, dir: string) => ({
      name,
      args: [`--child=${resolve(dir)}`, `--port=${server.addr.port}`],
      cwd: resolve(dir),
    });
    let a: number[], b: number[];
    try {
      [a, b] = await alternate(
        import.meta.filename!,
        [side("a", values.a), side("b", values.b)],
        rounds,
        "ms CPU per 1,000 deliveries",
      );
    } finally {
      await server.shutdown();
    }
    const lower = b.filter((v, i) => v < a[i]).length;
    console.log(
      `median: a (${values.a}) ${median(a).toFixed(1)} ms, b (${values.b}) ${
        median(b).toFixed(1)
      } ms per 1,000 deliveries; ratio b / a ${
        (median(b) / median(a)).toFixed(2)
      }; b lower in ${lower} of ${rounds} rounds`,
    );
  }
}
