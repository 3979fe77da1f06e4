/**
 * `deno task bench --quick` against the runner's Kafka and Ceph RGW (through
 * `SLUICE_TEST_STATE`): it runs to the end and produces every row of the
 * table and of the JSON file. The figures are not checked (they are timings
 * of tiny runs on a shared machine); `deno task bench` measures them.
 */
import assert from "node:assert/strict";
import { infra } from "../harness/mod.ts";
import { TEST_LOCK } from "../harness/procs.ts";
import { ROW_IDS } from "../bench/lib.ts";

const BENCH = new URL("../bench/bench.ts", import.meta.url).pathname;

Deno.test("bench --quick runs on the test infrastructure and produces every row", async () => {
  infra(); // Fails with a clear message outside the runner.
  const dir = await Deno.makeTempDir({ prefix: "sluice-bench-quick-" });
  const out = `${dir}/bench.json`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `--lock=${TEST_LOCK}`, BENCH, "--quick", "--out", out],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // The bench stops what it started on SIGTERM; SIGKILL only if that hangs.
  const term = setTimeout(() => child.kill("SIGTERM"), 150_000);
  const kill = setTimeout(() => child.kill("SIGKILL"), 170_000);
  const result = await child.output();
  clearTimeout(term);
  clearTimeout(kill);
  const stdout = new TextDecoder().decode(result.stdout);
  const stderr = new TextDecoder().decode(result.stderr);
  try {
    assert.equal(result.code, 0, `bench --quick failed:\n${stdout}\n${stderr.slice(-8000)}`);
    const json = JSON.parse(await Deno.readTextFile(out));
    assert.equal(json.mode, "quick");
    assert.deepEqual(json.failures, []);
    assert.deepEqual(json.missing, []);
    for (const id of ROW_IDS) {
      const row = json.rows.find((r: { id: string }) => r.id === id);
      assert.ok(row, `row ${id} is in the JSON`);
      assert.ok(Number.isFinite(row.value), `row ${id} has a number: ${row.value}`);
      assert.ok(stdout.includes(`| ${row.benchmark}`), `row ${id} is in the printed table`);
      if (row.target !== undefined) assert.equal(typeof row.met, "boolean", `row ${id}: met`);
    }
    assert.ok(json.machine.cores > 0);
    assert.match(stdout, /\| Benchmark +\| Result +\| Target +\| Met +\| Notes +\|/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
