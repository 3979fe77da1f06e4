/**
 * A cold `deno task start` (empty `DENO_DIR`) downloads only what the
 * service uses, not the test-only packages (README: Benchmarks, "Cold
 * start"). `deno task` installs every package of `deno.json`'s import map
 * and of `deno.lock` before it runs any task, so the test-only packages
 * (playwright-core, yaml, @xstate/graph, the OTLP protobuf definitions) are
 * pinned in `tests/harness/npm/` and locked in `tests/deno.lock`, never in
 * the root files.
 */
import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };

const ROOT = new URL("../..", import.meta.url).pathname;

/** npm packages only the tests import. */
const TEST_ONLY = [
  "playwright-core",
  "yaml",
  "@xstate/graph",
  "@opentelemetry/otlp-proto-exporter-base",
];

Deno.test("deno.json and deno.lock name no test-only package; the test tasks use tests/deno.lock", async () => {
  const imports = Object.values(denoJson.imports as Record<string, string>).join("\n");
  const lock = await Deno.readTextFile(`${ROOT}deno.lock`);
  for (const name of TEST_ONLY) {
    assert.ok(!imports.includes(`npm:${name}@`), `deno.json imports ${name}`);
    assert.ok(!imports.includes(`npm:/${name}@`), `deno.json imports ${name}`);
    assert.ok(
      !lock.includes(`"${name}@`) && !lock.includes(`npm:${name}@`),
      `deno.lock holds ${name}: a test ran without --lock=tests/deno.lock ` +
        `(\`deno task test\`, \`deno task test:unit\` and \`deno task check\` pass it)`,
    );
  }
  const tasks = denoJson.tasks as Record<string, string>;
  for (const task of ["test", "test:unit", "check", "bench"]) {
    assert.match(tasks[task], /--lock=tests\/deno\.lock/, `task ${task}`);
  }
});

Deno.test("a cold deno task start fetches the service's packages and no test-only one", async () => {
  const denoDir = await Deno.makeTempDir({ prefix: "sluice-cold-deno-dir-" });
  try {
    // An unknown SLUICE_* variable: sluice refuses it and exits 2 once its
    // module graph is loaded, after `deno task`'s install.
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "start"],
      cwd: ROOT,
      env: { DENO_DIR: denoDir, NO_COLOR: "1", SLUICE_COLD_START_PROBE: "1" },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, stderr.slice(-2000));
    assert.match(stderr, /SLUICE_COLD_START_PROBE: unknown variable/);
    const registry = `${denoDir}/npm/registry.npmjs.org`;
    const fetched = (name: string) => {
      try {
        return Deno.statSync(`${registry}/${name}`).isDirectory;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return false;
        throw e;
      }
    };
    // What the start path imports was fetched (the probe looks where the
    // packages land)...
    for (const name of ["kafkajs", "hono", "xstate", "prom-client", "undici", "zod"]) {
      assert.ok(fetched(name), `${name} not in ${registry}`);
    }
    // ...and no test-only package.
    for (const name of TEST_ONLY) assert.ok(!fetched(name), `${name} fetched by deno task start`);
  } finally {
    await Deno.remove(denoDir, { recursive: true });
  }
});
