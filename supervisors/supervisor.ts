/**
 * A generic supervisor with Erlang/OTP semantics. Every stage of sluice runs
 * as a child of a supervisor; a supervisor can itself be a child (nesting),
 * which makes the supervision tree.
 *
 * ```ts
 * const root = await startSupervisor([
 *   { id: "audit", start: startAudit, restart: "permanent", shutdownMs: 10_000 },
 *   supervisorSpec([consumerSpec, breakerSpec], { id: "pipeline", strategy: "rest_for_one" }),
 *   { id: "http", start: startHttp, restart: "permanent", shutdownMs: 2_000 },
 * ], { id: "sluice", strategy: "one_for_one", intensity: { maxRestarts: 3, periodMs: 5_000 } });
 * await root.stop("shutdown"); // http, then pipeline (its children in reverse), then audit
 * ```
 *
 * The rules, in one place:
 *
 * - **Start**: children start in list order, each awaited before the next. If
 *   one fails to start, those already started are stopped (reverse order) and
 *   {@link startSupervisor} rejects naming the child.
 * - **Stop**: children stop in reverse order. Each gets `stop("shutdown")` and
 *   `shutdownMs` to settle its `exited` promise; past that it is logged as
 *   killed and the supervisor moves on (JavaScript cannot kill a promise: the
 *   child must make its `stop` bounded; the deadline keeps the tree moving).
 * - **Exit of a child** (its `exited` settles without being asked to stop):
 *   `permanent` children are always restarted, `transient` ones only when
 *   they exit with an `Error`, `temporary` ones never (and are removed).
 * - **Strategy** (what is restarted with the child): `one_for_one` only that
 *   child; `rest_for_one` the child and every child after it in the list
 *   (those are stopped first, in reverse order); `one_for_all` every child.
 *   Temporary siblings stopped by a restart are not restarted (OTP rule).
 * - **Intensity**: more than `maxRestarts` restarts within `periodMs` and the
 *   supervisor gives up: it stops every child (reverse order) and its own
 *   `exited` settles with a {@link SupervisorError} naming the child that kept
 *   exiting. Its parent sees that as a crash of the supervisor: escalation.
 *   A child that fails to start during a restart counts as one more restart.
 * - **Dynamic children**: {@link Supervisor.startChild} appends a child (a
 *   partition consumer on assignment), {@link Supervisor.terminateChild}
 *   stops and removes one (on revocation). Exits, restarts and these updates
 *   are handled one at a time, in arrival order.
 * - **XState children**: {@link actorChild} turns an actor created with
 *   `spawnActor(..., { parentId: ctx.parentId })` into a child handle.
 *
 * Each supervisor's lifecycle is a `machines/supervisor.ts` actor created
 * through `spawnActor` (kind `supervisor`), so `/inspect` shows it, with its
 * children (id, state, restarts) in its summary; each child receives
 * `<supervisor id>/<child id>` as `ctx.parentId` to register its actors
 * under that child.
 * Restarts are counted in `actor_restarts_total{actor=<child id>}`.
 *
 * @module
 */
import { type AnyActorRef, type EventObject, fromPromise } from "xstate";
import { logger } from "../actors/runtime/logger.ts";
import { actorRestartsTotal } from "../actors/runtime/metrics.ts";
import { listActors, spawnActor, stopActor } from "../actors/runtime/registry.ts";
import {
  type ChildExitedEvent,
  type ExitReason,
  type Strategy,
  type SupervisorEvent,
  supervisorMachine,
  type SupervisorState,
  type UpdateEvent,
} from "../machines/supervisor.ts";

export type { ExitReason, Strategy, SupervisorState };

const log = logger("supervisor");

/** When a child is restarted after it exits (OTP names). */
export type RestartPolicy = "permanent" | "transient" | "temporary";

/** Why a supervisor asks a child to stop. */
export type StopReason = "shutdown";

/** How a child ended. */
export interface ChildExit {
  /** `"normal"`, `"shutdown"` (it was asked to stop), or the error it died of. */
  reason: ExitReason;
}

/** What a child's `start` receives. */
export interface ChildContext {
  /** The child's id, from its spec. */
  id: string;
  /**
   * The child's place in the tree, `<supervisor id>/<child id>`: pass it as
   * `parentId` to `spawnActor` so the inspector nests the child's actors
   * under that child of that supervisor (the supervisor lists its children
   * in its summary; the inspector draws one node per child).
   */
  parentId: string;
  /** How many times the supervisor restarted this child so far (0 on the first start). */
  restarts: number;
}

/**
 * A running child, as its `start` returns it.
 *
 * Contract: `exited` settles exactly once, when the child has ended for
 * whatever reason (its own crash, a normal end, or after `stop`); a rejected
 * `exited` counts as an exit with that error. `stop` asks the child to end
 * and may resolve before or with `exited`; it should be safe to call once
 * the child has already exited.
 */
export interface ChildHandle {
  /** Asks the child to end (drain, close) and resolves when it did. */
  stop(reason: StopReason): Promise<void>;
  /** Settles when the child has ended. */
  exited: Promise<ChildExit>;
  /** Optional JSON-safe summary, shown in the supervisor's {@link SupervisorStatus}. */
  status?(): Record<string, unknown>;
}

/** How to start, restart and stop one child. */
export interface ChildSpec {
  /** Unique among the supervisor's children; the `actor` label of `actor_restarts_total`. */
  id: string;
  /** Starts the child; resolves once it runs. A rejection is a start failure. */
  start(ctx: ChildContext): Promise<ChildHandle>;
  /** Restart policy. Default `"permanent"`. */
  restart?: RestartPolicy;
  /**
   * Time the child has to end after `stop`, in ms, after which it is logged
   * as killed. Default 5000 (`Infinity` for `kind: "supervisor"`, as in OTP:
   * a supervisor bounds each of its own children).
   */
  shutdownMs?: number;
  /** `"worker"` (default) or `"supervisor"`; informative (status, logs, default `shutdownMs`). */
  kind?: "worker" | "supervisor";
}

/** Restart intensity: more than `maxRestarts` within `periodMs` and the supervisor gives up. */
export interface Intensity {
  /** Default 3. */
  maxRestarts?: number;
  /** Default 5000. */
  periodMs?: number;
}

/** Options of {@link startSupervisor}. */
export interface SupervisorOptions {
  /** The supervisor's id: its registry id, the `parentId` of its children. */
  id: string;
  /** The parent supervisor's id (for the inspector tree). Default: none (a root). */
  parentId?: string;
  /** Default `"one_for_one"`. */
  strategy?: Strategy;
  /** Default `{ maxRestarts: 3, periodMs: 5000 }`. */
  intensity?: Intensity;
  /** Clock for the intensity window, in ms. Default `Date.now` (tests replace it). */
  now?: () => number;
}

/** State of one child, in {@link SupervisorStatus}. */
export type ChildState = "starting" | "running" | "stopping" | "exited" | "stopped";

/** Snapshot of a supervisor and its children (JSON-safe). */
export interface SupervisorStatus {
  [key: string]: unknown;
  /** The supervisor's id. */
  id: string;
  /** Always `"supervisor"` (tells nested statuses apart from workers'). */
  kind: "supervisor";
  /** Lifecycle state. */
  state: SupervisorState;
  /** Restart strategy. */
  strategy: Strategy;
  /** Restarts since start (one per handled exit). */
  restarts: number;
  /** Children in start order; a nested supervisor's `status` is its own SupervisorStatus. */
  children: {
    id: string;
    kind: string;
    restart: RestartPolicy;
    state: ChildState;
    restarts: number;
    lastExit?: string;
    status?: Record<string, unknown>;
  }[];
}

/**
 * Why a supervisor gave up or could not start. `childId` names the child that
 * kept exiting (or failed to start); `cause` is that child's last error.
 */
export class SupervisorError extends Error {
  override name = "SupervisorError";
  /** @param supervisorId the supervisor that gave up; @param childId the child to blame. */
  constructor(
    message: string,
    readonly supervisorId: string,
    readonly childId: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Default shutdown deadline of a worker child, in ms. */
export const DEFAULT_SHUTDOWN_MS = 5_000;
/** Default restart intensity. */
export const DEFAULT_INTENSITY: Required<Intensity> = { maxRestarts: 3, periodMs: 5_000 };

/** Whether `policy` restarts a child that ended with `reason`. */
export function shouldRestart(policy: RestartPolicy, reason: ExitReason): boolean {
  if (policy === "permanent") return true;
  if (policy === "transient") return reason instanceof Error;
  return false;
}

function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

function describe(reason: ExitReason): string {
  return reason instanceof Error ? `${reason.name}: ${reason.message}` : reason;
}

/** One start of a child: `generation` tells a stale exit from the current run's. */
interface ChildRun {
  handle: ChildHandle;
  generation: number;
  /** Never rejects. */
  ended: Promise<ExitReason>;
  settled: boolean;
  /** The supervisor asked it to stop: its exit is expected, not a crash. */
  stopping: boolean;
}

/** A change to the child list, queued through the machine (`UPDATE`). */
type Update =
  | { kind: "add"; spec: ChildSpec; done: PromiseWithResolvers<void> }
  | { kind: "remove"; id: string; done: PromiseWithResolvers<void> };

interface ChildEntry {
  spec: ChildSpec & { restart: RestartPolicy; shutdownMs: number; kind: "worker" | "supervisor" };
  run?: ChildRun;
  state: ChildState;
  generation: number;
  restarts: number;
  lastExit?: ExitReason;
}

/**
 * A running supervisor. It is itself a {@link ChildHandle}, so a supervisor
 * can be the child of another (see {@link supervisorSpec}). Create it with
 * {@link startSupervisor}.
 */
export class Supervisor implements ChildHandle {
  /** The supervisor's id. */
  readonly id: string;
  /** Settles with `"shutdown"` after {@link stop}, or with the {@link SupervisorError} that made it give up. */
  readonly exited: Promise<ChildExit>;
  readonly #strategy: Strategy;
  readonly #intensity: Required<Intensity>;
  readonly #now: () => number;
  readonly #children: ChildEntry[];
  /** Updates asked for and not applied yet (refused if the supervisor stops first). */
  readonly #updates = new Set<Update>();
  #restartTimes: number[] = [];
  #started = Promise.withResolvers<void>();
  readonly #actor: AnyActorRef;
  #done = false;

  private constructor(children: ChildSpec[], opts: SupervisorOptions) {
    this.id = opts.id;
    this.#strategy = opts.strategy ?? "one_for_one";
    this.#intensity = { ...DEFAULT_INTENSITY, ...opts.intensity };
    this.#now = opts.now ?? Date.now;
    this.#children = [];
    for (const spec of children) this.#children.push(this.#entry(spec));
    const exited = Promise.withResolvers<ChildExit>();
    this.exited = exited.promise;
    const logic = supervisorMachine.provide({
      actors: {
        startChildren: fromPromise(() => this.#startAll()),
        handleExit: fromPromise(({ input }) => this.#handleExit(input)),
        applyUpdate: fromPromise(({ input }) => this.#applyUpdate(input)),
        stopChildren: fromPromise(() => this.#stopAll()),
      },
      actions: { forgetChild: (_, exit) => this.#forget(exit) },
    });
    this.#actor = spawnActor(logic, {
      id: this.id,
      kind: "supervisor",
      parentId: opts.parentId,
      input: { supervisorId: this.id, strategy: this.#strategy },
      summary: (s) => ({
        state: s.value,
        strategy: this.#strategy,
        restarts: s.context.restarts,
        children: this.#children.map((c) => ({
          id: c.spec.id,
          state: c.state,
          restarts: c.restarts,
        })),
      }),
    });
    this.#actor.subscribe({
      complete: () => {
        const reason = this.#actor.getSnapshot().output?.reason ?? "shutdown";
        this.#finish(exited.resolve, reason);
      },
      error: (e: unknown) => this.#finish(exited.resolve, toError(e)),
    });
  }

  /** Starts a supervisor and its children; see {@link startSupervisor}. */
  static async start(children: ChildSpec[], opts: SupervisorOptions): Promise<Supervisor> {
    const sup = new Supervisor(children, opts);
    const early = await Promise.race([sup.#started.promise.then(() => undefined), sup.exited]);
    if (early?.reason instanceof Error) throw early.reason;
    return sup;
  }

  /** The lifecycle state (the machine's state). */
  get state(): SupervisorState {
    return this.#actor.getSnapshot().value as SupervisorState;
  }

  /**
   * Stops every child in reverse order, each within its `shutdownMs`, and
   * resolves when the supervisor has stopped. If it is starting or
   * restarting, that work finishes first. Safe to call more than once.
   */
  async stop(_reason: StopReason = "shutdown"): Promise<void> {
    if (!this.#done) this.#actor.send({ type: "STOP" } satisfies SupervisorEvent);
    await this.exited;
  }

  /**
   * Adds a child at the end of the list and starts it (OTP `start_child`),
   * e.g. a partition consumer on assignment. Applied in turn with exits.
   * A start failure rejects and does not count against the intensity.
   *
   * @throws {TypeError} when a child with that id exists.
   * @throws {SupervisorError} when the child fails to start, or the supervisor is stopping.
   */
  startChild(spec: ChildSpec): Promise<void> {
    return this.#update({ kind: "add", spec, done: Promise.withResolvers() });
  }

  /**
   * Stops a child (within its `shutdownMs`) and removes it from the list
   * (OTP `terminate_child` + `delete_child`), e.g. on partition revocation.
   *
   * @throws {Error} when there is no such child, or the supervisor is stopping.
   */
  terminateChild(id: string): Promise<void> {
    return this.#update({ kind: "remove", id, done: Promise.withResolvers() });
  }

  /** A JSON-safe snapshot of the supervisor and its children. */
  status(): SupervisorStatus {
    const snapshot = this.#actor.getSnapshot();
    return {
      id: this.id,
      kind: "supervisor",
      state: snapshot.value as SupervisorState,
      strategy: this.#strategy,
      restarts: snapshot.context.restarts,
      children: this.#children.map((c) => {
        let status: Record<string, unknown> | undefined;
        try {
          status = c.run?.handle.status?.();
        } catch (e) {
          status = { error: toError(e).message };
        }
        return {
          id: c.spec.id,
          kind: c.spec.kind,
          restart: c.spec.restart,
          state: c.state,
          restarts: c.restarts,
          ...(c.lastExit === undefined ? {} : { lastExit: describe(c.lastExit) }),
          ...(status === undefined ? {} : { status }),
        };
      }),
    };
  }

  #entry(spec: ChildSpec): ChildEntry {
    if (this.#children.some((c) => c.spec.id === spec.id)) {
      throw new TypeError(`Duplicate child id in supervisor ${this.id}: ${spec.id}`);
    }
    const kind = spec.kind ?? "worker";
    return {
      spec: {
        ...spec,
        kind,
        restart: spec.restart ?? "permanent",
        shutdownMs: spec.shutdownMs ?? (kind === "supervisor" ? Infinity : DEFAULT_SHUTDOWN_MS),
      },
      state: "stopped",
      generation: 0,
      restarts: 0,
    };
  }

  #stoppingError(what: string, childId: string): SupervisorError {
    return new SupervisorError(`Supervisor ${this.id} is stopping: ${what}`, this.id, childId);
  }

  #update(update: Update): Promise<void> {
    const snapshot = this.#actor.getSnapshot();
    const childId = update.kind === "add" ? update.spec.id : update.id;
    if (this.#done || snapshot.context.stopRequested || snapshot.value === "stopping") {
      return Promise.reject(this.#stoppingError(`cannot ${update.kind} child ${childId}`, childId));
    }
    this.#updates.add(update);
    this.#actor.send({ type: "UPDATE", update } satisfies UpdateEvent);
    return update.done.promise;
  }

  async #applyUpdate(event: UpdateEvent): Promise<void> {
    const update = event.update as Update;
    this.#updates.delete(update);
    try {
      if (update.kind === "add") {
        const entry = this.#entry(update.spec);
        this.#children.push(entry);
        try {
          await this.#startChild(entry);
        } catch (e) {
          this.#children.splice(this.#children.indexOf(entry), 1);
          throw new SupervisorError(
            `Supervisor ${this.id} could not start child ${entry.spec.id}: ${toError(e).message}`,
            this.id,
            entry.spec.id,
            { cause: e },
          );
        }
        log.info("child added", { supervisor: this.id, child: entry.spec.id });
      } else {
        const entry = this.#children.find((c) => c.spec.id === update.id);
        if (!entry) throw new Error(`Supervisor ${this.id} has no child ${update.id}`);
        await this.#stopChild(entry);
        this.#children.splice(this.#children.indexOf(entry), 1);
        log.info("child removed", { supervisor: this.id, child: entry.spec.id });
      }
      update.done.resolve();
    } catch (e) {
      update.done.reject(e);
    }
  }

  #finish(resolve: (exit: ChildExit) => void, reason: ExitReason): void {
    if (this.#done) return;
    this.#done = true;
    // Leave the inspector tree, unless a restart already registered a successor under this id.
    if (listActors().some((a) => a.id === this.id && a.actor === this.#actor)) stopActor(this.id);
    if (reason instanceof Error) {
      log.error("supervisor failed", { supervisor: this.id, error: reason });
    } else {
      log.info("supervisor stopped", { supervisor: this.id });
    }
    resolve({ reason });
  }

  async #startAll(): Promise<void> {
    log.debug("supervisor starting", { supervisor: this.id, children: this.#children.length });
    for (const entry of this.#children) {
      try {
        await this.#startChild(entry);
      } catch (e) {
        throw new SupervisorError(
          `Supervisor ${this.id} could not start child ${entry.spec.id}: ${toError(e).message}`,
          this.id,
          entry.spec.id,
          { cause: e },
        );
      }
    }
    this.#started.resolve();
  }

  async #startChild(entry: ChildEntry): Promise<void> {
    const generation = ++entry.generation;
    entry.state = "starting";
    let handle: ChildHandle;
    try {
      handle = await entry.spec.start({
        id: entry.spec.id,
        parentId: `${this.id}/${entry.spec.id}`,
        restarts: entry.restarts,
      });
    } catch (e) {
      entry.state = "exited";
      entry.lastExit = toError(e);
      throw e;
    }
    const run: ChildRun = {
      handle,
      generation,
      settled: false,
      stopping: false,
      ended: Promise.resolve(handle.exited).then(
        (exit) => exit?.reason ?? "normal",
        (e) => toError(e),
      ),
    };
    entry.run = run;
    entry.state = "running";
    log.debug("child started", { supervisor: this.id, child: entry.spec.id, generation });
    run.ended.then((reason) => {
      run.settled = true;
      if (entry.run !== run || run.stopping || this.#done) return;
      this.#actor.send(
        {
          type: "CHILD_EXITED",
          id: entry.spec.id,
          generation,
          reason,
          restart: shouldRestart(entry.spec.restart, reason),
        } satisfies ChildExitedEvent,
      );
    });
  }

  /** The current run of the child named by `exit`, or undefined when the exit is stale. */
  #current(exit: ChildExitedEvent): ChildEntry | undefined {
    const entry = this.#children.find((c) => c.spec.id === exit.id);
    if (!entry || entry.run?.generation !== exit.generation || entry.run.stopping) return undefined;
    entry.run = undefined;
    entry.state = "exited";
    entry.lastExit = exit.reason;
    return entry;
  }

  /** An exit that needs no restart: remember it; temporary children leave the list. */
  #forget(exit: ChildExitedEvent): void {
    const entry = this.#current(exit);
    if (!entry) return;
    log.info("child exited; not restarted", {
      supervisor: this.id,
      child: entry.spec.id,
      restart: entry.spec.restart,
      reason: describe(exit.reason),
    });
    if (entry.spec.restart === "temporary") this.#children.splice(this.#children.indexOf(entry), 1);
  }

  /** Counts one restart against the intensity; throws when it is exceeded. */
  #countRestart(entry: ChildEntry, reason: ExitReason): void {
    const now = this.#now();
    const { maxRestarts, periodMs } = this.#intensity;
    this.#restartTimes = [...this.#restartTimes.filter((t) => now - t < periodMs), now];
    if (this.#restartTimes.length > maxRestarts) {
      throw new SupervisorError(
        `Supervisor ${this.id} gave up: child ${entry.spec.id} exceeded ${maxRestarts} restarts ` +
          `in ${periodMs} ms: ${describe(reason)}`,
        this.id,
        entry.spec.id,
        { cause: reason },
      );
    }
  }

  async #handleExit(exit: ChildExitedEvent): Promise<void> {
    const entry = this.#current(exit);
    if (!entry) return;
    log.warn("child exited; restarting", {
      supervisor: this.id,
      child: entry.spec.id,
      strategy: this.#strategy,
      reason: describe(exit.reason),
    });
    this.#countRestart(entry, exit.reason);
    const index = this.#children.indexOf(entry);
    const group = this.#strategy === "one_for_one"
      ? [entry]
      : this.#strategy === "rest_for_one"
      ? this.#children.slice(index)
      : [...this.#children];
    for (const sibling of [...group].reverse()) {
      if (sibling !== entry) await this.#stopChild(sibling);
    }
    for (const child of group) {
      if (child !== entry && child.spec.restart === "temporary") {
        this.#children.splice(this.#children.indexOf(child), 1);
        continue;
      }
      while (true) {
        child.restarts++;
        actorRestartsTotal.inc({ actor: child.spec.id });
        try {
          await this.#startChild(child);
          break;
        } catch (e) {
          log.error("child failed to restart", {
            supervisor: this.id,
            child: child.spec.id,
            error: toError(e),
          });
          this.#countRestart(child, toError(e));
        }
      }
    }
  }

  async #stopAll(): Promise<void> {
    for (const update of this.#updates) {
      const childId = update.kind === "add" ? update.spec.id : update.id;
      update.done.reject(
        this.#stoppingError(`${update.kind} of child ${childId} refused`, childId),
      );
    }
    this.#updates.clear();
    for (const entry of [...this.#children].reverse()) await this.#stopChild(entry);
  }

  /** Stops one child within its deadline. Never throws. */
  async #stopChild(entry: ChildEntry): Promise<void> {
    const run = entry.run;
    if (!run) return;
    run.stopping = true;
    entry.state = "stopping";
    const { id, shutdownMs } = entry.spec;
    if (!run.settled) {
      const started = performance.now();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<"timeout">((resolve) => {
        if (Number.isFinite(shutdownMs)) timer = setTimeout(() => resolve("timeout"), shutdownMs);
      });
      const stopped = Promise.resolve()
        .then(() => run.handle.stop("shutdown"))
        .then(() => run.ended, (e) => toError(e));
      const outcome = await Promise.race([stopped, deadline]);
      clearTimeout(timer);
      const ms = Math.round(performance.now() - started);
      if (outcome === "timeout") {
        log.error("child did not stop within its shutdownMs; considered killed", {
          supervisor: this.id,
          child: id,
          shutdownMs,
        });
      } else if (outcome instanceof Error) {
        log.error("child stopped with an error", {
          supervisor: this.id,
          child: id,
          ms,
          error: outcome,
        });
      } else {
        log.debug("child stopped", { supervisor: this.id, child: id, ms });
      }
    }
    if (entry.run === run) entry.run = undefined;
    entry.state = "stopped";
  }
}

/**
 * Starts a supervisor: spawns its lifecycle actor, then starts `children` in
 * order. Resolves once every child runs.
 *
 * @throws {SupervisorError} when a child fails to start (children already started are stopped first).
 * @throws {TypeError} when two children share an id.
 */
export function startSupervisor(
  children: ChildSpec[],
  opts: SupervisorOptions,
): Promise<Supervisor> {
  return Supervisor.start(children, opts);
}

/** Options of {@link supervisorSpec}: the supervisor's options plus its own child spec fields. */
export interface SupervisorSpecOptions extends Omit<SupervisorOptions, "parentId"> {
  /** Restart policy of the nested supervisor in its parent. Default `"permanent"`. */
  restart?: RestartPolicy;
  /** Time the parent gives it to stop. Default `Infinity` (each of its children is bounded). */
  shutdownMs?: number;
}

/**
 * A child spec that runs a nested supervisor over `children`. Its `parentId`
 * is the parent supervisor, so the inspector nests it; when it gives up, the
 * parent sees it exit with its {@link SupervisorError} (escalation).
 */
export function supervisorSpec(children: ChildSpec[], opts: SupervisorSpecOptions): ChildSpec {
  const { restart, shutdownMs, ...supervisorOptions } = opts;
  return {
    id: opts.id,
    kind: "supervisor",
    restart: restart ?? "permanent",
    shutdownMs: shutdownMs ?? Infinity,
    start: (ctx) => Supervisor.start(children, { ...supervisorOptions, parentId: ctx.parentId }),
  };
}

/** Options of {@link actorChild}. */
export interface ActorChildOptions {
  /**
   * Event that asks the actor to wind down through its own `stopping` state
   * to a final state. Default none: `stop` calls `actor.stop()` (no exit
   * actions run).
   */
  stopEvent?: EventObject;
}

/**
 * Wraps a started XState actor (normally from `spawnActor` with
 * `parentId: ctx.parentId`) as a {@link ChildHandle}. Its `exited` settles
 * when the actor reaches a final state (`"normal"`, or `"shutdown"` once
 * `stop` was called), is stopped (`"shutdown"`), or errors (that error); the
 * actor then leaves the registry.
 */
export function actorChild(actor: AnyActorRef, opts: ActorChildOptions = {}): ChildHandle {
  let stopping = false;
  const exited = new Promise<ChildExit>((resolve) => {
    const end = (reason: ExitReason) => {
      // Leave the inspector tree, unless a restart already registered a successor under this id.
      if (listActors().some((a) => a.actor === actor)) stopActor(actor.id);
      resolve({ reason });
      queueMicrotask(() => subscription.unsubscribe());
    };
    const subscription = actor.subscribe({
      complete: () => {
        const status = actor.getSnapshot().status;
        end(stopping || status === "stopped" ? "shutdown" : "normal");
      },
      error: (e: unknown) => end(toError(e)),
    });
  });
  return {
    exited,
    status: () => ({ state: actor.getSnapshot().value ?? actor.getSnapshot().status }),
    stop: async () => {
      stopping = true;
      if (actor.getSnapshot().status !== "active") return;
      if (opts.stopEvent) actor.send(opts.stopEvent);
      else actor.stop();
      await exited;
    },
  };
}
