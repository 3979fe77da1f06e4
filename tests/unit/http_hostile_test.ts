/**
 * Hostile input, hostile browsers and hostile clients against the HTTP
 * surface (issue 14): each reproduction of the outside probe gets the safe
 * answer, and a refused call changes nothing.
 */
import assert from "node:assert/strict";
import { setLogSink } from "../../actors/runtime/logger.ts";
import { closeApp, createApp } from "../../http/app.ts";
import type { AppDeps } from "../../http/deps.ts";
import { serveApp } from "../../http/server.ts";
import { fakeDeps, snapshotState } from "../../http/testing.ts";
import { WsHub } from "../../http/ws_hub.ts";
import { cachedFor } from "../../http/observe_routes.ts";

function setup(overrides: Partial<AppDeps> = {}) {
  const { deps, state } = fakeDeps(overrides);
  const app = createApp(deps);
  return { app, state, [Symbol.dispose]: () => closeApp(app) };
}

async function serve(overrides: Partial<AppDeps> = {}, opts: Parameters<typeof serveApp>[1] = {}) {
  const { deps, state } = fakeDeps({ hub: new WsHub(), ...overrides });
  delete deps.clientAddress; // the real peer address
  const app = createApp(deps);
  const server = await serveApp(app, { port: 0, ...opts });
  return { app, state, server, [Symbol.asyncDispose]: () => server.shutdown() };
}

const JSON_TYPE = { "content-type": "application/json" };
const put = (path: string, body: unknown) =>
  [path, { method: "PUT", headers: JSON_TYPE, body: JSON.stringify(body) }] as const;

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  const body = await res.json();
  return body.error;
}

// ---- row 2, 8, 10: bounds on every runtime-settable number ---------------------------------

Deno.test("runtime-settable numbers out of range answer 422 naming the allowed range, and change nothing", async () => {
  using t = setup();
  const before = snapshotState(t.state);
  const cases: Array<[readonly [string, RequestInit], RegExp]> = [
    [put("/control/load", { rate: 1e308 }), /rate.*from 0 to 10000/],
    [put("/control/load", { rate: 10_001 }), /rate.*from 0 to 10000/],
    [put("/control/rate", { rate: 1e-9 }), /rate.*from 0\.001 to 1000000/],
    [put("/control/rate", { rate: 1e308 }), /rate.*from 0\.001 to 1000000/],
    [put("/control/rate", { rate: 5, burst: 1e12 }), /burst.*from 1 to 1000000/],
    [put("/control/upstream", { latencyMs: 1e308 }), /latencyMs.*0 to 600000/],
    [put("/control/upstream", { errorRate: 2 }), /errorRate.*0 to 1/],
    [put("/control/upstream", { errorStatus: 200 }), /errorStatus.*500 to 599/],
    [[
      "/control/replay",
      {
        method: "POST",
        headers: JSON_TYPE,
        body: '{"topic":"events","from":0,"to":1e308}',
      },
    ], /to.*from 0 to 8640000000000000/],
    [[
      "/control/replay",
      {
        method: "POST",
        headers: JSON_TYPE,
        body: '{"topic":"events","from":0,"to":5,"rate":1e308}',
      },
    ], /rate.*from 0\.001 to 1000000/],
  ];
  for (const [[path, init], message] of cases) {
    const res = await t.app.request(path, init);
    const err = await errorOf(res);
    assert.equal(res.status, 422, `${path} ${init.body}: ${JSON.stringify(err)}`);
    assert.equal(err.code, "validation_error");
    assert.match(err.message, message, `${path} ${init.body}`);
  }
  assert.deepEqual(snapshotState(t.state), before);
});

// ---- row 3: no-token mode refuses browsers --------------------------------------------------

Deno.test("no token: a cross-site simple POST (Origin evil, text/plain) cannot shut sluice down", async () => {
  using t = setup();
  const res = await t.app.request("/control/shutdown", {
    method: "POST",
    headers: { origin: "http://evil.example", "content-type": "text/plain" },
    body: "x",
  });
  assert.equal(res.status, 403);
  assert.equal((await errorOf(res)).code, "forbidden_origin");
  // Without Origin, text/plain is still refused: no simple request passes.
  for (const type of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]) {
    const r = await t.app.request("/control/shutdown", {
      method: "POST",
      headers: { "content-type": type },
      body: "x",
    });
    assert.equal(r.status, 415, type);
    await r.body?.cancel();
  }
  const bare = await t.app.request("/control/drain", { method: "POST" });
  assert.equal(bare.status, 415, "a body-less POST needs the JSON type too");
  await bare.body?.cancel();
  assert.equal(t.state.shutdowns, 0);
  assert.equal(t.state.drains, 0);
  // The instance's own origin (the dashboard) and CLI-style calls are served.
  const own = await t.app.request("http://127.0.0.1:9090/control/drain", {
    method: "POST",
    headers: { ...JSON_TYPE, origin: "http://127.0.0.1:9090", host: "127.0.0.1:9090" },
  });
  assert.equal(own.status, 200, await own.text());
  assert.equal(t.state.drains, 1);
});

Deno.test("no token: DNS rebinding (Host not a loopback name) is refused; allowed origins pass", async () => {
  using t = setup({ allowedOrigins: ["https://ops.example.com"] });
  for (const host of ["evil.example:9090", "evil.example", "10.0.0.5:9090"]) {
    const res = await t.app.request(`http://${host}/control/drain`, {
      method: "POST",
      headers: { ...JSON_TYPE, host, origin: `http://${host}` },
    });
    assert.equal(res.status, 403, host);
    assert.match((await errorOf(res)).message, /127\.0\.0\.1, localhost or \[::1\]: Host/);
  }
  for (const host of ["localhost:9090", "127.0.0.1", "[::1]:9090"]) {
    const res = await t.app.request(`http://${host}/control/resume`, {
      method: "POST",
      headers: { ...JSON_TYPE, host },
    });
    assert.equal(res.status, 200, host);
    await res.body?.cancel();
  }
  const allowed = await t.app.request("http://127.0.0.1:9090/control/resume", {
    method: "POST",
    headers: { ...JSON_TYPE, host: "127.0.0.1:9090", origin: "https://ops.example.com" },
  });
  assert.equal(allowed.status, 200);
  await allowed.body?.cancel();
  assert.equal(t.state.drains, 0);
});

Deno.test("no token over a real socket: the curl reproduction of the probe gets 403, sluice keeps running", async () => {
  await using t = await serve();
  const res = await fetch(`http://127.0.0.1:${t.server.port}/control/shutdown`, {
    method: "POST",
    headers: { origin: "http://evil.example", "content-type": "text/plain" },
    body: "x",
  });
  assert.equal(res.status, 403);
  await res.body?.cancel();
  assert.equal(t.state.shutdowns, 0);
  const live = await fetch(`http://127.0.0.1:${t.server.port}/health/live`);
  assert.equal(live.status, 200);
  await live.body?.cancel();
});

// ---- row 5: /metrics rendered at most once per interval ---------------------------------------

Deno.test("/metrics is rendered at most once per interval, however many scrapes", async () => {
  const { deps } = fakeDeps();
  let renders = 0;
  const inner = deps.metrics.metrics.bind(deps.metrics);
  deps.metrics.metrics = () => (renders++, inner());
  const app = createApp({ ...deps, limits: { metricsMaxAgeMs: 60_000 } });
  try {
    const bodies = await Promise.all(
      Array.from({ length: 50 }, async () => (await app.request("/metrics")).text()),
    );
    assert.equal(renders, 1, "50 concurrent scrapes, one render");
    assert.ok(bodies.every((b) => b.includes("fake_total 3")));
    await (await app.request("/metrics")).text();
    assert.equal(renders, 1);
  } finally {
    closeApp(app);
  }
  // And a new render once the interval has passed.
  let calls = 0;
  const f = cachedFor(20, () => Promise.resolve(++calls));
  assert.equal(await f(), 1);
  assert.equal(await f(), 1);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(await f(), 2);
});

// ---- rows 6, 7: WebSocket frames capped, Origin checked -----------------------------------------

/** Opens a raw WebSocket (handshake only); returns the connection and the status line. */
async function rawUpgrade(port: number, path: string, headers: Record<string, string> = {}) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const lines = [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    "",
    "",
  ];
  await conn.write(new TextEncoder().encode(lines.join("\r\n")));
  const buf = new Uint8Array(4096);
  let text = "";
  while (!text.includes("\r\n\r\n")) {
    const n = await conn.read(buf);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  return { conn, status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]), text };
}

/** Resolves with how long until the server closes `conn` (reads and drops what comes). */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<number> {
  const t0 = performance.now();
  const buf = new Uint8Array(64 * 1024);
  const timer = setTimeout(() => conn.close(), ms);
  try {
    while ((await conn.read(buf)) !== null) { /* drain */ }
  } catch {
    // Reset or closed by the timer.
  }
  clearTimeout(timer);
  return performance.now() - t0;
}

Deno.test("WebSocket upgrades from a foreign Origin answer 403 on /ws/events and /inspect/ws", async () => {
  await using t = await serve();
  for (const path of ["/ws/events", "/inspect/ws"]) {
    const evil = await rawUpgrade(t.server.port, path, { Origin: "http://evil.example" });
    assert.equal(evil.status, 403, `${path}: ${evil.text}`);
    evil.conn.close();
    const own = await rawUpgrade(t.server.port, path, {
      Origin: `http://127.0.0.1:${t.server.port}`,
    });
    assert.equal(own.status, 101, `${path}: ${own.text}`);
    own.conn.close();
  }
});

Deno.test("/ws/events closes a client that sends a frame over 4 KiB, before buffering it", async () => {
  await using t = await serve();
  const { conn, status } = await rawUpgrade(t.server.port, "/ws/events");
  assert.equal(status, 101);
  // A masked binary frame declaring 60 MiB (64-bit length), then only 1 KiB of it.
  const header = new Uint8Array([0x82, 0x80 | 127, 0, 0, 0, 0, 0x03, 0xc0, 0, 0, 1, 2, 3, 4]);
  await conn.write(header);
  await conn.write(new Uint8Array(1024));
  const ms = await closedWithin(conn, 5000);
  assert.ok(ms < 2000, `closed after ${ms.toFixed(0)} ms, not at once`);
  // The server is fine and serves the next client.
  const next = await rawUpgrade(t.server.port, "/ws/events");
  assert.equal(next.status, 101);
  next.conn.close();
});

// ---- row 9: header and body read timeouts ----------------------------------------------------

Deno.test("slowloris: connections that trickle headers or a body are closed at the read timeouts", async () => {
  await using t = await serve({}, { headersTimeoutMs: 500, requestTimeoutMs: 1000 });
  const enc = new TextEncoder();
  const headerConns = await Promise.all(Array.from({ length: 20 }, async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: t.server.port });
    await c.write(enc.encode("GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: "));
    return c;
  }));
  const bodyConn = await Deno.connect({ hostname: "127.0.0.1", port: t.server.port });
  await bodyConn.write(enc.encode(
    "PUT /control/rate HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
  ));
  const trickle = setInterval(() => {
    for (const c of headerConns) c.write(enc.encode("a")).catch(() => {});
    bodyConn.write(enc.encode(" ")).catch(() => {});
  }, 100);
  try {
    const times = await Promise.all([...headerConns, bodyConn].map((c) => closedWithin(c, 8000)));
    const worst = Math.max(...times);
    assert.ok(worst < 4000, `slowest connection closed after ${worst.toFixed(0)} ms`);
  } finally {
    clearInterval(trickle);
  }
  assert.deepEqual(t.state.rate, { rate: 100, burst: 100 }, "the half-sent PUT changed nothing");
  const live = await fetch(`http://127.0.0.1:${t.server.port}/health/live`);
  assert.equal(live.status, 200);
  await live.body?.cancel();
});

// ---- row 12: a client that leaves mid-body is not a server error --------------------------------

Deno.test("a client that disconnects mid-body is not logged as an error and changes nothing", async () => {
  const lines: Array<[string, string]> = [];
  setLogSink((line, level) => lines.push([level, line]));
  try {
    await using t = await serve();
    for (let i = 0; i < 5; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: t.server.port });
      await c.write(new TextEncoder().encode(
        'PUT /control/rate HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"rate":',
      ));
      await new Promise((r) => setTimeout(r, 50));
      c.close();
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(t.state.rate, { rate: 100, burst: 100 });
    const live = await fetch(`http://127.0.0.1:${t.server.port}/health/live`);
    assert.equal(live.status, 200);
    await live.body?.cancel();
  } finally {
    setLogSink();
  }
  const errors = lines.filter(([level]) => level === "error" || level === "warn");
  assert.deepEqual(errors, [], "no error or warning for a client that went away");
});
