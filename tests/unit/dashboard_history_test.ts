/**
 * http/history.ts: the dashboard's server-side memory (samples, periods,
 * health) and `GET /dashboard/history`.
 */
import assert from "node:assert/strict";
import client from "prom-client";
import { publishEvent } from "../../actors/runtime/events.ts";
import { closeApp, createApp } from "../../http/app.ts";
import type { ReadyReport, StatusSummary } from "../../http/deps.ts";
import { DashboardHistory, healthOf } from "../../http/history.ts";
import { fakeDeps } from "../../http/testing.ts";

const READY: ReadyReport = { ready: true, checks: { kafka: { ok: true } } };

function world() {
  const registry = new client.Registry();
  const requests = new client.Counter({
    name: "requests_total",
    help: "x",
    labelNames: ["outcome"],
    registers: [registry],
  });
  const errors = new client.Counter({
    name: "errors_total",
    help: "x",
    labelNames: ["kind"],
    registers: [registry],
  });
  const status: StatusSummary = { state: "running", circuit: "closed", pause_reasons: [] };
  let ready = READY;
  let now = Date.UTC(2026, 0, 1, 12, 0, 0);
  const history = new DashboardHistory({
    metrics: registry,
    status: () => status,
    ready: () => ready,
  }, { intervalMs: 1000, keepMs: 3600_000, now: () => now });
  return {
    requests,
    errors,
    status,
    history,
    setReady: (r: ReadyReport) => (ready = r),
    advance: (ms: number) => (now += ms),
    now: () => now,
  };
}

Deno.test("healthOf: not ready, degraded while the breaker is open or the audit is behind, else ready", () => {
  assert.equal(healthOf({ circuit: "closed" }, READY).health, "ready");
  assert.deepEqual(healthOf({ circuit: "open" }, READY), {
    health: "degraded",
    reasons: ["circuit breaker open"],
  });
  assert.equal(healthOf({ circuit: "halfOpen" }, READY).health, "degraded");
  const behind = healthOf({ circuit: "closed", audit: { oldestPendingAgeS: 95 } }, READY);
  assert.equal(behind.health, "degraded");
  assert.match(behind.reasons[0], /audit trail behind \(oldest event waiting 95 s\)/);
  assert.equal(
    healthOf({ circuit: "closed", audit: { degraded: true } }, READY).reasons[0],
    "audit trail degraded (uploads failing)",
  );
  const down = healthOf({ circuit: "open" }, {
    ready: false,
    checks: { kafka: { ok: false, detail: "broker down" }, s3: { ok: true } },
  });
  assert.deepEqual(down, { health: "not_ready", reasons: ["kafka: broker down"] });
});

Deno.test("DashboardHistory: per-second rates (not totals), breaker and drain periods, since", async () => {
  const w = world();
  await w.history.tick();
  w.advance(1000);
  w.requests.inc({ outcome: "delivered" }, 20);
  w.errors.inc({ kind: "http_5xx" }, 3);
  // The sampler measures real time between its two samples: let some pass.
  await new Promise((r) => setTimeout(r, 1000));
  await w.history.tick();
  const s = w.history.snapshot();
  assert.equal(s.samples.length, 2);
  const last = s.samples[1];
  assert.ok(last.delivered > 15 && last.delivered <= 20, `delivered/s ${last.delivered}`);
  assert.ok(last.errors > 2 && last.errors <= 3, `errors/s ${last.errors}`);
  assert.equal(last.health, "ready");

  // Breaker opens (event), pipeline drained, then both end.
  w.history.start();
  try {
    publishEvent("circuit.changed", "warn", { from: "closed", to: "open" });
    w.status.circuit = "open";
    w.status.pause_reasons = ["circuit", "operator"];
    w.advance(1000);
    await w.history.tick();
    assert.equal(w.history.snapshot().samples.at(-1)!.health, "degraded");
    publishEvent("circuit.changed", "info", { from: "open", to: "halfOpen" });
    publishEvent("circuit.changed", "info", { from: "halfOpen", to: "closed" });
    w.status.circuit = "closed";
    w.status.pause_reasons = [];
    w.advance(1000);
    await w.history.tick();
  } finally {
    w.history.stop();
  }
  const periods = w.history.snapshot().periods;
  const kinds = periods.map((p) => p.kind).sort();
  assert.deepEqual(kinds, ["breaker_half_open", "breaker_open", "drained"]);
  for (const p of periods) assert.notEqual(p.to, null, `${p.kind} ended`);
  const open = periods.find((p) => p.kind === "breaker_open")!;
  assert.ok(open.to! >= open.from);

  const since = w.history.snapshot().samples.at(-2)!.t;
  assert.equal(w.history.snapshot(since).samples.length, 1);
});

Deno.test("DashboardHistory keeps at least the last hour of per-second samples", async () => {
  const w = world();
  for (let i = 0; i < 3700; i++) {
    await w.history.tick();
    w.advance(1000);
  }
  const s = w.history.snapshot();
  assert.ok(s.samples.length >= 3599, `${s.samples.length} samples`);
  assert.ok(w.now() - s.samples[0].t <= 3600_000 + 1000);
  assert.ok(w.now() - s.samples[0].t >= 3599_000, "an hour back");
});

Deno.test("GET /dashboard/history answers the samples and periods; /dashboard/data says the health", async () => {
  const { deps } = fakeDeps();
  const app = createApp(deps);
  try {
    await new Promise((r) => setTimeout(r, 1200));
    const res = await app.request("/dashboard/history");
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.ok(body.samples.length >= 1, "sampling started with the app");
    assert.equal(body.keep_ms, 2 * 3600_000);
    assert.ok(Array.isArray(body.periods));
    const bad = await app.request("/dashboard/history?since=yesterday");
    assert.equal(bad.status, 422);
    const data = await (await app.request("/dashboard/data")).json();
    assert.equal(data.health, "ready");
    assert.deepEqual(data.reasons, []);
    assert.ok("gauge_rates" in data.metrics);
  } finally {
    closeApp(app);
  }
});
