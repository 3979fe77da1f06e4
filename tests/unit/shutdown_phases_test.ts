/**
 * Behaviour suite of `supervisors/shutdown.ts`: phases in order, deadlines,
 * failed phases recorded while the protocol goes on, metric, observable state.
 */
import assert from "node:assert/strict";
import { shutdownPhaseDuration } from "../../actors/runtime/metrics.ts";
import { loadConfig } from "../../supervisors/config.ts";
import {
  canonicalPhases,
  DEFAULT_PHASE_DEADLINES_MS,
  phaseDeadlines,
  runShutdown,
  SHUTDOWN_PHASES,
  type ShutdownPhase,
  ShutdownStatus,
} from "../../supervisors/shutdown.ts";

let counter = 0;
/** Unique phase names, so the metric never mixes tests. */
function uid(name: string): string {
  return `${name}_${++counter}_${crypto.randomUUID().slice(0, 6)}`;
}

async function phaseSeconds(phase: string): Promise<number | undefined> {
  const metric = await shutdownPhaseDuration.get();
  return metric.values.find((v) => v.labels.phase === phase)?.value;
}

/** A phase that records its name in `log` and resolves. */
function quick(name: string, log: string[]): ShutdownPhase {
  return {
    name,
    deadlineMs: 1_000,
    run: () => {
      log.push(name);
      return Promise.resolve();
    },
  };
}

Deno.test("runShutdown runs phases in order and publishes each one on the status", async () => {
  const status = new ShutdownStatus();
  const seen: string[] = [];
  status.subscribe(() => seen.push(status.describe()));
  const ran: string[] = [];
  const names = [uid("stop_load"), uid("drain"), uid("stop_http")];
  assert.equal(status.describe(), "running");

  const report = await runShutdown(names.map((n) => quick(n, ran)), { status, reason: "test" });

  assert.deepEqual(ran, names);
  assert.equal(report.clean, true);
  assert.equal(report.reason, "test");
  assert.deepEqual(report.phases.map((p) => [p.name, p.ok, p.timedOut]), [
    [names[0], true, false],
    [names[1], true, false],
    [names[2], true, false],
  ]);
  assert.deepEqual(seen, [
    `shutting down: phase ${names[0]} (1/3)`,
    `shutting down: phase ${names[1]} (2/3)`,
    `shutting down: phase ${names[2]} (3/3)`,
    "shut down (clean)",
  ]);
  assert.equal(status.snapshot.state, "done");
  for (const n of names) assert.equal(typeof await phaseSeconds(n), "number");
});

Deno.test("runShutdown records a phase past its deadline as timed out, aborts it, and goes on", async () => {
  const status = new ShutdownStatus();
  const ran: string[] = [];
  const slow = uid("drain");
  let aborted: unknown;
  const report = await runShutdown([
    quick(uid("stop_load"), ran),
    {
      name: slow,
      deadlineMs: 40,
      run: (signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener("abort", () => {
            aborted = signal.reason;
            resolve();
          });
        }),
    },
    quick(uid("flush_audit"), ran),
  ], { status });

  assert.equal(report.clean, false);
  assert.equal(ran.length, 2, "the phases around the slow one ran");
  const phase = report.phases[1];
  assert.equal(phase.ok, false);
  assert.equal(phase.timedOut, true);
  assert.match(phase.error ?? "", /exceeded its deadline of 40 ms/);
  assert.ok(phase.ms >= 39, `ms = ${phase.ms}`);
  assert.ok(aborted instanceof DOMException && aborted.name === "TimeoutError");
  assert.ok((await phaseSeconds(slow))! >= 0.039);
  assert.equal(status.describe(), "shut down (not clean)");
});

Deno.test("runShutdown records a phase that throws and still runs the next phases", async () => {
  const ran: string[] = [];
  const report = await runShutdown([
    {
      name: uid("close_consumer"),
      deadlineMs: 1_000,
      run: () => Promise.reject(new Error("leave group failed")),
    },
    {
      name: uid("stop_load"),
      deadlineMs: 1_000,
      run: () => {
        throw new Error("synchronous throw");
      },
    },
    quick(uid("flush_audit"), ran),
  ], { status: new ShutdownStatus() });
  assert.equal(report.clean, false);
  assert.deepEqual(report.phases.map((p) => [p.ok, p.timedOut, p.error]), [
    [false, false, "leave group failed"],
    [false, false, "synchronous throw"],
    [true, false, undefined],
  ]);
  assert.equal(ran.length, 1);
});

Deno.test("runShutdown called again while running joins the first run", async () => {
  const status = new ShutdownStatus();
  const gate = Promise.withResolvers<void>();
  let runs = 0;
  const phases: ShutdownPhase[] = [{
    name: uid("drain"),
    deadlineMs: 5_000,
    run: () => {
      runs++;
      return gate.promise;
    },
  }];
  const first = runShutdown(phases, { status, reason: "SIGTERM" });
  const second = runShutdown(phases, { status, reason: "http" });
  assert.equal(status.started, true);
  gate.resolve();
  assert.equal(await first, await second);
  assert.equal(runs, 1);
  assert.equal((await second).reason, "SIGTERM");
});

Deno.test("runShutdown rejects duplicate phase names and invalid deadlines", () => {
  const status = new ShutdownStatus();
  assert.throws(() => runShutdown([quick("a", []), quick("a", [])], { status }), /Duplicate/);
  assert.throws(
    () =>
      runShutdown([{ name: "a", deadlineMs: Infinity, run: () => Promise.resolve() }], { status }),
    /Invalid deadline/,
  );
  assert.equal(status.started, false);
});

Deno.test("canonicalPhases orders sluice's six phases and fills in defaults", async () => {
  const ran: string[] = [];
  const phases = canonicalPhases({
    flush_audit: { run: () => Promise.resolve(void ran.push("flush_audit")) },
    stop_load: { run: () => Promise.resolve(void ran.push("stop_load")), deadlineMs: 42 },
  });
  assert.deepEqual(phases.map((p) => p.name), [...SHUTDOWN_PHASES]);
  assert.deepEqual(SHUTDOWN_PHASES, [
    "stop_load",
    "mark_not_ready",
    "drain",
    "close_consumer",
    "flush_audit",
    "stop_http",
  ]);
  assert.equal(phases[0].deadlineMs, 42);
  assert.equal(phases[4].deadlineMs, DEFAULT_PHASE_DEADLINES_MS.flush_audit);
  const report = await runShutdown(phases, { status: new ShutdownStatus() });
  assert.equal(report.clean, true);
  assert.deepEqual(ran, ["stop_load", "flush_audit"]);
  assert.equal(report.phases.length, 6);
});

Deno.test("the default phase deadlines are the README's shutdown table and add up to the total it states", async () => {
  const readme = await Deno.readTextFile(new URL("../../README.md", import.meta.url));
  const config = loadConfig({});
  const configured = phaseDeadlines(config);
  // The table's deadline column: seconds, or a setting whose default is in the configuration table.
  const rows = [...readme.matchAll(/^\| (\d) \| `(\w+)`\s*\|[^|]*\|\s*([^|]+?)\s*\|$/gm)];
  assert.deepEqual(rows.map((r) => r[2]), [...SHUTDOWN_PHASES]);
  for (const [, , name, cell] of rows) {
    const phase = name as keyof typeof configured;
    const seconds = /^([\d.]+) s$/.exec(cell);
    const setting = /^`(SLUICE_\w+)`$/.exec(cell);
    assert.ok(seconds || setting, `deadline cell of ${name} not understood: ${cell}`);
    if (seconds) {
      assert.equal(configured[phase], Number(seconds[1]) * 1000, name);
      assert.equal(DEFAULT_PHASE_DEADLINES_MS[phase], configured[phase], name);
    } else {
      const row = new RegExp(`^\\| \`${setting![1]}\`\\s*\\|[^|]*\\|\\s*\`(\\d+)\``, "m").exec(
        readme,
      );
      assert.ok(row, `no configuration row for ${setting![1]}`);
      assert.equal(configured[phase], Number(row[1]), name);
      assert.equal(DEFAULT_PHASE_DEADLINES_MS[phase], configured[phase], name);
    }
  }
  const total = Object.values(configured).reduce((a, b) => a + b, 0);
  const stated = /the deadlines add up to ([\d.]+) s/.exec(readme);
  assert.ok(stated, "README states the total of the default deadlines");
  assert.equal(total, Number(stated[1]) * 1000);
});
