/**
 * Hostile load (issue 14, acceptance): a real sluice process in local mode.
 *
 *  1. A scrape storm on `/metrics` (20 clients × 25 requests/s for 30 s, from
 *     another process) while the load generator offers 1,000 records/s:
 *     `/health/live` p99 stays under 50 ms and the pipeline's throughput
 *     drops by less than 20 % against the same run without it. (With the
 *     pipeline saturated instead, its throughput falls by the CPU the
 *     scraping process itself takes on the same cores; that figure is printed
 *     by `SLUICE_TEST_SATURATE=1`, not asserted.)
 *  2. 200 WebSocket clients on `/ws/events`, 60 of which never read, at a
 *     load that makes those drop events: with the start task's V8 flags (no
 *     heap limit) RSS stays under 300 MB (249–256 MB measured at 300
 *     records/s since the one flush loop; 306–323 MB with a timer per client
 *     before). `SLUICE_TEST_WS_V8_FLAGS` adds other flags (e.g. the README's
 *     memory-bounded `--v8-flags=...`): see the README's Security section.
 *
 * The figures are printed; see the README's SECURITY section for the
 * measured ones.
 */
import assert from "node:assert/strict";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import { procCpuSeconds, sleep, waitFor } from "../harness/procs.ts";

/** Extra Deno flags for the WebSocket test's sluice; default none (the start task's flags alone). */
const wsFlags = Deno.env.get("SLUICE_TEST_WS_V8_FLAGS") ?? "none";

const JSON_PUT = { method: "PUT", headers: { "content-type": "application/json" } };

/** Runs `code` as a Deno script in its own process; resolves with its stdout. */
async function script(code: string, args: string[]): Promise<{ child: Deno.ChildProcess }> {
  const file = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(file, code);
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", file, ...args],
    stdout: "piped",
    stderr: "inherit",
    stdin: "null",
  }).spawn();
  child.status.finally(() => Deno.remove(file).catch(() => {}));
  return { child };
}

const SCRAPER = `
const [url, clients, perSecond, seconds] = [Deno.args[0], ...Deno.args.slice(1).map(Number)];
const end = Date.now() + seconds * 1000;
let ok = 0, failed = 0;
await Promise.all(Array.from({ length: clients }, async () => {
  let next = Date.now();
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      r.ok ? ok++ : failed++;
    } catch { failed++; }
    next += 1000 / perSecond;
    const wait = next - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}));
console.log(JSON.stringify({ ok, failed }));
`;

function pidOf(dataDir: string): number {
  return JSON.parse(Deno.readTextFileSync(`${dataDir}/sluice.lock`)).pid;
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Probes `/health/live` every `everyMs` until `signal`; returns the latencies (ms). */
async function probeLive(url: string, everyMs: number, signal: AbortSignal): Promise<number[]> {
  const out: number[] = [];
  while (!signal.aborted) {
    const t0 = performance.now();
    const r = await fetch(`${url}/health/live`);
    await r.arrayBuffer();
    out.push(performance.now() - t0);
    await sleep(everyMs);
  }
  return out;
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}

Deno.test("a /metrics scrape storm (20 × 25/s, 30 s) at 1,000 records/s keeps /health/live p99 < 50 ms and throughput within 20 %", async () => {
  const p = await startSluiceProcess({
    env: { SLUICE_RATE_LIMIT: "0", SLUICE_ORDERING: "none", SLUICE_LOG_LEVEL: "warn" },
  });
  await withSluice(p, async () => {
    await p.json("/control/upstream", { ...JSON_PUT, body: '{"latencyMs":0}' });
    const saturate = Deno.env.get("SLUICE_TEST_SATURATE") === "1";
    await p.json("/control/load", {
      ...JSON_PUT,
      body: JSON.stringify({ rate: saturate ? 10_000 : 1000 }),
    });
    await sleep(5000); // warm up
    const measure = async (seconds: number, scrape: boolean) => {
      const ac = new AbortController();
      const probe = probeLive(p.url, 50, ac.signal);
      const n0 = await p.metric("requests_total");
      await sleep(600); // the /metrics cache (500 ms) must not cut the window short
      const t0 = performance.now();
      const n1 = await p.metric("requests_total");
      let scraped = { ok: 0, failed: 0 };
      if (scrape) {
        const { child } = await script(SCRAPER, [`${p.url}/metrics`, "20", "25", String(seconds)]);
        const out = await child.output();
        scraped = JSON.parse(new TextDecoder().decode(out.stdout));
      } else await sleep(seconds * 1000);
      await sleep(600);
      const n2 = await p.metric("requests_total");
      const elapsed = (performance.now() - t0) / 1000;
      ac.abort();
      const lat = await probe;
      void n0;
      return { rate: (n2 - n1) / elapsed, p50: pct(lat, 0.5), p99: pct(lat, 0.99), scraped };
    };
    const base = await measure(15, false);
    const loaded = await measure(30, true);
    const drop = 1 - loaded.rate / base.rate;
    console.log(
      `throughput without scrapes ${base.rate.toFixed(0)} records/s, with ${
        loaded.rate.toFixed(0)
      } records/s (drop ${(drop * 100).toFixed(1)} %); /health/live p50/p99 without ${
        base.p50.toFixed(1)
      }/${base.p99.toFixed(1)} ms, with ${loaded.p50.toFixed(1)}/${
        loaded.p99.toFixed(1)
      } ms; scrapes answered ${loaded.scraped.ok}, failed ${loaded.scraped.failed}`,
    );
    assert.ok(loaded.scraped.ok >= 20 * 25 * 30 * 0.9, `only ${loaded.scraped.ok} scrapes served`);
    assert.equal(loaded.scraped.failed, 0);
    assert.ok(
      loaded.p99 < 50,
      `/health/live p99 ${loaded.p99.toFixed(1)} ms under the scrape load`,
    );
    assert.ok(drop < 0.2, `throughput dropped by ${(drop * 100).toFixed(1)} %`);
  });
});

const WS_READERS = `
const [url, n, seconds] = [Deno.args[0], Number(Deno.args[1]), Number(Deno.args[2])];
let messages = 0, open = 0;
const sockets = [];
for (let i = 0; i < n; i++) {
  const ws = new WebSocket(url);
  ws.onopen = () => open++;
  ws.onmessage = () => messages++;
  sockets.push(ws);
}
await new Promise((r) => setTimeout(r, seconds * 1000));
console.log(JSON.stringify({ open, messages }));
for (const ws of sockets) ws.close();
`;

Deno.test("200 WebSocket clients, 60 never reading, at a load that makes them drop: RSS stays bounded", async () => {
  // The start task's V8 flags (no heap limit), as `deno task start` runs.
  const p = await startSluiceProcess({
    env: { SLUICE_RATE_LIMIT: "0", SLUICE_ORDERING: "none", SLUICE_LOG_LEVEL: "warn" },
    // `SLUICE_TEST_WS_V8_FLAGS` adds other flags (`none`, the default: the start task's alone).
    denoArgs: wsFlags === "none" ? [] : [wsFlags],
  });
  const silent: Deno.Conn[] = [];
  await withSluice(p, async () => {
    const pid = pidOf(p.dataDir);
    await p.json("/control/upstream", { ...JSON_PUT, body: '{"latencyMs":0}' });
    // Records/s: enough for the 60 silent clients to fill their socket buffers and drop within
    // the minute; each record is one event to each of the 200 clients.
    const rate = Number(Deno.env.get("SLUICE_TEST_WS_RATE") ?? "300");
    await p.json("/control/load", { ...JSON_PUT, body: JSON.stringify({ rate }) });
    const idleRss = rssMb(pid);
    // 60 clients that complete the handshake and never read a byte.
    for (let i = 0; i < 60; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: p.port });
      await c.write(new TextEncoder().encode(
        `GET /ws/events HTTP/1.1\r\nHost: 127.0.0.1:${p.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ));
      silent.push(c);
    }
    const seconds = 60;
    const { child } = await script(WS_READERS, [
      `ws://127.0.0.1:${p.port}/ws/events`,
      "140",
      String(seconds),
    ]);
    let peak = 0;
    const t0 = Date.now();
    const cpu0 = procCpuSeconds(pid);
    const dropped0 = await p.metric("ws_dropped_events_total");
    await waitFor(async () => (await p.metric("ws_clients")) >= 200, {
      timeoutMs: 20_000,
      message: "200 WebSocket clients connected",
    });
    let dropped = 0, heapAtPeak = 0, heapTotalAtPeak = 0, externalAtPeak = 0;
    while (Date.now() - t0 < seconds * 1000 - 2000) {
      const rss = rssMb(pid);
      if (rss > peak) {
        peak = rss;
        heapAtPeak = (await p.metric("nodejs_heap_size_used_bytes")) / 2 ** 20;
        heapTotalAtPeak = (await p.metric("nodejs_heap_size_total_bytes")) / 2 ** 20;
        externalAtPeak = (await p.metric("nodejs_external_memory_bytes")) / 2 ** 20;
      }
      dropped = (await p.metric("ws_dropped_events_total")) - dropped0;
      await sleep(500);
    }
    const cpu = procCpuSeconds(pid) - cpu0;
    const out = JSON.parse(new TextDecoder().decode((await child.output()).stdout));
    const delivered = await p.metric("requests_total");
    console.log(
      `RSS idle ${idleRss.toFixed(0)} MB, peak ${peak.toFixed(0)} MB (JS heap used then ${
        heapAtPeak.toFixed(0)
      } MB of ${heapTotalAtPeak.toFixed(0)} MB, external ${
        externalAtPeak.toFixed(0)
      } MB) with 200 clients (60 never reading) ` +
        `over ${seconds} s; ${dropped} events dropped; readers got ${out.messages} messages on ${out.open} sockets; ` +
        `${delivered} records delivered (load ${rate} records/s); sluice used ${
          cpu.toFixed(1)
        } CPU-s in the ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    );
    assert.equal(out.open, 140);
    assert.ok(dropped > 0, "the silent clients dropped events (the load was enough)");
    // Issue 14's bound with the start task's flags: 249–256 MB measured; 323 MB with a timer per
    // client (README, Security). It also guards against unbounded growth (what a slow client
    // used to cause).
    assert.ok(peak < 300, `RSS peak ${peak.toFixed(0)} MB`);
  }).finally(() => {
    for (const c of silent) {
      try {
        c.close();
      } catch {
        // Closed by the server.
      }
    }
  });
});
