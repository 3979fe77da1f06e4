/**
 * Access rule of control and DLQ routes: bearer token when configured
 * (401 otherwise, loopback included), loopback only without a token (403).
 * Refused calls must change nothing in the pipeline.
 */
import assert from "node:assert/strict";
import { closeApp, createApp } from "../../http/app.ts";
import { isLoopback } from "../../http/auth.ts";
import type { AppDeps } from "../../http/deps.ts";
import { fakeDeps, snapshotState } from "../../http/testing.ts";

/** Every control call but a read says JSON (required without a token: the browser guard). */
const JSON_TYPE = { "content-type": "application/json" };

const TOKEN = "s3cret-token-value";

/** Every control and DLQ call, with a valid body. */
const CONTROL_CALLS: Array<[string, RequestInit]> = [
  ["/control/drain", { method: "POST", headers: JSON_TYPE }],
  ["/control/resume", { method: "POST", headers: JSON_TYPE }],
  ["/control/shutdown", { method: "POST", headers: JSON_TYPE }],
  ["/control/rate", { method: "PUT", body: '{"rate": 5}' }],
  ["/control/load", { method: "PUT", body: '{"rate": 5}' }],
  ["/control/replay", { method: "POST", body: '{"topic": "o", "from": 0, "to": 5}' }],
  ["/control/replay/replay-1", { method: "GET" }],
  ["/control/replay/replay-1", { method: "DELETE", headers: JSON_TYPE }],
  ["/dlq", { method: "GET" }],
  ["/dlq/dl-1/replay", { method: "POST", headers: JSON_TYPE }],
];

function withHeaders(init: RequestInit, headers: Record<string, string>): RequestInit {
  const h: Record<string, string> = { ...headers };
  if (init.method !== "GET") h["content-type"] = "application/json";
  return { ...init, headers: h };
}

function setup(overrides: Partial<AppDeps>) {
  const { deps, state } = fakeDeps(overrides);
  const app = createApp(deps);
  return { app, state, [Symbol.dispose]: () => closeApp(app) };
}

Deno.test("controlAuth refuses every control call without a token (401) and changes nothing", async () => {
  using t = setup({ controlToken: TOKEN });
  const before = snapshotState(t.state);
  for (const [path, init] of CONTROL_CALLS) {
    const res = await t.app.request(path, withHeaders(init, {}));
    assert.equal(res.status, 401, `${init.method} ${path}`);
    assert.match(res.headers.get("www-authenticate") ?? "", /^Bearer/);
    assert.equal((await res.json()).error.code, "unauthorized");
  }
  await Promise.resolve();
  assert.deepEqual(snapshotState(t.state), before);
});

Deno.test("controlAuth refuses a wrong or malformed token (401), from loopback too", async () => {
  using t = setup({ controlToken: TOKEN });
  const before = snapshotState(t.state);
  const bad = [`Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(1)}`, `Basic ${TOKEN}`, TOKEN, "Bearer "];
  for (const authorization of bad) {
    for (const [path, init] of CONTROL_CALLS) {
      const res = await t.app.request(path, withHeaders(init, { authorization }));
      assert.equal(res.status, 401, `${authorization} ${init.method} ${path}`);
      await res.body?.cancel();
    }
  }
  await Promise.resolve();
  assert.deepEqual(snapshotState(t.state), before);
});

Deno.test("controlAuth lets the right token through, from any address", async () => {
  using t = setup({ controlToken: TOKEN, clientAddress: () => "203.0.113.9" });
  for (const [path, init] of CONTROL_CALLS) {
    const res = await t.app.request(path, withHeaders(init, { authorization: `bearer ${TOKEN}` }));
    assert.ok(res.status < 300, `${init.method} ${path}: ${res.status}`);
    await res.body?.cancel();
  }
  await Promise.resolve();
  assert.equal(t.state.drains, 1);
  assert.equal(t.state.shutdowns, 1);
  assert.equal(t.state.rate.rate, 5);
  assert.deepEqual(t.state.dlqReplayed, ["dl-1"]);
});

Deno.test("without a token, non-loopback clients get 403 and change nothing", async () => {
  for (const address of ["10.0.0.7", "192.168.1.2", "::ffff:10.0.0.1", "fe80::1", undefined]) {
    using t = setup({ clientAddress: () => address });
    const before = snapshotState(t.state);
    for (const [path, init] of CONTROL_CALLS) {
      const res = await t.app.request(path, withHeaders(init, { authorization: "Bearer x" }));
      assert.equal(res.status, 403, `${address} ${init.method} ${path}`);
      assert.equal((await res.json()).error.code, "forbidden");
    }
    await Promise.resolve();
    assert.deepEqual(snapshotState(t.state), before);
  }
});

Deno.test("without a token, loopback clients are answered (IPv4, IPv6, mapped)", async () => {
  for (const address of ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1"]) {
    using t = setup({ clientAddress: () => address });
    const res = await t.app.request("/control/drain", { method: "POST", headers: JSON_TYPE });
    assert.equal(res.status, 200, address);
    await res.body?.cancel();
    assert.equal(t.state.drains, 1);
  }
});

Deno.test("the default client address comes from Deno's connection info (env remoteAddr)", async () => {
  const { deps, state } = fakeDeps();
  delete deps.clientAddress;
  const app = createApp(deps);
  try {
    const env = (hostname: string) => ({ remoteAddr: { hostname, port: 5555, transport: "tcp" } });
    let res = await app.request(
      "/control/drain",
      { method: "POST", headers: JSON_TYPE },
      env("127.0.0.1"),
    );
    assert.equal(res.status, 200);
    await res.body?.cancel();
    res = await app.request(
      "/control/drain",
      { method: "POST", headers: JSON_TYPE },
      env("198.51.100.4"),
    );
    assert.equal(res.status, 403);
    await res.body?.cancel();
    res = await app.request("/control/drain", { method: "POST", headers: JSON_TYPE });
    assert.equal(res.status, 403, "unknown address is not loopback");
    await res.body?.cancel();
    assert.equal(state.drains, 1);
  } finally {
    closeApp(app);
  }
});

Deno.test("an empty token counts as no token (loopback only)", async () => {
  using t = setup({ controlToken: "", clientAddress: () => "10.1.1.1" });
  const res = await t.app.request("/control/drain", { method: "POST", headers: JSON_TYPE });
  assert.equal(res.status, 403);
  await res.body?.cancel();
});

Deno.test("read-only routes need no token", async () => {
  using t = setup({ controlToken: TOKEN, clientAddress: () => "203.0.113.9" });
  for (const path of ["/health/live", "/health/ready", "/metrics", "/status", "/inspect"]) {
    const res = await t.app.request(path);
    assert.equal(res.status, 200, path);
    await res.body?.cancel();
  }
});

Deno.test("isLoopback accepts 127/8 and ::1 only", () => {
  for (const a of ["127.0.0.1", "127.255.0.1", "::1", "[::1]", "::FFFF:127.0.0.1"]) {
    assert.equal(isLoopback(a), true, a);
  }
  for (const a of ["128.0.0.1", "0.0.0.0", "::", "10.0.0.1", "127.0.0.1.evil", "", undefined]) {
    assert.equal(isLoopback(a), false, String(a));
  }
});
