/**
 * The simulated upstream (actors/local/sim_upstream.ts): 200s with latency, 503s at
 * the error rate, hanging until the behaviour changes or the client gives up,
 * duplicate counting by Idempotency-Key, runtime changes over HTTP.
 */
import assert from "node:assert/strict";
import { startSimulatedUpstream } from "../../actors/local/sim_upstream.ts";
import { waitFor } from "../harness/procs.ts";

async function post(url: string, key: string | null, signal?: AbortSignal) {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (key !== null) headers["idempotency-key"] = key;
  const res = await fetch(url, { method: "POST", headers, body: '{"a":1}', signal });
  await res.body?.cancel();
  return res.status;
}

/** The harness's `waitFor`, with this file's argument order. */
async function waitUntil(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  await waitFor(cond, { timeoutMs, intervalMs: 5, message: what });
}

Deno.test("simulatedUpstream answers 200 after its latency and counts duplicates by key", async () => {
  const up = await startSimulatedUpstream({ latencyMs: 30 });
  try {
    assert.match(up.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const t0 = performance.now();
    assert.equal(await post(up.url, "k1"), 200);
    assert.ok(performance.now() - t0 >= 29, "latency applied");
    assert.equal(await post(`${up.url}any/path`, "k1"), 200);
    assert.equal(await post(up.url, "k2"), 200);
    assert.equal(await post(up.url, null), 200);
    const s = up.stats();
    assert.equal(s.requests, 4);
    assert.equal(s.duplicates, 1);
    assert.equal(s.uniqueKeys, 2);
    assert.equal(s.withoutKey, 1);
    assert.deepEqual(s.byStatus, { 200: 4 });
    assert.equal(up.requestsFor("k1"), 2);
    const get = await fetch(up.url);
    await get.body?.cancel();
    assert.equal(get.status, 405);
  } finally {
    await up.stop();
  }
});

Deno.test("simulatedUpstream answers 503 at its error rate, changeable at runtime", async () => {
  const up = await startSimulatedUpstream({ latencyMs: 0, errorRate: 1 });
  try {
    for (let i = 0; i < 5; i++) assert.equal(await post(up.url, `e${i}`), 503);
    up.setBehaviour({ errorRate: 0 });
    for (let i = 0; i < 5; i++) assert.equal(await post(up.url, `ok${i}`), 200);
    up.setBehaviour({ errorRate: 0.5 });
    const statuses = await Promise.all(
      Array.from({ length: 400 }, (_, i) => post(up.url, `h${i}`)),
    );
    const errors = statuses.filter((s) => s === 503).length;
    // Binomial(400, 0.5): 6 standard deviations either side.
    assert.ok(errors > 140 && errors < 260, `503s: ${errors}/400`);
    assert.throws(() => up.setBehaviour({ errorRate: 2 }), /errorRate/);
    // Over HTTP too.
    const res = await fetch(`${up.url}_sim/behaviour`, {
      method: "PUT",
      body: JSON.stringify({ latencyMs: 5, errorRate: 0 }),
    });
    assert.deepEqual(await res.json(), {
      latencyMs: 5,
      jitterMs: 0,
      errorRate: 0,
      errorStatus: 503,
      hang: false,
    });
    // The error answers' status: 500 makes poison records (503 says "unavailable").
    up.setBehaviour({ errorRate: 1, errorStatus: 500 });
    assert.equal(await post(up.url, "s500"), 500);
    assert.throws(() => up.setBehaviour({ errorStatus: 404 }), /errorStatus/);
    assert.throws(() => up.setBehaviour({ errorStatus: 500.5 }), /errorStatus/);
    up.setBehaviour({ errorRate: 0 });
    const bad = await fetch(`${up.url}_sim/behaviour`, { method: "PUT", body: '{"hang":1}' });
    assert.equal(bad.status, 400);
    await bad.body?.cancel();
    const stats = await (await fetch(`${up.url}_sim/stats`)).json();
    assert.equal(stats.requests, 411);
  } finally {
    await up.stop();
  }
});

Deno.test("simulatedUpstream hangs until the hang ends or it stops, also when the client gave up", async () => {
  const up = await startSimulatedUpstream({ latencyMs: 0, hang: true });
  try {
    // Released by a behaviour change.
    const released = post(up.url, "a");
    await waitUntil(() => up.stats().hanging === 1, "a hanging request");
    up.setBehaviour({ hang: false });
    assert.equal(await released, 200);
    // Given up by the client: released by the next change.
    up.setBehaviour({ hang: true });
    const ac = new AbortController();
    const aborted = post(up.url, "b", ac.signal).catch((e) => e.name);
    await waitUntil(() => up.stats().hanging === 1, "b hanging");
    ac.abort();
    assert.equal(await aborted, "AbortError");
    up.setBehaviour({ hang: false });
    await waitUntil(() => up.stats().inflight === 0, "b released");
    up.setBehaviour({ hang: true });
    // Answered 503 at stop.
    const atStop = post(up.url, "c");
    await waitUntil(() => up.stats().hanging === 1, "c hanging");
    await up.stop();
    assert.equal(await atStop, 503);
  } finally {
    await up.stop().catch(() => {});
  }
});
