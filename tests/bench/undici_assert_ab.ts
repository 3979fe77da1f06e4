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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

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
    const cpu: Record<"node" | "sluice", number[]> = { node: [], sluice: [] };
    const rounds = Number(values.rounds);
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? ["node", "sluice"] as const : ["sluice", "node"] as const;
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
            `--child=${side}`,
            `--port=${server.addr.port}`,
          ],
          stdout: "piped",
          stderr: "inherit",
        }).output();
        const ms = Number(new TextDecoder().decode(out.stdout).trim());
        if (!out.success || !Number.isFinite(ms)) throw new Error(`the ${side} child failed`);
        cpu[side].push(ms);
        line.push(`${side} ${ms.toFixed(1)}`);
      }
      console.log(`round ${r + 1}: ${line.join(", ")} ms CPU per 1,000 requests`);
    }
    await server.shutdown();
    const lower = cpu.sluice.filter((v, i) => v < cpu.node[i]).length;
    console.log(
      `median: undici with Deno's node:assert ${median(cpu.node).toFixed(1)} ms, ` +
        `with the upstream client's cheaper assert ${
          median(cpu.sluice).toFixed(1)
        } ms per 1,000 requests; ` +
        `ratio ${
          (median(cpu.sluice) / median(cpu.node)).toFixed(2)
        }; lower in ${lower} of ${rounds} rounds`,
    );
  }
}
