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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

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
    const dirs = { a: resolve(values.a), b: resolve(values.b) };
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      async (req) => {
        await req.arrayBuffer();
        return new Response(null, { status: 204 });
      },
    );
    const cpu: Record<"a" | "b", number[]> = { a: [], b: [] };
    const rounds = Number(values.rounds);
    try {
      for (let r = 0; r < rounds; r++) {
        const order = r % 2 === 0 ? ["a", "b"] as const : ["b", "a"] as const;
        const line: string[] = [];
        for (const side of order) {
          const out = await new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "-A",
              "--lock=tests/deno.lock",
              // the start task's V8 flags
              "--v8-flags=--max-semi-space-size=2,--memory-balancer",
              import.meta.filename!,
              `--child=${dirs[side]}`,
              `--port=${server.addr.port}`,
            ],
            cwd: dirs[side],
            stdout: "piped",
            stderr: "inherit",
          }).output();
          const ms = Number(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1));
          if (!out.success || !Number.isFinite(ms)) throw new Error(`the ${side} child failed`);
          cpu[side].push(ms);
          line.push(`${side} ${ms.toFixed(1)}`);
        }
        console.log(`round ${r + 1}: ${line.join(", ")} ms CPU per 1,000 deliveries`);
      }
    } finally {
      await server.shutdown();
    }
    const lower = cpu.b.filter((v, i) => v < cpu.a[i]).length;
    console.log(
      `median: a (${values.a}) ${median(cpu.a).toFixed(1)} ms, b (${values.b}) ${
        median(cpu.b).toFixed(1)
      } ms per 1,000 deliveries; ratio b / a ${
        (median(cpu.b) / median(cpu.a)).toFixed(2)
      }; b lower in ${lower} of ${rounds} rounds`,
    );
  }
}
