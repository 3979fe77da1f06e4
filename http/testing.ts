/**
 * Test support: a fake {@link AppDeps} that records every call in a plain
 * state object, so tests can check that a refused call changed nothing.
 *
 * @module
 */
import client from "../actors/runtime/prom.ts";
import type { AppDeps, ReadyReport, ReplayProgress, ReplayRequest } from "./deps.ts";

/** What the fake pipeline has been asked to do. */
export interface FakeState {
  drains: number;
  resumes: number;
  shutdowns: number;
  rate: { rate: number; burst: number };
  load: { rate: number };
  replays: Map<string, ReplayProgress & { request: ReplayRequest }>;
  dlqReplayed: string[];
  dlqQueries: unknown[];
  ready: ReadyReport;
}

/** A copy of the state for before/after comparisons. */
export function snapshotState(s: FakeState): unknown {
  return JSON.parse(JSON.stringify({ ...s, replays: [...s.replays.entries()] }));
}

/** A fake pipeline behind `AppDeps`; `overrides` replace any field. */
export function fakeDeps(overrides: Partial<AppDeps> = {}): { deps: AppDeps; state: FakeState } {
  const state: FakeState = {
    drains: 0,
    resumes: 0,
    shutdowns: 0,
    rate: { rate: 100, burst: 100 },
    load: { rate: 10 },
    replays: new Map(),
    dlqReplayed: [],
    dlqQueries: [],
    ready: {
      ready: true,
      checks: {
        kafka: { ok: true },
        s3: { ok: true },
        metrics: { ok: true },
        audit: { ok: true },
        shutting_down: { ok: true },
      },
    },
  };
  const metrics = new client.Registry();
  new client.Counter({ name: "fake_total", help: "A fake counter", registers: [metrics] }).inc(3);
  let nextReplay = 1;
  const deps: AppDeps = {
    ready: () => structuredClone(state.ready),
    metrics,
    control: {
      drain: () => void state.drains++,
      resume: () => void state.resumes++,
      shutdown: () => void state.shutdowns++,
      setRate: ({ rate, burst }) => (state.rate = { rate, burst: burst ?? state.rate.burst }),
      status: () => ({
        state: state.drains > state.resumes ? "drained" : "running",
        mode: "local",
        rate: state.rate,
        partitions: [{ topic: "orders", partition: 0, state: "running", lag: 0 }],
      }),
    },
    replay: {
      start(request) {
        for (const r of state.replays.values()) {
          if (r.topic === request.topic && r.state === "running") {
            return { status: "conflict", runningId: r.id };
          }
        }
        const id = `replay-${nextReplay++}`;
        state.replays.set(id, {
          id,
          topic: request.topic,
          state: "running",
          processed: 0,
          request,
        });
        return { status: "started", id };
      },
      get: (id) => state.replays.get(id),
      cancel(id) {
        const r = state.replays.get(id);
        if (r) r.state = "cancelled";
        return r;
      },
    },
    dlq: {
      list(query) {
        state.dlqQueries.push(query);
        return { items: [{ id: "dl-1", original_topic: "orders" }], next_cursor: "c2" };
      },
      replay(id) {
        if (id !== "dl-1") return undefined;
        state.dlqReplayed.push(id);
        return { id, status: "queued" };
      },
    },
    load: { setRate: ({ rate }) => (state.load = { rate }) },
    clientAddress: () => "127.0.0.1",
    ...overrides,
  };
  return { deps, state };
}
