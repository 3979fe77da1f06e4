/**
 * Serves the app on `node:http` (Deno's Node compatibility), with the limits
 * `Deno.serve` does not offer. Port 0 picks a free port (tests).
 *
 * Why not `Deno.serve`: it has no header or body read timeout (a client that
 * trickles its headers holds a connection for ever, before any route or auth
 * runs) and its WebSocket upgrade buffers client frames up to 64 MiB with no
 * way to lower that. Here:
 *
 *  - **headers** must arrive within `headersTimeoutMs` (default 10 s) and the
 *    whole request, body included, within `requestTimeoutMs` (default 30 s),
 *    else the server answers 408 and closes; idle keep-alive connections
 *    close after 5 s; request headers are capped at 16 KiB (431);
 *  - **WebSocket** upgrades go through the app's route (which checks
 *    `Origin`, filters and room) and are then accepted by `ws` with a
 *    `maxWsPayloadBytes` cap (default 4 KiB) on every client frame: sluice
 *    never uses what clients send, and a larger frame closes the socket
 *    (1009) before it is buffered. `ws` is loaded at the first upgrade
 *    request, not at start (about 0.9 MB of heap an instance nobody
 *    watches does not need; README, Benchmarks: "Loading only what is used");
 *  - a client that goes away mid-body makes the request body fail with a
 *    {@link ClientAbortError}, which the app answers 400 and logs at debug
 *    level (nobody is left to read it).
 *
 * Handlers see `c.env` as Deno's `ServeHandlerInfo` (`remoteAddr`), so
 * `getConnInfo` of `hono/deno` keeps working, plus `upgradeWebSocket` on
 * upgrade requests (see {@link acceptWebSocket}).
 *
 * @module
 */
import http from "node:http";
import type { Socket } from "node:net";
import type { Context, Hono } from "hono";
// @ts-types="@types/ws"
import type { WebSocketServer } from "ws";
import { logger } from "../actors/runtime/logger.ts";
import { closeApp } from "./app.ts";
import { HttpError } from "./errors.ts";
import type { SocketLike } from "./ws_client.ts";

const log = logger("http");

/** Options of {@link serveApp}. */
export interface ServeOptions {
  /** Interface to listen on; default `127.0.0.1`. */
  host?: string;
  /** Port; default 9090; 0 picks a free one. */
  port?: number;
  /** Aborting it shuts the server down, like {@link RunningServer.shutdown}. */
  signal?: AbortSignal;
  /** Time allowed to receive the request headers, ms; default 10 000. */
  headersTimeoutMs?: number;
  /** Time allowed to receive the whole request (headers and body), ms; default 30 000. */
  requestTimeoutMs?: number;
  /** Largest WebSocket frame accepted from a client, bytes; default 4096. */
  maxWsPayloadBytes?: number;
}

/** A listening server. */
export interface RunningServer {
  /** The port actually bound. */
  port: number;
  /** Closes WebSocket clients, then stops accepting and waits for in-flight requests. Idempotent. */
  shutdown(): Promise<void>;
}

/** The request body failed because the client closed the connection before sending it all. */
export class ClientAbortError extends Error {
  override name = "ClientAbortError";
  constructor() {
    super("Client closed the connection before the request body was complete");
  }
}

/** The part of a `ws` WebSocket used here. */
interface UpgradedSocket {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: Uint8Array, opts: { binary: boolean }): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "close", listener: () => void): void;
  on(event: "error", fn: (e: Error) => void): void;
  /** ws's underlying net.Socket (ws 8 keeps it as `_socket`): a turn's frames are written to it. */
  readonly _socket?: { write(data: Uint8Array): boolean };
}

/** What a handler finds in `c.env` when served by {@link serveApp}. */
export interface ServeEnv {
  remoteAddr: { transport: "tcp"; hostname: string; port: number };
  /** Present on upgrade requests: accepts the WebSocket (the 101 is written at once). */
  upgradeWebSocket?: () => UpgradedSocket;
}

/**
 * Accepts a WebSocket upgrade from a route handler. Returns the socket and
 * the `Response` to return from the handler (ignored: the 101 is already
 * written). Answers 426 when the request was not served by {@link serveApp}
 * as an upgrade.
 */
export function acceptWebSocket(c: Context): { socket: SocketLike; response: Response } {
  const up = (c.env as Partial<ServeEnv> | undefined)?.upgradeWebSocket;
  if (!up) {
    throw new HttpError(426, "upgrade_required", "WebSocket route: send Upgrade: websocket", {
      upgrade: "websocket",
    });
  }
  const ws = up();
  // Errors (a frame over the cap, a protocol error) close the socket; they are not crashes.
  ws.on("error", (e) => log.debug("websocket client error", { error: e }));
  // Between cork and uncork (one turn of the flush loop), the messages' frames are collected and
  // written to the TCP socket as one buffer: one write per client per turn, not two per message
  // (ws's header and payload). Frames are whole, so ws's own writes (pong, close) never split one.
  const held: Uint8Array[] = [];
  let corked = false;
  const raw = ws._socket;
  const socket: SocketLike = {
    get readyState() {
      return ws.readyState;
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    send: (data: string) => {
      if (!raw) return ws.send(Buffer.from(data, "utf8"), { binary: false });
      if (corked) held.push(frameOnce(data));
      else if (ws.readyState === WS_OPEN) raw.write(frameOnce(data));
    },
    close: (code?: number, reason?: string) => ws.close(code, reason),
    addEventListener: (type: "close", listener: () => void) => ws.addEventListener(type, listener),
    cork: () => {
      corked = true;
    },
    uncork: () => {
      corked = false;
      if (held.length === 0) return;
      const bytes = held.length === 1 ? held[0] : Buffer.concat(held);
      held.length = 0;
      if (raw && ws.readyState === WS_OPEN) raw.write(bytes);
    },
  };
  return { socket, response: new Response(null, { status: 200 }) };
}

const WS_OPEN = 1;

/**
 * Recent messages and their WebSocket frames (a text frame from the server is
 * not masked, so it is the same bytes for every client): a message fanned out
 * to N clients is encoded and framed once.
 */
const framed = new Map<string, Uint8Array>();

function frameOnce(text: string): Uint8Array {
  let bytes = framed.get(text);
  if (bytes === undefined) {
    if (framed.size >= 4096) framed.clear();
    bytes = textFrame(Buffer.from(text, "utf8"));
    framed.set(text, bytes);
  }
  return bytes;
}

/** A final, unmasked text frame holding `payload` (RFC 6455 §5.2), as a server sends it. */
export function textFrame(payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const head = n < 126 ? 2 : n < 65_536 ? 4 : 10;
  const out = Buffer.allocUnsafe(head + n);
  out[0] = 0x81; // FIN, opcode 1 (text)
  if (n < 126) {
    out[1] = n;
  } else if (n < 65_536) {
    out[1] = 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 127;
    out.writeBigUInt64BE(BigInt(n), 2);
  }
  out.set(payload, head);
  return out;
}

/** Header names and values of `req`, as a `Headers`. */
function headersOf(req: http.IncomingMessage): Headers {
  const h = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      h.append(raw[i], raw[i + 1]);
    } catch {
      // A header Fetch refuses (invalid characters): dropped.
    }
  }
  return h;
}

/** Methods `new Request()` throws on (Fetch standard): no route serves them. */
const FETCH_FORBIDDEN_METHODS = new Set(["CONNECT", "TRACE", "TRACK"]);

/** The method routed in place of a {@link FETCH_FORBIDDEN_METHODS} one: no route has it. */
const STAND_IN_METHOD = "SLUICE-FORBIDDEN-METHOD";

/** The app's answer to the stand-in method (404 or 405), its message naming the real method. */
async function forbiddenMethodAnswer(r: Response, method: string): Promise<Response> {
  if (!(r.headers.get("content-type") ?? "").includes("json")) return r;
  const body = (await r.json()) as { error?: { code: string; message: string } };
  if (!body.error) return new Response(JSON.stringify(body), r);
  body.error.message = body.error.message.replace(STAND_IN_METHOD, method.toUpperCase());
  const headers = new Headers(r.headers);
  headers.delete("content-length");
  return new Response(JSON.stringify(body), { status: r.status, headers });
}

const SAFE_HOST = /^[A-Za-z0-9.\-:[\]]{1,255}$/;

function toRequest(
  req: http.IncomingMessage,
  body: ReadableStream<Uint8Array> | null,
  method = req.method,
): Request {
  const host = req.headers.host && SAFE_HOST.test(req.headers.host)
    ? req.headers.host
    : "invalid.invalid";
  const path = (req.url ?? "/").startsWith("/") ? req.url ?? "/" : "/";
  let url: string;
  try {
    url = new URL(path, `http://${host}`).href;
  } catch {
    url = new URL(path, "http://invalid.invalid").href;
  }
  return new Request(url, {
    method,
    headers: headersOf(req),
    body,
    // @ts-ignore: Fetch's `duplex` is needed for a stream body and missing from Deno's types.
    duplex: "half",
  });
}

/** The request body as a stream; errors with {@link ClientAbortError} if the client leaves. */
function bodyStream(req: http.IncomingMessage): ReadableStream<Uint8Array> {
  let done = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      req.on("data", (chunk: Uint8Array) => {
        if (done) return;
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 1) <= 0) req.pause();
      });
      req.on("end", () => {
        if (done) return;
        done = true;
        controller.close();
      });
      const abort = () => {
        if (done) return;
        done = true;
        controller.error(new ClientAbortError());
      };
      req.on("aborted", abort);
      req.on("error", abort);
      req.on("close", () => {
        if (!req.complete) abort();
      });
    },
    pull() {
      req.resume();
    },
    cancel() {
      // The app stopped reading (body over the limit): drop the rest; the
      // connection is closed once the answer is written.
      done = true;
      req.resume();
    },
  }, { highWaterMark: 4 });
}

function remoteAddr(socket: Socket): ServeEnv["remoteAddr"] {
  return {
    transport: "tcp",
    hostname: socket.remoteAddress ?? "",
    port: socket.remotePort ?? 0,
  };
}

async function writeResponse(res: http.ServerResponse, r: Response): Promise<void> {
  res.statusCode = r.status;
  const cookies = r.headers.getSetCookie();
  for (const [k, v] of r.headers) if (k !== "set-cookie") res.setHeader(k, v);
  if (cookies.length) res.setHeader("set-cookie", cookies);
  if (!r.body) {
    res.end();
    return;
  }
  const bytes = new Uint8Array(await r.arrayBuffer());
  res.setHeader("content-length", bytes.byteLength);
  res.end(bytes);
}

/** Writes an HTTP/1.1 answer on a raw socket (upgrade requests that were refused). */
async function writeRaw(socket: Socket, r: Response): Promise<void> {
  const body = new Uint8Array(await r.arrayBuffer());
  const lines = [`HTTP/1.1 ${r.status} ${http.STATUS_CODES[r.status] ?? ""}`];
  for (const [k, v] of r.headers) lines.push(`${k}: ${v}`);
  lines.push(`content-length: ${body.byteLength}`, "connection: close", "", "");
  socket.end(Buffer.concat([Buffer.from(lines.join("\r\n")), body]));
}

/** Starts serving `app`. Resolves once listening. */
export async function serveApp(app: Hono, opts: ServeOptions = {}): Promise<RunningServer> {
  // Created at the first upgrade request (see the module doc).
  let wss: WebSocketServer | undefined;
  let wssLoading: Promise<WebSocketServer> | undefined;
  const webSocketServer = () =>
    wssLoading ??= import("ws").then((m) =>
      wss = new m.WebSocketServer({
        noServer: true,
        maxPayload: opts.maxWsPayloadBytes ?? 4096,
        perMessageDeflate: false,
      })
    );
  const requestTimeout = opts.requestTimeoutMs ?? 30_000;
  const headersTimeout = Math.min(opts.headersTimeoutMs ?? 10_000, requestTimeout);
  const server = http.createServer({
    requestTimeout,
    headersTimeout,
    keepAliveTimeout: 5_000,
    maxHeaderSize: 16 * 1024,
    // How often timeouts are checked: a tenth of the shortest one, at least 100 ms.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(headersTimeout / 10))),
  });
  const inflight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inflight.add(p);
    p.finally(() => inflight.delete(p));
  };

  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    track((async () => {
      const hasBody = req.method !== "GET" && req.method !== "HEAD";
      const env: ServeEnv = { remoteAddr: remoteAddr(req.socket) };
      const forbidden = FETCH_FORBIDDEN_METHODS.has((req.method ?? "").toUpperCase());
      if (forbidden) {
        // Fetch refuses to build a Request with these methods (a bare 500 before):
        // route a stand-in method instead, so the app answers its 404 or 405 with Allow.
        res.setHeader("connection", "close");
        const path = toRequest(req, null, STAND_IN_METHOD);
        const answer = await app.fetch(path, env);
        await writeResponse(res, await forbiddenMethodAnswer(answer, req.method ?? ""));
        res.on("finish", () => req.socket.destroy());
        return;
      }
      try {
        const response = await app.fetch(toRequest(req, hasBody ? bodyStream(req) : null), env);
        // A body left unread (refused request): close rather than read the rest.
        if (hasBody && !req.complete) res.setHeader("connection", "close");
        await writeResponse(res, response);
        if (hasBody && !req.complete) res.on("finish", () => req.socket.destroy());
      } catch (e) {
        log.debug("request not answered", { error: e });
        if (!res.headersSent) {
          res.statusCode = 500;
          res.end();
        } else res.destroy();
      }
    })());
  });

  server.on("upgrade", (req: http.IncomingMessage, socket: Socket, head: Buffer) => {
    socket.on("error", () => {});
    track((async () => {
      let wss: WebSocketServer;
      try {
        wss = await webSocketServer();
      } catch (e) {
        log.error("WebSocket server not loaded", { error: e });
        socket.destroy();
        return;
      }
      let upgraded = false;
      const env: ServeEnv = {
        remoteAddr: remoteAddr(socket),
        upgradeWebSocket: () => {
          let ws: ReturnType<NonNullable<ServeEnv["upgradeWebSocket"]>> | undefined;
          wss.handleUpgrade(req, socket, head, (w) => {
            ws = w as unknown as typeof ws;
          });
          if (!ws) throw new HttpError(400, "bad_request", "Invalid WebSocket handshake");
          upgraded = true;
          return ws;
        },
      };
      try {
        const response = await app.fetch(toRequest(req, null), env);
        if (!upgraded && !socket.destroyed) await writeRaw(socket, response);
      } catch (e) {
        log.debug("upgrade not answered", { error: e });
        socket.destroy();
      }
    })());
  });

  server.on("clientError", (err: Error & { code?: string }, socket: Socket) => {
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    const status = err.code === "HPE_HEADER_OVERFLOW"
      ? 431
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
      ? 408
      : 400;
    // Answer, then drop the connection: a request still waiting for its body then fails at once.
    socket.end(
      `HTTP/1.1 ${status} ${
        http.STATUS_CODES[status]
      }\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
      () => socket.destroy(),
    );
    const hard = setTimeout(() => socket.destroy(), 1000);
    socket.once("close", () => clearTimeout(hard));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 9090, opts.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error: Error) => log.error("http server error", { error }));
  const address = server.address();
  const port = typeof address === "object" && address ? address.port : opts.port ?? 9090;
  log.info("http listening", { host: opts.host ?? "127.0.0.1", port });

  let done: Promise<void> | undefined;
  const shutdown = () => {
    done ??= (async () => {
      closeApp(app);
      for (const ws of wss?.clients ?? []) ws.terminate();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeIdleConnections();
      // In-flight requests finish, but a client cannot hold the shutdown: 5 s at most.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all([...inflight]),
        new Promise((r) => (timer = setTimeout(r, 5000))),
      ]);
      clearTimeout(timer);
      server.closeAllConnections();
      await closed;
      wss?.close();
    })();
    return done;
  };
  if (opts.signal) {
    if (opts.signal.aborted) void shutdown();
    else opts.signal.addEventListener("abort", () => void shutdown(), { once: true });
  }
  return { port, shutdown };
}
