/** Every route and every error code of the HTTP surface, through `app.request` (no socket). */
import assert from "node:assert/strict";
import { closeApp, createApp } from "../../http/app.ts";
import type { AppDeps } from "../../http/deps.ts";
import { HttpError } from "../../http/errors.ts";
import { fakeDeps } from "../../http/testing.ts";

/** Every control call but a read says JSON (required without a token: the browser guard). */
const JSON_TYPE = { "content-type": "application/json" };

function setup(overrides: Partial<AppDeps> = {}) {
  const { deps, state } = fakeDeps(overrides);
  const app = createApp(deps);
  return { app, state, [Symbol.dispose]: () => closeApp(app) };
}

const json = (body: unknown, method = "PUT"): RequestInit => ({
  method,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  assert.match(res.headers.get("content-type") ?? "", /application\/json/);
  const body = await res.json();
  assert.equal(typeof body.error?.code, "string");
  assert.equal(typeof body.error?.message, "string");
  return body.error;
}

Deno.test("GET /health/live answers 200", async () => {
  using t = setup();
  const res = await t.app.request("/health/live");
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { live: true });
});

Deno.test("GET /health/ready answers 200 with the checks when ready", async () => {
  using t = setup();
  const res = await t.app.request("/health/ready");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.ready, true);
  assert.deepEqual(Object.keys(body.checks), ["kafka", "s3", "metrics", "audit", "shutting_down"]);
});

Deno.test("GET /health/ready answers 503 naming each check that is not ready", async () => {
  using t = setup();
  t.state.ready.ready = false;
  t.state.ready.checks.kafka = { ok: false, detail: "broker unreachable" };
  t.state.ready.checks.shutting_down = { ok: false };
  const res = await t.app.request("/health/ready");
  assert.equal(res.status, 503);
  const body = await res.json();
  assert.equal(body.ready, false);
  assert.deepEqual(body.not_ready, ["kafka", "shutting_down"]);
  assert.equal(body.error.code, "not_ready");
  assert.match(body.error.message, /kafka \(broker unreachable\), shutting_down/);
});

Deno.test("GET /health/ready answers 503 when the probe itself throws", async () => {
  using t = setup({
    ready: () => {
      throw new Error("boom");
    },
  });
  const res = await t.app.request("/health/ready");
  assert.equal(res.status, 503);
  assert.deepEqual((await res.json()).not_ready, ["ready_probe"]);
});

Deno.test("GET /metrics serves Prometheus text with its content type", async () => {
  using t = setup();
  const res = await t.app.request("/metrics");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  assert.match(await res.text(), /^fake_total 3$/m);
});

Deno.test("GET /status merges the control status and readiness", async () => {
  using t = setup();
  const res = await t.app.request("/status");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.state, "running");
  assert.equal(body.ready, true);
  assert.equal(body.checks.kafka.ok, true);
  assert.deepEqual(body.rate, { rate: 100, burst: 100 });
});

Deno.test("POST /control/drain, /control/resume drive the pipeline", async () => {
  using t = setup();
  let res = await t.app.request("/control/drain", { method: "POST", headers: JSON_TYPE });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).status.state, "drained");
  assert.equal(t.state.drains, 1);
  res = await t.app.request("/control/resume", { method: "POST", headers: JSON_TYPE });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).status.state, "running");
  assert.equal(t.state.resumes, 1);
});

Deno.test("POST /control/shutdown answers 202 and starts the shutdown", async () => {
  using t = setup();
  const res = await t.app.request("/control/shutdown", { method: "POST", headers: JSON_TYPE });
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), { ok: true, state: "shutting_down" });
  await Promise.resolve();
  assert.equal(t.state.shutdowns, 1);
});

Deno.test("PUT /control/rate sets the rate and validates it", async () => {
  using t = setup();
  let res = await t.app.request("/control/rate", json({ rate: 250, burst: 50 }));
  assert.equal(res.status, 200);
  assert.deepEqual((await res.json()).rate, { rate: 250, burst: 50 });
  assert.deepEqual(t.state.rate, { rate: 250, burst: 50 });

  for (const bad of [{ rate: 0 }, { rate: -1 }, { rate: "10" }, { rate: 5, burst: 0 }, {}]) {
    res = await t.app.request("/control/rate", json(bad));
    assert.equal(res.status, 422, JSON.stringify(bad));
    assert.equal((await errorOf(res)).code, "validation_error");
  }
  res = await t.app.request("/control/rate", json({ rate: 5, bogus: 1 }));
  assert.equal(res.status, 422);
  assert.match((await errorOf(res)).message, /bogus/);
  assert.deepEqual(t.state.rate, { rate: 250, burst: 50 });
});

Deno.test("JSON routes answer 415 for another content type, 400 for malformed JSON", async () => {
  using t = setup();
  let res = await t.app.request("/control/rate", {
    method: "PUT",
    headers: { "content-type": "text/plain" },
    body: '{"rate": 5}',
  });
  assert.equal(res.status, 415);
  assert.equal((await errorOf(res)).code, "unsupported_media_type");
  res = await t.app.request("/control/rate", { method: "PUT", body: '{"rate": 5}' });
  assert.equal(res.status, 415);
  res = await t.app.request("/control/rate", {
    method: "PUT",
    headers: { "content-type": "application/json; charset=utf-8" },
    body: "{rate",
  });
  assert.equal(res.status, 400);
  assert.equal((await errorOf(res)).code, "invalid_json");
  res = await t.app.request("/control/rate", json([1, 2]));
  assert.equal(res.status, 422);
  assert.deepEqual(t.state.rate, { rate: 100, burst: 100 });
});

Deno.test("bodies over the limit answer 413, declared or streamed", async () => {
  using t = setup({ limits: { maxBytes: 64 } });
  const big = JSON.stringify({ rate: 5, pad: "x".repeat(200) });
  let res = await t.app.request("/control/rate", {
    method: "PUT",
    headers: { "content-type": "application/json", "content-length": String(big.length) },
    body: big,
  });
  assert.equal(res.status, 413);
  assert.equal((await errorOf(res)).code, "payload_too_large");
  const stream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode("x".repeat(20)));
      controller.close();
    },
  });
  res = await t.app.request("/control/rate", {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: stream,
  });
  assert.equal(res.status, 413);
  await res.body?.cancel();
  res = await t.app.request("/control/rate", json({ rate: 7 }));
  assert.equal(res.status, 200);
  assert.equal(t.state.rate.rate, 7);
});

Deno.test("PUT /control/load sets the generator rate; 404 when there is none", async () => {
  using t = setup();
  let res = await t.app.request("/control/load", json({ rate: 0 }));
  assert.equal(res.status, 200);
  assert.deepEqual(t.state.load, { rate: 0 });
  res = await t.app.request("/control/load", json({ rate: -3 }));
  assert.equal(res.status, 422);
  using t2 = setup({ load: undefined });
  res = await t2.app.request("/control/load", json({ rate: 5 }));
  assert.equal(res.status, 404);
  assert.equal((await errorOf(res)).code, "not_available");
});

Deno.test("POST /control/replay starts a replay; 409 while one runs for that topic", async () => {
  using t = setup();
  const body = { topic: "orders", from: "2024-05-01T00:00:00Z", to: "2024-05-01T01:00:00Z" };
  let res = await t.app.request("/control/replay", json(body, "POST"));
  assert.equal(res.status, 202);
  const { id } = await res.json();
  assert.equal(res.headers.get("location"), `/control/replay/${id}`);
  const started = t.state.replays.get(id)!;
  assert.deepEqual(started.request, {
    topic: "orders",
    from: Date.parse(body.from),
    to: Date.parse(body.to),
  });

  res = await t.app.request("/control/replay", json({ ...body, rate: 50 }, "POST"));
  assert.equal(res.status, 409);
  const err = await errorOf(res);
  assert.equal(err.code, "replay_running");
  assert.match(err.message, new RegExp(id));

  res = await t.app.request("/control/replay", json({ ...body, topic: "payments" }, "POST"));
  assert.equal(res.status, 202);
});

Deno.test("POST /control/replay validates the window, topic and rate (422)", async () => {
  using t = setup();
  const cases = [
    { topic: "orders", from: 2000, to: 1000 },
    { topic: "orders", from: 1000, to: 1000 },
    { topic: "orders", from: "yesterday", to: 1000 },
    { topic: "bad topic!", from: 0, to: 1000 },
    { topic: "orders", from: 0, to: 1000, rate: 0 },
    { from: 0, to: 1000 },
  ];
  for (const c of cases) {
    const res = await t.app.request("/control/replay", json(c, "POST"));
    assert.equal(res.status, 422, JSON.stringify(c));
    assert.equal((await errorOf(res)).code, "validation_error");
  }
  assert.equal(t.state.replays.size, 0);
});

Deno.test("GET and DELETE /control/replay/:id report and cancel; 404 for unknown ids", async () => {
  using t = setup();
  let res = await t.app.request("/control/replay", json({ topic: "o", from: 0, to: 10 }, "POST"));
  const { id } = await res.json();
  res = await t.app.request(`/control/replay/${id}`);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).state, "running");
  res = await t.app.request(`/control/replay/${id}`, { method: "DELETE", headers: JSON_TYPE });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).state, "cancelled");
  for (const method of ["GET", "DELETE"]) {
    res = await t.app.request("/control/replay/nope", { method, headers: JSON_TYPE });
    assert.equal(res.status, 404);
    assert.equal((await errorOf(res)).code, "not_found");
  }
});

Deno.test("replay routes answer 404 not_available without a replay driver", async () => {
  using t = setup({ replay: undefined });
  let res = await t.app.request("/control/replay", json({ topic: "o", from: 0, to: 10 }, "POST"));
  assert.equal(res.status, 404);
  assert.equal((await errorOf(res)).code, "not_available");
  res = await t.app.request("/control/replay/x");
  assert.equal(res.status, 404);
});

Deno.test("GET /dlq lists with a validated query; POST /dlq/:id/replay replays one", async () => {
  using t = setup();
  let res = await t.app.request("/dlq?topic=orders&limit=5&cursor=c1");
  assert.equal(res.status, 200);
  assert.equal((await res.json()).next_cursor, "c2");
  assert.deepEqual(t.state.dlqQueries, [{ topic: "orders", limit: 5, cursor: "c1" }]);
  for (const q of ["limit=0", "limit=1001", "limit=abc", "topic=a%20b", "sort=asc"]) {
    res = await t.app.request(`/dlq?${q}`);
    assert.equal(res.status, 422, q);
  }
  res = await t.app.request("/dlq/dl-1/replay", { method: "POST", headers: JSON_TYPE });
  assert.equal(res.status, 202);
  assert.deepEqual(await res.json(), { ok: true, id: "dl-1", status: "queued" });
  res = await t.app.request("/dlq/dl-404/replay", { method: "POST", headers: JSON_TYPE });
  assert.equal(res.status, 404);
  assert.deepEqual(t.state.dlqReplayed, ["dl-1"]);
  using t2 = setup({ dlq: undefined });
  res = await t2.app.request("/dlq");
  assert.equal(res.status, 404);
  assert.equal((await errorOf(res)).code, "not_available");
});

Deno.test("unknown paths answer 404, wrong methods on known paths 405 with Allow", async () => {
  using t = setup();
  let res = await t.app.request("/nope");
  assert.equal(res.status, 404);
  assert.equal((await errorOf(res)).code, "not_found");
  const cases: Array<[string, string, string]> = [
    ["/control/drain", "GET", "POST"],
    ["/control/rate", "POST", "PUT"],
    ["/metrics", "POST", "GET, HEAD"],
    ["/control/replay/r1", "PUT", "DELETE, GET, HEAD"],
    ["/dlq", "DELETE", "GET, HEAD"],
    ["/inspect/actors", "PATCH", "GET, HEAD"],
  ];
  for (const [path, method, allow] of cases) {
    res = await t.app.request(path, { method, headers: JSON_TYPE });
    assert.equal(res.status, 405, `${method} ${path}`);
    assert.equal(res.headers.get("allow"), allow);
    assert.equal((await errorOf(res)).code, "method_not_allowed");
  }
  assert.equal(t.state.drains, 0);
});

Deno.test("WebSocket routes answer 426 without an upgrade, 422 for a bad severity", async () => {
  using t = setup();
  let res = await t.app.request("/ws/events");
  assert.equal(res.status, 426);
  assert.equal((await errorOf(res)).code, "upgrade_required");
  res = await t.app.request("/ws/events?severity=loud");
  assert.equal(res.status, 422);
  res = await t.app.request("/inspect/ws");
  assert.equal(res.status, 426);
  await res.body?.cancel();
});

Deno.test("GET /inspect serves the self-contained page", async () => {
  using t = setup();
  const res = await t.app.request("/inspect");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/html/);
  assert.match(res.headers.get("content-security-policy") ?? "", /connect-src 'self'/);
  const html = await res.text();
  assert.match(html, /<title>sluice · actors<\/title>/);
  assert.match(html, /\/inspect\/ws/);
  // The SVG namespace is a name, not a resource: it is never fetched.
  const loads = html.replaceAll('"http://www.w3.org/2000/svg"', "");
  assert.doesNotMatch(loads, /https?:\/\//, "no external resources");
});

Deno.test("GET /inspect/actors answers the JSON tree", async () => {
  using t = setup();
  const res = await t.app.request("/inspect/actors");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(typeof body.count, "number");
  assert.ok(Array.isArray(body.roots));
});

Deno.test("errors thrown by deps: HttpError keeps its status, others become 500", async () => {
  const { deps, state } = fakeDeps();
  deps.control.drain = () => {
    throw new HttpError(409, "shutting_down", "Shutdown in progress");
  };
  deps.control.resume = () => Promise.reject(new Error("secret internals"));
  const app = createApp(deps);
  try {
    let res = await app.request("/control/drain", { method: "POST", headers: JSON_TYPE });
    assert.equal(res.status, 409);
    assert.deepEqual(await res.json(), {
      error: { code: "shutting_down", message: "Shutdown in progress" },
    });
    res = await app.request("/control/resume", { method: "POST", headers: JSON_TYPE });
    assert.equal(res.status, 500);
    const err = await errorOf(res);
    assert.equal(err.code, "internal");
    assert.doesNotMatch(err.message, /secret/);
  } finally {
    closeApp(app);
  }
  assert.equal(state.drains, 0);
});
