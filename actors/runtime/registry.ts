/**
 * Every XState actor of sluice is created through {@link spawnActor}, which
 *  - passes the shared `inspect` callback, so the inspector (`/inspect`) sees
 *    every transition of every actor;
 *  - records the actor in a registry with its id and its parent id, from
 *    which `/inspect/actors` draws the tree.
 *
 * Only lifecycle and control events reach actors: the per-record path is
 * plain code and never sends one event per record.
 *
 * @module
 */
import {
  type AnyActorLogic,
  type AnyActorRef,
  createActor,
  type InspectionEvent,
  type SnapshotFrom,
} from "xstate";

/** One registered actor. */
export interface RegisteredActor {
  /** Unique id, e.g. `partition:orders:0`, `circuit-breaker`. */
  id: string;
  /** Parent in the tree (a supervisor id), or undefined for roots. */
  parentId?: string;
  /** Kind, for grouping on the page: `partition`, `breaker`, `audit`, ... */
  kind: string;
  actor: AnyActorRef;
  /** Short, JSON-safe summary of the context (never the whole context). */
  summary: () => Record<string, unknown>;
  startedAt: string;
}

type InspectionListener = (event: InspectionEvent, id: string | undefined) => void;
type RegistryListener = (change: "added" | "removed", entry: RegisteredActor) => void;

const actors = new Map<string, RegisteredActor>();
const byRef = new Map<AnyActorRef, string>();
const inspectionListeners = new Set<InspectionListener>();
const registryListeners = new Set<RegistryListener>();

function inspect(event: InspectionEvent): void {
  if (inspectionListeners.size === 0) return;
  const id = byRef.get(event.actorRef as AnyActorRef);
  for (const l of inspectionListeners) {
    try {
      l(event, id);
    } catch {
      // Listener failures never reach actors.
    }
  }
}

/** Options of {@link spawnActor}. */
export interface SpawnOptions<L extends AnyActorLogic> {
  id: string;
  kind: string;
  parentId?: string;
  input?: unknown;
  /** Summary of the context for the inspector; default: none. */
  summary?: (snapshot: SnapshotFrom<L>) => Record<string, unknown>;
}

/**
 * Creates, registers and starts an actor. Replaces any actor registered
 * under the same id (after a restart).
 */
export function spawnActor<L extends AnyActorLogic>(logic: L, opts: SpawnOptions<L>) {
  // deno-lint-ignore no-explicit-any
  const actor = createActor(logic, { input: opts.input as any, inspect, id: opts.id });
  const entry: RegisteredActor = {
    id: opts.id,
    parentId: opts.parentId,
    kind: opts.kind,
    actor,
    summary: () => {
      if (!opts.summary) return {};
      try {
        return opts.summary(actor.getSnapshot() as SnapshotFrom<L>);
      } catch {
        return {};
      }
    },
    startedAt: new Date().toISOString(),
  };
  const previous = actors.get(opts.id);
  if (previous) byRef.delete(previous.actor);
  actors.set(opts.id, entry);
  byRef.set(actor, opts.id);
  for (const l of registryListeners) l("added", entry);
  actor.start();
  return actor;
}

/** Stops an actor and removes it from the registry. */
export function stopActor(id: string): void {
  const entry = actors.get(id);
  if (!entry) return;
  entry.actor.stop();
  actors.delete(id);
  byRef.delete(entry.actor);
  for (const l of registryListeners) l("removed", entry);
}

/** Registered actors, in creation order. */
export function listActors(): RegisteredActor[] {
  return [...actors.values()];
}

/** Listens to every inspection event of every registered actor. */
export function onInspection(listener: InspectionListener): () => void {
  inspectionListeners.add(listener);
  return () => inspectionListeners.delete(listener);
}

/** Listens to actors being added to or removed from the registry. */
export function onRegistryChange(listener: RegistryListener): () => void {
  registryListeners.add(listener);
  return () => registryListeners.delete(listener);
}
