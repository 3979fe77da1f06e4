/**
 * Issue 6, the HTTP surface end to end on real infrastructure: sluice as a
 * real process on the harness's Kafka and Ceph RGW, a loopback upstream stub.
 *
 * - a real Prometheus (Debian `prometheus`) scrapes `/metrics`; a PromQL
 *   query on `requests_total` through its HTTP API returns a value > 0;
 * - a `/ws/events` client receives `record.completed` with the record's
 *   `trace_id` within 2 s of producing it with kafkajs (delay measured);
 * - control calls without (or with a wrong) token get 401 and change nothing
 *   (`/status` before and after); the right token works;
 * - `/health/ready` answers 503 naming `s3` while RGW is down (once an
 *   upload failed) and naming `kafka` while the broker is down, and 200
 *   again when each is back.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel, type Producer } from "kafkajs";
import {
  freePort,
  infra,
  sleep,
  startKafka,
  startRgw,
  stopKafka,
  stopRgw,
  uniqueName,
  waitFor,
} from "../harness/mod.ts";
import { type SluiceProcess, startSluiceProcess } from "../harness/sluice_process.ts";
import { startUpstreamStub } from "../harness/upstream_stub.ts";

const TOKEN = "e2e-secret-token";

interface WsEvent {
  type: string;
  trace_id?: string;
  data: Record<string, unknown>;
}

const kafka = () =>
  new Kafka({ clientId: "e2e-http", brokers: infra().kafka.brokers, logLevel: logLevel.NOTHING });

function traceparent(): { header: string; traceId: string } {
  const hex = (n: number) =>
    [...crypto.getRandomValues(new Uint8Array(n))].map((b) => b.toString(16).padStart(2, "0"))
      .join("");
  const traceId = hex(16);
  return { header: `00-${traceId}-${hex(8)}-01`, traceId };
}

function envelope(topic: string, i: number): string {
  return JSON.stringify({
    request_id: `req-${i}`,
    idempotency_key: `${topic}-${i}`,
    timestamp: new Date().toISOString(),
    payload: { seq: i },
  });
}

let seq = 0;
async function produce(producer: Producer, topic: string, n: number): Promise<string[]> {
  const traces: string[] = [];
  const messages = [];
  for (let i = 0; i < n; i++) {
    const tp = traceparent();
    traces.push(tp.traceId);
    messages.push({
      key: `k-${seq % 7}`,
      value: envelope(topic, seq++),
      headers: { traceparent: tp.header },
    });
  }
  await producer.send({ topic, messages });
  return traces;
}

async function readyState(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/health/ready`);
  return { status: res.status, body: await res.json() };
}

/** A real Prometheus scraping `target` every second; `query` runs PromQL through its HTTP API. */
async function startPrometheus(target: string) {
  const dir = await Deno.makeTempDir({ prefix: "sluice-prom-" });
  const port = freePort();
  await Deno.writeTextFile(
    `${dir}/prometheus.yml`,
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      "scrape_configs:",
      "  - job_name: sluice",
      "    metrics_path: /metrics",
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "",
    ].join("\n"),
  );
  const log = await Deno.open(`${dir}/prometheus.log`, { write: true, create: true });
  const child = new Deno.Command("/usr/bin/prometheus", {
    args: [
      `--config.file=${dir}/prometheus.yml`,
      `--storage.tsdb.path=${dir}/data`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--log.level=warn",
    ],
    stdout: "null",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const pump = child.stderr.pipeTo(log.writable).catch(() => {});
  const base = `http://127.0.0.1:${port}`;
  return {
    base,
    async query(promql: string): Promise<number | undefined> {
      const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = await res.json();
      if (body.status !== "success") throw new Error(JSON.stringify(body));
      const r = body.data.result as Array<{ value: [number, string] }>;
      return r.length ? Number(r[0].value[1]) : undefined;
    },
    log: () => Deno.readTextFile(`${dir}/prometheus.log`).catch(() => ""),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      const killer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Gone.
        }
      }, 10_000);
      await child.status;
      clearTimeout(killer);
      await pump;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

Deno.test("HTTP end to end on Kafka + RGW: Prometheus scrape, WebSocket delay, auth, readiness through outages", async () => {
  const topic = uniqueName("e2e-http");
  const { kafka: k, s3 } = infra();
  const admin = kafka().admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  await admin.disconnect();

  const stub = startUpstreamStub();
  let proc: SluiceProcess | undefined;
  let prom: Awaited<ReturnType<typeof startPrometheus>> | undefined;
  let producer: Producer | undefined;
  let ws: WebSocket | undefined;
  let kafkaDown = false, rgwDown = false;
  const figures: string[] = [];
  try {
    proc = await startSluiceProcess({
      env: {
        SLUICE_KAFKA_BROKERS: k.brokers.join(","),
        SLUICE_TOPICS: topic,
        SLUICE_GROUP_ID: uniqueName("e2e-group"),
        SLUICE_UPSTREAM_URL: stub.url,
        SLUICE_S3_ENDPOINT: s3.endpoint,
        SLUICE_S3_ACCESS_KEY: s3.accessKey,
        SLUICE_S3_SECRET_KEY: s3.secretKey,
        SLUICE_S3_BUCKET: uniqueName("e2e-audit"),
        SLUICE_AUDIT_BATCH_AGE_MS: "300",
        SLUICE_CONTROL_TOKEN: TOKEN,
      },
    });
    const p = proc;
    prom = await startPrometheus(`127.0.0.1:${p.port}`);
    producer = kafka().producer();
    await producer.connect();

    // ---- WebSocket: record.completed with the produced trace id within 2 s.
    const seen = new Map<string, number>();
    ws = new WebSocket(`${p.url.replace("http", "ws")}/ws/events`);
    const wsClosed = new Promise<void>((r) => ws!.addEventListener("close", () => r()));
    ws.addEventListener("message", (m) => {
      const e = JSON.parse(String(m.data)) as WsEvent;
      if (e.type === "record.completed" && e.trace_id) seen.set(e.trace_id, performance.now());
    });
    await new Promise<void>((resolve, reject) => {
      ws!.addEventListener("open", () => resolve());
      ws!.addEventListener("error", () => reject(new Error("/ws/events did not open")));
    });
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const [trace] = await produce(producer, topic, 1);
      await waitFor(() => seen.has(trace), {
        timeoutMs: 5000,
        intervalMs: 5,
        message: `record.completed for trace ${trace}`,
      });
      delays.push(seen.get(trace)! - t0);
      await sleep(50);
    }
    delays.sort((a, b) => a - b);
    const worst = Math.round(delays.at(-1)!);
    figures.push(
      `WS delay produce → record.completed: median ${Math.round(delays[5])} ms, max ${worst} ms`,
    );
    assert.ok(worst < 2000, `WebSocket delay ${worst} ms (limit 2000)`);
    ws.close();
    await wsClosed;
    ws = undefined;

    // ---- Prometheus: scrapes /metrics; PromQL on requests_total > 0.
    const t0p = performance.now();
    const total = await waitFor(
      async () => {
        const v = await prom!.query('sum(requests_total{job="sluice"})');
        return v !== undefined && v > 0 ? v : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 500, message: "Prometheus to return requests_total > 0" },
    );
    const up = await prom.query('up{job="sluice"}');
    assert.equal(up, 1, "Prometheus scrape target is up");
    const delivered = await prom.query('requests_total{job="sluice",outcome="delivered"}');
    assert.ok(total >= 10 && delivered !== undefined && delivered >= 10, `requests_total ${total}`);
    figures.push(
      `Prometheus: sum(requests_total) = ${total} after ${Math.round(performance.now() - t0p)} ms`,
    );

    // ---- Control without the token: 401, nothing changes.
    const snapshot = async () => {
      const s = await p.json("/status") as Record<string, unknown>;
      return { state: s.state, rate: s.rate, pause_reasons: s.pause_reasons };
    };
    const before = await snapshot();
    const calls: Array<[string, string, string?]> = [
      ["POST", "/control/drain"],
      ["POST", "/control/resume"],
      ["PUT", "/control/rate", '{"rate":1}'],
      ["POST", "/control/shutdown"],
      ["POST", "/control/replay", `{"topic":"${topic}","from":0,"to":1}`],
      ["GET", "/dlq"],
    ];
    for (const auth of [undefined, "Bearer wrong-token", `Basic ${btoa(`x:${TOKEN}`)}`]) {
      for (const [method, path, body] of calls) {
        const headers: Record<string, string> = { "content-type": "application/json" };
        if (auth) headers.authorization = auth;
        const res = await fetch(`${p.url}${path}`, { method, headers, body });
        const text = await res.text();
        assert.equal(res.status, 401, `${method} ${path} (${auth ?? "no auth"}): ${text}`);
        assert.equal(JSON.parse(text).error.code, "unauthorized");
      }
    }
    await sleep(300);
    assert.deepEqual(await snapshot(), before, "state unchanged by refused calls");
    assert.equal((await readyState(p.url)).status, 200, "still running and ready");
    // The right token is accepted (so the refusals above are not a broken route).
    const ok = await fetch(`${p.url}/control/rate`, {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ rate: 777 }),
    });
    assert.equal(ok.status, 200, await ok.text());
    assert.deepEqual((await snapshot()).rate, { ...before.rate as object, rate: 777 });

    // ---- RGW down: ready → 503 naming s3 once an upload fails; back to 200.
    await stopRgw();
    rgwDown = true;
    let t = performance.now();
    const feed = setInterval(() => produce(producer!, topic, 3).catch(() => {}), 200);
    try {
      const down = await waitFor(async () => {
        const r = await readyState(p.url);
        return r.status === 503 ? r : undefined;
      }, { timeoutMs: 20_000, intervalMs: 100, message: "/health/ready 503 with RGW stopped" });
      assert.deepEqual(down.body.not_ready, ["s3"], JSON.stringify(down.body));
      assert.match(String((down.body.error as { message: string }).message), /s3/);
      figures.push(`RGW stopped → ready 503 (s3) after ${Math.round(performance.now() - t)} ms`);
      await startRgw();
      rgwDown = false;
      t = performance.now();
      await waitFor(async () => (await readyState(p.url)).status === 200, {
        timeoutMs: 45_000,
        intervalMs: 200,
        message: "/health/ready 200 after RGW is back",
      });
      figures.push(`RGW started → ready 200 after ${Math.round(performance.now() - t)} ms`);
    } finally {
      clearInterval(feed);
    }

    // ---- Kafka down: ready → 503 naming kafka; back to 200.
    await producer.disconnect();
    producer = undefined;
    await stopKafka();
    kafkaDown = true;
    t = performance.now();
    const kDown = await waitFor(async () => {
      const r = await readyState(p.url);
      return r.status === 503 && (r.body.not_ready as string[]).includes("kafka") ? r : undefined;
    }, { timeoutMs: 30_000, intervalMs: 100, message: "/health/ready 503 naming kafka" });
    assert.match(String((kDown.body.error as { message: string }).message), /kafka/);
    figures.push(
      `Kafka stopped → ready 503 (${(kDown.body.not_ready as string[]).join(", ")}) after ${
        Math.round(performance.now() - t)
      } ms`,
    );
    await startKafka();
    kafkaDown = false;
    t = performance.now();
    await waitFor(async () => (await readyState(p.url)).status === 200, {
      timeoutMs: 60_000,
      intervalMs: 200,
      message: "/health/ready 200 after Kafka is back",
    });
    figures.push(`Kafka started → ready 200 after ${Math.round(performance.now() - t)} ms`);

    // Still processing after both outages.
    producer = kafka().producer();
    await producer.connect();
    const n0 = await p.metric("requests_total");
    await produce(producer, topic, 5);
    await waitFor(async () => (await p.metric("requests_total")) >= n0 + 5, {
      timeoutMs: 20_000,
      message: "records processed after the outages",
    });
    console.log(figures.join("\n"));
  } catch (e) {
    console.log(figures.join("\n"));
    if (proc) console.error(`--- sluice output ---\n${proc.output().slice(-8000)}`);
    if (prom) console.error(`--- prometheus log ---\n${(await prom.log()).slice(-3000)}`);
    throw e;
  } finally {
    ws?.close();
    await producer?.disconnect().catch(() => {});
    if (rgwDown) await startRgw().catch((e) => console.error(`RGW restart failed: ${e}`));
    if (kafkaDown) await startKafka().catch((e) => console.error(`Kafka restart failed: ${e}`));
    await prom?.stop();
    if (proc) {
      const killer = setTimeout(() => proc!.stop("SIGKILL"), 30_000);
      await proc.stop("SIGTERM");
      clearTimeout(killer);
    }
    await stub.stop();
  }
});
