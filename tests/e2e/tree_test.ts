/**
 * The supervision tree of a running sluice (local mode, in this process):
 * `GET /inspect/actors` is exactly the tree the README draws (section
 * "Architecture"), and the graceful shutdown, the tree's ordered stop, runs
 * the work of each phase exactly once, in the README's order.
 *
 * @module
 */
import assert from "node:assert/strict";
import { AuditUploader } from "../../actors/audit/uploader.ts";
import { Pipeline } from "../../actors/pipeline/pipeline.ts";
import { ReplayManager } from "../../actors/replay/replay.ts";
import type { ActorNode, ActorTree } from "../../http/inspector.ts";
import { loadConfig } from "../../supervisors/config.ts";
import { SHUTDOWN_PHASES } from "../../supervisors/shutdown.ts";
import { startSluice } from "../../supervisors/sluice.ts";
import { waitFor } from "../harness/procs.ts";

/** A node of the supervision tree: a child's name and its own children. */
interface TreeNode {
  name: string;
  children: TreeNode[];
}

/** The tree block of the README that follows "The supervisor tree". */
export function readmeTree(readme: string): TreeNode {
  const at = readme.indexOf("The supervisor tree");
  assert.ok(at >= 0, "README has no supervisor tree");
  const block = readme.slice(readme.indexOf("```\n", at) + 4);
  const lines = block.slice(0, block.indexOf("```")).split("\n").filter((l) => l.trim() !== "");
  const root: TreeNode = { name: lines[0].trim().split(/\s+/)[0], children: [] };
  const stack: TreeNode[] = [root];
  for (const line of lines.slice(1)) {
    const m = /^((?:[│ ] {3})*)[├└]── (\S+)/.exec(line);
    assert.ok(m, `README tree line not understood: ${line}`);
    const depth = m[1].length / 4 + 1;
    const node: TreeNode = { name: m[2], children: [] };
    stack[depth - 1].children.push(node);
    stack[depth] = node;
    stack.length = depth + 1;
  }
  return root;
}

/** The supervision tree in `/inspect/actors`: each supervisor's children, nested supervisors expanded. */
function inspectedTree(tree: ActorTree, rootId: string): TreeNode {
  const all: ActorNode[] = [];
  const walk = (n: ActorNode) => {
    all.push(n);
    n.children.forEach(walk);
  };
  tree.roots.forEach(walk);
  const expand = (sup: ActorNode): TreeNode[] =>
    sup.children.filter((c) => c.kind === "child").map((c) => {
      const nested = c.children.find((a) => a.kind === "supervisor");
      return { name: String(c.summary.child), children: nested ? expand(nested) : [] };
    });
  const root = all.find((n) => n.id === rootId && n.kind === "supervisor");
  assert.ok(root, `no supervisor ${rootId} in /inspect/actors`);
  return { name: root.id, children: expand(root) };
}

/** Whether `actual` matches `drawn`; a drawn `<...>` part matches one or more children. */
function sameTree(drawn: TreeNode, actual: TreeNode, path = drawn.name): void {
  assert.equal(actual.name, drawn.name, `name at ${path}`);
  let i = 0;
  for (const d of drawn.children) {
    if (d.name.includes("<")) {
      const re = new RegExp(`^${d.name.replace(/<[^>]+>/g, "[^:]+")}$`);
      const start = i;
      while (i < actual.children.length && re.test(actual.children[i].name)) i++;
      assert.ok(i > start, `${path}/${d.name}: no child matches`);
      continue;
    }
    assert.ok(i < actual.children.length, `${path}/${d.name}: missing`);
    sameTree(d, actual.children[i], `${path}/${d.name}`);
    i++;
  }
  assert.deepEqual(actual.children.slice(i).map((c) => c.name), [], `${path}: children not drawn`);
}

/** Counts the calls of `proto[name]`; returns the restore function. */
function count(
  calls: Record<string, number>,
  label: string,
  proto: object,
  name: string,
): () => void {
  const p = proto as Record<string, (...a: unknown[]) => unknown>;
  const original = p[name];
  p[name] = function (this: unknown, ...a: unknown[]) {
    calls[label] = (calls[label] ?? 0) + 1;
    return original.apply(this, a);
  };
  return () => void (p[name] = original);
}

Deno.test({
  name:
    "the README's tree is /inspect/actors of a running sluice, and each shutdown phase's work runs once",
  // The whole of sluice runs in this process; processes' leaks are the shutdown tests' business.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
    const drawn = readmeTree(readme);
    const dataDir = await Deno.makeTempDir({ prefix: "sluice-tree-" });
    const calls: Record<string, number> = {};
    const restore = [
      count(calls, "drain", Pipeline.prototype, "drain"),
      count(calls, "close_consumer", Pipeline.prototype, "closeOnce"),
      count(calls, "flush_audit", AuditUploader.prototype, "flush"),
      count(calls, "uploader.stop", AuditUploader.prototype, "stop"),
      count(calls, "stop_load (replays)", ReplayManager.prototype, "stopAll"),
    ];
    try {
      const config = loadConfig({
        SLUICE_HTTP_PORT: "0",
        SLUICE_HTTP_HOST: "127.0.0.1",
        SLUICE_DATA_DIR: dataDir,
        SLUICE_LOG_LEVEL: "warn",
        SLUICE_EMBEDDED_PARTITIONS: "3",
      });
      const sluice = await startSluice(config, { loadRate: 50 });
      const base = `http://127.0.0.1:${sluice.port}`;
      // Until every partition is assigned (the last error names what differs).
      const actual = await waitFor(async () => {
        const tree = await (await fetch(`${base}/inspect/actors`)).json() as ActorTree;
        const inspected = inspectedTree(tree, "sluice");
        sameTree(drawn, inspected);
        const partitions = inspected.children.find((c) => c.name === "pipeline")?.children ?? [];
        if (partitions.length < 4) {
          throw new Error(`pipeline has ${partitions.length - 1} partitions`);
        }
        return inspected;
      }, { timeoutMs: 20_000, message: "the README's tree is /inspect/actors" });
      const pipeline = actual.children.find((c) => c.name === "pipeline");
      assert.deepEqual(
        pipeline?.children.map((c) => c.name).sort(),
        ["consumer", ...[0, 1, 2].map((p) => `partition:${config.topics[0]}:${p}`)].sort(),
      );

      const report = await sluice.shutdown("test");
      assert.equal(report.clean, true, JSON.stringify(report));
      assert.deepEqual(report.phases.map((p) => p.name), [...SHUTDOWN_PHASES]);
      assert.equal(await sluice.exited, 0);
      assert.deepEqual(calls, {
        "stop_load (replays)": 1,
        drain: 1,
        close_consumer: 1,
        flush_audit: 1,
        "uploader.stop": 1,
      });
    } finally {
      for (const r of restore) r();
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    }
  },
});
