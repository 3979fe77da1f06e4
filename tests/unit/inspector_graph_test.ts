/**
 * http/machine_graph.ts and the inspector's supervision tree: statecharts
 * come from the machines' own definitions; a supervisor's children are tree
 * nodes with their actors under them.
 */
import assert from "node:assert/strict";
import { fromPromise, setup } from "xstate";
import { spawnActor, stopActor } from "../../actors/runtime/registry.ts";
import { Inspector } from "../../http/inspector.ts";
import { eventLabel, machineGraph } from "../../http/machine_graph.ts";
import { circuitBreakerMachine } from "../../machines/circuit_breaker.ts";
import { startSupervisor } from "../../supervisors/supervisor.ts";

Deno.test("machineGraph: the breaker's states and transitions come from its definition", () => {
  const g = machineGraph(circuitBreakerMachine)!;
  assert.equal(g.machine_id, "circuitBreaker");
  assert.equal(g.root.initial, "closed");
  assert.deepEqual(g.root.children.map((c) => c.key), ["closed", "open", "halfOpen"]);
  const edges = g.edges.filter((e) => e.target !== null).map((e) =>
    `${e.source}>${e.target}:${e.event}`
  );
  for (const e of ["closed>open:OPENED", "open>halfOpen:HALF_OPENED", "halfOpen>closed:CLOSED"]) {
    assert.ok(edges.includes(e), `${e} in ${edges}`);
  }
  assert.ok(g.edges.every((e) => !e.internal));
});

/** A machine with the shapes the inspector must draw: parallel regions, an invoked actor, delays. */
const shapes = setup({
  actors: { upload: fromPromise(() => Promise.resolve()) },
  delays: { batchAge: 1000 },
}).createMachine({
  id: "m",
  type: "parallel",
  states: {
    running: {
      type: "parallel",
      states: {
        upload: {
          initial: "idle",
          states: {
            idle: { on: { GO: "flushing" } },
            flushing: { invoke: { src: "upload", onDone: "idle" } },
          },
        },
        batch: {
          initial: "empty",
          states: {
            empty: { on: { OPEN: "open" } },
            open: { after: { batchAge: "empty", 1000: "empty" } },
          },
        },
      },
    },
  },
});

Deno.test("machineGraph: nested and parallel states, framework events marked internal with short labels", () => {
  const g = machineGraph(shapes)!;
  const running = g.root.children.find((c) => c.key === "running")!;
  assert.equal(running.type, "parallel");
  assert.deepEqual(running.children.map((c) => c.path), ["running.upload", "running.batch"]);
  const done = g.edges.find((e) => e.event.startsWith("xstate.done.actor."))!;
  assert.equal(done.internal, true);
  assert.match(done.label, /^done: /);
  assert.equal(eventLabel("xstate.after.1000.m.s"), "after 1000 ms");
  assert.equal(eventLabel("xstate.after.batchAge.m.s"), "after batchAge");
  assert.equal(machineGraph({ id: "x" }), undefined, "not a machine");
});

Deno.test("Inspector.tree: a supervisor's children are nodes, with the actors each child registered", async () => {
  const worker = setup({}).createMachine({ id: "worker", initial: "on", states: { on: {} } });
  const handle = (onStop: () => void = () => {}) => {
    const exited = Promise.withResolvers<{ reason: "shutdown" }>();
    return {
      stop: () => {
        onStop();
        exited.resolve({ reason: "shutdown" });
        return Promise.resolve();
      },
      exited: exited.promise,
    };
  };
  const sup = await startSupervisor([
    {
      id: "alpha",
      start: (ctx) => {
        spawnActor(worker, { id: "g:alpha-worker", kind: "w", parentId: ctx.parentId });
        return Promise.resolve(handle(() => stopActor("g:alpha-worker")));
      },
    },
    { id: "beta", start: () => Promise.resolve(handle()) },
  ], { id: "g:sup" });
  const inspector = new Inspector();
  try {
    const tree = inspector.tree();
    const root = tree.roots.find((r) => r.id === "g:sup")!;
    assert.deepEqual(root.children.map((c) => [c.id, c.kind, c.state]), [
      ["g:sup/alpha", "child", "running"],
      ["g:sup/beta", "child", "running"],
    ]);
    assert.deepEqual(root.children[0].children.map((c) => [c.id, c.machine]), [
      ["g:alpha-worker", "worker"],
    ]);
    assert.ok(!("children" in root.summary), "the child list is drawn, not printed");
    assert.ok(inspector.machines().worker, "the worker's machine is served");
  } finally {
    inspector.close();
    await sup.stop("shutdown");
  }
});
