/**
 * What a running sluice holds in memory is what it uses (README, Benchmarks:
 * "Memory"): an idle local-mode instance has not loaded the packages of parts
 * that are not configured (Kafka clients, the S3 SDK, OpenTelemetry's SDK,
 * Ajv), nor the parts of undici the upstream client does not use (its
 * `request` API included), nor prom-client's index (its cluster and
 * Pushgateway modules, and OpenTelemetry's API for exemplars), nor the
 * request validation (zod and the contract's schemas), which loads at the
 * first control request and then answers as before, nor `ws`, which loads at
 * the first WebSocket upgrade and then serves it. Read from the process itself through V8's inspector (the
 * scripts it has parsed).
 */
import assert from "node:assert/strict";
import { loadedScripts } from "../bench/profile.ts";
import { freePort } from "../harness/procs.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";

/** npm packages an unconfigured (local-mode) instance must not load at start. */
const NOT_AT_START = [
  "kafkajs",
  "@platformatic/kafka",
  "@aws-sdk/client-s3",
  "@opentelemetry/sdk-trace",
  "@opentelemetry/exporter-trace-otlp-proto",
  "ajv",
  "zod",
  "ws",
  "@opentelemetry/api",
];

const packages = (urls: string[]) =>
  new Set(
    urls.flatMap((u) => {
      const m = /\/registry\.npmjs\.org\/((?:@[^/]+\/)?[^/@]+)\//.exec(u);
      return m ? [m[1]] : [];
    }),
  );

Deno.test("local mode loads no package of an unconfigured part; zod loads at the first control request, ws at the first upgrade", async () => {
  const inspect = freePort();
  const s = await startSluiceProcess({ env: {}, denoArgs: [`--inspect=127.0.0.1:${inspect}`] });
  await withSluice(s, async () => {
    const scripts = await loadedScripts(`127.0.0.1:${inspect}`);
    const atStart = packages(scripts);
    assert.ok(atStart.has("hono") && atStart.has("undici"), `loaded: ${[...atStart].join(", ")}`);
    for (const name of NOT_AT_START) {
      assert.ok(!atStart.has(name), `${name} loaded at start (loaded: ${[...atStart].join(", ")})`);
    }
    // Of undici, the upstream client's Pool only: not its fetch, WebSocket,
    // mock agents or cache stores (what its index loads), nor its `request`
    // API and the Node stream it builds per response (the client reads
    // answers through its own handler; only the API's abort-signal helpers).
    const undiciExtras = scripts.filter((u) =>
      /\/undici\/[^/]+\/(index\.js|lib\/(web|mock|cache|interceptor)\/|lib\/api\/(?!abort-signal\.js))/
        .test(u)
    );
    assert.deepEqual(undiciExtras, [], "undici modules the upstream client does not use");
    // Of prom-client, the metric classes and the collectors registered, not its index.
    const promIndex = scripts.filter((u) =>
      /\/prom-client\/[^/]+\/(index\.js|lib\/cluster\.js)/.test(u)
    );
    assert.deepEqual(promIndex, [], "prom-client's index or cluster module loaded");

    // The first control request loads the validation and is judged by it.
    const bad = await fetch(`${s.url}/control/rate`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ rate: -1 }),
    });
    const body = await bad.json() as { error: { code: string; message: string } };
    assert.equal(bad.status, 422);
    assert.equal(body.error.code, "validation_error");
    assert.match(body.error.message, /^Invalid rate: /);
    const ok = await s.json("/control/rate", {
      method: "PUT",
      body: JSON.stringify({ rate: 50, burst: 10 }),
    }) as { ok: boolean; rate: { rate: number } };
    assert.equal(ok.ok, true);
    assert.equal(ok.rate.rate, 50);
    assert.ok(packages(await loadedScripts(`127.0.0.1:${inspect}`)).has("zod"));

    const doc = await (await fetch(`${s.url}/openapi.json`)).json() as { openapi: string };
    assert.match(doc.openapi, /^3\./);

    // The first upgrade loads ws and is served by it: an event arrives.
    const ws = new WebSocket(`${s.url.replace("http", "ws")}/ws/events?severity=info`);
    const first = new Promise<string>((resolve, reject) => {
      ws.addEventListener("message", (m) => resolve(String(m.data)), { once: true });
      ws.addEventListener("error", () => reject(new Error("WebSocket /ws/events failed")));
    });
    const closed = new Promise<void>((resolve) => ws.addEventListener("close", () => resolve()));
    try {
      const event = JSON.parse(await first) as { type: string };
      assert.equal(typeof event.type, "string");
      assert.ok(packages(await loadedScripts(`127.0.0.1:${inspect}`)).has("ws"));
    } finally {
      ws.close();
      await closed;
    }
  });
});
