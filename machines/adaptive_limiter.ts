/**
 * The visible state of the adaptive flow control (`actors/pipeline/adaptive_limiter.ts`):
 * `atCeiling` (the effective rate is the configured one), `throttled` (the
 * limiter lowered it after the upstream pushed back) or `paused` (a long
 * `Retry-After` holds every call).
 *
 * The machine never sees a record or a call. The limiter (plain code) sends
 * `ADJUSTED` at most once per second, and only when the effective rate or
 * in-flight limit moved; `PAUSED` when a pause starts and `RESUMED` when it
 * ends. Each of them publishes one `rate.adjusted` event (a named action,
 * replaceable with `machine.provide(...)` in tests).
 *
 * @module
 */
import { assign, setup } from "xstate";
import { publishEvent } from "../actors/runtime/events.ts";

/** What the limiter reports with each event. */
export interface AdaptiveFigures {
  /** Effective rate (records/s); 0 = unlimited. */
  rate: number;
  /** Configured ceiling (`SLUICE_RATE_LIMIT`, `PUT /control/rate`); 0 = unlimited. */
  ceiling: number;
  /** Effective in-flight limit (upstream calls at once). */
  concurrency: number;
  /** Why it moved: `429`, `503`, `timeout`, `latency`, `recovery`, `retry_after`, `ceiling`, ... */
  reason: string;
}

/** Context of {@link adaptiveLimiterMachine}. */
export interface AdaptiveLimiterContext extends AdaptiveFigures {
  /** ISO time until which calls are paused; null when not paused. */
  pausedUntil: string | null;
  /** Events received since start (bounded by the limiter, never per record). */
  adjustments: number;
}

/** Events of {@link adaptiveLimiterMachine}. */
export type AdaptiveLimiterEvent =
  | ({ type: "ADJUSTED" } & AdaptiveFigures)
  | ({ type: "PAUSED"; until: string } & AdaptiveFigures)
  | ({ type: "RESUMED" } & AdaptiveFigures);

/** Input: the starting figures. */
export type AdaptiveLimiterInput = Omit<AdaptiveFigures, "reason">;

const throttled = ({ context }: { context: AdaptiveLimiterContext }) =>
  context.ceiling === 0 ? context.rate > 0 : context.rate < context.ceiling;

/** `atCeiling ⇄ throttled`, and `paused` while a long `Retry-After` holds every call. */
export const adaptiveLimiterMachine = setup({
  types: {
    context: {} as AdaptiveLimiterContext,
    input: {} as AdaptiveLimiterInput,
    events: {} as AdaptiveLimiterEvent,
  },
  guards: { throttled },
  actions: {
    record: assign(({ context, event }) => ({
      rate: event.rate,
      ceiling: event.ceiling,
      concurrency: event.concurrency,
      reason: event.reason,
      pausedUntil: event.type === "PAUSED" ? event.until : null,
      adjustments: context.adjustments + 1,
    })),
    report: ({ context }) => {
      publishEvent("rate.adjusted", context.pausedUntil ? "warn" : "info", {
        rate: context.rate,
        ceiling: context.ceiling,
        concurrency: context.concurrency,
        reason: context.reason,
        paused_until: context.pausedUntil,
      });
    },
  },
}).createMachine({
  id: "adaptiveLimiter",
  context: ({ input }) => ({ ...input, reason: "start", pausedUntil: null, adjustments: 0 }),
  initial: "route",
  states: {
    route: { always: [{ guard: "throttled", target: "throttled" }, { target: "atCeiling" }] },
    atCeiling: {
      on: {
        ADJUSTED: { target: "route", actions: ["record", "report"] },
        PAUSED: { target: "paused", actions: ["record", "report"] },
      },
    },
    throttled: {
      on: {
        ADJUSTED: { target: "route", actions: ["record", "report"] },
        PAUSED: { target: "paused", actions: ["record", "report"] },
      },
    },
    paused: {
      on: {
        // A longer Retry-After while paused extends the pause (no new event).
        PAUSED: { actions: "record" },
        RESUMED: { target: "route", actions: ["record", "report"] },
      },
    },
  },
});
