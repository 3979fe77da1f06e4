/**
 * One WebSocket client seen from the server: a bounded buffer (drop-oldest)
 * written to the socket from its own timer loop, never from the publisher's
 * call. The loop stops writing while the socket's `bufferedAmount` is above
 * a limit (a client that does not read), so a slow client costs publishers
 * one O(1) push and nothing more. After drops, the next message written is a
 * drop notice saying how many were lost.
 *
 * Counts `ws_clients` and `ws_dropped_events_total`.
 *
 * @module
 */
import { wsClients, wsDroppedEventsTotal } from "../actors/runtime/metrics.ts";
import { Ring } from "./ring.ts";

/** The part of a WebSocket a {@link BoundedSender} uses (fakes implement it in tests). */
export interface SocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "close", listener: () => void): void;
  /**
   * Optional: hold writes until {@link SocketLike.uncork}, so the messages of
   * one turn of the loop leave in one socket write instead of one each.
   */
  cork?(): void;
  /** Optional: writes what {@link SocketLike.cork} held. */
  uncork?(): void;
}

/** Options of {@link BoundedSender}. */
export interface BoundedSenderOptions {
  /** Messages buffered per client before the oldest is dropped; default 1000. */
  capacity?: number;
  /** Writing pauses while the socket holds more than this many unsent bytes; default 64 KiB. */
  maxBufferedBytes?: number;
  /** Delay before looking again at a backed-up or connecting socket, ms; default 50. */
  pollMs?: number;
  /** Messages written per turn of the loop before yielding; default 256. */
  batch?: number;
  /** A client that stays backed up this long is closed (1008), ms; default 60 000. */
  stallCloseMs?: number;
  /** The message written after drops; receives how many were dropped. */
  dropNotice: (dropped: number) => string;
  /** Called once when the sender closes (socket closed or {@link BoundedSender.close}). */
  onClose?: () => void;
}

const CONNECTING = 0;
const OPEN = 1;

/** Buffers messages for one socket and writes them from its own loop. */
export class BoundedSender<T> {
  #ring: Ring<T>;
  #pendingDrops = 0;
  #droppedTotal = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  #blockedSince: number | undefined;
  readonly #opts: Required<Omit<BoundedSenderOptions, "onClose">> & BoundedSenderOptions;

  constructor(
    readonly socket: SocketLike,
    readonly serialize: (item: T) => string,
    opts: BoundedSenderOptions,
  ) {
    this.#opts = {
      capacity: 1000,
      maxBufferedBytes: 64 * 1024,
      pollMs: 50,
      batch: 256,
      stallCloseMs: 60_000,
      ...opts,
    };
    this.#ring = new Ring(this.#opts.capacity);
    wsClients.inc();
    socket.addEventListener("close", () => this.close());
  }

  /** Messages dropped for this client so far. */
  get dropped(): number {
    return this.#droppedTotal;
  }

  /** Messages waiting in the buffer. */
  get queued(): number {
    return this.#ring.size;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Buffers a message (O(1), never throws, never writes to the socket). */
  push(item: T): void {
    if (this.#closed) return;
    if (this.#ring.push(item)) {
      this.#pendingDrops++;
      this.#droppedTotal++;
      wsDroppedEventsTotal.inc();
    }
    this.#schedule(0);
  }

  /** Stops the loop and closes the socket (when still open). Idempotent. */
  close(code = 1001, reason = "server closing"): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#ring.clear();
    wsClients.dec();
    try {
      if (this.socket.readyState <= OPEN) this.socket.close(code, reason);
    } catch {
      // Already closing.
    }
    this.#opts.onClose?.();
  }

  #schedule(delayMs: number): void {
    if (this.#timer !== undefined || this.#closed) return;
    this.#timer = setTimeout(this.#flush, delayMs);
  }

  #flush = (): void => {
    this.#timer = undefined;
    if (this.#closed) return;
    const s = this.socket;
    if (s.readyState === CONNECTING) return this.#schedule(this.#opts.pollMs);
    if (s.readyState !== OPEN) return this.close();
    let budget = this.#opts.batch;
    // One socket write per turn, not one per message: with 200 clients at a
    // few hundred events/s, per-write costs (a promise and an op each) were
    // most of the fan-out's garbage.
    s.cork?.();
    try {
      while (this.#ring.size > 0 || this.#pendingDrops > 0) {
        if (s.bufferedAmount > this.#opts.maxBufferedBytes) return this.#backedUp();
        if (budget-- === 0) return this.#schedule(0);
        if (this.#pendingDrops > 0) {
          const n = this.#pendingDrops;
          this.#pendingDrops = 0;
          s.send(this.#opts.dropNotice(n));
          continue;
        }
        s.send(this.serialize(this.#ring.shift() as T));
      }
      this.#blockedSince = undefined;
    } catch {
      this.close();
    } finally {
      try {
        s.uncork?.();
      } catch {
        // Closed meanwhile: the close listener cleans up.
      }
    }
  };

  #backedUp(): void {
    const now = Date.now();
    this.#blockedSince ??= now;
    if (now - this.#blockedSince > this.#opts.stallCloseMs) {
      return this.close(1008, "client too slow");
    }
    this.#schedule(this.#opts.pollMs);
  }
}
