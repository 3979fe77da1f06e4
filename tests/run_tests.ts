/**
 * The test command (`deno task test`): installs what the tests need, starts a
 * real Kafka broker and a real Ceph RGW in parallel, runs `deno test` on the
 * test files with their connection settings, prints the infrastructure's log
 * tails when a test fails, stops every process it started (also on Ctrl-C),
 * and ends with the line `N passed, N failed`.
 *
 * ```
 * deno task test                       # every tests/**\/*_test.ts
 * deno task test tests/infra/smoke_test.ts   # some files
 * deno task test --hold                # start the infrastructure and wait (for development):
 *                                      # run tests from another shell with the printed SLUICE_TEST_STATE
 * deno task test --no-infra tests/x_test.ts   # files that need no Kafka or Ceph
 * ```
 *
 * Nothing a run starts outlives it: the runner puts a marker variable unique
 * to the run in its own environment, which every process started under it
 * inherits (test processes, sluice children, Kafka, Ceph daemons, restarted
 * ones included). After stopping the infrastructure it looks for live
 * processes carrying the marker; any it finds is named, killed, and fails
 * the run. The tests run with their own TMPDIR, removed with the run, so
 * their data directories do not pile up in /tmp either.
 *
 * Environment: `SLUICE_TEST_CACHE` (Maven cache, default ~/.cache/sluice-test),
 * `SLUICE_TEST_KEEP=1` keeps the run directory (logs, data) after the run.
 *
 * @module
 */
import { lanes } from "./harness/lanes.ts";
import { FailureCollector, signalSummary } from "./harness/test_output.ts";
import { processesWithEnv, sleep, TEST_LOCK } from "./harness/procs.ts";
import {
  ensureDebianPackages,
  type InfraState,
  logTails,
  startInfra,
  stopInfra,
} from "./harness/infra.ts";

const started = Date.now();
const say = (s: string) =>
  console.log(`[run_tests +${((Date.now() - started) / 1000).toFixed(1)}s] ${s}`);

function testFiles(args: string[]): string[] {
  const files = args.filter((a) => !a.startsWith("-"));
  if (files.length > 0) return files;
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory && e.name !== "harness" && e.name !== "fixtures") walk(p);
      else if (e.isFile && e.name.endsWith("_test.ts")) found.push(p);
    }
  };
  walk(new URL(".", import.meta.url).pathname.replace(/\/$/, ""));
  return found.sort();
}

/** This run's marker: inherited by every process the run starts (see the module doc). */
const RUN_MARK = `SLUICE_TEST_RUN_${Deno.pid}_${
  crypto.randomUUID().slice(0, 8).replaceAll("-", "")
}`;
Deno.env.set(RUN_MARK, "1");

/**
 * Processes of this run still alive, after a grace period for those exiting;
 * each is named and killed. Returns how many there were.
 */
async function reapLeftovers(): Promise<number> {
  let left = processesWithEnv(RUN_MARK, "1");
  for (let waited = 0; left.length > 0 && waited < 5_000; waited += 250) {
    await sleep(250);
    left = processesWithEnv(RUN_MARK, "1");
  }
  for (const p of left) {
    say(`LEFT BEHIND: pid ${p.pid} still alive after the run: ${p.cmd.slice(0, 160)}`);
    try {
      Deno.kill(p.pid, "SIGKILL");
    } catch {
      // Gone meanwhile.
    }
  }
  if (left.length > 0) say(`${left.length} processes started by this run were still alive: killed`);
  return left.length;
}

let state: InfraState | undefined;
/**
 * The tests' TMPDIR: every temporary directory a test or a sluice it starts
 * makes lands here, and goes with the run (kept with `SLUICE_TEST_KEEP=1`).
 */
const scratch = Deno.makeTempDirSync({ prefix: "sluice-test-tmp-" });
/** The `deno test` runs in progress (killed, with their process groups, on Ctrl-C). */
const children = new Set<Deno.ChildProcess>();
let stopping = false;
/** `--hold`: the infrastructure is up and waits for Ctrl-C. */
let holding = false;

async function cleanup(): Promise<number> {
  for (const child of children) {
    try {
      Deno.kill(-child.pid, "SIGTERM");
    } catch {
      // Already gone.
    }
  }
  let left = 0;
  if (state) {
    const s = state;
    state = undefined;
    left = await stopInfra(s, Deno.env.get("SLUICE_TEST_KEEP") === "1");
    if (left > 0) say(`WARNING: ${left} infrastructure processes could not be stopped`);
    else say("infrastructure stopped");
  }
  left += await reapLeftovers();
  if (Deno.env.get("SLUICE_TEST_KEEP") === "1") say(`tests' temporary files kept in ${scratch}`);
  else await Deno.remove(scratch, { recursive: true }).catch(() => {});
  return left;
}

function onSignal(sig: Deno.Signal) {
  return async () => {
    if (stopping) return;
    stopping = true;
    say(`${sig}: stopping the ${holding ? "held infrastructure" : "tests and the infrastructure"}`);
    const end = signalSummary(holding, await cleanup());
    console.log(end.line);
    Deno.exit(end.code);
  };
}
Deno.addSignalListener("SIGINT", onSignal("SIGINT"));
Deno.addSignalListener("SIGTERM", onSignal("SIGTERM"));

async function main(): Promise<number> {
  const args = Deno.args;
  const hold = args.includes("--hold");
  const noInfra = args.includes("--no-infra");
  const files = testFiles(args);
  if (noInfra) return await runTests(files, {});
  try {
    await ensureDebianPackages(say);
    say("starting Kafka and Ceph RGW");
    state = await startInfra(say);
  } catch (e) {
    say(`the test infrastructure did not start: ${e instanceof Error ? e.message : e}`);
    if (state) console.log(logTails(state));
    await cleanup();
    console.log("0 passed, 1 failed");
    return 1;
  }
  const env = {
    SLUICE_TEST_STATE: `${state.runDir}/state.json`,
    SLUICE_TEST_DAEMONS: state.ledger,
  };
  if (hold) {
    say(
      `infrastructure ready; in another shell:\n  export SLUICE_TEST_STATE=${env.SLUICE_TEST_STATE} SLUICE_TEST_DAEMONS=${env.SLUICE_TEST_DAEMONS}\n  deno test -A --lock=tests/deno.lock tests/<file>\nCtrl-C stops it.`,
    );
    holding = true;
    await new Promise(() => {});
  }
  return await runTests(files, env);
}

interface LaneResult {
  passed: number;
  failed: number;
  ok: boolean;
  /** `test name => ./tests/file_test.ts:line:col` of each failed test, and its error line. */
  failures: string[];
}

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");

/** Runs `deno test` on `files`, each output line prefixed with `[name]`. */
async function runLane(
  name: string,
  files: string[],
  env: Record<string, string>,
): Promise<LaneResult> {
  say(`lane ${name}: ${files.length} test files`);
  const c = new Deno.Command("setsid", {
    args: [Deno.execPath(), "test", "--allow-all", `--lock=${TEST_LOCK}`, ...files],
    env: { ...env, TMPDIR: scratch },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  children.add(c);
  let tail = "";
  const failures = new FailureCollector();
  const pump = async (stream: ReadableStream<Uint8Array>, out: typeof Deno.stdout) => {
    const decoder = new TextDecoder();
    let pending = "";
    const enc = new TextEncoder();
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split("\n");
      pending = lines.pop() ?? "";
      if (lines.length === 0) continue;
      const text = lines.map((l) => `[${name}] ${l}\n`).join("");
      if (out === Deno.stdout) {
        tail = (tail + lines.join("\n") + "\n").slice(-4000);
        for (const l of lines) failures.line(l);
      }
      await out.write(enc.encode(text));
    }
    if (pending) await out.write(enc.encode(`[${name}] ${pending}\n`));
  };
  await Promise.all([pump(c.stdout, Deno.stdout), pump(c.stderr, Deno.stderr)]);
  const status = await c.status;
  children.delete(c);
  // deno test ends with "ok | 12 passed (3 steps) | 0 failed (1m2s)" or "FAILED | ...".
  const plain = tail.replace(ANSI, "");
  const m = /(?:ok|FAILED) \| (\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/.exec(plain);
  const passed = m ? Number(m[1]) : 0;
  let failed = m ? Number(m[2]) : 0;
  if (!m && !status.success) failed = Math.max(failed, 1);
  say(`lane ${name} done: ${passed} passed, ${failed} failed`);
  return { passed, failed, ok: status.success, failures: failures.summaries() };
}

/**
 * Runs the lanes: the no-infra lane from the start; beside it the outage
 * lane, then the two infra lanes together once the outages are over; then
 * the measuring files alone. Every lane shares the one Kafka and RGW.
 */
async function runTests(files: string[], env: Record<string, string>): Promise<number> {
  say(`running ${files.length} test files`);
  const { local, outage, infra, alone } = lanes(files);
  const none = Promise.resolve(undefined);
  const run = (name: string, l: string[]) => l.length > 0 ? runLane(name, l, env) : none;
  const outageDone = run("outage", outage);
  const settled = await Promise.all([
    run("local", local),
    outageDone,
    outageDone.then(() => run("infra-a", infra[0])),
    outageDone.then(() => run("infra-b", infra[1])),
  ]);
  const results = settled.filter((r): r is LaneResult => r !== undefined);
  if (alone.length > 0) results.push(await runLane("alone", alone, env));
  const passed = results.reduce((a, r) => a + r.passed, 0);
  let failed = results.reduce((a, r) => a + r.failed, 0);
  const success = results.every((r) => r.ok);
  if (!success && state) {
    say("tests failed: infrastructure log tails follow");
    console.log(logTails(state));
  }
  const left = await cleanup();
  if (left > 0) failed += 1;
  // Last, so that a CI log cut to its tail still names what failed.
  const failures = results.flatMap((r) => r.failures);
  if (failures.length > 0) say(`failed tests:\n  ${failures.join("\n  ")}`);
  say(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  console.log(`${passed} passed, ${failed} failed`);
  return success && left === 0 && failed === 0 ? 0 : 1;
}

Deno.exit(await main());
