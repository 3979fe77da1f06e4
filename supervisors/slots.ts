/**
 * The slots of the supervision tree's children: the live value of each child
 * (replaced when its supervisor restarts it), read by the children started
 * after it, by HTTP and by the shutdown (`supervisors/tree.ts`).
 *
 * @module
 */
import type { LoadGenerator } from "../actors/local/load_generator.ts";
import type { IdempotencyStore } from "../actors/pipeline/idempotency.ts";
import { UnavailableError } from "../actors/runtime/errors.ts";
import type { RunningServer } from "../http/server.ts";
import {
  type Audit,
  type Consumer,
  type Replays,
  type Resilience,
  Stalls,
  type Started,
} from "./children.ts";
import type { ChildContext, ChildHandle } from "./supervisor.ts";

/** The live value of a child, replaced when its supervisor restarts it. */
export class Slot<T> {
  #value?: T;
  /** @param what names the value in the error of {@link get}, e.g. `Rate limiter`. */
  constructor(readonly what: string) {}
  /** The value; throws a retriable `not_ready` error before the child first started. */
  get(): T {
    if (this.#value === undefined) {
      throw new UnavailableError("not_ready", `${this.what} not started`);
    }
    return this.#value;
  }
  /** The value, or undefined before the child first started. */
  peek(): T | undefined {
    return this.#value;
  }
  /** A child `start` that fills this slot with what `start` returns. */
  fill(
    start: (ctx: ChildContext) => Promise<Started<T>>,
  ): (ctx: ChildContext) => Promise<ChildHandle> {
    return async (ctx) => {
      const s = await start(ctx);
      this.#value = s.value;
      return s.handle;
    };
  }
}

/** The slots of the tree's children (what HTTP and the shutdown read). */
export interface Slots {
  server: Slot<RunningServer>;
  audit: Slot<Audit>;
  resilience: Slot<Resilience>;
  idempotency: Slot<IdempotencyStore>;
  consumer: Slot<Consumer>;
  replay: Slot<Replays>;
  load: Slot<LoadGenerator>;
  stalls: Stalls;
}

/** Empty slots, filled as the children start. */
export function newSlots(): Slots {
  return {
    server: new Slot("HTTP server"),
    audit: new Slot("Audit"),
    resilience: new Slot("Rate limiter"),
    idempotency: new Slot("Idempotency store"),
    consumer: new Slot("Pipeline"),
    replay: new Slot("Replay driver"),
    load: new Slot("Load generator"),
    stalls: new Stalls(),
  };
}
