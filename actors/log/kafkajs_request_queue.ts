/**
 * Stops kafkajs 2.2.4's request queues from polling themselves every
 * millisecond when they have nothing to do.
 *
 * ```ts
 * patchKafkajsRequestQueue(); // once; actors/log/kafka.ts calls it when it loads
 * ```
 *
 * **Why.** Each kafkajs connection has a `RequestQueue`. After every answer
 * it calls `checkPendingRequests`, which ends in `scheduleCheckPendingRequests`;
 * that arms a timer for `throttledUntil - Date.now()` milliseconds even when no
 * request waits and no throttle is in force. `throttledUntil` starts at -1, so
 * the delay is negative (Node clamps it to 1 ms and prints
 * `TimeoutNegativeWarning` once), the timer fires, checks again and re-arms:
 * from its first answer on, every connection runs a timer loop for as long as
 * it lives (kafkajs issue #1704, open, no release since February 2023). The
 * allocation profile of a profiled framework run charged these timers 36 % of
 * the bytes sluice allocated; an idle Kafka-mode instance used 77–92 ms of
 * CPU per second, 23–26 with this fix (README, Benchmarks: "kafkajs's idle
 * request queues").
 *
 * The replacement keeps kafkajs's behaviour whenever something waits or a
 * throttle is in force: with requests pending it checks again when the
 * throttle ends, or in 10 ms (kafkajs's interval) if that moment has passed;
 * with nothing pending and a throttle in force it still checks once at the
 * throttle's end. Only the empty, unthrottled case no longer arms a timer;
 * a request that cannot go at once is pushed to `pending` and schedules its
 * own check (`push`), and every answer or timeout checks the queue again
 * (`fulfillRequest`, the socket request's `timeout`), as before.
 * `tests/unit/kafkajs_request_queue_test.ts` runs kafkajs's own queue with
 * and without it.
 *
 * @module
 */
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import { setTimeout as nodeSetTimeout } from "node:timers";

/** kafkajs's `CHECK_PENDING_REQUESTS_INTERVAL`: the re-check delay while requests wait unthrottled. */
const CHECK_PENDING_REQUESTS_INTERVAL = 10;

/** The parts of kafkajs's `RequestQueue` this module touches. */
export interface RequestQueueInstance {
  pending: unknown[];
  throttledUntil: number;
  throttleCheckTimeoutId: unknown;
  checkPendingRequests(): void;
}

interface RequestQueueClass {
  prototype: RequestQueueInstance & {
    scheduleCheckPendingRequests(): void;
    __sluiceNoIdlePoll?: boolean;
  };
}

const Q = RequestQueue as unknown as RequestQueueClass;

/** kafkajs's original method (tests compare against it). */
export const originalScheduleCheckPendingRequests = Q.prototype.scheduleCheckPendingRequests;

/** kafkajs's `scheduleCheckPendingRequests` without the idle timer loop. */
function scheduleCheckPendingRequests(this: RequestQueueInstance): void {
  if (this.throttleCheckTimeoutId) return;
  let delay = this.throttledUntil - Date.now();
  if (this.pending.length > 0) {
    if (delay <= 0) delay = CHECK_PENDING_REQUESTS_INTERVAL;
  } else if (delay <= 0) {
    return; // nothing waits and no throttle: an answer or a push will check again
  }
  // Node's timer, as kafkajs's own: its `destroy()` clears it with Node's clearTimeout.
  this.throttleCheckTimeoutId = nodeSetTimeout(() => {
    this.throttleCheckTimeoutId = null;
    this.checkPendingRequests();
  }, delay);
}

/** Installs the method on kafkajs's `RequestQueue` prototype (idempotent). */
export function patchKafkajsRequestQueue(): void {
  if (Q.prototype.__sluiceNoIdlePoll) return;
  Q.prototype.scheduleCheckPendingRequests = scheduleCheckPendingRequests;
  Q.prototype.__sluiceNoIdlePoll = true;
}

/** The kafkajs class itself, for tests. */
export const KafkajsRequestQueue = RequestQueue as unknown as new (options: {
  maxInFlightRequests: number | null;
  requestTimeout: number;
  enforceRequestTimeout: boolean;
  clientId: string;
  broker: string;
  logger: unknown;
}) => RequestQueueInstance & {
  push(request: {
    entry: { correlationId: number };
    expectResponse: boolean;
    sendRequest: () => void;
    requestTimeout?: number;
  }): void;
  fulfillRequest(response: { correlationId: number; payload: unknown; size: number }): void;
  maybeThrottle(ms: number | null): void;
  destroy(): void;
  inflight: Map<number, unknown>;
};
