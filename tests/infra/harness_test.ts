/**
 * The test runner cleans up after itself: interrupted with SIGINT while its
 * infrastructure runs, it leaves no java, ceph-mon, ceph-osd or radosgw
 * process of its own behind (and `--hold`, which Ctrl-C ends by design, exits
 * 0 when it did).
 */
import assert from "node:assert/strict";
import { isAlive, readLedger, startDaemon, stopDaemon, TEST_LOCK } from "../harness/procs.ts";

function readCmdline(pid: number): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ");
  } catch {
    return undefined;
  }
}
import { waitFor } from "../harness/mod.ts";

Deno.test("run_tests stops every process it started when interrupted with SIGINT", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      `--lock=${TEST_LOCK}`,
      new URL("../run_tests.ts", import.meta.url).pathname,
      "--hold",
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let out = "";
  const reader = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stdout) out += decoder.decode(chunk, { stream: true });
  })();
  const errText = child.stderr.pipeTo(new WritableStream());
  try {
    const ledger = await waitFor(() => /SLUICE_TEST_DAEMONS=(\S+)/.exec(out)?.[1], {
      timeoutMs: 180_000,
      message: `the held infrastructure to be ready; output so far:\n${out}`,
    });
    const daemons = readLedger(ledger);
    assert.deepEqual(
      [...new Set(daemons.map((d) => d.name))].sort(),
      ["ceph-mon", "ceph-osd", "kafka", "radosgw"],
    );
    assert.ok(daemons.every(isAlive), "every daemon runs before the interrupt");
    child.kill("SIGINT");
    const status = await child.status;
    const left = daemons.filter(isAlive);
    assert.deepEqual(left, [], "no daemon of the interrupted run is left");
    // Ctrl-C is how a held infrastructure ends: stopped cleanly, it is not a failed run.
    assert.equal(status.code, 0, out);
    assert.match(out, /held infrastructure stopped\n$/);
    assert.doesNotMatch(out, /passed, \d+ failed/);
  } finally {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already exited.
    }
    await child.status;
    await reader;
    await errText;
  }
});

Deno.test("a daemon whose command line changes after it was recorded (late exec) is still stopped", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-harness-" });
  // The recorded command is the `sh` one; 300 ms later the process execs into `sleep`,
  // as radosgw may when the wrapper's fork has not exec'd yet at recording time.
  const d = await startDaemon("late-exec", ["sh", "-c", "sleep 0.3; exec sleep 120"], {
    log: `${dir}/log`,
  });
  try {
    assert.match(d.cmd, /^sh /);
    await waitFor(() => readCmdline(d.pid)?.startsWith("sleep 120"), {
      timeoutMs: 5000,
      message: "the exec into sleep",
    });
    assert.ok(isAlive(d), "still tracked after the exec");
    await stopDaemon(d, { graceMs: 2000 });
    assert.equal(readCmdline(d.pid)?.startsWith("sleep 120") ?? false, false, "stopped");
  } finally {
    if (readCmdline(d.pid)?.startsWith("sleep 120")) Deno.kill(d.pid, "SIGKILL");
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the runner names, kills and fails the run for any process a test left running", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-leak-" });
  const pidFile = `${dir}/leaked.pid`;
  const testFile = `${dir}/leaky_test.ts`;
  await Deno.writeTextFile(
    testFile,
    `Deno.test("leaves a detached process behind", async () => {
  await new Deno.Command("sh", {
    args: ["-c", "setsid sleep 300 >/dev/null 2>&1 </dev/null & echo $! > ${pidFile}"],
  }).output();
});
`,
  );
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        `--lock=${TEST_LOCK}`,
        new URL("../run_tests.ts", import.meta.url).pathname,
        "--no-infra",
        testFile,
      ],
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    const leaked = Number(Deno.readTextFileSync(pidFile).trim());
    assert.equal(out.code, 1, text);
    assert.match(text, new RegExp(`LEFT BEHIND: pid ${leaked} .*sleep 300`), text);
    assert.match(text, /1 passed, 1 failed/);
    assert.equal(readCmdline(leaked)?.startsWith("sleep 300") ?? false, false, "killed");
  } finally {
    try {
      const leaked = Number(Deno.readTextFileSync(pidFile).trim());
      if (readCmdline(leaked)?.startsWith("sleep 300")) Deno.kill(leaked, "SIGKILL");
    } catch {
      // Never started.
    }
    await Deno.remove(dir, { recursive: true });
  }
});
