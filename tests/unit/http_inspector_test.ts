/**
 * The inspector: actor tree from the registry, transitions of a real XState
 * machine created with `spawnActor`, live over `/inspect/ws` on a real socket.
 */
import assert from "node:assert/strict";
import { assign, setup } from "xstate";
import { spawnActor, stopActor } from "../../actors/runtime/registry.ts";
import { closeApp, createApp } from "../../http/app.ts";
import { formatTree } from "../../supervisors/cli/instance.ts";
import {
  type ActorTree,
  formatState,
  type InspectMessage,
  Inspector,
} from "../../http/inspector.ts";
import { serveApp } from "../../http/server.ts";
import { fakeDeps } from "../../http/testing.ts";
import { waitFor as harnessWaitFor } from "../harness/procs.ts";

const toggleMachine = setup({
  types: { context: {} as { flips: number }, events: {} as { type: "TOGGLE" } },
  actions: { flip: assign({ flips: ({ context }) => context.flips + 1 }) },
}).createMachine({
  id: "toggle",
  context: { flips: 0 },
  initial: "off",
  states: {
    off: { on: { TOGGLE: { target: "on", actions: "flip" } } },
    on: { on: { TOGGLE: { target: "off", actions: "flip" } } },
  },
});

const supervisorMachine = setup({}).createMachine({
  id: "sup",
  initial: "running",
  states: { running: { initial: "healthy", states: { healthy: {} } } },
});

/** Polls `pred` every 5 ms until true; fails after `ms` (the harness's `waitFor`). */
async function waitFor(pred: () => boolean, ms = 5000, what = "condition") {
  await harnessWaitFor(pred, { timeoutMs: ms, intervalMs: 5, message: what });
}

function spawnPair(prefix: string) {
  spawnActor(supervisorMachine, { id: `${prefix}:sup`, kind: "supervisor" });
  const toggle = spawnActor(toggleMachine, {
    id: `${prefix}:toggle`,
    kind: "toggle",
    parentId: `${prefix}:sup`,
    summary: (s) => ({ flips: s.context.flips }),
  });
  return {
    toggle,
    [Symbol.dispose]: () => {
      stopActor(`${prefix}:toggle`);
      stopActor(`${prefix}:sup`);
    },
  };
}

function find(tree: ActorTree, id: string) {
  const walk = (nodes: ActorTree["roots"]): ActorTree["roots"][number] | undefined => {
    for (const n of nodes) {
      if (n.id === id) return n;
      const hit = walk(n.children);
      if (hit) return hit;
    }
    return undefined;
  };
  return walk(tree.roots);
}

Deno.test("formatState renders nested and parallel state values", () => {
  assert.equal(formatState("idle"), "idle");
  assert.equal(formatState({ running: "fetching" }), "running.fetching");
  assert.equal(formatState({ running: { fetch: "wait" } }), "running.fetch.wait");
  assert.equal(formatState({ a: "x", b: "y" }), "a.x, b.y");
  assert.equal(formatState(undefined), "");
});

Deno.test("Inspector builds the tree with parents, states and summaries", () => {
  const inspector = new Inspector();
  using pair = spawnPair("t1");
  try {
    pair.toggle.send({ type: "TOGGLE" });
    const tree = inspector.tree();
    const sup = find(tree, "t1:sup")!;
    assert.equal(sup.parent_id, null);
    assert.equal(sup.state, "running.healthy");
    assert.equal(sup.kind, "supervisor");
    assert.deepEqual(sup.children.map((c) => c.id), ["t1:toggle"]);
    const toggle = sup.children[0];
    assert.equal(toggle.state, "on");
    assert.equal(toggle.status, "active");
    assert.deepEqual(toggle.summary, { flips: 1 });
    assert.equal(tree.roots.some((r) => r.id === "t1:toggle"), false);
    assert.match(
      formatTree(tree),
      /t1:sup \[running\.healthy\] \(supervisor\)\n└─ t1:toggle \[on\] \(toggle\) {2}flips=1/,
    );
  } finally {
    inspector.close();
  }
});

Deno.test("Inspector records state changes in a bounded ring", () => {
  const inspector = new Inspector({ history: 3 });
  using pair = spawnPair("t2");
  try {
    for (let i = 0; i < 5; i++) pair.toggle.send({ type: "TOGGLE" });
    const recent = inspector.recent().filter((t) => t.actor_id === "t2:toggle");
    assert.equal(recent.length, 3);
    assert.deepEqual(recent.map((t) => [t.from, t.to, t.event]), [
      ["off", "on", "TOGGLE"],
      ["on", "off", "TOGGLE"],
      ["off", "on", "TOGGLE"],
    ]);
    assert.ok(recent[0].seq < recent[1].seq);
  } finally {
    inspector.close();
  }
});

Deno.test("an actor whose parent is unknown is a root; parent cycles do not hide actors", () => {
  const m = setup({}).createMachine({ initial: "a", states: { a: {} } });
  const inspector = new Inspector();
  spawnActor(m, { id: "t3:orphan", kind: "x", parentId: "t3:missing" });
  spawnActor(m, { id: "t3:a", kind: "x", parentId: "t3:b" });
  spawnActor(m, { id: "t3:b", kind: "x", parentId: "t3:a" });
  try {
    const tree = inspector.tree();
    for (const id of ["t3:orphan", "t3:a", "t3:b"]) assert.ok(find(tree, id), id);
    assert.ok(tree.roots.some((r) => r.id === "t3:orphan"));
  } finally {
    for (const id of ["t3:orphan", "t3:a", "t3:b"]) stopActor(id);
    inspector.close();
  }
});

Deno.test("GET /inspect/actors and /inspect/ws stream a live transition over a real socket", async () => {
  const { deps } = fakeDeps();
  const app = createApp(deps);
  const server = await serveApp(app, { port: 0 });
  using pair = spawnPair("t4");
  const ws = new WebSocket(`ws://127.0.0.1:${server.port}/inspect/ws`);
  const messages: InspectMessage[] = [];
  const closed = new Promise<void>((r) => ws.addEventListener("close", () => r()));
  ws.addEventListener("message", (e) => messages.push(JSON.parse(e.data)));
  try {
    const res = await fetch(`http://127.0.0.1:${server.port}/inspect/actors`);
    const tree = await res.json() as ActorTree;
    assert.equal(find(tree, "t4:toggle")?.state, "off");
    assert.equal(find(tree, "t4:toggle")?.parent_id, "t4:sup");

    await waitFor(() => messages.length >= 1, 5000, "hello");
    const hello = messages[0];
    assert.equal(hello.type, "hello");
    if (hello.type === "hello") assert.equal(find(hello.tree, "t4:toggle")?.state, "off");

    pair.toggle.send({ type: "TOGGLE" });
    await waitFor(() => messages.some((m) => m.type === "transition"), 5000, "transition");
    const m = messages.find((m) => m.type === "transition")!;
    assert.equal(m.type, "transition");
    if (m.type === "transition") {
      assert.equal(m.transition.actor_id, "t4:toggle");
      assert.equal(m.transition.from, "off");
      assert.equal(m.transition.to, "on");
      assert.equal(m.transition.event, "TOGGLE");
      assert.equal(m.actor.state, "on");
      assert.deepEqual(m.actor.summary, { flips: 1 });
    }

    stopActor("t4:toggle");
    await waitFor(
      () => messages.some((m) => m.type === "actor.removed" && m.id === "t4:toggle"),
      5000,
      "actor.removed",
    );
  } finally {
    ws.close();
    await closed;
    await server.shutdown();
  }
  closeApp(app);
});
