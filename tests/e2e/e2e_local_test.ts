/**
 * Issue 8, local mode end to end: `main.ts start` alone on a fresh data
 * directory (embedded log, load generator, simulated upstream, local audit
 * store) is ready, processes and streams events within 10 s; SIGTERM runs
 * the shutdown phases in order and exits 0; `audit report` over
 * `<dataDir>/audit` counts exactly what `requests_total` counted; a second
 * start on the same directory continues from the committed positions of the
 * embedded log: no record re-delivered, none skipped.
 *
 * Needs no infrastructure; run it through the runner like the rest
 * (`deno task test tests/e2e/e2e_local_test.ts`).
 */
import assert from "node:assert/strict";
import type { AuditEvent } from "../../actors/audit/event.ts";
import { FsAuditStore } from "../../actors/audit/store.ts";
import { closeApp, createApp } from "../../http/app.ts";
import { histogramQuantile } from "../../http/dashboard_page.ts";
import { fakeDeps } from "../../http/testing.ts";
import { readAllAuditEvents } from "../harness/ledger.ts";
import { waitFor } from "../harness/procs.ts";
import { type SluiceProcess, startSluiceProcess } from "../harness/sluice_process.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const PHASES = [
  "stop_load",
  "mark_not_ready",
  "drain",
  "close_consumer",
  "flush_audit",
  "stop_http",
];
const ENV = {
  SLUICE_LOG_FORMAT: "json",
  SLUICE_AUDIT_BATCH_AGE_MS: "300",
};

interface WsEvent {
  type: string;
  trace_id?: string;
  partition?: number;
  data: Record<string, unknown>;
}

/** Connects to `/ws/events` and collects every event until closed. */
async function wsEvents(url: string) {
  const events: WsEvent[] = [];
  const ws = new WebSocket(`${url.replace("http", "ws")}/ws/events`);
  const closed = new Promise<void>((resolve) => ws.addEventListener("close", () => resolve()));
  ws.addEventListener("message", (m) => events.push(JSON.parse(String(m.data))));
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener("open", () => resolve());
    ws.addEventListener("error", () => reject(new Error("WebSocket /ws/events did not open")));
  });
  return {
    events,
    async close() {
      ws.close();
      await closed;
    },
  };
}

async function requestsTotal(p: SluiceProcess): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const outcome of ["delivered", "dead_lettered", "skipped_duplicate"]) {
    out[outcome] = await p.metric("requests_total", { outcome });
  }
  return out;
}

const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);

/** Phases in the order their "completed" line was logged (JSON log lines). */
function phasesLogged(output: string): string[] {
  const out: string[] = [];
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      const l = JSON.parse(line);
      if (l.msg === "shutdown phase completed" || l.msg === "shutdown phase failed") {
        out.push(l.phase);
      }
    } catch {
      // Not a log line.
    }
  }
  return out;
}

async function auditReport(dataDir: string, from: Date, to: Date) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      MAIN,
      "audit",
      "report",
      "--from",
      from.toISOString(),
      "--to",
      to.toISOString(),
      "--format",
      "json",
    ],
    env: { SLUICE_DATA_DIR: dataDir },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `audit report failed: ${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(text) as {
    events: number;
    byOutcome: Record<string, number>;
    duplicates: { keys: number; extraEvents: number };
  };
}

/** Stops the load, waits until every produced record is finished; returns requests_total. */
async function quiesce(p: SluiceProcess): Promise<Record<string, number>> {
  await p.json("/control/load", {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ rate: 0 }),
  });
  let last = -1, stableSince = 0;
  await waitFor(async () => {
    const s = await p.json("/status") as {
      partitions: Array<{ lag?: number; inflight?: number }>;
    };
    const busy = s.partitions.some((x) => (x.lag ?? 0) > 0 || (x.inflight ?? 0) > 0);
    const n = sum(await requestsTotal(p));
    if (busy || n !== last) {
      last = n;
      stableSince = Date.now();
      return false;
    }
    return Date.now() - stableSince >= 600;
  }, { timeoutMs: 15_000, intervalMs: 150, message: "the pipeline to finish every record" });
  return await requestsTotal(p);
}

async function sigterm(p: SluiceProcess): Promise<{ code: number; ms: number }> {
  const t0 = performance.now();
  const killer = setTimeout(() => p.stop("SIGKILL"), 20_000);
  const code = await p.stop("SIGTERM");
  clearTimeout(killer);
  return { code, ms: Math.round(performance.now() - t0) };
}

function positionsByPartition(events: AuditEvent[]): Map<number, bigint[]> {
  const m = new Map<number, bigint[]>();
  for (const e of events) {
    if (!m.has(e.partition)) m.set(e.partition, []);
    m.get(e.partition)!.push(BigInt(e.offset));
  }
  for (const list of m.values()) list.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return m;
}

Deno.test("local mode: start alone, ready in 10 s, SIGTERM in phases, audit report = requests_total, restart continues from committed positions", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "sluice-e2e-local-" });
  let proc: SluiceProcess | undefined;
  try {
    // ---- Run 1: a fresh data directory, nothing configured.
    const from = new Date(Date.now() - 60_000);
    const t0 = performance.now();
    proc = await startSluiceProcess({ env: ENV, dataDir });
    const readyMs = Math.round(performance.now() - t0);
    const ws = await wsEvents(proc.url);
    try {
      const first = sum(await requestsTotal(proc));
      await waitFor(async () => sum(await requestsTotal(proc!)) > first, {
        timeoutMs: Math.max(1000, 10_000 - (performance.now() - t0)),
        intervalMs: 100,
        message: "requests_total to rise",
      });
      await waitFor(
        () => ws.events.some((e) => e.type === "record.completed" && e.trace_id),
        {
          timeoutMs: Math.max(1000, 10_000 - (performance.now() - t0)),
          intervalMs: 50,
          message: "a record.completed event with a trace_id on /ws/events",
        },
      );
      const allMs = Math.round(performance.now() - t0);
      console.log(`run 1: ready after ${readyMs} ms; processing and events after ${allMs} ms`);
      assert.ok(allMs < 10_000, `ready, processing and events took ${allMs} ms (limit 10 s)`);
      const ev = ws.events.find((e) => e.type === "record.completed")!;
      assert.match(ev.trace_id!, /^[0-9a-f]{32}$/);
      const st = await proc.json("/status") as { mode: string; parts: Record<string, string> };
      assert.equal(st.mode, "local");
      assert.match(st.parts.log, /embedded log/);
      assert.match(st.parts.upstream, /simulated upstream/);
    } finally {
      await ws.close();
    }

    // Some volume before the shutdown: 100 records/s until 150 are done.
    await proc.json("/control/load", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ rate: 100 }),
    });
    await waitFor(async () => sum(await requestsTotal(proc!)) >= 150, {
      timeoutMs: 15_000,
      intervalMs: 100,
      message: "150 records processed",
    });
    const atShutdown = await quiesce(proc);
    assert.ok(sum(atShutdown) > 0);
    const stop1 = await sigterm(proc);
    const out1 = proc.output();
    proc = undefined;
    assert.equal(stop1.code, 0, `exit code after SIGTERM\n${out1.slice(-4000)}`);
    assert.deepEqual(phasesLogged(out1), PHASES, "shutdown phases logged in order");
    console.log(
      `run 1: SIGTERM → exit 0 in ${stop1.ms} ms; requests_total ${JSON.stringify(atShutdown)}`,
    );

    const mid = new Date();
    const report1 = await auditReport(dataDir, from, new Date(mid.getTime() + 1000));
    console.log(
      `run 1: audit report ${JSON.stringify(report1.byOutcome)} (${report1.events} events)`,
    );
    assert.equal(report1.events, sum(atShutdown), "audit events = requests_total");
    for (const [outcome, n] of Object.entries(atShutdown)) {
      assert.equal(report1.byOutcome[outcome] ?? 0, n, `audit ${outcome} = requests_total`);
    }
    assert.equal(report1.duplicates.keys, 0);
    const run1 = positionsByPartition(
      await readAllAuditEvents(new FsAuditStore(`${dataDir}/audit`)),
    );

    // ---- Run 2: same directory; must continue where run 1 committed.
    proc = await startSluiceProcess({ env: ENV, dataDir });
    const before = sum(await requestsTotal(proc));
    await waitFor(async () => sum(await requestsTotal(proc!)) >= before + 40, {
      timeoutMs: 15_000,
      intervalMs: 100,
      message: "run 2 to process 40 new records",
    });
    const stop2 = await sigterm(proc); // under load this time
    const out2 = proc.output();
    proc = undefined;
    assert.equal(stop2.code, 0, `exit code of run 2\n${out2.slice(-4000)}`);
    assert.deepEqual(phasesLogged(out2), PHASES);

    const all = await readAllAuditEvents(new FsAuditStore(`${dataDir}/audit`));
    const byPart = positionsByPartition(all);
    for (const [partition, offsets] of byPart) {
      // Contiguous from 0, each offset once: nothing re-delivered, nothing skipped.
      offsets.forEach((o, i) =>
        assert.equal(o, BigInt(i), `partition ${partition}: offsets ${offsets.slice(0, i + 2)}`)
      );
      const last1 = run1.get(partition)?.at(-1) ?? -1n;
      assert.ok(offsets.at(-1)! > last1, `partition ${partition}: run 2 went past run 1`);
    }
    const report2 = await auditReport(dataDir, from, new Date(Date.now() + 1000));
    console.log(
      `run 2: SIGTERM under load → exit 0 in ${stop2.ms} ms; audit over both runs: ${report2.events} events, ${report2.duplicates.keys} duplicate keys`,
    );
    assert.equal(report2.duplicates.keys, 0, "no idempotency key delivered twice across restarts");
    assert.equal(report2.events, all.length);
    assert.ok(report2.events > report1.events);
  } catch (e) {
    if (proc) console.error(`--- sluice output ---\n${proc.output().slice(-6000)}`);
    throw e;
  } finally {
    if (proc) await proc.stop("SIGKILL");
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
});

Deno.test("dashboard data: histogram quantiles; PUT /control/upstream validates and is local-only", async () => {
  // 10 requests ≤ 10 ms, 80 in (10, 50] ms, 10 in (50, 100] ms.
  const buckets: Array<[number, number]> = [[0.01, 10], [0.05, 90], [0.1, 100], [Infinity, 100]];
  assert.equal(histogramQuantile(0.5, buckets), 0.01 + 0.04 * (40 / 80));
  assert.equal(histogramQuantile(0.95, buckets), 0.05 + 0.05 * 0.5);
  assert.equal(histogramQuantile(0.5, [[0.01, 0], [Infinity, 0]]), null);
  assert.equal(histogramQuantile(0.99, [[0.01, 0], [2.5, 0], [Infinity, 5]]), 2.5);

  const changes: unknown[] = [];
  const local = createApp(
    fakeDeps({ upstreamSim: { set: (c) => (changes.push(c), { ...c }) } }).deps,
  );
  const put = (app: typeof local, body: string) =>
    app.request("/control/upstream", {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body,
    });
  for (const bad of ['{"errorRate":1.5}', '{"latencyMs":-1}', '{"hang":"yes"}', "{}", '{"x":1}']) {
    const res = await put(local, bad);
    assert.equal(res.status, 422, bad);
    await res.body?.cancel();
  }
  const ok = await put(local, '{"errorRate":1,"latencyMs":200}');
  assert.equal(ok.status, 200);
  assert.deepEqual((await ok.json()).upstream, { errorRate: 1, latencyMs: 200 });
  assert.deepEqual(changes, [{ errorRate: 1, latencyMs: 200 }]);
  const real = createApp(fakeDeps().deps);
  const res = await put(real, '{"errorRate":1}');
  assert.equal(res.status, 404);
  assert.equal((await res.json()).error.code, "not_available");
  closeApp(local);
  closeApp(real);
});
