/**
 * The replay driver and the dead-letter replay on the real parts: Kafka from
 * the runner, audit on its Ceph RGW, sluice as a real process, a loopback
 * upstream stub. Records are produced with explicit timestamps so that every
 * window is exact.
 *
 * One sluice process serves every step (starting one costs seconds):
 *  1. 30 records dead-lettered live (stub answers 400), then 30 delivered live;
 *  2. a window across both halves delivers exactly the dead-lettered ones in it
 *     and skips the delivered ones; the same window again delivers nothing; the
 *     live group's committed offsets do not move;
 *  3. dead letters: list (filter, cursor), replay one after the upstream
 *     recovered (delivered once), again (already_delivered), unknown id (404),
 *     bulk replay of the rest;
 *  4. rate: 1,200 records at 100/s measured from upstream arrival times, with
 *     `replay.progress` events over the WebSocket at most once a second;
 *  5. cancel midway: stops within 1 s with partial counts; 409 while running;
 *  6. the CLI: progress and exit 0; bad requests exit non-zero with a message;
 *     Ctrl-C cancels and exits 130; `dlq list`, `dlq replay --id`;
 *  7. the audit trail on RGW holds one `replay.*` event per replayed record.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import { infra, uniqueName, waitFor } from "../harness/mod.ts";
import { startUpstreamStub } from "../harness/upstream_stub.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import { readAllAuditEvents, rgwStore } from "../harness/ledger.ts";
import { sluiceEnv } from "../harness/kafka_fixture.ts";
import type { AuditEvent } from "../../actors/audit/event.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

const kafka = () =>
  new Kafka({
    clientId: "replay-test",
    brokers: infra().kafka.brokers,
    logLevel: logLevel.NOTHING,
  });

async function createTopics(...topics: string[]): Promise<void> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: topics.map((topic) => ({ topic, numPartitions: 3 })),
      waitForLeaders: true,
    });
  } finally {
    await admin.disconnect();
  }
}

/**
 * Produces records `first..first+count-1` with timestamp `base + i * stepMs`,
 * partition `i % 3`, key `key-<i % keys>`.
 */
async function produce(
  topic: string,
  first: number,
  count: number,
  base: number,
  stepMs: number,
  keys = 7,
): Promise<void> {
  const producer = kafka().producer();
  await producer.connect();
  try {
    for (let i = first; i < first + count; i += 500) {
      const messages = [];
      for (let j = i; j < Math.min(first + count, i + 500); j++) {
        messages.push({
          key: `key-${j % keys}`,
          partition: j % 3,
          timestamp: String(base + (j - first) * stepMs),
          value: JSON.stringify({
            request_id: `req-${j}`,
            idempotency_key: `${topic}-${j}`,
            timestamp: new Date(base + (j - first) * stepMs).toISOString(),
            payload: { seq: j },
          }),
        });
      }
      await producer.send({ topic, messages });
    }
  } finally {
    await producer.disconnect();
  }
}

async function committed(group: string, topic: string): Promise<Record<number, string>> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    const r = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return Object.fromEntries(r[0].partitions.map((p) => [p.partition, p.offset]));
  } finally {
    await admin.disconnect();
  }
}

async function highWatermarks(topic: string): Promise<Record<number, string>> {
  const admin = kafka().admin();
  await admin.connect();
  try {
    return Object.fromEntries(
      (await admin.fetchTopicOffsets(topic)).map((o) => [o.partition, o.high]),
    );
  } finally {
    await admin.disconnect();
  }
}

interface Progress {
  id: string;
  state: string;
  total: number | null;
  scanned: number;
  delivered: number;
  skipped_duplicate: number;
  dead_lettered: number;
  elapsed_s: number;
}

async function call(
  url: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: method === "GET" ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

async function runCli(
  args: string[],
  url: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, ...args],
    env: { SLUICE_URL: url },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

const iso = (ms: number) => new Date(ms).toISOString();

Deno.test("replay driver and dead-letter replay on Kafka and RGW", async (t) => {
  const topic = uniqueName("rp-live");
  const side = uniqueName("rp-side");
  const group = uniqueName("rp-group");
  const bucket = uniqueName("rp-audit");
  // Whole seconds, 30 min ago: windows in the past, well within retention.
  const base = Math.floor((Date.now() - 30 * 60_000) / 1000) * 1000;
  await createTopics(topic, side);
  const stub = startUpstreamStub({ status: 400 });
  /** Requests the stub received for records `lo..hi-1` of `t`. */
  const received = (t: string, lo: number, hi: number) =>
    stub.requests.filter((r) => {
      if (!r.idempotencyKey?.startsWith(`${t}-`)) return false;
      const seq = Number(r.idempotencyKey.slice(t.length + 1));
      return seq >= lo && seq < hi;
    });
  try {
    const sluice = await startSluiceProcess({
      env: sluiceEnv(topic, group, bucket, stub, { SLUICE_AUDIT_BATCH_AGE_MS: "500" }),
    });
    const url = sluice.url;
    const until = async (id: string, timeoutMs = 30_000): Promise<Progress> => {
      let p: Progress | undefined;
      await waitFor(async () => {
        p = (await call(url, "GET", `/control/replay/${id}`)).json as unknown as Progress;
        return ["done", "cancelled", "failed"].includes(p.state);
      }, { timeoutMs, intervalMs: 100, message: `replay ${id} to finish` });
      return p!;
    };
    const start = async (body: Record<string, unknown>) => {
      const r = await call(url, "POST", "/control/replay", body);
      assert.equal(r.status, 202, JSON.stringify(r.json));
      return r.json.id as string;
    };
    let offsetsBefore: Record<number, string> = {};

    await withSluice(sluice, async () => {
      await t.step("live: 30 dead-lettered (400), then 30 delivered", async () => {
        await produce(topic, 0, 30, base, 1000);
        await waitFor(async () => (await sluice.metric("kafka_dlq_messages_total")) === 30, {
          timeoutMs: 30_000,
          message: "30 dead letters",
        });
        stub.set({ status: 200 });
        await produce(topic, 30, 30, base + 30_000, 1000);
        await waitFor(() => stub.delivered.size === 30, { timeoutMs: 30_000, message: "30 live" });
        const high = await highWatermarks(topic);
        await waitFor(async () => {
          const c = await committed(group, topic);
          return Object.entries(high).every(([p, h]) => c[Number(p)] === h);
        }, { timeoutMs: 30_000, message: "live offsets committed" });
        offsetsBefore = await committed(group, topic);
      });

      await t.step("window: exactly the window minus delivered keys; again: nothing", async () => {
        const body = { topic, from: iso(base + 20_000), to: iso(base + 40_000), rate: 200 };
        const p = await until(await start(body));
        assert.equal(p.state, "done");
        assert.equal(p.total, 20);
        assert.equal(p.scanned, 20);
        assert.equal(p.delivered, 10, "records 20..29 were dead-lettered live");
        assert.equal(p.skipped_duplicate, 10, "records 30..39 were delivered live");
        for (let i = 0; i < 60; i++) {
          const n = stub.delivered.get(`${topic}-${i}`) ?? 0;
          assert.equal(n, i < 20 ? 0 : 1, `record ${i} delivered ${n} times`);
        }
        const q = await until(await start(body));
        assert.deepEqual([q.state, q.delivered, q.skipped_duplicate], ["done", 0, 20]);
        assert.equal(stub.delivered.size, 40);
        assert.deepEqual(await committed(group, topic), offsetsBefore, "live offsets unchanged");
      });

      let idOf: (seq: number) => string = () => "";
      await t.step("dead letters: list, replay once, again is a no-op, 404, bulk", async () => {
        const page = (await call(url, "GET", `/dlq?topic=${topic}&limit=1000`)).json as {
          items: Array<{ id: string; original_payload: string; failure_reason: string }>;
        };
        assert.equal(page.items.length, 30);
        assert.ok(page.items.every((d) => d.failure_reason === "PROCESSING_ERROR"));
        const bySeq = new Map(
          page.items.map((d) => [JSON.parse(d.original_payload).payload.seq, d.id]),
        );
        idOf = (seq) => bySeq.get(seq)!;
        const p1 = (await call(url, "GET", `/dlq?topic=${topic}&limit=20`)).json;
        const p2 = (await call(url, "GET", `/dlq?topic=${topic}&limit=20&cursor=${p1.next_cursor}`))
          .json as { items: unknown[]; next_cursor?: string };
        assert.equal(p2.items.length, 10);
        assert.equal(p2.next_cursor, undefined);
        const none = await call(url, "GET", `/dlq?topic=${topic}&reason=TIMEOUT_ERROR`);
        assert.deepEqual(none.json.items, []);

        const first = await call(url, "POST", `/dlq/${idOf(5)}/replay`);
        assert.equal(first.json.status, "delivered", JSON.stringify(first.json));
        assert.equal(stub.delivered.get(`${topic}-5`), 1);
        const again = await call(url, "POST", `/dlq/${idOf(5)}/replay`);
        assert.equal(again.json.status, "already_delivered");
        assert.equal(stub.delivered.get(`${topic}-5`), 1, "not sent again");
        const byWindow = await call(url, "POST", `/dlq/${idOf(25)}/replay`);
        assert.equal(byWindow.json.status, "already_delivered", "delivered by the window replay");
        const unknown = await call(url, "POST", `/dlq/${topic}:0:999999/replay`);
        assert.equal(unknown.status, 404);

        const bulk = await call(url, "POST", "/dlq/replay", {
          topic,
          reason: "PROCESSING_ERROR",
          rate: 200,
        });
        assert.equal(bulk.status, 202);
        const p = await until(bulk.json.id as string);
        assert.deepEqual([p.state, p.total, p.delivered, p.skipped_duplicate], [
          "done",
          30,
          19,
          11,
        ]);
        for (let i = 0; i < 60; i++) assert.equal(stub.delivered.get(`${topic}-${i}`), 1, `${i}`);
      });

      await t.step("rate: 1,200 records at 100/s within ±10%, progress events ≤ 1/s", async () => {
        const b = base + 100_000;
        // 100 keys: records of one key never overlap, so the key count bounds the concurrency.
        await produce(side, 0, 1200, b, 10, 100);
        const events: { at: number; state: string }[] = [];
        const ws = new WebSocket(`${url.replace("http", "ws")}/ws/events`);
        const closed = new Promise((r) => (ws.onclose = r));
        await new Promise((r, j) => {
          ws.onopen = r;
          ws.onerror = j;
        });
        ws.onmessage = (m) => {
          const e = JSON.parse(m.data);
          if (e.type === "replay.progress") events.push({ at: Date.now(), state: e.data.state });
        };
        try {
          const id = await start({ topic: side, from: iso(b), to: iso(b + 12_000), rate: 100 });
          const p = await until(id, 40_000);
          assert.deepEqual([p.state, p.total, p.delivered], ["done", 1200, 1200]);
          const at = received(side, 0, 1200).map((r) => r.at).sort((x, y) => x - y);
          assert.equal(at.length, 1200);
          const rate = (at.length - 1) / ((at[at.length - 1] - at[0]) / 1000);
          console.log(
            `measured replay rate ${rate.toFixed(1)}/s over ${
              (at[at.length - 1] - at[0]) / 1000
            } s`,
          );
          assert.ok(rate >= 90 && rate <= 110, `rate ${rate.toFixed(1)} within 100 ± 10%`);
          await waitFor(() => events.some((e) => e.state === "done"), {
            timeoutMs: 5000,
            message: "the done event",
          });
          const running = events.filter((e) => e.state === "running");
          const span = (running[running.length - 1].at - running[0].at) / 1000;
          assert.ok(running.length >= 8, `progress events while running: ${running.length}`);
          assert.ok(
            running.length <= Math.ceil(span) + 2,
            `${running.length} running events over ${span.toFixed(1)} s`,
          );
        } finally {
          ws.close();
          await closed;
        }
      });

      await t.step(
        "cancel midway stops within 1 s with partial counts; 409 meanwhile",
        async () => {
          const b = base + 200_000;
          await produce(side, 10_000, 400, b, 10);
          const id = await start({ topic: side, from: iso(b), to: iso(b + 4000), rate: 50 });
          const conflict = await call(url, "POST", "/control/replay", {
            topic: side,
            from: iso(b),
            to: iso(b + 4000),
          });
          assert.equal(conflict.status, 409);
          assert.match(
            String((conflict.json.error as { message: string }).message),
            new RegExp(id),
          );
          await waitFor(() => received(side, 10_000, 10_400).length >= 25, {
            timeoutMs: 10_000,
            message: "25 records of the cancelled replay",
          });
          const t0 = Date.now();
          const res = await call(url, "DELETE", `/control/replay/${id}`);
          const ms = Date.now() - t0;
          const p = res.json as unknown as Progress;
          assert.equal(p.state, "cancelled");
          assert.ok(ms < 1000, `cancel answered in ${ms} ms`);
          assert.ok(p.delivered >= 20 && p.delivered < 400, `partial: ${p.delivered}`);
          await new Promise((r) => setTimeout(r, 1500));
          const sent = received(side, 10_000, 10_400);
          assert.equal(sent.filter((r) => r.at > t0 + 1000).length, 0, "nothing sent 1 s after");
          assert.equal(sent.length, p.delivered, "every record sent was finished and counted");
        },
      );

      await t.step(
        "CLI: progress and exit 0; bad requests fail with a message; Ctrl-C cancels",
        async () => {
          const b = base + 300_000;
          await produce(side, 20_000, 150, b, 10);
          const ok = await runCli([
            "replay",
            "--topic",
            side,
            "--from",
            iso(b),
            "--to",
            iso(b + 1500),
            "--rate",
            "100",
          ], url);
          assert.equal(ok.code, 0, ok.stderr);
          assert.match(ok.stderr, /running \[#*\.*\] +\d+% \d+\/150/);
          assert.match(ok.stderr, /done \[#{24}\] 100% 150\/150/);
          assert.match(ok.stdout, /done: 150 scanned, 150 delivered, 0 skipped/);

          const backwards = await runCli(
            ["replay", "--topic", side, "--from", "now", "--to", "now-1h"],
            url,
          );
          assert.equal(backwards.code, 1);
          assert.match(backwards.stderr, /422 validation_error Invalid from: must be before to/);
          const unknown = await runCli(
            ["replay", "--topic", "no-such-topic", "--from", "now-1h", "--to", "now"],
            url,
          );
          assert.equal(unknown.code, 1);
          assert.match(unknown.stderr, /404 unknown_topic Unknown topic: no-such-topic/);
          const badTime = await runCli(
            ["replay", "--topic", side, "--from", "soon", "--to", "now"],
            url,
          );
          assert.equal(badTime.code, 2);
          assert.match(badTime.stderr, /--from: cannot read "soon" as a time/);

          const list = await runCli(["dlq", "list", "--topic", topic, "--json"], url);
          assert.equal(list.code, 0, list.stderr);
          assert.equal(JSON.parse(list.stdout).items.length, 30);
          const table = await runCli(["dlq", "list", "--topic", topic, "--limit", "2"], url);
          assert.match(table.stdout, /PROCESSING_ERROR/);
          assert.match(table.stdout, /more: sluice dlq list --cursor /);
          const one = await runCli(["dlq", "replay", "--id", idOf(7)], url);
          assert.equal(one.code, 0, one.stderr);
          assert.match(one.stdout, /already delivered; nothing sent/);

          // Ctrl-C: the replay is cancelled, the CLI exits 130.
          const b2 = base + 400_000;
          await produce(side, 30_000, 300, b2, 10);
          const child = new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "--allow-all",
              MAIN,
              "replay",
              "--topic",
              side,
              "--from",
              iso(b2),
              "--to",
              iso(b2 + 3000),
              "--rate",
              "20",
            ],
            env: { SLUICE_URL: url },
            stdout: "piped",
            stderr: "piped",
            stdin: "null",
          }).spawn();
          let err = "";
          const reader = (async () => {
            for await (const c of child.stderr.pipeThrough(new TextDecoderStream())) err += c;
          })();
          const stdout = new Response(child.stdout).text();
          await waitFor(() => /running \[/.test(err), {
            timeoutMs: 15_000,
            message: "CLI progress",
          });
          child.kill("SIGINT");
          const status = await child.status;
          await reader;
          const out = await stdout;
          assert.equal(status.code, 130, err);
          assert.match(err, /interrupted: cancelling/);
          assert.match(out, /cancelled: \d+ scanned/);
          const id = /replay (\S+) started/.exec(err)![1];
          assert.equal((await call(url, "GET", `/control/replay/${id}`)).json.state, "cancelled");
          assert.deepEqual(await committed(group, topic), offsetsBefore, "live offsets unchanged");
        },
      );
    });
    const exit = (await sluice.status).code;
    if (exit !== 0) console.error(`--- sluice output ---\n${sluice.output().slice(-8000)}`);
    assert.equal(exit, 0, "graceful exit");

    await t.step("audit: one replay event per replayed record of the live topic", async () => {
      const store = rgwStore(bucket);
      try {
        let events: AuditEvent[] = [];
        await waitFor(async () => {
          events = (await readAllAuditEvents(store)).filter((e) => e.topic === topic && e.replay);
          return events.length >= 74;
        }, { timeoutMs: 20_000, message: "74 replay audit events" });
        const count = (source: string, outcome: string) =>
          events.filter((e) => e.replay!.source === source && e.result.outcome === outcome).length;
        assert.equal(count("window", "delivered"), 10);
        assert.equal(count("window", "skipped_duplicate"), 30);
        assert.equal(count("dlq", "delivered"), 20);
        // 3 by id (again, one delivered by the window, one from the CLI) + 11 in the bulk replay.
        assert.equal(count("dlq", "skipped_duplicate"), 14);
        assert.equal(events.length, 74);
      } finally {
        store.close();
      }
    });
  } finally {
    await stub.stop();
  }
});
