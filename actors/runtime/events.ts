/**
 * The in-process event bus behind `/ws/events` and the dashboard.
 *
 * Publishers call {@link publishEvent}; it is synchronous and cheap (a loop
 * over subscribers), so the record path may call it once per finished record.
 * Subscribers (one per WebSocket client) keep their own bounded buffer.
 *
 * @module
 */

/** Event types of the README, Internals. */
export type EventType =
  | "record.completed"
  | "record.dead_lettered"
  | "circuit.changed"
  | "rate.adjusted"
  | "audit.flushed"
  | "replay.progress"
  | "system.heartbeat"
  | "system.backpressure"
  | "system.ws.drop_notice";

/** Severity used by the `severity` filter of `/ws/events`. */
export type Severity = "debug" | "info" | "warn" | "error";

/** One event. Record events carry `trace_id`, `topic` and `partition`. */
export interface SluiceEvent {
  type: EventType;
  severity: Severity;
  timestamp: string;
  topic?: string;
  partition?: number;
  trace_id?: string;
  data: Record<string, unknown>;
}

type Subscriber = (event: SluiceEvent) => void;
/** Each subscriber and the types it asked for (null: every type). */
const subscribers = new Map<Subscriber, ReadonlySet<EventType> | null>();
/** Subscribers of every type. */
let everyType = 0;
/** Subscribers by the type they asked for. */
const byType = new Map<EventType, number>();

/** Publishes an event to every subscriber of its type. Never throws. */
export function publishEvent(
  type: EventType,
  severity: Severity,
  data: Record<string, unknown>,
  extra: Partial<Pick<SluiceEvent, "topic" | "partition" | "trace_id">> = {},
): void {
  if (!hasEventSubscribers(type)) return;
  const event: SluiceEvent = {
    type,
    severity,
    timestamp: new Date().toISOString(),
    ...extra,
    data,
  };
  for (const [s, types] of subscribers) {
    if (types !== null && !types.has(type)) continue;
    try {
      s(event);
    } catch {
      // A subscriber's failure is its own business.
    }
  }
}

/**
 * True when someone listens (to events of `type`, when given): the record
 * path builds an event's data only then (no garbage per record when no
 * WebSocket client is connected; the dashboard history follows only
 * `circuit.changed`).
 */
export function hasEventSubscribers(type?: EventType): boolean {
  if (type === undefined) return subscribers.size > 0;
  return everyType > 0 || (byType.get(type) ?? 0) > 0;
}

/** Options of {@link subscribeEvents}. */
export interface SubscribeOptions {
  /** Only these event types. Default every type. */
  types?: EventType[];
}

/** Subscribes; returns the unsubscribe function. */
export function subscribeEvents(fn: Subscriber, opts: SubscribeOptions = {}): () => void {
  if (subscribers.has(fn)) return () => unsubscribe(fn);
  const types = opts.types ? new Set(opts.types) : null;
  subscribers.set(fn, types);
  if (types === null) everyType++;
  else for (const t of types) byType.set(t, (byType.get(t) ?? 0) + 1);
  return () => unsubscribe(fn);
}

function unsubscribe(fn: Subscriber): boolean {
  if (!subscribers.has(fn)) return false;
  const types = subscribers.get(fn)!;
  subscribers.delete(fn);
  if (types === null) everyType--;
  else for (const t of types) byType.set(t, byType.get(t)! - 1);
  return true;
}
