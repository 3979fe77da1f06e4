/**
 * Behaviour suites of `supervisors/supervisor.ts`, with fake children that
 * report every start and stop to a probe (à la Broadway's test fixtures).
 * Tests wait on conditions (with timeouts), never on sleeps.
 */
import assert from "node:assert/strict";
import { actorRestartsTotal } from "../../actors/runtime/metrics.ts";
import { setup } from "xstate";
import { listActors, spawnActor } from "../../actors/runtime/registry.ts";
import {
  actorChild,
  type ChildExit,
  type ChildSpec,
  type RestartPolicy,
  startSupervisor,
  Supervisor,
  SupervisorError,
  supervisorSpec,
} from "../../supervisors/supervisor.ts";
import { waitFor } from "../harness/procs.ts";

// ─── fixtures ───────────────────────────────────────────────────────────────

interface FakeRun {
  exit(exit: ChildExit): void;
}

/** Fake children that record `start:<id>` / `stop:<id>` and can be crashed on demand. */
class Probe {
  events: string[] = [];
  #runs = new Map<string, FakeRun>();
  #starts = new Map<string, number>();

  /** A child spec; `hang: true` makes its `stop` never end; `failStart` makes `start` reject. */
  spec(
    id: string,
    opts: { restart?: RestartPolicy; shutdownMs?: number; hang?: boolean; failStart?: boolean } =
      {},
  ): ChildSpec {
    return {
      id,
      restart: opts.restart,
      shutdownMs: opts.shutdownMs,
      start: () => {
        if (opts.failStart) return Promise.reject(new Error(`cannot start ${id}`));
        this.events.push(`start:${id}`);
        this.#starts.set(id, (this.#starts.get(id) ?? 0) + 1);
        const exited = Promise.withResolvers<ChildExit>();
        let done = false;
        const run: FakeRun = {
          exit: (e) => {
            if (done) return;
            done = true;
            if (this.#runs.get(id) === run) this.#runs.delete(id);
            exited.resolve(e);
          },
        };
        this.#runs.set(id, run);
        return Promise.resolve({
          exited: exited.promise,
          status: () => ({ fake: true }),
          stop: () => {
            this.events.push(`stop:${id}`);
            if (!opts.hang) run.exit({ reason: "shutdown" });
            return opts.hang ? new Promise<void>(() => {}) : Promise.resolve();
          },
        });
      },
    };
  }

  /** Makes the running child `id` exit on its own. */
  exit(id: string, reason: "normal" | Error = new Error(`${id} crashed`)): void {
    const run = this.#runs.get(id);
    assert.ok(run, `child ${id} is not running`);
    run.exit({ reason });
  }

  starts(id: string): number {
    return this.#starts.get(id) ?? 0;
  }

  /** Events since `mark` (an index into `events`). */
  since(mark: number): string[] {
    return this.events.slice(mark);
  }
}

let counter = 0;
/** Unique ids, so metrics and the registry never mix tests. */
function uid(name: string): string {
  return `${name}-${++counter}-${crypto.randomUUID().slice(0, 6)}`;
}

function until(cond: () => boolean, message: string): Promise<boolean> {
  return waitFor(() => cond(), { timeoutMs: 5_000, intervalMs: 5, message });
}

async function restartsOf(actor: string): Promise<number> {
  const metric = await actorRestartsTotal.get();
  return metric.values.find((v) => v.labels.actor === actor)?.value ?? 0;
}

/** Captures the JSON log lines written to stderr while `fn` runs. */
async function captureLogs<T>(fn: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const decoder = new TextDecoder();
  const original = Deno.stderr.writeSync;
  Deno.stderr.writeSync = (bytes: Uint8Array) => {
    lines.push(...decoder.decode(bytes).split("\n").filter((l) => l !== ""));
    return bytes.length;
  };
  try {
    return { result: await fn(), lines };
  } finally {
    Deno.stderr.writeSync = original;
  }
}

// ─── start and stop ─────────────────────────────────────────────────────────

Deno.test("startSupervisor starts children in order and stop() stops them in reverse order", async () => {
  const p = new Probe();
  const id = uid("root");
  const sup = await startSupervisor([p.spec("a"), p.spec("b"), p.spec("c")], { id });
  assert.deepEqual(p.events, ["start:a", "start:b", "start:c"]);
  assert.equal(sup.state, "running");
  assert.equal(listActors().find((a) => a.id === id)?.kind, "supervisor");
  assert.deepEqual(sup.status().children.map((c) => [c.id, c.state]), [
    ["a", "running"],
    ["b", "running"],
    ["c", "running"],
  ]);

  await sup.stop("shutdown");
  assert.deepEqual(p.since(3), ["stop:c", "stop:b", "stop:a"]);
  assert.deepEqual(await sup.exited, { reason: "shutdown" });
  assert.equal(sup.state, "stopped");
  assert.equal(listActors().some((a) => a.id === id), false, "left the inspector registry");
  await sup.stop("shutdown"); // idempotent
});

Deno.test("startSupervisor stops started children and rejects naming the child that failed to start", async () => {
  const p = new Probe();
  await assert.rejects(
    startSupervisor([p.spec("a"), p.spec("b", { failStart: true }), p.spec("c")], {
      id: uid("root"),
    }),
    (e: unknown) => {
      assert.ok(e instanceof SupervisorError);
      assert.equal(e.childId, "b");
      assert.match(e.message, /could not start child b: cannot start b/);
      return true;
    },
  );
  assert.deepEqual(p.events, ["start:a", "stop:a"]);
});

Deno.test("startSupervisor rejects duplicate child ids", async () => {
  const p = new Probe();
  await assert.rejects(
    startSupervisor([p.spec("a"), p.spec("a")], { id: uid("root") }),
    /Duplicate child id/,
  );
  assert.deepEqual(p.events, []);
});

Deno.test("Supervisor stop() logs a child past its shutdownMs as killed and goes on", async () => {
  const p = new Probe();
  const sup = await startSupervisor(
    [p.spec("a"), p.spec("stuck", { hang: true, shutdownMs: 30 }), p.spec("c")],
    { id: uid("root") },
  );
  const { lines } = await captureLogs(() => sup.stop("shutdown"));
  assert.deepEqual(p.since(3), ["stop:c", "stop:stuck", "stop:a"]);
  const killed = lines.map((l) => JSON.parse(l)).find((l) => /considered killed/.test(l.msg));
  assert.ok(killed, `no "considered killed" line in:\n${lines.join("\n")}`);
  assert.equal(killed.child, "stuck");
  assert.equal(killed.shutdownMs, 30);
  assert.equal(sup.state, "stopped");
});

Deno.test("Supervisor stop() during start waits for the start to finish, then stops in reverse", async () => {
  const p = new Probe();
  const gate = Promise.withResolvers<void>();
  const slow: ChildSpec = {
    id: "slow",
    start: async (ctx) => {
      await gate.promise;
      return p.spec("slow").start(ctx);
    },
  };
  const id = uid("root");
  const starting = startSupervisor([p.spec("a"), slow], { id });
  await until(() => p.events.includes("start:a"), "a started");
  const sup = listActors().find((a) => a.id === id);
  assert.equal(sup?.actor.getSnapshot().value, "starting");
  sup?.actor.send({ type: "STOP" });
  gate.resolve();
  const started = await starting;
  await started.exited;
  assert.deepEqual(p.events, ["start:a", "start:slow", "stop:slow", "stop:a"]);
});

// ─── restart strategies ─────────────────────────────────────────────────────

Deno.test("one_for_one restarts only the crashed child, counted in actor_restarts_total", async () => {
  const p = new Probe();
  const b = uid("b");
  const sup = await startSupervisor([p.spec("a"), p.spec(b), p.spec("c")], {
    id: uid("root"),
    strategy: "one_for_one",
  });
  const mark = p.events.length;
  p.exit(b);
  await until(() => p.starts(b) === 2 && sup.state === "running", "b restarted");
  assert.deepEqual(p.since(mark), [`start:${b}`]);
  assert.equal(await restartsOf(b), 1);
  assert.equal(sup.status().children[1].restarts, 1);
  assert.match(sup.status().children[1].lastExit ?? "", /crashed/);
  await sup.stop("shutdown");
});

Deno.test("rest_for_one restarts the crashed child and the children after it, in order", async () => {
  const p = new Probe();
  const sup = await startSupervisor([p.spec("a"), p.spec("b"), p.spec("c"), p.spec("d")], {
    id: uid("root"),
    strategy: "rest_for_one",
  });
  const mark = p.events.length;
  p.exit("b");
  await until(() => p.starts("d") === 2 && sup.state === "running", "d restarted");
  assert.deepEqual(p.since(mark), ["stop:d", "stop:c", "start:b", "start:c", "start:d"]);
  assert.equal(p.starts("a"), 1);
  await sup.stop("shutdown");
});

Deno.test("one_for_all restarts every child: others stopped in reverse, all started in order", async () => {
  const p = new Probe();
  const sup = await startSupervisor([p.spec("a"), p.spec("b"), p.spec("c")], {
    id: uid("root"),
    strategy: "one_for_all",
  });
  const mark = p.events.length;
  p.exit("b");
  await until(() => p.starts("c") === 2 && sup.state === "running", "all restarted");
  assert.deepEqual(p.since(mark), ["stop:c", "stop:a", "start:a", "start:b", "start:c"]);
  await sup.stop("shutdown");
});

Deno.test("one_for_one handles crashes that arrive together, one after the other", async () => {
  const p = new Probe();
  const sup = await startSupervisor([p.spec("a"), p.spec("b"), p.spec("c")], {
    id: uid("root"),
  });
  p.exit("a");
  p.exit("c");
  await until(
    () => p.starts("a") === 2 && p.starts("c") === 2 && sup.state === "running",
    "a and c restarted",
  );
  assert.equal(p.starts("b"), 1);
  assert.equal(sup.status().restarts, 2);
  await sup.stop("shutdown");
});

// ─── restart policies ───────────────────────────────────────────────────────

Deno.test("transient children are restarted after a crash but not after a normal exit", async () => {
  const p = new Probe();
  const sup = await startSupervisor([p.spec("t", { restart: "transient" }), p.spec("z")], {
    id: uid("root"),
  });
  p.exit("t");
  await until(() => p.starts("t") === 2 && sup.state === "running", "t restarted");
  p.exit("t", "normal");
  await until(() => sup.status().children[0].state === "exited", "t exited");
  assert.equal(p.starts("t"), 2);
  assert.equal(sup.state, "running");
  assert.equal(sup.status().children[0].lastExit, "normal");
  await sup.stop("shutdown");
  assert.deepEqual(p.events.slice(-1), ["stop:z"], "an exited child is not stopped again");
});

Deno.test("temporary children are never restarted and leave the child list", async () => {
  const p = new Probe();
  const sup = await startSupervisor([p.spec("tmp", { restart: "temporary" }), p.spec("z")], {
    id: uid("root"),
  });
  p.exit("tmp");
  await until(() => sup.status().children.length === 1, "tmp removed");
  assert.equal(p.starts("tmp"), 1);
  assert.equal(sup.state, "running");
  await sup.stop("shutdown");
});

Deno.test("one_for_all stops a temporary sibling and does not restart it", async () => {
  const p = new Probe();
  const sup = await startSupervisor([p.spec("tmp", { restart: "temporary" }), p.spec("b")], {
    id: uid("root"),
    strategy: "one_for_all",
  });
  const mark = p.events.length;
  p.exit("b");
  await until(() => p.starts("b") === 2 && sup.state === "running", "b restarted");
  assert.deepEqual(p.since(mark), ["stop:tmp", "start:b"]);
  assert.deepEqual(sup.status().children.map((c) => c.id), ["b"]);
  await sup.stop("shutdown");
});

// ─── restart intensity and escalation ───────────────────────────────────────

Deno.test("a supervisor past its restart intensity stops its children in reverse and exits naming the child", async () => {
  const p = new Probe();
  const sup = await startSupervisor([p.spec("a"), p.spec("flaky"), p.spec("c")], {
    id: uid("root"),
    intensity: { maxRestarts: 2, periodMs: 60_000 },
  });
  for (let i = 1; i <= 2; i++) {
    p.exit("flaky");
    await until(() => p.starts("flaky") === i + 1 && sup.state === "running", `restart ${i}`);
  }
  const mark = p.events.length;
  p.exit("flaky");
  const { reason } = await sup.exited;
  assert.ok(reason instanceof SupervisorError);
  assert.equal(reason.childId, "flaky");
  assert.equal(reason.supervisorId, sup.id);
  assert.match(reason.message, /gave up: child flaky exceeded 2 restarts in 60000 ms/);
  assert.deepEqual(p.since(mark), ["stop:c", "stop:a"]);
  assert.equal(sup.state, "failed");
});

Deno.test("restarts older than the intensity period are forgotten", async () => {
  const p = new Probe();
  let now = 0;
  const sup = await startSupervisor([p.spec("w")], {
    id: uid("root"),
    intensity: { maxRestarts: 1, periodMs: 1_000 },
    now: () => now,
  });
  for (let i = 1; i <= 3; i++) {
    now += 1_500;
    p.exit("w");
    await until(() => p.starts("w") === i + 1 && sup.state === "running", `restart ${i}`);
  }
  now += 10; // two restarts within 1 s: past maxRestarts = 1
  p.exit("w");
  const { reason } = await sup.exited;
  assert.ok(reason instanceof SupervisorError);
});

Deno.test("a child that keeps failing to restart counts against the intensity", async () => {
  let allowStart = true;
  const p = new Probe();
  const inner = p.spec("w");
  const sup = await startSupervisor([{
    id: "w",
    start: (ctx) => allowStart ? inner.start(ctx) : Promise.reject(new Error("no way")),
  }], { id: uid("root"), intensity: { maxRestarts: 3, periodMs: 60_000 } });
  allowStart = false;
  p.exit("w");
  const { reason } = await sup.exited;
  assert.ok(reason instanceof SupervisorError);
  assert.equal(reason.childId, "w");
  assert.match(reason.message, /no way/);
  assert.equal(sup.status().children[0].restarts, 3);
});

Deno.test("a nested supervisor that gives up escalates to its parent, which restarts it then gives up", async () => {
  const p = new Probe();
  const outerId = uid("outer");
  const innerId = uid("inner");
  const outer = await startSupervisor([
    p.spec("a"),
    supervisorSpec([p.spec("w1"), p.spec("w2")], {
      id: innerId,
      intensity: { maxRestarts: 0, periodMs: 60_000 },
    }),
    p.spec("z"),
  ], { id: outerId, intensity: { maxRestarts: 1, periodMs: 60_000 } });
  assert.deepEqual(p.events, ["start:a", "start:w1", "start:w2", "start:z"]);
  assert.equal(listActors().find((x) => x.id === innerId)?.parentId, `${outerId}/${innerId}`);
  assert.equal(outer.status().children[1].kind, "supervisor");
  assert.equal((outer.status().children[1].status as { state: string }).state, "running");

  let mark = p.events.length;
  p.exit("w2"); // inner gives up at once (maxRestarts 0); outer restarts it
  await until(() => p.starts("w1") === 2 && outer.state === "running", "inner restarted");
  assert.deepEqual(p.since(mark), ["stop:w1", "start:w1", "start:w2"]);
  assert.equal(await restartsOf(innerId), 1);
  assert.equal(listActors().find((x) => x.id === innerId)?.parentId, `${outerId}/${innerId}`);

  mark = p.events.length;
  p.exit("w2"); // second escalation: the outer gives up too
  const { reason } = await outer.exited;
  assert.ok(reason instanceof SupervisorError);
  assert.equal(reason.childId, innerId);
  assert.ok(reason.cause instanceof SupervisorError);
  assert.equal(reason.cause.childId, "w2");
  assert.deepEqual(p.since(mark), ["stop:w1", "stop:z", "stop:a"]);
  assert.equal(listActors().some((x) => x.id === innerId || x.id === outerId), false);
});

Deno.test("a nested supervisor stops its own children in reverse when the parent stops", async () => {
  const p = new Probe();
  const outer = await startSupervisor([
    p.spec("a"),
    supervisorSpec([p.spec("w1"), p.spec("w2")], { id: uid("inner") }),
    p.spec("z"),
  ], { id: uid("outer") });
  await outer.stop("shutdown");
  assert.deepEqual(p.since(4), ["stop:z", "stop:w2", "stop:w1", "stop:a"]);
  assert.ok(outer instanceof Supervisor);
});

// ─── XState children ────────────────────────────────────────────────────────

const workerMachine = setup({
  types: {} as { events: { type: "STOP" } | { type: "CRASH" } },
  actions: {
    crash: () => {
      throw new Error("worker machine crashed");
    },
  },
}).createMachine({
  initial: "running",
  states: {
    running: { on: { STOP: "stopping", CRASH: { actions: "crash" } } },
    stopping: { always: "stopped" },
    stopped: { type: "final" },
  },
});

function workerSpec(id: string, starts: number[]): ChildSpec {
  return {
    id,
    start: (ctx) => {
      starts.push(ctx.restarts);
      const actor = spawnActor(workerMachine, { id, kind: "worker", parentId: ctx.parentId });
      return Promise.resolve(actorChild(actor, { stopEvent: { type: "STOP" } }));
    },
  };
}

Deno.test("actorChild: XState children register under the supervisor, restart on error, stop via their event", async () => {
  const rootId = uid("root");
  const workerId = uid("worker");
  const starts: number[] = [];
  const sup = await startSupervisor([workerSpec(workerId, starts)], { id: rootId });
  const entry = () => listActors().find((a) => a.id === workerId);
  assert.equal(entry()?.parentId, `${rootId}/${workerId}`);
  const first = entry()?.actor;

  first?.send({ type: "CRASH" });
  await until(() => starts.length === 2 && sup.state === "running", "worker restarted");
  assert.deepEqual(starts, [0, 1]);
  assert.notEqual(entry()?.actor, first, "the registry holds the new actor");
  assert.equal(entry()?.parentId, `${rootId}/${workerId}`);
  assert.match(sup.status().children[0].lastExit ?? "", /worker machine crashed/);

  const second = entry()?.actor;
  await sup.stop("shutdown");
  assert.equal(second?.getSnapshot().value, "stopped", "went through its own final state");
  assert.equal(entry(), undefined, "left the registry");
});

// ─── dynamic children ───────────────────────────────────────────────────────

Deno.test("startChild appends a child that is supervised and stopped like the others", async () => {
  const p = new Probe();
  const sup = await startSupervisor([p.spec("a")], { id: uid("root"), strategy: "rest_for_one" });
  await sup.startChild(p.spec("p0"));
  await sup.startChild(p.spec("p1"));
  assert.deepEqual(sup.status().children.map((c) => c.id), ["a", "p0", "p1"]);
  await assert.rejects(sup.startChild(p.spec("p0")), TypeError);
  await assert.rejects(
    sup.startChild(p.spec("bad", { failStart: true })),
    (e: unknown) => e instanceof SupervisorError && e.childId === "bad",
  );
  assert.deepEqual(sup.status().children.map((c) => c.id), ["a", "p0", "p1"]);

  const mark = p.events.length;
  p.exit("p0");
  await until(() => p.starts("p1") === 2 && sup.state === "running", "p0 and p1 restarted");
  assert.deepEqual(p.since(mark), ["stop:p1", "start:p0", "start:p1"]);

  await sup.stop("shutdown");
  assert.deepEqual(p.events.slice(-3), ["stop:p1", "stop:p0", "stop:a"]);
  await assert.rejects(sup.startChild(p.spec("late")), /is stopping/);
});

Deno.test("terminateChild stops one child within its deadline and removes it", async () => {
  const p = new Probe();
  const sup = await startSupervisor([p.spec("a"), p.spec("p0"), p.spec("z")], { id: uid("root") });
  await sup.terminateChild("p0");
  assert.deepEqual(p.since(3), ["stop:p0"]);
  assert.deepEqual(sup.status().children.map((c) => c.id), ["a", "z"]);
  await assert.rejects(sup.terminateChild("p0"), /has no child p0/);
  await sup.stop("shutdown");
  assert.deepEqual(p.since(4), ["stop:z", "stop:a"]);
});

Deno.test("updates queued behind a stop are refused", async () => {
  const p = new Probe();
  const gate = Promise.withResolvers<void>();
  const sup = await startSupervisor([p.spec("a")], { id: uid("root") });
  const slowAdd = sup.startChild({
    id: "slow",
    start: async (ctx) => {
      await gate.promise;
      return p.spec("slow").start(ctx);
    },
  });
  const queued = sup.startChild(p.spec("queued"));
  const stopping = sup.stop("shutdown");
  gate.resolve();
  await slowAdd;
  await assert.rejects(queued, /refused/);
  await stopping;
  assert.deepEqual(p.events, ["start:a", "start:slow", "stop:slow", "stop:a"]);
});
