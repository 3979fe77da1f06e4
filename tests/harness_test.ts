/**
 * The test runner cleans up after itself: interrupted with SIGINT while its
 * infrastructure runs, it leaves no java, ceph-mon, ceph-osd or radosgw
 * process of its own behind.
 */
import assert from "node:assert/strict";
import { isAlive, readLedger } from "./harness/procs.ts";
import { waitFor } from "./harness/mod.ts";

Deno.test("run_tests stops every process it started when interrupted with SIGINT", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL("./run_tests.ts", import.meta.url).pathname, "--hold"],
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
    assert.equal(status.code, 130, out);
    const left = daemons.filter(isAlive);
    assert.deepEqual(left, [], "no daemon of the interrupted run is left");
    assert.match(out, /0 passed, 1 failed/);
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
