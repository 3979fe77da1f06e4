/**
 * `/ws/events`: per-client bounded buffers (drop-oldest, drop notice,
 * counted), filters, heartbeat, and real sockets: a client receives a
 * published record event; a client that never reads gets a drop notice
 * while publishing stays fast.
 */
import assert from "node:assert/strict";
import { publishEvent, type SluiceEvent } from "../../actors/runtime/events.ts";
import { wsClients, wsDroppedEventsTotal } from "../../actors/runtime/metrics.ts";
import { createApp } from "../../http/app.ts";
import { Ring } from "../../http/ring.ts";
import { serveApp, textFrame } from "../../http/server.ts";
import { fakeDeps } from "../../http/testing.ts";
import { BoundedSender, FlushLoop, type SocketLike } from "../../http/ws_client.ts";
import { WsHub } from "../../http/ws_hub.ts";
import { waitFor as harnessWaitFor } from "../harness/procs.ts";

/** Polls `pred` every 5 ms until true; fails after `ms` (the harness's `waitFor`). */
async function waitFor(pred: () => boolean | Promise<boolean>, ms = 5000, what = "condition") {
  await harnessWaitFor(pred, { timeoutMs: ms, intervalMs: 5, message: what });
}

async function metricValue(m: { get(): Promise<{ values: Array<{ value: number }> }> }) {
  return (await m.get()).values[0]?.value ?? 0;
}

class FakeSocket implements SocketLike {
  readyState = 1;
  bufferedAmount = 0;
  sent: string[] = [];
  #onClose: Array<() => void> = [];
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    for (const l of this.#onClose) l();
  }
  addEventListener(_type: "close", listener: () => void) {
    this.#onClose.push(listener);
  }
  events(): SluiceEvent[] {
    return this.sent.map((s) => JSON.parse(s));
  }
}

Deno.test("Ring drops the oldest item when full", () => {
  const r = new Ring<number>(3);
  assert.equal(r.push(1), false);
  r.push(2);
  r.push(3);
  assert.equal(r.push(4), true);
  assert.deepEqual(r.toArray(), [2, 3, 4]);
  assert.equal(r.shift(), 2);
  r.push(5);
  assert.deepEqual(r.toArray(), [3, 4, 5]);
  assert.throws(() => new Ring(0), RangeError);
});

Deno.test("FlushLoop: one timer writes many clients, each turn's messages in one corked write", async () => {
  // 10 clients, an event every 2 ms for ~100 ms: with a timer per client each event was its own
  // write (about 50 per client); the shared loop batches them into a turn per 20 ms.
  const loop = new FlushLoop(20);
  const sockets = Array.from({ length: 10 }, () => {
    const s = new FakeSocket() as FakeSocket & { corks: number; cork(): void; uncork(): void };
    s.corks = 0;
    s.cork = () => s.corks++;
    s.uncork = () => {};
    return s;
  });
  const senders = sockets.map((s) =>
    new BoundedSender<number>(s, String, { dropNotice: String, loop })
  );
  for (let i = 0; i < 50; i++) {
    for (const x of senders) x.push(i);
    await new Promise((r) => setTimeout(r, 2));
  }
  await waitFor(() => sockets.every((s) => s.sent.length === 50), 2000, "every message written");
  const expected = Array.from({ length: 50 }, (_, i) => String(i));
  for (const s of sockets) {
    assert.deepEqual(s.sent, expected);
    assert.ok(s.corks <= 12, `${s.corks} writes for 50 messages over ~100 ms`);
  }
  assert.equal(loop.active, 0, "an idle loop holds no sender (and no timer)");
  // A backed-up client keeps the loop polling; closing it lets the loop stop.
  sockets[0].bufferedAmount = 1e9;
  senders[0].push(99);
  assert.equal(loop.active, 1);
  for (const x of senders) x.close();
  assert.equal(loop.active, 0);
});

Deno.test("WsHub: a client that never reads drops oldest, counts, then gets a drop notice", async () => {
  const hub = new WsHub({ bufferSize: 10, maxBufferedBytes: 1000 });
  const slow = new FakeSocket();
  slow.bufferedAmount = 10_000; // the client reads nothing: the socket stays backed up
  hub.attach(slow);
  try {
    const droppedBefore = await metricValue(wsDroppedEventsTotal);
    const t0 = performance.now();
    for (let i = 0; i < 5000; i++) {
      publishEvent("record.completed", "info", { i }, { trace_id: `t${i}` });
    }
    const elapsed = performance.now() - t0;
    assert.ok(elapsed < 1000, `5000 publishes took ${elapsed} ms`);
    assert.equal(slow.sent.length, 0, "nothing is written synchronously");
    assert.equal(await metricValue(wsDroppedEventsTotal) - droppedBefore, 4990);
    await new Promise((r) => setTimeout(r, 120)); // a few turns of the hub's loop
    assert.equal(slow.sent.length, 0, "nothing is written while the socket is backed up");

    slow.bufferedAmount = 0; // the client starts reading
    await waitFor(() => slow.sent.length === 11, 5000, "drop notice and the last 10 events");
    const [notice, ...rest] = slow.events();
    assert.equal(notice.type, "system.ws.drop_notice");
    assert.equal(notice.data.dropped, 4990);
    assert.deepEqual(rest.map((e) => e.data.i), Array.from({ length: 10 }, (_, k) => 4990 + k));
  } finally {
    hub.close();
  }
});

Deno.test("WsHub: a reading client gets every event in order, with trace_id", async () => {
  const hub = new WsHub({ bufferSize: 10 });
  const s = new FakeSocket();
  hub.attach(s);
  try {
    for (let i = 0; i < 25; i++) {
      publishEvent("record.completed", "info", { i }, { trace_id: `t${i}`, topic: "orders" });
      if (i % 5 === 4) await waitFor(() => s.sent.length === i + 1);
    }
    assert.deepEqual(
      s.events().map((e) => e.trace_id),
      Array.from({ length: 25 }, (_, i) => `t${i}`),
    );
  } finally {
    hub.close();
  }
});

Deno.test("WsHub filters by minimum severity and topic; topic-less events pass", async () => {
  const hub = new WsHub();
  const warn = new FakeSocket();
  const orders = new FakeSocket();
  hub.attach(warn, { minSeverity: "warn" });
  hub.attach(orders, { topic: "orders" });
  try {
    publishEvent("record.completed", "info", {}, { topic: "orders", trace_id: "a" });
    publishEvent("record.dead_lettered", "warn", {}, { topic: "payments", trace_id: "b" });
    publishEvent("circuit.changed", "error", { to: "open" });
    publishEvent("record.completed", "debug", {}, { topic: "payments", trace_id: "c" });
    await waitFor(() => warn.sent.length === 2 && orders.sent.length === 2);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(warn.events().map((e) => e.type), ["record.dead_lettered", "circuit.changed"]);
    assert.deepEqual(orders.events().map((e) => e.trace_id ?? e.type), ["a", "circuit.changed"]);
  } finally {
    hub.close();
  }
});

Deno.test("WsHub sends a heartbeat every heartbeatMs, whatever the filters", async () => {
  const hub = new WsHub({ heartbeatMs: 20 });
  const s = new FakeSocket();
  hub.attach(s, { minSeverity: "error", topic: "x" });
  try {
    await waitFor(() => s.sent.length >= 2, 5000, "two heartbeats");
    assert.ok(s.events().every((e) => e.type === "system.heartbeat"));
    assert.equal(s.events()[0].data.clients, 1);
  } finally {
    hub.close();
  }
  assert.equal(hub.size, 0);
});

Deno.test("WsHub counts clients and forgets a client whose socket closes", async () => {
  const hub = new WsHub({ maxClients: 2 });
  const before = await metricValue(wsClients);
  const a = new FakeSocket();
  const b = new FakeSocket();
  hub.attach(a);
  hub.attach(b);
  assert.equal(await metricValue(wsClients), before + 2);
  assert.equal(hub.hasRoom, false);
  a.close();
  assert.equal(hub.size, 1);
  assert.equal(await metricValue(wsClients), before + 1);
  publishEvent("audit.flushed", "info", { n: 1 });
  await waitFor(() => b.sent.length === 1);
  assert.equal(a.sent.length, 0);
  hub.close();
  assert.equal(b.readyState, 3);
  assert.equal(await metricValue(wsClients), before);
});

// ---- real sockets ---------------------------------------------------------

async function serve(hub = new WsHub()) {
  const { deps } = fakeDeps({ hub });
  const app = createApp(deps);
  const server = await serveApp(app, { port: 0 });
  return { server, hub, [Symbol.asyncDispose]: () => server.shutdown() };
}

function openSocket(
  url: string,
): Promise<{ ws: WebSocket; messages: SluiceEvent[]; closed: Promise<void> }> {
  const ws = new WebSocket(url);
  const messages: SluiceEvent[] = [];
  const closed = new Promise<void>((r) => ws.addEventListener("close", () => r()));
  ws.addEventListener("message", (e) => messages.push(JSON.parse(e.data)));
  return new Promise((resolve, reject) => {
    ws.addEventListener("open", () => resolve({ ws, messages, closed }));
    ws.addEventListener("error", () => reject(new Error(`WebSocket error: ${url}`)));
  });
}

Deno.test("textFrame is byte for byte ws's own framing of a server text message, at every length class", async () => {
  // ws's Sender.frame is not in its type declarations; reached at run time.
  const { Sender } = (await import("ws")) as unknown as {
    Sender: { frame(data: Uint8Array, o: Record<string, unknown>): Uint8Array[] };
  };
  for (const n of [0, 1, 125, 126, 300, 65_535, 65_536, 200_000]) {
    const payload = new Uint8Array(n).map((_, i) => 32 + (i % 90));
    const theirs = Sender.frame(payload, {
      fin: true,
      opcode: 1,
      mask: false,
      readOnly: false,
      rsv1: false,
    });
    const expected = new Uint8Array(Buffer.concat(theirs));
    assert.deepEqual(new Uint8Array(textFrame(payload)), expected, `payload of ${n} bytes`);
  }
});

Deno.test("/ws/events over a real socket: one turn's messages (small and 70 KB) arrive whole and in order", async () => {
  await using t = await serve();
  const { ws, messages, closed } = await openSocket(`ws://127.0.0.1:${t.server.port}/ws/events`);
  try {
    await waitFor(() => t.hub.size === 1);
    const big = "x".repeat(70_000);
    for (let i = 0; i < 20; i++) {
      publishEvent("record.completed", "info", { i, pad: i === 7 ? big : "" }, { topic: "t" });
    }
    await waitFor(() => messages.filter((m) => m.type === "record.completed").length === 20);
    const got = messages.filter((m) => m.type === "record.completed");
    assert.deepEqual(got.map((m) => (m.data as { i: number }).i), [...Array(20).keys()]);
    assert.equal((got[7].data as { pad: string }).pad.length, 70_000);
  } finally {
    ws.close();
    await closed;
  }
});

Deno.test("/ws/events over a real socket delivers a published record.completed with trace_id", async () => {
  await using t = await serve();
  const { ws, messages, closed } = await openSocket(
    `ws://127.0.0.1:${t.server.port}/ws/events?severity=info&topic=orders`,
  );
  try {
    await waitFor(() => t.hub.size === 1);
    publishEvent("record.completed", "debug", { dropped_by_filter: true }, { topic: "orders" });
    publishEvent("record.completed", "info", { other: true }, {
      topic: "payments",
      trace_id: "no",
    });
    publishEvent("record.completed", "info", { outcome: "delivered" }, {
      topic: "orders",
      partition: 0,
      trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
    });
    await waitFor(() => messages.length >= 1, 5000, "record.completed");
    assert.equal(messages[0].type, "record.completed");
    assert.equal(messages[0].trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert.deepEqual(messages[0].data, { outcome: "delivered" });
  } finally {
    ws.close();
    await closed;
  }
  await waitFor(() => t.hub.size === 0, 5000, "hub forgets the closed client");
});

// A client that never reads: a raw TCP connection that does the WebSocket
// handshake and then reads nothing, so the server's socket backs up.
async function rawWebSocket(port: number, path: string) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const request = [
    `GET ${path} HTTP/1.1`,
    `Host: 127.0.0.1:${port}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    "",
    "",
  ].join("\r\n");
  await conn.write(new TextEncoder().encode(request));
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(64 * 1024);
  const append = (n: number) => {
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
  };
  for (;;) {
    const n = await conn.read(chunk);
    if (n === null) throw new Error("closed during handshake");
    append(n);
    const text = new TextDecoder().decode(buf);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      assert.match(text, /^HTTP\/1\.1 101/);
      buf = buf.slice(end + 4);
      break;
    }
  }
  /** Reads text frames until `stop` returns true for one; returns how many were read. */
  async function readUntil(stop: (text: string) => boolean): Promise<number> {
    let frames = 0;
    for (;;) {
      while (buf.length >= 2) {
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) break;
          len = (buf[2] << 8) | buf[3];
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) break;
          len = Number(new DataView(buf.buffer, buf.byteOffset + 2, 8).getBigUint64(0));
          off = 10;
        }
        if (buf.length < off + len) break;
        const opcode = buf[0] & 0x0f;
        const payload = new TextDecoder().decode(buf.subarray(off, off + len));
        buf = buf.slice(off + len);
        frames++;
        if (opcode === 1 && stop(payload)) return frames;
        if (opcode === 8) throw new Error("server closed the socket");
      }
      const n = await conn.read(chunk);
      if (n === null) throw new Error("connection closed");
      append(n);
    }
  }
  return { conn, readUntil };
}

Deno.test("/ws/events: a client that never reads gets a drop notice; publishing stays fast", async () => {
  await using t = await serve(new WsHub({ bufferSize: 100, maxBufferedBytes: 64 * 1024 }));
  const raw = await rawWebSocket(t.server.port, "/ws/events");
  try {
    await waitFor(() => t.hub.size === 1);
    const before = await metricValue(wsDroppedEventsTotal);
    const pad = "x".repeat(1000);
    let published = 0;
    let publishMs = 0;
    // Batches smaller than the client's buffer, with a turn of the event
    // loop between them: events are dropped only once the socket is backed
    // up (the client reads nothing). Bounded: 200k events at most.
    while ((await metricValue(wsDroppedEventsTotal)) - before < 1000 && published < 200_000) {
      const t0 = performance.now();
      for (let i = 0; i < 50; i++) {
        publishEvent("record.completed", "info", { n: published++, pad }, { trace_id: "t" });
      }
      publishMs += performance.now() - t0;
      await new Promise((r) => setTimeout(r, 1));
    }
    const dropped = (await metricValue(wsDroppedEventsTotal)) - before;
    assert.ok(dropped >= 1000, `dropped ${dropped} of ${published}`);
    assert.ok(published > 164, `drops began after ${published} events: the socket took some`);
    const perPublishUs = (publishMs * 1000) / published;
    assert.ok(perPublishUs < 100, `publishEvent took ${perPublishUs} µs on average`);

    // Now read: the backlog drains and a drop notice arrives, saying how many.
    let notice: SluiceEvent | undefined;
    await raw.readUntil((text) => {
      const e = JSON.parse(text) as SluiceEvent;
      if (e.type === "system.ws.drop_notice") notice = e;
      return notice !== undefined;
    });
    assert.ok((notice!.data.dropped as number) > 0);
  } finally {
    raw.conn.close();
  }
  await waitFor(() => t.hub.size === 0, 5000, "hub forgets the gone client");
});

Deno.test("serveApp shutdown closes open WebSocket clients and returns", async () => {
  const t = await serve();
  const { ws, closed } = await openSocket(`ws://127.0.0.1:${t.server.port}/ws/events`);
  await waitFor(() => t.hub.size === 1);
  const code = new Promise<number>((r) => ws.addEventListener("close", (e) => r(e.code)));
  await t.server.shutdown();
  await closed;
  assert.equal(await code, 1001);
  assert.equal(t.hub.size, 0);
  await t.server.shutdown(); // idempotent
});
