/**
 * The graph of an XState machine, read from the machine's own definition
 * (its `root` state node: states, transitions, eventless and delayed
 * transitions, invoke done/error), for the inspector's statecharts
 * (`GET /inspect/machines`). Nothing is drawn by hand: a change to a machine
 * changes its picture.
 *
 * ```ts
 * machineGraph(circuitBreakerMachine)
 * // { machine_id: "circuitBreaker", root: { path: "", children: [closed, open, halfOpen] },
 * //   edges: [{ source: "closed", target: "open", event: "OPEN", label: "OPEN" }, ...] }
 * ```
 *
 * Framework events (`xstate.*`: init, done/error of invoked actors, `after`
 * delays, eventless `always`) are marked `internal`, so the page can fold
 * them; their labels are shortened (`after 10000 ms`, `done: batcher`).
 *
 * @module
 */

/** One state of the machine; `path` is its dot path from the root (`running.upload`). */
export interface GraphState {
  path: string;
  key: string;
  type: string;
  /** Key of the initial child, for compound states. */
  initial: string | null;
  children: GraphState[];
}

/** One transition. `target` null: a transition without target (actions only, stays). */
export interface GraphEdge {
  source: string;
  target: string | null;
  event: string;
  label: string;
  guard: string | null;
  internal: boolean;
}

/** The whole machine. */
export interface MachineGraph {
  machine_id: string;
  root: GraphState;
  edges: GraphEdge[];
}

interface NodeLike {
  key: string;
  type: string;
  path: string[];
  states: Record<string, NodeLike>;
  transitions?: Map<string, TransitionLike[]>;
  always?: TransitionLike[];
  initial?: { target?: NodeLike[] };
}

interface TransitionLike {
  target?: NodeLike[] | undefined;
  eventType: string;
  guard?: unknown;
}

/** A short, readable label for an event type. */
export function eventLabel(event: string): string {
  let m = /^xstate\.after\.([^.]+)\./.exec(event);
  if (m) return /^\d+$/.test(m[1]) ? `after ${m[1]} ms` : `after ${m[1]}`;
  m = /^xstate\.done\.actor\.(.+)$/.exec(event);
  if (m) return `done: ${m[1].split(".").pop()}`;
  m = /^xstate\.error\.actor\.(.+)$/.exec(event);
  if (m) return `error: ${m[1].split(".").pop()}`;
  if (event === "") return "always";
  return event;
}

function guardName(guard: unknown): string | null {
  if (!guard) return null;
  if (typeof guard === "string") return guard;
  if (typeof guard === "function") return guard.name || "guard";
  if (typeof guard === "object" && "type" in (guard as object)) {
    return String((guard as { type: unknown }).type);
  }
  return "guard";
}

/**
 * The graph of `logic` when it is an XState machine (has a `root` state
 * node), else undefined (callback, promise and other actor logic).
 */
export function machineGraph(logic: unknown): MachineGraph | undefined {
  const machine = logic as { id?: string; root?: NodeLike } | undefined;
  const root = machine?.root;
  if (!root || typeof root !== "object" || !root.states) return undefined;
  const edges: GraphEdge[] = [];
  const walk = (node: NodeLike): GraphState => {
    const path = node.path.join(".");
    const add = (t: TransitionLike, event: string) => {
      const targets = t.target ?? [];
      const internal = event === "" || event.startsWith("xstate.");
      const guard = guardName(t.guard);
      const base = { source: path, event, guard, internal };
      const label = eventLabel(event) + (guard ? ` [${guard}]` : "");
      if (targets.length === 0) edges.push({ ...base, target: null, label });
      for (const target of targets) edges.push({ ...base, target: target.path.join("."), label });
    };
    for (const [event, ts] of node.transitions ?? new Map()) for (const t of ts) add(t, event);
    for (const t of node.always ?? []) add(t, "");
    const initial = node.initial?.target?.[0]?.key ?? null;
    return {
      path,
      key: node.key,
      type: node.type,
      initial,
      children: Object.values(node.states ?? {}).map(walk),
    };
  };
  const tree = walk(root);
  return { machine_id: machine.id ?? root.key, root: tree, edges };
}
