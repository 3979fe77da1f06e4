/**
 * Fan-out of the event bus (`actors/runtime/events.ts`) to `/ws/events` clients.
 *
 * The hub subscribes to the bus only while at least one client is connected
 * (so `publishEvent` stays free when nobody watches), filters each event per
 * client (minimum severity, topic), and pushes it into that client's
 * {@link BoundedSender}: drop-oldest, `system.ws.drop_notice` after drops,
 * written from the sender's own loop. A `system.heartbeat` goes to every
 * client every `heartbeatMs`, whatever its filters.
 *
 * @module
 */
import { type Severity, type SluiceEvent, subscribeEvents } from "../actors/runtime/events.ts";
import { BoundedSender, type SocketLike } from "./ws_client.ts";

/** Severities, lowest first. */
export const SEVERITIES: readonly Severity[] = ["debug", "info", "warn", "error"];

/** Per-client filter of `/ws/events?severity=&topic=`. */
export interface EventFilter {
  /** Minimum severity; default `debug` (everything). */
  minSeverity?: Severity;
  /** Only events of this topic; events without a topic (circuit, system) always pass. */
  topic?: string;
}

/** Options of {@link WsHub}. */
export interface WsHubOptions {
  /** Events buffered per client before drop-oldest; default 1000. */
  bufferSize?: number;
  /** Heartbeat period, ms; default 15 000. */
  heartbeatMs?: number;
  /** Unsent bytes per socket (beyond the kernel's buffers) above which writing pauses; default 64 KiB. */
  maxBufferedBytes?: number;
  /** Connected clients at most; `attach` refuses beyond; default 256. */
  maxClients?: number;
  /** The bus; default `subscribeEvents` of actors/runtime/events.ts. */
  subscribe?: (fn: (event: SluiceEvent) => void) => () => void;
}

interface Client {
  sender: BoundedSender<SluiceEvent>;
  minRank: number;
  topic?: string;
}

const RANK: Record<Severity, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Parses a `severity` query value; undefined when absent, null when invalid. */
export function parseSeverity(value: string | undefined): Severity | undefined | null {
  if (value === undefined || value === "") return undefined;
  return (SEVERITIES as readonly string[]).includes(value) ? value as Severity : null;
}

/** Fans events out to WebSocket clients, each with its bounded buffer. */
export class WsHub {
  #clients = new Set<Client>();
  #unsubscribe: (() => void) | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #json = new WeakMap<SluiceEvent, string>();
  readonly #opts: Required<WsHubOptions>;

  constructor(opts: WsHubOptions = {}) {
    this.#opts = {
      bufferSize: 1000,
      heartbeatMs: 15_000,
      maxBufferedBytes: 64 * 1024,
      maxClients: 256,
      subscribe: subscribeEvents,
      ...opts,
    };
  }

  /** Connected clients. */
  get size(): number {
    return this.#clients.size;
  }

  /** True when another client may attach. */
  get hasRoom(): boolean {
    return this.#clients.size < this.#opts.maxClients;
  }

  /**
   * Adds a client; it is removed when its socket closes. Returns the
   * function that detaches (and closes) it.
   */
  attach(socket: SocketLike, filter: EventFilter = {}): () => void {
    const client: Client = {
      minRank: RANK[filter.minSeverity ?? "debug"],
      topic: filter.topic,
      sender: new BoundedSender<SluiceEvent>(socket, this.#serialize, {
        capacity: this.#opts.bufferSize,
        maxBufferedBytes: this.#opts.maxBufferedBytes,
        dropNotice: (dropped) => this.#serialize(dropNotice(dropped)),
        onClose: () => this.#remove(client),
      }),
    };
    this.#clients.add(client);
    if (this.#clients.size === 1) this.#start();
    return () => client.sender.close();
  }

  /** Closes every client (1001) and stops the heartbeat. */
  close(): void {
    for (const c of [...this.#clients]) c.sender.close();
  }

  #serialize = (event: SluiceEvent): string => {
    let s = this.#json.get(event);
    if (s === undefined) {
      s = JSON.stringify(event);
      this.#json.set(event, s);
    }
    return s;
  };

  #onEvent = (event: SluiceEvent): void => {
    const rank = RANK[event.severity] ?? 0;
    for (const c of this.#clients) {
      if (rank < c.minRank) continue;
      if (c.topic !== undefined && event.topic !== undefined && event.topic !== c.topic) continue;
      c.sender.push(event);
    }
  };

  #beat = (): void => {
    const event: SluiceEvent = {
      type: "system.heartbeat",
      severity: "debug",
      timestamp: new Date().toISOString(),
      data: { clients: this.#clients.size },
    };
    for (const c of this.#clients) c.sender.push(event);
  };

  #start(): void {
    this.#unsubscribe = this.#opts.subscribe(this.#onEvent);
    this.#heartbeat = setInterval(this.#beat, this.#opts.heartbeatMs);
  }

  #remove(client: Client): void {
    if (!this.#clients.delete(client) || this.#clients.size > 0) return;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
  }
}

function dropNotice(dropped: number): SluiceEvent {
  return {
    type: "system.ws.drop_notice",
    severity: "warn",
    timestamp: new Date().toISOString(),
    data: { dropped, reason: "client too slow: oldest events dropped" },
  };
}
