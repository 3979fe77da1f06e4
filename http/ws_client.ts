/**
 * One WebSocket client seen from the server: a bounded buffer (drop-oldest)
 * written to the socket by a {@link FlushLoop}, never from the publisher's
 * call. Writing stops while the socket's `bufferedAmount` is above a limit (a
 * client that does not read), so a slow client costs publishers one O(1)
 * push and nothing more. After drops, the next message written is a drop
 * notice saying how many were lost.
 *
 * Every sender of the process shares one flush loop: one timer for all
 * clients, at most one turn per `minTickMs` (default 20 ms), each turn
 * writing what each client has buffered in one socket write. A timer per
 * client (the design before) made 200 clients at 300 events/s arm 60,000
 * timers a second, and those timer objects were the largest share of the
 * garbage that outlived the young generation in an allocation profile
 * (README, Security: "WebSocket memory").
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
  /** The loop that writes this sender's messages; default the process's {@link defaultFlushLoop}. */
  loop?: FlushLoop;
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

/** What a {@link FlushLoop} drives. */
export interface Flushable {
  /** Writes what it can; returns the delay before it wants another turn (ms), or -1 when idle. */
  flush(): number;
}

/**
 * Runs the flushes of many senders from one timer: a turn calls `flush()` on
 * every sender woken since (or still waiting from) the last turn, then arms
 * the timer for the soonest delay they ask for, never sooner than `minTickMs`
 * after the turn began. No timer is armed while no sender has work.
 */
export class FlushLoop {
  #active = new Set<Flushable>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #dueAt = Infinity;
  #lastTurn = -Infinity;

  /** @param minTickMs Shortest time between two turns, ms (writes are batched within it). */
  constructor(readonly minTickMs = 20) {}

  /** Senders with work pending. */
  get active(): number {
    return this.#active.size;
  }

  /** Gives `s` a turn as soon as the loop may turn again (`minTickMs` after the last one). */
  wake(s: Flushable): void {
    this.#active.add(s);
    this.#arm(0);
  }

  /** Forgets `s`; the timer stops when no sender is left. */
  remove(s: Flushable): void {
    if (!this.#active.delete(s) || this.#active.size > 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#dueAt = Infinity;
  }

  #arm(delayMs: number): void {
    const now = Date.now();
    const due = Math.max(now + delayMs, this.#lastTurn + this.minTickMs);
    if (this.#timer !== undefined) {
      if (this.#dueAt <= due) return;
      clearTimeout(this.#timer);
    }
    this.#dueAt = due;
    this.#timer = setTimeout(this.#turn, due - now);
  }

  #turn = (): void => {
    this.#timer = undefined;
    this.#dueAt = Infinity;
    this.#lastTurn = Date.now();
    let next = Infinity;
    for (const s of this.#active) {
      let d: number;
      try {
        d = s.flush();
      } catch {
        d = -1;
      }
      if (d < 0) this.#active.delete(s);
      else if (d < next) next = d;
    }
    if (next !== Infinity && this.#active.size > 0) this.#arm(next);
  };
}

/** The flush loop every sender uses unless given another. */
export const defaultFlushLoop: FlushLoop = new FlushLoop();

/** Buffers messages for one socket; its {@link FlushLoop} writes them. */
export class BoundedSender<T> implements Flushable {
  #ring: Ring<T>;
  #pendingDrops = 0;
  #droppedTotal = 0;
  #closed = false;
  #blockedSince: number | undefined;
  readonly #loop: FlushLoop;
  readonly #opts: Required<Omit<BoundedSenderOptions, "onClose" | "loop">> & BoundedSenderOptions;

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
    this.#loop = opts.loop ?? defaultFlushLoop;
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
    this.#loop.wake(this);
  }

  /** Stops the loop and closes the socket (when still open). Idempotent. */
  close(code = 1001, reason = "server closing"): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#loop.remove(this);
    this.#ring.clear();
    wsClients.dec();
    try {
      if (this.socket.readyState <= OPEN) this.socket.close(code, reason);
    } catch {
      // Already closing.
    }
    this.#opts.onClose?.();
  }

  /**
   * Writes what the socket takes now (called by the loop). Returns the delay
   * before the next turn it needs: 0 when its batch ran out with messages
   * left, `pollMs` while the socket is connecting or backed up, -1 when done.
   */
  flush(): number {
    if (this.#closed) return -1;
    const s = this.socket;
    if (s.readyState === CONNECTING) return this.#opts.pollMs;
    if (s.readyState !== OPEN) {
      this.close();
      return -1;
    }
    let budget = this.#opts.batch;
    // One socket write per turn, not one per message: per-write costs (a
    // promise and an op each) were most of the fan-out's garbage.
    s.cork?.();
    try {
      while (this.#ring.size > 0 || this.#pendingDrops > 0) {
        if (s.bufferedAmount > this.#opts.maxBufferedBytes) return this.#backedUp();
        if (budget-- === 0) return 0;
        if (this.#pendingDrops > 0) {
          const n = this.#pendingDrops;
          this.#pendingDrops = 0;
          s.send(this.#opts.dropNotice(n));
          continue;
        }
        s.send(this.serialize(this.#ring.shift() as T));
      }
      this.#blockedSince = undefined;
      return -1;
    } catch {
      this.close();
      return -1;
    } finally {
      try {
        s.uncork?.();
      } catch {
        // Closed meanwhile: the close listener cleans up.
      }
    }
  }

  #backedUp(): number {
    const now = Date.now();
    this.#blockedSince ??= now;
    if (now - this.#blockedSince > this.#opts.stallCloseMs) {
      this.close(1008, "client too slow");
      return -1;
    }
    return this.#opts.pollMs;
  }
}
