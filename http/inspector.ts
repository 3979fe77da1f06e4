/**
 * The actor inspector behind `/inspect/actors` and `/inspect/ws`.
 *
 * It listens to every inspection event of every registered actor
 * (`onInspection` of actors/runtime/registry.ts), keeps the recent state changes in
 * a bounded ring, builds the actor tree from `listActors()` (parent ids,
 * state value, `summary()`), and streams changes to WebSocket clients, each
 * through its own bounded, drop-oldest sender.
 *
 * Only actors created with `spawnActor` are shown: actors invoked or spawned
 * inside a machine have no registry id and are skipped.
 *
 * @module
 */
import type { AnyActorRef, InspectionEvent } from "xstate";
import {
  listActors,
  onInspection,
  onRegistryChange,
  type RegisteredActor,
} from "../actors/runtime/registry.ts";
import { type MachineGraph, machineGraph } from "./machine_graph.ts";
import { Ring } from "./ring.ts";
import { BoundedSender, type SocketLike } from "./ws_client.ts";

/** One actor in the tree of `/inspect/actors`. */
export interface ActorNode {
  id: string;
  kind: string;
  parent_id: string | null;
  /** State as text: `running`, `running.fetching`, `a.x, b.y` (parallel). */
  state: string;
  /** Raw XState value (string or nested object), or null for non-machine actors. */
  value: unknown;
  /** Actor status: `active`, `done`, `error`, `stopped`. */
  status: string;
  /** Id of its XState machine (`GET /inspect/machines`), or null (not a machine, or a child node). */
  machine: string | null;
  summary: Record<string, unknown>;
  started_at: string;
  children: ActorNode[];
}

/** Answer of `GET /inspect/actors`. */
export interface ActorTree {
  generated_at: string;
  count: number;
  roots: ActorNode[];
}

/** One recorded state change. */
export interface TransitionRecord {
  seq: number;
  at: string;
  actor_id: string;
  kind: string;
  /** Event that caused it (`xstate.init` for the initial state). */
  event: string;
  from: string | null;
  to: string;
  status: string;
}

/** Messages on `/inspect/ws`. */
export type InspectMessage =
  | { type: "hello"; tree: ActorTree; recent: TransitionRecord[] }
  | { type: "transition"; transition: TransitionRecord; actor: Omit<ActorNode, "children"> }
  | { type: "actor.added"; actor: Omit<ActorNode, "children"> }
  | { type: "actor.removed"; id: string }
  | { type: "system.ws.drop_notice"; dropped: number };

/** The registry functions the inspector uses (fakes in tests). */
export interface RegistrySource {
  listActors(): RegisteredActor[];
  onInspection(l: (event: InspectionEvent, id: string | undefined) => void): () => void;
  onRegistryChange(l: (change: "added" | "removed", entry: RegisteredActor) => void): () => void;
}

/** Options of {@link Inspector}. */
export interface InspectorOptions {
  /** Transitions kept for late joiners; default 500. */
  history?: number;
  /** Messages buffered per WebSocket client; default 500. */
  clientBuffer?: number;
  /** Connected clients at most; default 32. */
  maxClients?: number;
  /** Default: actors/runtime/registry.ts. */
  registry?: RegistrySource;
}

/** Formats an XState state value: `a`, `a.b`, `{a: x, b: y}` → `a.x, b.y`. */
export function formatState(value: unknown): string {
  if (typeof value === "string") return value;
  if (value && typeof value === "object") {
    const parts = Object.entries(value as Record<string, unknown>).map(([k, v]) => {
      const inner = formatState(v);
      return inner === "" ? k : `${k}.${inner}`;
    });
    return parts.length > 1 ? parts.join(", ") : parts[0] ?? "";
  }
  return "";
}

function machineOf(entry: RegisteredActor): MachineGraph | undefined {
  try {
    return machineGraph((entry.actor as { logic?: unknown }).logic);
  } catch {
    return undefined;
  }
}

const graphs = new WeakMap<object, MachineGraph | null>();
function cachedGraph(entry: RegisteredActor): MachineGraph | undefined {
  const logic = (entry.actor as { logic?: object }).logic;
  if (!logic) return undefined;
  let g = graphs.get(logic);
  if (g === undefined) {
    g = machineOf(entry) ?? null;
    graphs.set(logic, g);
  }
  return g ?? undefined;
}

function describe(entry: RegisteredActor): Omit<ActorNode, "children"> {
  let value: unknown = null;
  let status = "unknown";
  try {
    const snap = entry.actor.getSnapshot() as { value?: unknown; status?: string };
    value = snap?.value ?? null;
    status = snap?.status ?? "unknown";
  } catch {
    // A stopped actor may refuse: keep the defaults.
  }
  return {
    id: entry.id,
    kind: entry.kind,
    parent_id: entry.parentId ?? null,
    state: formatState(value) || status,
    value,
    status,
    machine: cachedGraph(entry)?.machine_id ?? null,
    summary: entry.summary(),
    started_at: entry.startedAt,
  };
}

/**
 * The children of a supervisor as nodes of their own (`<supervisor>/<child>`,
 * kind `child`), from the `children` list of its summary, so the tree is the
 * supervision tree (http, audit, resilience, pipeline, ...) and each child's
 * actors sit under it (they register with `parentId` `<supervisor>/<child>`).
 */
function childNodes(sup: ActorNode): ActorNode[] {
  const list = sup.summary.children;
  if (!Array.isArray(list)) return [];
  const { children: _omit, ...rest } = sup.summary;
  sup.summary = rest;
  return list.filter((c) => c && typeof c.id === "string").map((c) => ({
    id: `${sup.id}/${c.id}`,
    kind: "child",
    parent_id: sup.id,
    state: String(c.state ?? "unknown"),
    value: null,
    status: c.state === "running" ? "active" : String(c.state ?? "unknown"),
    machine: null,
    summary: { child: c.id, restarts: c.restarts ?? 0 },
    started_at: sup.started_at,
    children: [],
  }));
}

/** Collects transitions of every registered actor and serves them. */
export class Inspector {
  #ring: Ring<TransitionRecord>;
  #last = new Map<string, string>();
  #seq = 0;
  #clients = new Set<BoundedSender<InspectMessage>>();
  #unsubscribe: Array<() => void>;
  readonly #opts: Required<InspectorOptions>;

  constructor(opts: InspectorOptions = {}) {
    this.#opts = {
      history: 500,
      clientBuffer: 500,
      maxClients: 32,
      registry: { listActors, onInspection, onRegistryChange },
      ...opts,
    };
    this.#ring = new Ring(this.#opts.history);
    const reg = this.#opts.registry;
    this.#unsubscribe = [
      reg.onInspection(this.#onInspection),
      reg.onRegistryChange(this.#onChange),
    ];
  }

  /** The actor tree; actors whose parent is not registered are roots. */
  tree(): ActorTree {
    const entries = this.#opts.registry.listActors();
    const nodes = new Map<string, ActorNode>();
    for (const e of entries) nodes.set(e.id, { ...describe(e), children: [] });
    for (const n of [...nodes.values()]) {
      if (n.kind !== "supervisor") continue;
      for (const c of childNodes(n)) if (!nodes.has(c.id)) nodes.set(c.id, c);
    }
    const roots: ActorNode[] = [];
    for (const node of nodes.values()) {
      const parent = node.parent_id === null ? undefined : nodes.get(node.parent_id);
      if (parent && !isAncestor(node, parent, nodes)) parent.children.push(node);
      else roots.push(node);
    }
    return { generated_at: new Date().toISOString(), count: nodes.size, roots };
  }

  /** The graph of every XState machine behind a registered actor, by machine id. */
  machines(): Record<string, MachineGraph> {
    const out: Record<string, MachineGraph> = {};
    for (const e of this.#opts.registry.listActors()) {
      const g = cachedGraph(e);
      if (g && !out[g.machine_id]) out[g.machine_id] = g;
    }
    return out;
  }

  /** Recent transitions, oldest first. */
  recent(): TransitionRecord[] {
    return this.#ring.toArray();
  }

  /** True when another client may attach. */
  get hasRoom(): boolean {
    return this.#clients.size < this.#opts.maxClients;
  }

  /** Streams to a socket: a `hello` (tree and recent transitions), then live changes. */
  attach(socket: SocketLike): () => void {
    const sender: BoundedSender<InspectMessage> = new BoundedSender(socket, JSON.stringify, {
      capacity: this.#opts.clientBuffer,
      dropNotice: (dropped) => JSON.stringify({ type: "system.ws.drop_notice", dropped }),
      onClose: () => this.#clients.delete(sender),
    });
    this.#clients.add(sender);
    sender.push({ type: "hello", tree: this.tree(), recent: this.recent() });
    return () => sender.close();
  }

  /** Closes every client. */
  closeClients(): void {
    for (const c of [...this.#clients]) c.close();
  }

  /** Stops listening to the registry and closes every client. */
  close(): void {
    for (const u of this.#unsubscribe) u();
    this.#unsubscribe = [];
    this.closeClients();
  }

  #broadcast(msg: InspectMessage): void {
    for (const c of this.#clients) c.push(msg);
  }

  #onInspection = (event: InspectionEvent, id: string | undefined): void => {
    if (id === undefined || event.type !== "@xstate.snapshot") return;
    const snap = event.snapshot as { value?: unknown; status?: string };
    const status = snap.status ?? "unknown";
    const to = formatState(snap.value) || status;
    const key = `${to}|${status}`;
    const previous = this.#last.get(id);
    if (previous === key) return;
    this.#last.set(id, key);
    const entry = this.#opts.registry.listActors().find((a) => a.id === id);
    if (!entry || entry.actor !== (event.actorRef as AnyActorRef)) return;
    const transition: TransitionRecord = {
      seq: ++this.#seq,
      at: new Date().toISOString(),
      actor_id: id,
      kind: entry.kind,
      event: event.event.type,
      from: previous === undefined ? null : previous.slice(0, previous.lastIndexOf("|")),
      to,
      status,
    };
    this.#ring.push(transition);
    if (this.#clients.size > 0) {
      this.#broadcast({ type: "transition", transition, actor: describe(entry) });
    }
  };

  #onChange = (change: "added" | "removed", entry: RegisteredActor): void => {
    this.#last.delete(entry.id);
    if (change === "removed") {
      this.#broadcast({ type: "actor.removed", id: entry.id });
    } else {
      this.#broadcast({ type: "actor.added", actor: describe(entry) });
    }
  };
}

/** True when `candidate` is `node` itself or one of its descendants via parent links (cycle guard). */
function isAncestor(node: ActorNode, candidate: ActorNode, nodes: Map<string, ActorNode>): boolean {
  let cur: ActorNode | undefined = candidate;
  for (let i = 0; cur && i <= nodes.size; i++) {
    if (cur === node) return true;
    cur = cur.parent_id === null ? undefined : nodes.get(cur.parent_id);
  }
  return false;
}
