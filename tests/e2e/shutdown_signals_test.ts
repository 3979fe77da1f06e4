/**
 * `supervisors/signals.ts` in a real process: a tiny Deno program (inline,
 * run with `deno eval`) installs the handlers over sluice's six phases, and
 * the test sends it real signals.
 */
import assert from "node:assert/strict";
import { SHUTDOWN_PHASES } from "../../supervisors/shutdown.ts";
import { FORCED_EXIT_CODE, installSignalHandlers } from "../../supervisors/signals.ts";
import { waitFor } from "../harness/procs.ts";

const root = new URL("../..", import.meta.url);

/**
 * The fixture program. `FIXTURE_MODE`: `clean` (every phase succeeds),
 * `fail` (drain throws), `hang` (drain waits for its 60 s deadline), `slow`
 * (drain takes 1.5 s, then succeeds).
 */
const FIXTURE = `
import { installSignalHandlers } from "${new URL("supervisors/signals.ts", root)}";
import { canonicalPhases, SHUTDOWN_PHASES } from "${new URL("supervisors/shutdown.ts", root)}";
import { runShutdown } from "${new URL("supervisors/shutdown.ts", root)}";
const mode = Deno.env.get("FIXTURE_MODE");
const impls = Object.fromEntries(SHUTDOWN_PHASES.map((name) => [name, {
  deadlineMs: mode === "hang" && name === "drain" ? 60_000 : 2_000,
  run: async (signal: AbortSignal) => {
    console.log("phase:" + name);
    if (name !== "drain") return;
    if (mode === "fail") throw new Error("drain failed");
    if (mode === "hang") await new Promise((r) => signal.addEventListener("abort", r));
    if (mode === "slow") await new Promise((r) => setTimeout(r, 1500));
  },
}]));
installSignalHandlers((signal) => runShutdown(canonicalPhases(impls), { reason: signal }));
setInterval(() => {}, 60_000); // stands for the HTTP server keeping the process alive
console.log("ready");
`;

type Mode = "clean" | "fail" | "hang" | "slow";

interface Fixture {
  stdout(): string;
  stderr(): string;
  kill(signal: Deno.Signal): void;
  /** Waits for the exit code, then for the output to be read. */
  exit(): Promise<number>;
}

function startFixture(mode: Mode): Fixture {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", FIXTURE],
    cwd: root.pathname,
    env: { FIXTURE_MODE: mode, SLUICE_LOG_FORMAT: "json", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let err = "";
  const collect = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) add(chunk);
  };
  const reading = Promise.all([
    collect(child.stdout, (s) => out += s),
    collect(child.stderr, (s) => err += s),
  ]);
  return {
    stdout: () => out,
    stderr: () => err,
    kill: (signal) => child.kill(signal),
    exit: async () => {
      const status = await child.status;
      await reading;
      return status.code;
    },
  };
}

/** Runs `fn` on a fixture; kills it (SIGKILL) unless it exited, and always reaps it. */
async function withFixture(
  mode: Mode,
  fn: (f: Fixture) => Promise<void>,
): Promise<void> {
  const f = startFixture(mode);
  let exited = false;
  const exit = f.exit().finally(() => exited = true);
  try {
    await waitFor(() => f.stdout().includes("ready"), {
      timeoutMs: 30_000,
      message: "fixture ready",
    });
    await fn({ ...f, exit: () => exit });
  } catch (e) {
    throw new Error(
      `${(e as Error).message}\n--- stdout\n${f.stdout()}\n--- stderr\n${f.stderr()}`,
      {
        cause: e,
      },
    );
  } finally {
    if (!exited) {
      try {
        f.kill("SIGKILL");
      } catch {
        // Already gone.
      }
    }
    await exit;
  }
}

function phasesRun(stdout: string): string[] {
  return stdout.split("\n").filter((l) => l.startsWith("phase:")).map((l) => l.slice(6));
}

function logLines(stderr: string): { msg: string; [k: string]: unknown }[] {
  return stderr.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

Deno.test("installSignalHandlers: SIGTERM runs every phase in order and exits 0", async () => {
  await withFixture("clean", async (f) => {
    f.kill("SIGTERM");
    assert.equal(await f.exit(), 0);
    assert.deepEqual(phasesRun(f.stdout()), [...SHUTDOWN_PHASES]);
    const logs = logLines(f.stderr());
    const started = logs.filter((l) => l.msg === "shutdown phase started").map((l) => l.phase);
    assert.deepEqual(started, [...SHUTDOWN_PHASES]);
    assert.equal(logs.filter((l) => l.msg === "shutdown phase completed").length, 6);
    assert.ok(logs.some((l) => l.msg === "shutdown started" && l.reason === "SIGTERM"));
  });
});

Deno.test("installSignalHandlers: SIGINT with a failing phase runs the rest and exits 1", async () => {
  await withFixture("fail", async (f) => {
    f.kill("SIGINT");
    assert.equal(await f.exit(), 1);
    assert.deepEqual(phasesRun(f.stdout()), [...SHUTDOWN_PHASES], "flush_audit still ran");
    const failed = logLines(f.stderr()).find((l) => l.msg === "shutdown phase failed");
    assert.equal(failed?.phase, "drain");
  });
});

Deno.test("installSignalHandlers: a second signal during the shutdown forces exit code 3", async () => {
  await withFixture("hang", async (f) => {
    f.kill("SIGTERM");
    await waitFor(() => f.stdout().includes("phase:drain"), {
      timeoutMs: 10_000,
      message: "drain phase started",
    });
    f.kill("SIGINT");
    assert.equal(await f.exit(), FORCED_EXIT_CODE);
    assert.deepEqual(phasesRun(f.stdout()), ["stop_load", "mark_not_ready", "drain"]);
    const forced = logLines(f.stderr()).find((l) => l.msg === "second signal; forcing exit");
    assert.ok(forced, "forced exit logged");
    assert.equal(forced.signal, "SIGINT");
    assert.equal(forced.first, "SIGTERM");
    assert.equal(forced.shutdown, "shutting down: phase drain (3/6)");
  });
});

Deno.test("installSignalHandlers: the same signal twice within a second (deno task's forward) is one request: exit 0", async () => {
  await withFixture("slow", async (f) => {
    // Ctrl-C on `deno task start`: the terminal's SIGINT, then the one deno task forwards.
    f.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 5));
    f.kill("SIGINT");
    await new Promise((r) => setTimeout(r, 300));
    f.kill("SIGINT");
    assert.equal(await f.exit(), 0);
    assert.deepEqual(phasesRun(f.stdout()), [...SHUTDOWN_PHASES]);
    const logs = logLines(f.stderr());
    assert.ok(!logs.some((l) => l.msg === "second signal; forcing exit"));
    assert.equal(logs.filter((l) => l.msg === "shutdown phase completed").length, 6);
  });
});

Deno.test("installSignalHandlers: the same signal again after the duplicate window still forces exit code 3", async () => {
  await withFixture("hang", async (f) => {
    f.kill("SIGINT");
    await waitFor(() => f.stdout().includes("phase:drain"), {
      timeoutMs: 10_000,
      message: "drain phase started",
    });
    await new Promise((r) => setTimeout(r, 1200));
    f.kill("SIGINT");
    assert.equal(await f.exit(), FORCED_EXIT_CODE);
    const forced = logLines(f.stderr()).find((l) => l.msg === "second signal; forcing exit");
    assert.equal(forced?.signal, "SIGINT");
    assert.equal(forced?.first, "SIGINT");
    assert.ok((forced?.after_ms as number) >= 1000, `after_ms ${forced?.after_ms}`);
  });
});

Deno.test("installSignalHandlers: remove() takes the listeners away", () => {
  let calls = 0;
  const handlers = installSignalHandlers(() => {
    calls++;
    return Promise.reject(new Error("not expected"));
  }, { exit: () => {} });
  handlers.remove();
  handlers.remove(); // idempotent
  assert.equal(calls, 0);
});
