/**
 * sluice's supervision tree: every child, its strategy, its restart limit and
 * its shutdown deadline, one small build function per child (in the style of
 * Broadway's `topology.ex`). How each child starts and stops is in
 * `supervisors/children.ts`; the supervisor runtime in `supervisors/supervisor.ts`.
 *
 * ```
 * sluice            rest_for_one, 5 restarts in 60 s, then exit 1 naming the child
 * ├── http          one_for_one, 3 restarts in 60 s, then escalates to sluice
 * │   └── server    Hono on node:http: health, metrics, WS, control, inspector
 * ├── audit         audit writer (→ audit topic) + audit uploader (→ S3 / local store)
 * ├── resilience    rate limiter, adaptive limiter, circuit breaker, upstream client
 * ├── idempotency   delivered idempotency keys (Deno KV)
 * ├── pipeline      one_for_all, no restart of its own: a crash escalates to sluice
 * │   ├── consumer                  the consumer group
 * │   └── partition:<topic>:<n>     one per assigned partition, temporary
 * ├── replay        replay driver, dead-letter store
 * └── load-generator                local mode only
 * ```
 *
 * Children start in this order and stop in reverse. A child receives what it
 * needs as arguments: the {@link Slot}s of the children started before it,
 * read when it starts (`rest_for_one` restarts it when one of those restarts).
 * The graceful shutdown is this tree's ordered stop, in six phases
 * ({@link shutdownPhases}).
 *
 * @module
 */
import { listActors } from "../actors/runtime/registry.ts";
import { createApp } from "../http/app.ts";
import type { AppDeps } from "../http/deps.ts";
import { type RunningServer, serveApp } from "../http/server.ts";
import {
  type Env,
  handle,
  startAudit,
  startConsumer,
  startIdempotency,
  startLoad,
  startReplay,
  startResilience,
} from "./children.ts";
import type { Slot, Slots } from "./slots.ts";
import { canonicalPhases, phaseDeadlines, type ShutdownPhase } from "./shutdown.ts";
import {
  type ChildExit,
  type ChildSpec,
  startSupervisor,
  type Supervisor,
  SupervisorError,
  supervisorSpec,
} from "./supervisor.ts";

/** `http`: its own supervisor, so a crash of the server does not restart the data path. */
function httpChild(env: Env, slot: Slot<RunningServer>, deps: AppDeps): ChildSpec {
  const server: ChildSpec = {
    id: "server",
    shutdownMs: 5000,
    start: slot.fill(async () => {
      const s = await serveApp(createApp(deps), {
        host: env.config.httpHost,
        port: env.config.httpPort,
        headersTimeoutMs: env.config.httpHeadersTimeoutMs,
        requestTimeoutMs: env.config.httpRequestTimeoutMs,
      });
      return { value: s, handle: handle(() => s.shutdown()) };
    }),
  };
  return supervisorSpec([server], {
    id: "http",
    strategy: "one_for_one",
    intensity: { maxRestarts: 3, periodMs: 60_000 },
  });
}

function auditChild(env: Env, s: Slots): ChildSpec {
  const { shutdownFlushMs, shutdownCommitMs } = env.config;
  return {
    id: "audit",
    shutdownMs: shutdownFlushMs + shutdownCommitMs + 1000,
    start: s.audit.fill((ctx) => startAudit(env, ctx)),
  };
}

function resilienceChild(env: Env, s: Slots): ChildSpec {
  // With the `pause` policy an open circuit pauses the partitions (README, "Flow control").
  const onCircuit = (open: boolean) => {
    const pipeline = s.consumer.peek()?.pipeline;
    if (open) pipeline?.pause("circuit");
    else pipeline?.resume("circuit");
  };
  return {
    id: "resilience",
    shutdownMs: 5000,
    start: s.resilience.fill((ctx) => startResilience(env, ctx, onCircuit)),
  };
}

function idempotencyChild(env: Env, s: Slots): ChildSpec {
  return {
    id: "idempotency",
    shutdownMs: 2000,
    start: s.idempotency.fill(() => startIdempotency(env)),
  };
}

/** A partition actor as a temporary child: it ends when the pipeline stops the actor (revocation). */
function partitionChild(actorId: string): ChildSpec {
  return {
    id: actorId,
    restart: "temporary",
    shutdownMs: 1000,
    start: () => {
      const exited = Promise.withResolvers<ChildExit>();
      const actor = listActors().find((a) => a.id === actorId)?.actor;
      if (actor?.getSnapshot().status !== "active") exited.resolve({ reason: "normal" });
      actor?.subscribe({
        complete: () => exited.resolve({ reason: "shutdown" }),
        error: (e: unknown) =>
          exited.resolve({ reason: e instanceof Error ? e : new Error(String(e)) }),
      });
      // Its consumer revokes it; stopping the child only lets go of it.
      const stop = () => Promise.resolve(exited.resolve({ reason: "shutdown" }));
      return Promise.resolve({ exited: exited.promise, stop });
    },
  };
}

/** `pipeline`: the consumer and, as dynamic children, the partitions it was assigned. */
function pipelineChild(env: Env, s: Slots): ChildSpec {
  const shutdownMs = env.config.shutdownDrainMs + env.config.shutdownCommitMs;
  return {
    id: "pipeline",
    kind: "supervisor",
    shutdownMs,
    start: async (ctx) => {
      const sup = await startSupervisor([], {
        id: "pipeline",
        parentId: ctx.parentId,
        strategy: "one_for_all",
        intensity: { maxRestarts: 0, periodMs: 60_000 },
      });
      const needs = {
        audit: s.audit.get(),
        resilience: s.resilience.get(),
        idempotency: s.idempotency.get(),
        stalls: s.stalls,
        partitionParent: (id: string) => `pipeline/${id}`,
        onPartition: (id: string) => void sup.startChild(partitionChild(id)).catch(() => {}),
      };
      try {
        await sup.startChild({
          id: "consumer",
          shutdownMs,
          start: s.consumer.fill((c) => startConsumer(env, c, needs)),
        });
      } catch (e) {
        await sup.stop();
        throw e instanceof SupervisorError && e.cause instanceof Error ? e.cause : e;
      }
      return sup;
    },
  };
}

function replayChild(env: Env, s: Slots): ChildSpec {
  return {
    id: "replay",
    shutdownMs: 3000,
    start: s.replay.fill((ctx) =>
      startReplay(env, ctx, s.audit.get(), s.resilience.get(), s.idempotency.get())
    ),
  };
}

function loadChild(env: Env, s: Slots): ChildSpec {
  return {
    id: "load-generator",
    shutdownMs: 2000,
    start: s.load.fill((ctx) => startLoad(env, ctx)),
  };
}

/** Starts the tree; rejects (after stopping what started) when a child cannot start. */
export function startTree(env: Env, s: Slots, deps: AppDeps): Promise<Supervisor> {
  const children = [
    httpChild(env, s.server, deps),
    auditChild(env, s),
    resilienceChild(env, s),
    idempotencyChild(env, s),
    pipelineChild(env, s),
    replayChild(env, s),
    ...(env.parts.logClient.kind === "embedded" ? [loadChild(env, s)] : []),
  ];
  return startSupervisor(children, {
    id: "sluice",
    strategy: "rest_for_one",
    intensity: { maxRestarts: 5, periodMs: 60_000 },
  });
}

/**
 * The graceful shutdown as the tree's ordered stop (README, "Architecture"):
 * `stop_load` stops the load generator and replay children, `drain` and
 * `close_consumer` the pipeline (its drain, then its stop), `flush_audit`
 * flushes the audit child, `stop_http` stops the rest of the tree (HTTP last)
 * and the parts. Each piece of work runs once: a child's stop reuses the
 * drain or flush an earlier phase ran.
 */
export function shutdownPhases(
  env: Env,
  root: Supervisor,
  s: Slots,
  markNotReady: () => void,
): ShutdownPhase[] {
  const { parts } = env;
  const ms = phaseDeadlines(env.config);
  const stop = (...ids: string[]) => async () => {
    for (const id of ids) {
      if (root.status().children.some((c) => c.id === id)) await root.terminateChild(id);
    }
  };
  return canonicalPhases({
    stop_load: { deadlineMs: ms.stop_load, run: stop("load-generator", "replay") },
    mark_not_ready: { deadlineMs: ms.mark_not_ready, run: () => Promise.resolve(markNotReady()) },
    drain: {
      deadlineMs: ms.drain,
      run: async (signal) => {
        const left = await s.consumer.peek()?.drain(signal) ?? 0;
        if (left > 0) {
          throw new Error(
            `${left} records still in flight at the drain deadline; they will be consumed again`,
          );
        }
      },
    },
    close_consumer: { deadlineMs: ms.close_consumer, run: stop("pipeline") },
    flush_audit: {
      deadlineMs: ms.flush_audit,
      run: async () => await s.audit.peek()?.flush(),
    },
    stop_http: {
      deadlineMs: ms.stop_http,
      run: async () => {
        // Every record span ended with the drain: export the last ones meanwhile.
        const traces = parts.flushTraces(1500);
        await root.stop("shutdown");
        await parts.close();
        await traces;
      },
    },
  });
}
