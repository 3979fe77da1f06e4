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
const subscribers = new Set<Subscriber>();

/** Publishes an event to every subscriber. Never throws. */
export function publishEvent(
  type: EventType,
  severity: Severity,
  data: Record<string, unknown>,
  extra: Partial<Pick<SluiceEvent, "topic" | "partition" | "trace_id">> = {},
): void {
  if (subscribers.size === 0) return;
  const event: SluiceEvent = {
    type,
    severity,
    timestamp: new Date().toISOString(),
    ...extra,
    data,
  };
  for (const s of subscribers) {
    try {
      s(event);
    } catch {
      // A subscriber's failure is its own business.
    }
  }
}

/**
 * True when someone listens: the record path builds an event's data only
 * then (no garbage per record when no WebSocket client is connected).
 */
export function hasEventSubscribers(): boolean {
  return subscribers.size > 0;
}

/** Subscribes; returns the unsubscribe function. */
export function subscribeEvents(fn: Subscriber): () => void {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}
