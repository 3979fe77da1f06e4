/**
 * The load generator (local mode, demos, benchmarks): produces valid record
 * envelopes (README, Internals) to a topic at a target rate through a
 * {@link LogProducer}, so it runs the same on the embedded log and on real
 * Kafka. Its lifecycle is `machines/load_generator.ts`; this module supplies
 * the producing loop and creates the actor through `spawnActor` (id
 * `load-generator`, kind `load`).
 *
 * The loop ticks every `tickMs` (default 100 ms) and sends, in one
 * `send` call, the records due since the rate was last set (accounting by
 * elapsed time, so the rate holds over time even when ticks are late). Time
 * is `clock` (default real time; tests pass a manual clock and check the
 * rate exactly). One send
 * is in flight at a time; a slow log makes it fall behind by at most one
 * second of records, not build an unbounded burst. A failed send is not
 * counted; its records are due again at the next tick.
 *
 * Each record: key `customer-<n>` (a few distinct keys, so per-key ordering
 * shows), value a JSON envelope `{request_id, idempotency_key, timestamp,
 * payload}`, headers `traceparent` (W3C, random trace id) and
 * `content-type`. With `malformedFraction`, that share of records is broken
 * on purpose, in rotation: not JSON (`DESERIALIZATION_ERROR`), JSON missing
 * required fields, JSON that is not an object (`VALIDATION_ERROR`).
 *
 * @module
 */
import type { ActorRefFrom } from "xstate";
import {
  isValidRate,
  loadGeneratorMachine,
  loadGeneratorStateName,
  type ProducerInput,
} from "../../machines/load_generator.ts";
import { fromCallback, fromPromise } from "xstate";
import { spawnActor } from "../runtime/registry.ts";
import { logger } from "../runtime/logger.ts";
import type { LogProducer, OutgoingMessage } from "../log/port.ts";
import { type Clock, systemClock } from "../pipeline/rate_limiter.ts";

const log = logger("load-generator");

/** Options of {@link startLoadGenerator}. */
export interface LoadGeneratorOptions {
  /** Where records go (embedded log or Kafka). */
  producer: LogProducer;
  /** Topic to produce to. */
  topic: string;
  /** Records per second; default 10. 0 produces nothing until changed. */
  rate?: number;
  /** Share of deliberately malformed records (0..1); default 0. */
  malformedFraction?: number;
  /** Stop (state `stopped`) after this many records were produced; default unlimited. */
  count?: number;
  /** Distinct record keys (`customer-0` …); default 16. */
  keys?: number;
  /** Interval between sends (ms); default 100. */
  tickMs?: number;
  /** Start paused; default false. */
  paused?: boolean;
  /** Actor id; default `load-generator`. */
  id?: string;
  /** Parent in the actor tree (a supervisor id); default none. */
  parentId?: string;
  /** Time of the loop: its reading and its tick timer. Default real time (`systemClock`). */
  clock?: Clock;
}

/** Counters of a load generator. */
export interface LoadGeneratorStats {
  /** `running`, `paused`, `stopping` or `stopped`. */
  state: string;
  /** Target records per second. */
  rate: number;
  /** Records acknowledged by the log. */
  produced: number;
  /** Of those, records malformed on purpose. */
  malformed: number;
  /** Failed `send` calls. */
  failedSends: number;
  /** Last send error while failing, else null. */
  lastError: string | null;
}

/** A running load generator. */
export interface LoadGenerator {
  readonly actor: ActorRefFrom<typeof loadGeneratorMachine>;
  /** Changes the rate (records/s, ≥ 0) at runtime. */
  setRate(rate: number): void;
  pause(): void;
  resume(): void;
  stats(): LoadGeneratorStats;
  /** Resolves once the generator is `stopped` (count reached or stopped). */
  done(): Promise<void>;
  /** Stops producing and resolves once the send in flight finished. */
  stop(): Promise<void>;
}

const hex = (bytes: number) =>
  [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0"))
    .join("");

/** A W3C `traceparent` header value with a random trace id and span id. */
export function randomTraceparent(): string {
  return `00-${hex(16)}-${hex(8)}-01`;
}

/** Options of {@link makeEnvelope}. */
export interface EnvelopeOptions {
  /** Prefix of the idempotency key, unique per run; default a random id. */
  runId?: string;
  /** Distinct keys; default 16. */
  keys?: number;
  /** Make it malformed, of this kind; default a valid record. */
  malformed?: "not_json" | "missing_fields" | "not_object";
}

const encoder = new TextEncoder();
const CURRENCIES = ["EUR", "USD", "GBP", "JPY"];

/** Builds record number `seq` of the load: a valid envelope unless `malformed` is set. */
export function makeEnvelope(seq: number, opts: EnvelopeOptions = {}): OutgoingMessage {
  const runId = opts.runId ?? hex(4);
  const customer = seq % (opts.keys ?? 16);
  const headers = { traceparent: randomTraceparent(), "content-type": "application/json" };
  const key = `customer-${customer}`;
  const payload = {
    seq,
    customer_id: key,
    amount_cents: 100 + ((seq * 7919) % 99_900),
    currency: CURRENCIES[seq % CURRENCIES.length],
  };
  let value: string;
  switch (opts.malformed) {
    case "not_json":
      value = `{"request_id": "${crypto.randomUUID()}", "payload": {"seq": ${seq}`;
      break;
    case "missing_fields":
      value = JSON.stringify({ payload });
      break;
    case "not_object":
      value = JSON.stringify([seq, key]);
      break;
    default:
      value = JSON.stringify({
        request_id: crypto.randomUUID(),
        idempotency_key: `load-${runId}-${seq}`,
        timestamp: new Date().toISOString(),
        payload,
      });
  }
  return { key, value: encoder.encode(value), headers };
}

const MALFORMED_KINDS = ["not_json", "missing_fields", "not_object"] as const;

type LoopEvent =
  | { type: "DONE" }
  | { type: "PRODUCE_RECOVERED" }
  | { type: "PRODUCE_FAILED"; error: string };
type SendBack = (event: LoopEvent) => void;

/** The producing loop behind the machine's `producer` actor. */
class Loop {
  produced = 0;
  malformed = 0;
  failedSends = 0;
  lastError: string | null = null;
  #rate = 0;
  #since = 0;
  /** Records counted against the current rate since `#since`. */
  #sentSince = 0;
  #timer: unknown = undefined;
  #inflight: Promise<void> | null = null;
  #seq = 0;
  #malformedKind = 0;
  #sendBack: SendBack | null = null;
  readonly #runId = hex(4);
  readonly #clock: Clock;
  readonly #onTimer = () => {
    this.#timer = undefined;
    this.#tick();
    this.#arm();
  };

  constructor(private readonly opts: LoadGeneratorOptions) {
    this.#clock = opts.clock ?? systemClock;
  }

  start(rate: number, sendBack: SendBack): void {
    this.#sendBack = sendBack;
    this.setRate(rate);
    this.#disarm();
    this.#arm();
  }

  setRate(rate: number): void {
    this.#rate = rate;
    this.#since = this.#clock.now();
    this.#sentSince = 0;
  }

  halt(): void {
    this.#disarm();
    this.#sendBack = null;
  }

  /** The next tick in `tickMs`, while started. */
  #arm(): void {
    if (this.#sendBack === null || this.#timer !== undefined) return;
    this.#timer = this.#clock.setTimeout(this.#onTimer, this.opts.tickMs ?? 100);
  }

  #disarm(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Resolves once no send is in flight. */
  async drain(): Promise<void> {
    while (this.#inflight) await this.#inflight;
  }

  #tick(): void {
    if (this.#inflight || this.#rate <= 0) return;
    const elapsed = this.#clock.now() - this.#since;
    let due = Math.floor((this.#rate * elapsed) / 1000) - this.#sentSince;
    const cap = Math.max(1, Math.ceil(this.#rate));
    if (due > cap) {
      // Behind by more than a second (slow log): give up the backlog.
      this.#sentSince += due - cap;
      due = cap;
    }
    if (this.opts.count !== undefined) due = Math.min(due, this.opts.count - this.produced);
    if (due <= 0) return;
    const fraction = this.opts.malformedFraction ?? 0;
    const messages: OutgoingMessage[] = [];
    let malformed = 0;
    for (let i = 0; i < due; i++) {
      const seq = this.#seq++;
      const bad = fraction > 0 && Math.random() < fraction;
      if (bad) malformed++;
      messages.push(makeEnvelope(seq, {
        runId: this.#runId,
        keys: this.opts.keys,
        malformed: bad
          ? MALFORMED_KINDS[this.#malformedKind++ % MALFORMED_KINDS.length]
          : undefined,
      }));
    }
    this.#sentSince += due;
    const sendBack = this.#sendBack;
    this.#inflight = this.opts.producer.send(this.opts.topic, messages).then(
      () => {
        this.produced += due;
        this.malformed += malformed;
        if (this.lastError !== null) {
          log.info("producing again", { topic: this.opts.topic });
          this.lastError = null;
          sendBack?.({ type: "PRODUCE_RECOVERED" });
        }
        if (this.opts.count !== undefined && this.produced >= this.opts.count) {
          sendBack?.({ type: "DONE" });
        }
      },
      (e) => {
        this.failedSends++;
        this.#sentSince -= due; // due again at the next tick
        const message = e instanceof Error ? e.message : String(e);
        if (this.lastError === null) {
          log.warn("send failed; retrying at the next tick", {
            topic: this.opts.topic,
            error: message,
          });
          sendBack?.({ type: "PRODUCE_FAILED", error: message });
        }
        this.lastError = message;
      },
    ).finally(() => (this.#inflight = null));
  }
}

/**
 * Starts a load generator actor (registered as `load-generator` unless
 * `id` says otherwise) producing to `opts.topic`.
 */
export function startLoadGenerator(opts: LoadGeneratorOptions): LoadGenerator {
  const rate = opts.rate ?? 10;
  if (!isValidRate(rate)) throw new RangeError("rate: expected a number ≥ 0");
  const fraction = opts.malformedFraction ?? 0;
  if (!(fraction >= 0 && fraction <= 1)) {
    throw new RangeError("malformedFraction: expected a number between 0 and 1");
  }
  if (opts.count !== undefined && !(Number.isInteger(opts.count) && opts.count >= 0)) {
    throw new RangeError("count: expected an integer ≥ 0");
  }
  const loop = new Loop(opts);
  const machine = loadGeneratorMachine.provide({
    actors: {
      producer: fromCallback<{ type: "SET_RATE"; rate: number }, ProducerInput>(
        ({ input, sendBack, receive }) => {
          loop.start(input.rate, sendBack);
          receive((e) => loop.setRate(e.rate));
          return () => loop.halt();
        },
      ),
      drain: fromPromise(() => loop.drain()),
    },
  });
  const actor = spawnActor(machine, {
    id: opts.id ?? "load-generator",
    kind: "load",
    parentId: opts.parentId,
    input: { rate, paused: opts.paused },
    summary: (s) => ({
      topic: opts.topic,
      rate: s.context.rate,
      produced: loop.produced,
      malformed: loop.malformed,
      lastError: s.context.lastError,
    }),
  });
  log.info("load generator started", { topic: opts.topic, rate, malformedFraction: fraction });
  const finished = new Promise<void>((resolve) => {
    const check = () => {
      if (actor.getSnapshot().status !== "active") {
        sub.unsubscribe();
        resolve();
      }
    };
    const sub = actor.subscribe({ next: check, complete: check, error: check });
    check();
  });
  if (opts.count === 0) actor.send({ type: "DONE" });
  return {
    actor,
    setRate(r) {
      if (!isValidRate(r)) throw new RangeError("rate: expected a number ≥ 0");
      actor.send({ type: "SET_RATE", rate: r });
    },
    pause: () => actor.send({ type: "PAUSE" }),
    resume: () => actor.send({ type: "RESUME" }),
    stats: () => {
      const s = actor.getSnapshot();
      return {
        state: loadGeneratorStateName(s),
        rate: s.context.rate,
        produced: loop.produced,
        malformed: loop.malformed,
        failedSends: loop.failedSends,
        lastError: loop.lastError,
      };
    },
    done: () => finished,
    async stop() {
      actor.send({ type: "STOP" });
      await finished;
      log.info("load generator stopped", { topic: opts.topic, produced: loop.produced });
    },
  };
}
