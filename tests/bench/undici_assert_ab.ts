/**
 * What undici's `assert` costs the upstream client: CPU per 1,000 POSTs
 * through undici's `Pool` as the upstream client loads it
 * (`actors/pipeline/undici.ts`, with `actors/pipeline/undici_assert.ts`'s
 * cheaper assert) against undici's `Pool` imported as published (Deno's
 * `node:assert`). Each side runs in a process of its own (a module loads
 * once per process), alternated round by round against one loopback
 * `Deno.serve` in this process: 3,000 requests to warm up, then 20,000, 256
 * at once; the child's CPU time (`process.cpuUsage`) over the 20,000.
 *
 * ```
 * deno run -A --lock=tests/deno.lock tests/bench/undici_assert_ab.ts [--rounds 10]
 * ```
 *
 * Prints each round and the medians; the ratio compares the medians of this
 * run only (README, Benchmarks: "undici's `assert`").
 *
 * @module
 */
import { parseArgs } from "node:util";
import { alternate, median } from "./alternate.ts";

const WARM = 3_000;
const MEASURED = 20_000;
const CONCURRENCY = 256;

/** One side, in a child process: prints its CPU ms per 1,000 requests. */
async function child(side: string, port: number): Promise<void> {
  // deno-lint-ignore no-explicit-any
  const Pool: any = side === "sluice"
    ? (await import("../../actors/pipeline/undici.ts")).Pool
    : (await import("undici/lib/dispatcher/pool.js")).default;
  const origin = `http://127.0.0.1:${port}`;
  const pool = new Pool(origin, { connections: CONCURRENCY });
  const body = new TextEncoder().encode(JSON.stringify({ id: "r".repeat(36), payload: { n: 1 } }));
  const headers = { "content-type": "application/json", "idempotency-key": "k".repeat(40) };
  const one = () =>
    new Promise<void>((resolve, reject) =>
      pool.dispatch({ origin, path: "/ingest", method: "POST", body, headers }, {
        onRequestStart() {},
        onResponseStart() {},
        onResponseData() {},
        onResponseEnd: () => resolve(),
        onResponseError: (_c: unknown, e: Error) => reject(e),
      })
    );
  const run = async (n: number) => {
    let started = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (started++ < n) await one();
    }));
  };
  await run(WARM);
  const before = process.cpuUsage();
  await run(MEASURED);
  const used = process.cpuUsage(before);
  console.log(((used.user + used.system) / 1000 / (MEASURED / 1000)).toFixed(1));
  await pool.close();
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      rounds: { type: "string", default: "10" },
      child: { type: "string" },
      port: { type: "string" },
    },
  });
  if (values.child) {
    await child(values.child, Number(values.port));
  } else {
    const server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response(null, { status: 204 }),
    );
    const rounds = Number(values.rounds);
    const port = `--port=${server.addr.port}`;
    let node: number[], sluice: number[];
    try {
      [node, sluice] = await alternate(
        import.meta.filename!,
        [{ name: "node", args: ["--child=node", port] }, {
          name: "sluice",
          args: ["--child=sluice", port],
        }],
        rounds,
        "ms CPU per 1,000 requests",
      );
    } finally {
      await server.shutdown();
    }
    const lower = sluice.filter((v, i) => v < node[i]).length;
    console.log(
      `median: undici with Deno's node:assert ${median(node).toFixed(1)} ms, ` +
        `with the upstream client's cheaper assert ${
          median(sluice).toFixed(1)
        } ms per 1,000 requests; ` +
        `ratio ${
          (median(sluice) / median(node)).toFixed(2)
        }; lower in ${lower} of ${rounds} rounds`,
    );
  }
}
