/**
 * Model-based tests generated from the statecharts themselves.
 *
 * For each of the partition-consumer, circuit-breaker and supervisor machines,
 * a *product model* pairs the real machine (its own pure `transition`) with a
 * small model of what its binding does around it and of what the world asked
 * for (the "truth"): the partition worker's records and commits
 * (`actors/pipeline/pipeline.ts`, `actors/pipeline/partition_worker.ts`), opossum's real state
 * and the calls a reader of the breaker lets through
 * (`actors/pipeline/circuit_breaker.ts`), the supervisor's child work
 * (`supervisors/supervisor.ts`). `@xstate/graph` walks that product
 * (`getShortestPaths`: one shortest path to every reachable product state);
 * every path, and every path extended by each event enabled at its end (so
 * every edge of the graph is taken once), is then replayed on a real actor of
 * the machine (interpreted, with recording implementations), which must agree
 * with the pure walk, and the invariants are checked after every step.
 *
 * Bounds keep the graphs finite and the file fast: at most 3 records, 3
 * exits/updates, 2 breaker openings. Each test asserts a floor on the number
 * of paths checked, so a generator that yields nothing cannot pass; and each
 * invariant is shown able to fail by a mutant of the machine (a guard or
 * transition broken) on which the same check must report that invariant.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  type AnyMachineSnapshot,
  type AnyStateMachine,
  assign,
  createActor,
  createMachine,
  type EventObject,
  fromPromise,
  fromTransition,
  initialTransition,
  transition,
} from "xstate";
import { getShortestPaths, getSimplePaths } from "../harness/npm/xstate_graph.ts";
import {
  type PartitionConsumerContext,
  partitionConsumerMachine,
  type PauseReason,
} from "../../machines/partition_consumer.ts";
import {
  CIRCUIT_GAUGE,
  type CircuitBreakerContext,
  circuitBreakerMachine,
} from "../../machines/circuit_breaker.ts";
import {
  type ChildExitedEvent,
  type SupervisorContext,
  supervisorMachine,
  type UpdateEvent,
} from "../../machines/supervisor.ts";

// ---------------------------------------------------------------------------
// The harness: product model, path generation, replay.

/** One product state: the machine's snapshot and the model's state. */
interface World<M> {
  snap: AnyMachineSnapshot;
  model: M;
}

/** What the replay observed the real actor do (per path). */
interface Observed {
  /** Work, actions and reports the recording implementations saw, in order. */
  log: { what: string; input?: unknown; id?: string }[];
  /** Ids of the child work begun and not yet answered (supervisor). */
  running: string[];
}

/** One step, as given to {@link Spec.check}. */
interface StepCheck<M, E extends EventObject> {
  before: World<M>;
  e: E;
  /** The model's next state with the *interpreted* actor's snapshot. */
  after: World<M>;
  obs: Observed;
  /** What the recording implementations saw during this step. */
  fresh: Observed["log"];
  /** Fails with invariant `id` unless `cond` (unless `id` is skipped). */
  expect(cond: boolean, id: string, detail: () => string): void;
}

/** A product model of one machine and its binding. */
interface Spec<M, E extends EventObject> {
  name: string;
  /** The machine under test (a mutant in the mutation tests). */
  machine: AnyStateMachine;
  input?: unknown;
  initial: M;
  /** Product events enabled in a state. */
  events(w: World<M>): E[];
  /** The machine events the binding sends for a product event. */
  send(w: World<M>, e: E): EventObject[];
  /** The model's next state, given the machine's next snapshot. */
  update(w: World<M>, e: E, next: AnyMachineSnapshot): M;
  /** What identifies a product state (bounded: no unbounded counters). */
  key(w: World<M>): string;
  /** The machine as replayed: recording implementations provided. */
  instrument(machine: AnyStateMachine, obs: Observed): AnyStateMachine;
  /** Also check every simple path (`getSimplePaths`; small graphs only). */
  simplePaths?: boolean;
  /** Called before the machine events of `e` are sent to the replayed actor. */
  delivering?(e: E, obs: Observed): void;
  /** The invariants, by id (e.g. `P1`), with what each says. */
  invariants: Record<string, string>;
  /** Invariants not checked (a mutation test showing a later one fails on its own). */
  skip?: string[];
  /** Checks one step with `expect`. */
  check(s: StepCheck<M, E>): void;
}

function step<M, E extends EventObject>(spec: Spec<M, E>, w: World<M>, e: E): World<M> {
  let snap = w.snap;
  for (const me of spec.send(w, e)) [snap] = transition(spec.machine, snap, me);
  return { snap, model: spec.update(w, e, snap) };
}

function initialWorld<M, E extends EventObject>(spec: Spec<M, E>): World<M> {
  const [snap] = initialTransition(spec.machine, spec.input);
  return { snap, model: spec.initial };
}

/**
 * The paths to check: `getShortestPaths` over the product, each extended by
 * every event enabled at its end (every edge of the product graph once).
 */
function generatePaths<M, E extends EventObject>(spec: Spec<M, E>): E[][] {
  const logic = fromTransition(
    (w: World<M>, e: E) => step(spec, w, e),
    initialWorld(spec),
  );
  const options = {
    events: (s: { context: World<M> }) => spec.events(s.context),
    serializeState: (s: { context: World<M> }) => spec.key(s.context),
    limit: 100_000,
  };
  // Steps after the first are (event, state after it).
  const eventsOf = (p: { steps: { event: EventObject }[] }) =>
    p.steps.slice(1).map((s) => s.event as E);
  const out: E[][] = [];
  for (const p of getShortestPaths(logic, options)) {
    const events = eventsOf(p);
    const next = spec.events(p.state.context);
    if (next.length === 0) out.push(events);
    for (const e of next) out.push([...events, e]);
  }
  if (spec.simplePaths) { for (const p of getSimplePaths(logic, options)) out.push(eventsOf(p)); }
  return out;
}

function describe(events: EventObject[]): string {
  return events.map((e) => {
    const { type, ...rest } = e;
    const args = Object.values(rest).map((v) => v instanceof Error ? "Error" : String(v));
    return args.length ? `${type}(${args.join(",")})` : type;
  }).join(" → ") || "(initial)";
}

/**
 * Replays one path on a real actor and checks every step: the actor must
 * agree with the pure walk (same state, same `key`), and no invariant breaks.
 */
function replay<M, E extends EventObject>(
  spec: Spec<M, E>,
  path: E[],
  states: Set<string>,
): number {
  const obs: Observed = { log: [], running: [] };
  const expect = (cond: boolean, id: string, detail: () => string) => {
    if (cond || spec.skip?.includes(id)) return;
    throw new assert.AssertionError({
      message: `invariant ${id} broken (${spec.invariants[id]}): ${detail()}`,
    });
  };
  const actor = createActor(spec.instrument(spec.machine, obs), { input: spec.input });
  actor.start();
  let w = initialWorld(spec);
  try {
    for (let i = 0; i < path.length; i++) {
      const e = path[i];
      const sent = spec.send(w, e);
      const obsBefore = obs.log.length;
      spec.delivering?.(e, obs);
      for (const me of sent) actor.send(me);
      const next = step(spec, w, e);
      const real = actor.getSnapshot();
      assert.deepEqual(
        {
          value: real.value,
          status: real.status,
          key: spec.key({ snap: real, model: next.model }),
        },
        { value: next.snap.value, status: next.snap.status, key: spec.key(next) },
        "the interpreted actor disagrees with the pure transition",
      );
      spec.check({
        before: w,
        e,
        after: { snap: real, model: next.model },
        obs,
        fresh: obs.log.slice(obsBefore),
        expect,
      });
      w = next;
      states.add(String(real.value));
    }
    return path.length;
  } catch (err) {
    if (err instanceof Error) {
      err.message = `${spec.name}: ${err.message}\n  path: ${describe(path)}`;
    }
    throw err;
  } finally {
    actor.stop();
  }
}

/** Generates and replays every path; returns how many were checked and the states seen. */
function checkAll<M, E extends EventObject>(
  spec: Spec<M, E>,
): { paths: number; states: Set<string>; steps: number } {
  const paths = generatePaths(spec);
  const states = new Set<string>();
  let steps = 0;
  for (const p of paths) steps += replay(spec, p, states);
  return { paths: paths.length, states, steps };
}

/** Runs the model check of `spec` (the real machine) and asserts its coverage. */
function checkMachine<M, E extends EventObject>(spec: Spec<M, E>, floor: number): void {
  const t0 = performance.now();
  const { paths, states, steps } = checkAll(spec);
  const ms = Math.round(performance.now() - t0);
  console.log(
    `${spec.name}: ${paths} paths (${steps} steps) checked in ${ms} ms; states seen: ${
      [...states].sort().join(", ")
    }`,
  );
  assert.ok(paths > floor, `only ${paths} paths generated (floor ${floor})`);
  assert.deepEqual(
    [...states].sort(),
    Object.keys(spec.machine.states).sort(),
    "every state of the machine is reached",
  );
}

/**
 * A mutant of `machine`: `change` edits a copy of its config (copy the parts
 * it edits); the implementations are the machine's.
 */
function mutate(
  machine: AnyStateMachine,
  // deno-lint-ignore no-explicit-any
  change: (states: Record<string, any>) => void,
): AnyStateMachine {
  const config = { ...machine.config, states: { ...machine.config.states } };
  change(config.states);
  return createMachine(config, machine.implementations as never) as AnyStateMachine;
}

/** Asserts that checking the mutant `spec` fails on invariant `id`; returns the message. */
function assertCaught<M, E extends EventObject>(spec: Spec<M, E>, id: string): string {
  let message = "";
  assert.throws(
    () => checkAll(spec),
    (e: unknown) => {
      message = e instanceof Error ? e.message : String(e);
      return message.includes(`invariant ${id} broken`);
    },
    `mutant ${spec.name} should break invariant ${id}`,
  );
  return message;
}

// ---------------------------------------------------------------------------
// Partition consumer.
//
// The binding (actors/pipeline/pipeline.ts) admits records into the partition worker
// only while the partition runs, raises `inflight` when the worker is full
// (pending ≥ maxInflight) and lifts it when it is ready again (pending ≤
// maxInflight / 2), commits the worker's low watermark (the offset after the
// longest finished prefix) while it owns the partition, and ends a shutdown
// drain with DRAINED (nothing left) or DRAIN_TIMEOUT (records aborted, to be
// consumed again). Here the binding reads the machine, as its mirror says:
// - it admits while the machine is `running`;
// - it commits only while the machine's `drainReason` is not `revoke`;
// - its final commit on `stopped` trusts `drainTimedOut`: after DRAINED every
//   admitted record finished, so the end of what was admitted is committed;
//   after DRAIN_TIMEOUT only the watermark is.

const MAX_INFLIGHT = 2;
const MAX_RECORDS = 3;
const OUTSIDE_REASONS = ["circuit", "operator"] as const satisfies readonly PauseReason[];

type RecordState = "run" | "done" | "aborted";

const PARTITION_INVARIANTS = {
  P1: "no record is admitted unless the partition runs (not paused, draining or revoked)",
  P2: "the committed offset never passes an unfinished record",
  P3: "a revoked partition commits nothing",
  P4: "the machine's state and pause reasons mirror the partition's",
  P5: "the drain reason is the last one asked (a revocation wins)",
  P6: "`stopped` is final",
  P7: "`pauses` counts the entries into `paused`",
};

interface PartitionModel {
  started: boolean;
  /** Reasons the world holds (the binding's and the worker's). */
  reasons: PauseReason[];
  drain: null | "shutdown" | "revoke";
  ended: null | "drained" | "timeout";
  /** Record `i` has offset `i`. */
  records: RecordState[];
  /** Whether the worker reported `full` (and not yet `ready`). */
  full: boolean;
  /** Next offset to read, as committed (0: nothing committed). */
  committed: number;
}

type PartitionStep =
  | { type: "START" }
  | { type: "PAUSE"; reason: PauseReason }
  | { type: "RESUME"; reason: PauseReason }
  | { type: "DRAIN" }
  | { type: "REVOKE" }
  | { type: "ADMIT" }
  | { type: "FINISH"; offset: number }
  | { type: "COMMIT" }
  | { type: "DRAIN_END" };

function pctx(snap: AnyMachineSnapshot): PartitionConsumerContext {
  return snap.context as PartitionConsumerContext;
}

function pending(m: PartitionModel): number {
  return m.records.filter((r) => r === "run").length;
}

/** The worker's committable offset: after the longest prefix of finished records. */
function watermark(records: RecordState[]): number {
  const i = records.findIndex((r) => r !== "done");
  return i === -1 ? records.length : i;
}

/** The state the world says the partition is in. */
function truthState(m: PartitionModel): string {
  if (m.ended) return "stopped";
  if (m.drain) return "draining";
  if (!m.started) return "assigned";
  return m.reasons.length > 0 ? "paused" : "running";
}

function sorted<T>(xs: readonly T[]): T[] {
  return [...xs].sort();
}

function partitionSpec(machine: AnyStateMachine = partitionConsumerMachine, name = "partition") {
  const spec: Spec<PartitionModel, PartitionStep> = {
    name,
    machine,
    input: { topic: "t", partition: 0, generation: 1 },
    initial: {
      started: false,
      reasons: [],
      drain: null,
      ended: null,
      records: [],
      full: false,
      committed: 0,
    },
    events({ snap, model }) {
      if (snap.status !== "active") return [];
      const es: PartitionStep[] = [];
      if (!model.started) es.push({ type: "START" });
      for (const reason of OUTSIDE_REASONS) {
        es.push({ type: "PAUSE", reason }, { type: "RESUME", reason });
      }
      if (model.drain !== "revoke") es.push({ type: "REVOKE" });
      es.push({ type: "DRAIN" });
      if (snap.value === "running" && model.records.length < MAX_RECORDS) {
        es.push({ type: "ADMIT" });
      }
      model.records.forEach((r, offset) => r === "run" && es.push({ type: "FINISH", offset }));
      if (pctx(snap).drainReason !== "revoke" && watermark(model.records) > model.committed) {
        es.push({ type: "COMMIT" });
      }
      if (model.drain === "shutdown" && model.ended === null) es.push({ type: "DRAIN_END" });
      return es;
    },
    send({ model }, e) {
      switch (e.type) {
        case "ADMIT":
          return !model.full && pending(model) + 1 >= MAX_INFLIGHT
            ? [{ type: "PAUSE", reason: "inflight" }]
            : [];
        case "FINISH":
          return model.full && pending(model) - 1 <= Math.floor(MAX_INFLIGHT / 2)
            ? [{ type: "RESUME", reason: "inflight" }]
            : [];
        case "COMMIT":
          return [];
        case "DRAIN_END":
          return [{ type: pending(model) === 0 ? "DRAINED" : "DRAIN_TIMEOUT" }];
        default:
          return [e];
      }
    },
    update({ snap, model }, e, next) {
      const m: PartitionModel = { ...model, records: [...model.records] };
      const abortRunning = () => (m.records = m.records.map((r) => r === "run" ? "aborted" : r));
      switch (e.type) {
        case "START":
          m.started = true;
          break;
        case "PAUSE":
          if (!m.reasons.includes(e.reason)) m.reasons = sorted([...m.reasons, e.reason]);
          break;
        case "RESUME":
          m.reasons = m.reasons.filter((r) => r !== e.reason);
          break;
        case "DRAIN":
          m.drain ??= "shutdown";
          break;
        case "REVOKE":
          // The binding disposes the worker: what runs is aborted.
          m.drain = "revoke";
          abortRunning();
          break;
        case "ADMIT":
          m.records.push("run");
          if (!m.full && pending(m) >= MAX_INFLIGHT) {
            m.full = true;
            m.reasons = sorted([...m.reasons, "inflight"]);
          }
          break;
        case "FINISH":
          m.records[e.offset] = "done";
          if (m.full && pending(m) <= Math.floor(MAX_INFLIGHT / 2)) {
            m.full = false;
            m.reasons = m.reasons.filter((r) => r !== "inflight");
          }
          break;
        case "COMMIT":
          m.committed = watermark(m.records);
          break;
        case "DRAIN_END":
          m.ended = pending(m) === 0 ? "drained" : "timeout";
          abortRunning();
          break;
      }
      // The final commit when the machine says the partition stopped.
      if (
        next.value === "stopped" && snap.value !== "stopped" && pctx(next).drainReason !== "revoke"
      ) {
        m.committed = pctx(next).drainTimedOut ? watermark(m.records) : m.records.length;
      }
      return m;
    },
    key({ snap, model }) {
      const c = pctx(snap);
      // `pauses` (an unbounded counter) is left out; it is checked on the replay.
      return JSON.stringify([
        snap.value,
        c.pauseReasons,
        c.drainReason,
        c.drainTimedOut,
        model,
      ]);
    },
    instrument(machine) {
      return machine;
    },
    invariants: PARTITION_INVARIANTS,
    check({ before, e, after, expect }) {
      const m = after.model;
      const c = pctx(after.snap);
      const truth = truthState(m);
      expect(
        e.type !== "ADMIT" || truthState(before.model) === "running",
        "P1",
        () => `a record was admitted while the partition is ${truthState(before.model)}`,
      );
      const unfinished = m.records.findIndex((r) => r !== "done");
      expect(
        unfinished === -1 || m.committed <= unfinished,
        "P2",
        () => `committed ${m.committed} while record ${unfinished} is ${m.records[unfinished]}`,
      );
      expect(
        before.model.drain !== "revoke" || m.committed === before.model.committed,
        "P3",
        () => `committed ${m.committed} after the revocation (was ${before.model.committed})`,
      );
      expect(
        after.snap.value === truth &&
          JSON.stringify(sorted(c.pauseReasons)) === JSON.stringify(m.reasons) &&
          new Set(c.pauseReasons).size === c.pauseReasons.length,
        "P4",
        () => `machine ${after.snap.value} [${c.pauseReasons}], world ${truth} [${m.reasons}]`,
      );
      expect(
        c.drainReason === m.drain,
        "P5",
        () => `machine says ${c.drainReason}, world ${m.drain}`,
      );
      expect(
        (after.snap.value === "stopped") === (after.snap.status === "done"),
        "P6",
        () => `value ${after.snap.value}, status ${after.snap.status}`,
      );
      const entered = before.snap.value !== "paused" && after.snap.value === "paused" ? 1 : 0;
      expect(
        c.pauses === pctx(before.snap).pauses + entered,
        "P7",
        () => `pauses ${c.pauses} after ${pctx(before.snap).pauses} (+${entered} entries)`,
      );
    },
  };
  return spec;
}

Deno.test("model: partition consumer, every generated path keeps P1–P7", () => {
  checkMachine(partitionSpec(), 2000);
});

// ---------------------------------------------------------------------------
// Circuit breaker.
//
// opossum decides; the binding (actors/pipeline/circuit_breaker.ts) sends the machine
// one event per change opossum reports: closed → open (OPENED), open →
// halfOpen (HALF_OPENED, reset timer), halfOpen → closed (CLOSED, the probe
// succeeded), halfOpen → open (OPENED, the probe failed), open → closed
// (CLOSED, an operator). A reader of the mirror (inspector, dashboard, a
// caller gating on it) lets a call through while the machine says `closed`,
// and one probe while it says `halfOpen`.

type Breaker = "closed" | "open" | "halfOpen";

interface BreakerModel {
  /** opossum's state. */
  truth: Breaker;
  /** Calls let through since opossum entered its state. */
  calls: number;
  /** Calls the reader let through since the machine's state last changed. */
  gateCalls: number;
  /** Times opossum opened. */
  opens: number;
  /** Changes opossum reported (capped at 1: only "any" matters). */
  changes: number;
}

type BreakerStep = { type: "OPENED" | "HALF_OPENED" | "CLOSED" } | { type: "CALL" };

const BREAKER_INVARIANTS = {
  B1: "a reader of the machine lets no call through while opossum is open",
  B2: "half-open, it lets through at most its probe",
  B3: "the machine's state is opossum's",
  B4: "each change is reported once (gauge and event), naming from and to",
  B5: "`opens` counts the openings; `changedAt` is set from the first change",
};

const MAX_OPENS = 2;
const PROBES = 1;

/** The changes opossum can report from each state. */
const OPOSSUM: Record<Breaker, Partial<Record<BreakerStep["type"], Breaker>>> = {
  closed: { OPENED: "open" },
  open: { HALF_OPENED: "halfOpen", CLOSED: "closed" },
  halfOpen: { CLOSED: "closed", OPENED: "open" },
};

function bctx(snap: AnyMachineSnapshot): CircuitBreakerContext {
  return snap.context as CircuitBreakerContext;
}

/** Whether a reader of the machine lets one more call through. */
function gateOpen(snap: AnyMachineSnapshot, gateCalls: number): boolean {
  return snap.value === "closed" || (snap.value === "halfOpen" && gateCalls < PROBES);
}

function breakerSpec(machine: AnyStateMachine = circuitBreakerMachine, name = "breaker") {
  const spec: Spec<BreakerModel, BreakerStep> = {
    name,
    machine,
    input: { policy: "pause" },
    simplePaths: true,
    initial: { truth: "closed", calls: 0, gateCalls: 0, opens: 0, changes: 0 },
    events({ model }) {
      const es: BreakerStep[] = [];
      for (const type of Object.keys(OPOSSUM[model.truth]) as BreakerStep["type"][]) {
        if (type !== "OPENED" || model.opens < MAX_OPENS) es.push({ type } as BreakerStep);
      }
      if (model.calls < 2 && model.gateCalls < 2) es.push({ type: "CALL" });
      return es;
    },
    send(_, e) {
      return e.type === "CALL" ? [] : [e];
    },
    update({ snap, model }, e, next) {
      const m = { ...model };
      if (e.type === "CALL") {
        if (gateOpen(snap, model.gateCalls)) {
          m.calls++;
          m.gateCalls++;
        }
      } else {
        m.truth = OPOSSUM[model.truth][e.type]!;
        m.calls = 0;
        m.changes = 1;
        if (m.truth === "open") m.opens++;
      }
      if (next.value !== snap.value) m.gateCalls = 0;
      return m;
    },
    key({ snap, model }) {
      return JSON.stringify([snap.value, bctx(snap).opens, bctx(snap).policy, model]);
    },
    instrument(machine, obs) {
      return machine.provide({
        actions: {
          report: (_: unknown, params: { from: Breaker; to: Breaker }) =>
            void obs.log.push({ what: "report", input: params }),
        },
      });
    },
    invariants: BREAKER_INVARIANTS,
    check({ before, e, after, fresh, expect }) {
      const m = after.model;
      const through = e.type === "CALL" && gateOpen(before.snap, before.model.gateCalls);
      expect(
        !through || before.model.truth !== "open",
        "B1",
        () => "the mirror let a call through while opossum is open",
      );
      expect(
        !through || before.model.truth !== "halfOpen" || m.calls <= PROBES,
        "B2",
        () => `${m.calls} calls let through half-open (probes: ${PROBES})`,
      );
      expect(
        after.snap.value === m.truth,
        "B3",
        () => `machine ${after.snap.value}, opossum ${m.truth}`,
      );
      const changed = before.snap.value !== after.snap.value;
      const reports = fresh.filter((r) => r.what === "report").map((r) => r.input);
      const expected = changed ? [{ from: before.snap.value, to: after.snap.value }] : [];
      expect(
        JSON.stringify(reports) === JSON.stringify(expected) &&
          (!changed || String(after.snap.value) in CIRCUIT_GAUGE),
        "B4",
        () => `reports ${JSON.stringify(reports)}, expected ${JSON.stringify(expected)}`,
      );
      const c = bctx(after.snap);
      expect(
        c.opens === m.opens && (c.changedAt !== null) === (m.changes > 0),
        "B5",
        () => `opens ${c.opens} (opossum opened ${m.opens}), changedAt ${c.changedAt}`,
      );
    },
  };
  return spec;
}

Deno.test("model: circuit breaker, every generated path keeps B1–B5", () => {
  checkMachine(breakerSpec(), 300);
});

// ---------------------------------------------------------------------------
// Supervisor.
//
// The supervisor (supervisors/supervisor.ts) provides the machine's work:
// `startChildren`, `handleExit` (restart per strategy), `applyUpdate`,
// `stopChildren` (promise actors) and `forgetChild` (an exit needing no
// restart). The world sends exits (needing a restart or not), updates and one
// STOP, in any order, and the work answers (done or error) in any order with
// them. The replay runs the real actor with recording work that never
// settles by itself: the model's DONE/ERROR events answer it.

const MAX_ITEMS = 3;

const SUPERVISOR_INVARIANTS = {
  S1: "`startChildren` runs once, first",
  S2: "one piece of work at a time: children are never stopped (or restarted) while they start",
  S3: "once `stopChildren` began, nothing else runs: a stopping supervisor restarts nothing",
  S4: "after a STOP, no further exit or update is handled",
  S5: "exits and updates are handled once each, in arrival order, each by the right work",
  S6: "a STOP is honoured as soon as the work in hand ends",
  S7: "nothing waits while `running`",
  S8: "the supervisor ends `failed` exactly when a start or restart failed, else `stopped`",
  S9: "`restarts` counts the restarts done",
};

interface SupervisorModel {
  /** Exits and updates sent (item `n` has generation / update `n`). */
  sent: number;
  stopAsked: boolean;
  /** A start or a restart failed. */
  errored: boolean;
  /** Restarts that answered done. */
  restarts: number;
}

type SupervisorStep =
  | { type: "EXIT"; restart: boolean }
  | { type: "UPDATE" }
  | { type: "STOP" }
  | { type: "DONE"; child: string }
  | { type: "ERROR"; child: string };

function sctx(snap: AnyMachineSnapshot): SupervisorContext {
  return snap.context as SupervisorContext;
}

/** The work (actor source) a child of the machine runs. */
function workOf(snap: AnyMachineSnapshot, child: string): string {
  return String((snap.children[child] as { src?: unknown } | undefined)?.src);
}

/** The item number a piece of work or a `forgetChild` is about. */
function itemOf(input: unknown): number {
  const i = input as ChildExitedEvent | UpdateEvent;
  return i.type === "UPDATE" ? i.update as number : i.generation;
}

function supervisorSpec(machine: AnyStateMachine = supervisorMachine, name = "supervisor") {
  const spec: Spec<SupervisorModel, SupervisorStep> = {
    name,
    machine,
    input: { supervisorId: "sup", strategy: "one_for_one" },
    initial: { sent: 0, stopAsked: false, errored: false, restarts: 0 },
    events({ snap, model }) {
      if (snap.status !== "active") return [];
      const es: SupervisorStep[] = [];
      for (const child of Object.keys(snap.children)) {
        es.push({ type: "DONE", child }, { type: "ERROR", child });
      }
      if (model.sent < MAX_ITEMS) {
        es.push({ type: "EXIT", restart: true }, { type: "EXIT", restart: false }, {
          type: "UPDATE",
        });
      }
      if (!model.stopAsked) es.push({ type: "STOP" });
      return es;
    },
    send({ model }, e) {
      switch (e.type) {
        case "EXIT":
          return [{
            type: "CHILD_EXITED",
            id: `c${model.sent}`,
            generation: model.sent,
            reason: e.restart ? new Error("crashed") : "normal",
            restart: e.restart,
          }];
        case "UPDATE":
          return [{ type: "UPDATE", update: model.sent }];
        case "STOP":
          return [e];
        case "DONE":
          return [{ type: `xstate.done.actor.${e.child}`, output: undefined }];
        case "ERROR":
          return [{ type: `xstate.error.actor.${e.child}`, error: new Error("work failed") }];
      }
    },
    update({ snap, model }, e) {
      const m = { ...model };
      if (e.type === "EXIT" || e.type === "UPDATE") m.sent++;
      if (e.type === "STOP") m.stopAsked = true;
      if (e.type === "ERROR" && ["startChildren", "handleExit"].includes(workOf(snap, e.child))) {
        m.errored = true;
      }
      if (e.type === "DONE" && workOf(snap, e.child) === "handleExit") m.restarts++;
      return m;
    },
    key({ snap, model }) {
      const c = sctx(snap);
      return JSON.stringify([
        snap.value,
        c.pending.map((p) => [p.type, itemOf(p), p.type === "CHILD_EXITED" && p.restart]),
        c.stopRequested,
        c.error !== undefined,
        c.restarts,
        Object.keys(snap.children),
        model,
      ]);
    },
    instrument(machine, obs) {
      const work = (what: string) =>
        fromPromise<void, unknown>(({ input, self }) => {
          obs.log.push({ what, input, id: self.id });
          obs.running.push(self.id);
          return new Promise<void>(() => {});
        });
      return machine.provide({
        actors: {
          startChildren: work("startChildren"),
          handleExit: work("handleExit"),
          applyUpdate: work("applyUpdate"),
          stopChildren: work("stopChildren"),
        },
        actions: {
          forgetChild: (_: unknown, exit: ChildExitedEvent) =>
            void obs.log.push({ what: "forgetChild", input: exit }),
        },
      });
    },
    delivering(e, obs) {
      // The answered work is no longer running (a work abandoned without an
      // answer, by leaving its state, still is: its promise goes on).
      if (e.type === "DONE" || e.type === "ERROR") {
        const i = obs.running.indexOf(e.child);
        if (i !== -1) obs.running.splice(i, 1);
      }
    },
    invariants: SUPERVISOR_INVARIANTS,
    check({ before, e, after, obs, fresh, expect }) {
      const m = after.model;
      const c = sctx(after.snap);
      const log = obs.log;
      const starts = log.filter((l) => l.what === "startChildren").length;
      expect(
        log[0]?.what === "startChildren" && starts === 1,
        "S1",
        () => `work so far: ${log.map((l) => l.what)}`,
      );
      // Work begun in this step, each checked against what ran when it began.
      const runningBefore = obs.running.filter((id) => !fresh.some((f) => f.id === id));
      for (const [i, f] of fresh.entries()) {
        if (f.what === "forgetChild") continue;
        const others = [...runningBefore, ...fresh.slice(0, i).flatMap((g) => g.id ?? [])];
        expect(
          others.length === 0,
          "S2",
          () => `${f.what} began while ${others} still ran`,
        );
      }
      const stopAt = log.findIndex((l) => l.what === "stopChildren");
      expect(
        stopAt === -1 || stopAt === log.length - 1,
        "S3",
        () => `after stopChildren: ${log.slice(stopAt + 1).map((l) => l.what)}`,
      );
      const handled = fresh.filter((f) => f.what !== "stopChildren");
      expect(
        !before.model.stopAsked || handled.length === 0,
        "S4",
        () => `after STOP: ${handled.map((h) => `${h.what}(${itemOf(h.input)})`)}`,
      );
      const items = log.filter((l) =>
        ["handleExit", "forgetChild", "applyUpdate"].includes(l.what)
      );
      const rightWork = (l: (typeof log)[number]) => {
        const i = l.input as ChildExitedEvent | UpdateEvent;
        return i.type === "UPDATE"
          ? l.what === "applyUpdate"
          : l.what === (i.restart ? "handleExit" : "forgetChild");
      };
      expect(
        items.every((l, n) => itemOf(l.input) === n && rightWork(l)),
        "S5",
        () => `handled: ${items.map((l) => `${l.what}(${itemOf(l.input)})`)}`,
      );
      expect(
        !m.stopAsked || obs.running.length > 0 || after.snap.status === "done",
        "S6",
        () => `STOP asked, no work running, and the supervisor is ${after.snap.value}`,
      );
      expect(
        after.snap.value !== "running" || (c.pending.length === 0 && !c.stopRequested),
        "S7",
        () => `running with ${c.pending.length} pending, stopRequested ${c.stopRequested}`,
      );
      const done = after.snap.status === "done";
      const expected = !done ? null : m.errored ? "failed" : "stopped";
      const reason = (after.snap.output as { reason?: unknown } | undefined)?.reason;
      expect(
        done === ["stopped", "failed"].includes(String(after.snap.value)) &&
          (!done || (after.snap.value === expected &&
            (expected === "failed" ? reason instanceof Error : reason === "shutdown"))),
        "S8",
        () => `ended ${after.snap.value} (${after.snap.status}), expected ${expected}`,
      );
      expect(
        c.restarts === m.restarts,
        "S9",
        () => `restarts ${c.restarts}, restarts done ${m.restarts}`,
      );
      void e;
    },
  };
  return spec;
}

Deno.test("model: supervisor, every generated path keeps S1–S9", () => {
  checkMachine(supervisorSpec(), 1500);
});

// ---------------------------------------------------------------------------
// Every invariant can fail: mutants of the machines, each caught by the
// invariant named. Where a mutant first breaks a more general invariant (the
// mirror), that one is skipped to show the specific one fails on its own.

interface Mutant {
  what: string;
  machine: AnyStateMachine;
  caughtBy: string;
  skip?: string[];
}

function assertMutantsCaught<M, E extends EventObject>(
  make: (machine: AnyStateMachine, name: string) => Spec<M, E>,
  invariants: Record<string, string>,
  mutants: Mutant[],
): void {
  for (const m of mutants) {
    const spec = make(m.machine, `mutant "${m.what}"`);
    spec.skip = m.skip;
    const message = assertCaught(spec, m.caughtBy);
    console.log(message);
  }
  const caught = new Set(mutants.map((m) => m.caughtBy));
  assert.deepEqual([...caught].sort(), Object.keys(invariants).sort(), "a mutant per invariant");
}

Deno.test("model: partition consumer mutants are caught, one per invariant", () => {
  const pc = partitionConsumerMachine as AnyStateMachine;
  assertMutantsCaught(partitionSpec, PARTITION_INVARIANTS, [
    {
      what: "running ignores pause reasons (guard anyReason → false)",
      machine: pc.provide({ guards: { anyReason: () => false } }),
      caughtBy: "P4",
    },
    {
      what: "idem, mirror check off",
      machine: pc.provide({ guards: { anyReason: () => false } }),
      caughtBy: "P1",
      skip: ["P4"],
    },
    {
      what: "DRAIN_TIMEOUT does not set drainTimedOut",
      machine: mutate(pc, (s) => {
        s.draining = { ...s.draining, on: { ...s.draining.on, DRAIN_TIMEOUT: "stopped" } };
      }),
      caughtBy: "P2",
    },
    {
      what: "a revocation during a shutdown drain is ignored",
      machine: mutate(pc, (s) => {
        const { REVOKE: _, ...on } = s.draining.on;
        s.draining = { ...s.draining, on };
      }),
      caughtBy: "P3",
      skip: ["P5"],
    },
    {
      what: "setDrainReason always says shutdown",
      machine: pc.provide({ actions: { setDrainReason: assign({ drainReason: "shutdown" }) } }),
      caughtBy: "P5",
    },
    {
      what: "stopped is not final",
      machine: mutate(pc, (s) => {
        s.stopped = {};
      }),
      caughtBy: "P6",
    },
    {
      what: "paused does not count its entries",
      machine: mutate(pc, (s) => {
        const { entry: _, ...paused } = s.paused;
        s.paused = paused;
      }),
      caughtBy: "P7",
    },
  ]);
});

Deno.test("model: circuit breaker mutants are caught, one per invariant", () => {
  const cb = circuitBreakerMachine as AnyStateMachine;
  const noProbeFailure = mutate(cb, (s) => {
    const { OPENED: _, ...on } = s.halfOpen.on;
    s.halfOpen = { ...s.halfOpen, on };
  });
  const skipsHalfOpen = mutate(cb, (s) => {
    s.open = {
      ...s.open,
      on: { ...s.open.on, HALF_OPENED: { ...s.open.on.HALF_OPENED, target: "closed" } },
    };
  });
  assertMutantsCaught(breakerSpec, BREAKER_INVARIANTS, [
    {
      what: "halfOpen ignores a failed probe (no OPENED)",
      machine: noProbeFailure,
      caughtBy: "B3",
    },
    {
      what: "idem, mirror and counter checks off",
      machine: noProbeFailure,
      caughtBy: "B1",
      skip: ["B3", "B5"],
    },
    {
      what: "HALF_OPENED goes to closed, mirror and report checks off",
      machine: skipsHalfOpen,
      caughtBy: "B2",
      skip: ["B3", "B4"],
    },
    {
      what: "closed → open is not reported",
      machine: mutate(cb, (s) => {
        s.closed = {
          ...s.closed,
          on: { OPENED: { ...s.closed.on.OPENED, actions: ["stamp", "countOpen"] } },
        };
      }),
      caughtBy: "B4",
    },
    {
      what: "a failed probe does not count an opening",
      machine: mutate(cb, (s) => {
        const opened = s.halfOpen.on.OPENED;
        s.halfOpen = {
          ...s.halfOpen,
          on: {
            ...s.halfOpen.on,
            OPENED: {
              ...opened,
              actions: opened.actions.filter((a: unknown) => a !== "countOpen"),
            },
          },
        };
      }),
      caughtBy: "B5",
    },
  ]);
});

Deno.test("model: supervisor mutants are caught, one per invariant", () => {
  const sv = supervisorMachine as AnyStateMachine;
  assertMutantsCaught(supervisorSpec, SUPERVISOR_INVARIANTS, [
    {
      what: "starting re-enters itself when done (children started twice)",
      machine: mutate(sv, (s) => {
        s.starting = {
          ...s.starting,
          invoke: { ...s.starting.invoke, onDone: { target: "starting", reenter: true } },
        };
      }),
      caughtBy: "S1",
    },
    {
      what: "STOP while starting stops at once",
      machine: mutate(sv, (s) => {
        s.starting = { ...s.starting, on: { STOP: "stopping" } };
      }),
      caughtBy: "S2",
    },
    {
      what: "stopping goes back to running when done",
      machine: mutate(sv, (s) => {
        s.stopping = { ...s.stopping, invoke: { ...s.stopping.invoke, onDone: "running" } };
      }),
      caughtBy: "S3",
      skip: ["S4", "S6"],
    },
    {
      what: "running restarts before honouring a requested stop",
      machine: mutate(sv, (s) => {
        const [stop, ...rest] = s.running.always;
        s.running = { ...s.running, always: [...rest, stop] };
      }),
      caughtBy: "S4",
    },
    {
      what: "exits needing a restart are forgotten and the others restarted",
      machine: sv.provide({
        guards: {
          nextNeedsRestart: ({ context }: { context: SupervisorContext }) =>
            context.pending[0]?.type === "CHILD_EXITED" && !context.pending[0].restart,
          nextNeedsNoRestart: ({ context }: { context: SupervisorContext }) =>
            context.pending[0]?.type === "CHILD_EXITED" && context.pending[0].restart,
        },
      }),
      caughtBy: "S5",
    },
    {
      what: "a stop requested while starting is forgotten (guard stopRequested → false)",
      machine: sv.provide({ guards: { stopRequested: () => false } }),
      caughtBy: "S6",
    },
    {
      what: "running never takes an update",
      machine: mutate(sv, (s) => {
        s.running = { ...s.running, always: s.running.always.slice(0, 3) };
      }),
      caughtBy: "S7",
    },
    {
      what: "stopping ends stopped even after an error",
      machine: mutate(sv, (s) => {
        s.stopping = { ...s.stopping, invoke: { ...s.stopping.invoke, onDone: "stopped" } };
      }),
      caughtBy: "S8",
    },
    {
      what: "a restart is not counted",
      machine: mutate(sv, (s) => {
        s.restarting = {
          ...s.restarting,
          invoke: { ...s.restarting.invoke, onDone: { target: "running", actions: "dequeue" } },
        };
      }),
      caughtBy: "S9",
    },
  ]);
});
