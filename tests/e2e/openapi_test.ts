/**
 * The HTTP contract (issue 19, point 3): `GET /openapi.json` is built from
 * the same zod schemas as the request validation, and `schemathesis` (a
 * client nobody here wrote) finds no server error and no response outside
 * the schema on any route of a running local instance with a token.
 *
 * Needs `python3`; installs `schemathesis` with pip when it is missing.
 * No Kafka or RGW: sluice runs in local mode.
 */
import assert from "node:assert/strict";
import { closeApp, createApp } from "../../http/app.ts";
import { serveApp } from "../../http/server.ts";
import { fakeDeps } from "../../http/testing.ts";
import { WsHub } from "../../http/ws_hub.ts";
import { MAX_BURST, MAX_LOAD_RATE, MAX_RATE, MAX_TIME_MS, MIN_RATE } from "../../http/validate.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";

/** The schemathesis release this test was written and run with. */
const SCHEMATHESIS_VERSION = "4.32.5";
/** Examples per operation and phase (`--max-examples`). */
const MAX_EXAMPLES = Number(Deno.env.get("SLUICE_TEST_SCHEMATHESIS_EXAMPLES") ?? "10");
/** Time budget of the whole run, seconds (`--max-time`). */
const MAX_TIME_S = Number(Deno.env.get("SLUICE_TEST_SCHEMATHESIS_MAX_TIME_S") ?? "90");

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

Deno.test("GET /openapi.json: OpenAPI 3.1, no token needed, every contract route, bounds from the same constants", async () => {
  const { deps } = fakeDeps({ controlToken: "t0ken" });
  const app = createApp(deps);
  try {
    const res = await app.request("/openapi.json");
    assert.equal(res.status, 200);
    const doc = await res.json() as Json;
    assert.equal(doc.openapi, "3.1.0");
    const ops = Object.entries(doc.paths as Json).flatMap(([p, m]) =>
      Object.keys(m).map((k) => `${k.toUpperCase()} ${p}`)
    ).sort();
    assert.deepEqual(ops, [
      "DELETE /control/replay/{id}",
      "GET /control/replay/{id}",
      "GET /dlq",
      "GET /health/live",
      "GET /health/ready",
      "GET /openapi.json",
      "GET /status",
      "POST /control/drain",
      "POST /control/replay",
      "POST /control/resume",
      "POST /control/shutdown",
      "POST /dlq/replay",
      "POST /dlq/{id}/replay",
      "PUT /control/load",
      "PUT /control/rate",
      "PUT /control/upstream",
    ]);
    const body = (p: string, m: string) =>
      doc.paths[p][m].requestBody.content["application/json"].schema;
    const rate = body("/control/rate", "put");
    assert.equal(rate.properties.rate.minimum, MIN_RATE);
    assert.equal(rate.properties.rate.maximum, MAX_RATE);
    assert.equal(rate.properties.burst.maximum, MAX_BURST);
    assert.equal(rate.additionalProperties, false);
    assert.deepEqual(rate.required, ["rate"]);
    assert.equal(body("/control/load", "put").properties.rate.maximum, MAX_LOAD_RATE);
    assert.equal(body("/control/replay", "post").properties.to.anyOf[0].maximum, MAX_TIME_MS);
    assert.deepEqual(doc.paths["/status"].get.security, []);
    assert.deepEqual(doc.paths["/control/rate"].put.security, [{ bearer: [] }]);
    // The validation reads the same numbers: one past the documented maximum is refused.
    const over = await app.request("/control/rate", {
      method: "PUT",
      headers: { "content-type": "application/json", authorization: "Bearer t0ken" },
      body: JSON.stringify({ rate: rate.properties.rate.maximum * 2 }),
    });
    assert.equal(over.status, 422);
    assert.deepEqual(await over.json(), {
      error: {
        code: "validation_error",
        message: `Invalid rate: must be a number from ${MIN_RATE} to ${MAX_RATE} (records/s)`,
      },
    });
  } finally {
    closeApp(app);
  }
});

Deno.test("TRACE (a method Fetch cannot carry) answers 405 with Allow on a known path and 404 elsewhere, not a bare 500", async () => {
  const { deps } = fakeDeps({ hub: new WsHub() });
  delete deps.clientAddress;
  const app = createApp(deps);
  const server = await serveApp(app, { port: 0 });
  try {
    const ask = (method: string, path: string) =>
      new Deno.Command("curl", {
        args: ["-s", "-i", "-X", method, `http://127.0.0.1:${server.port}${path}`],
        stdout: "piped",
        stderr: "null",
      }).output().then((o) => new TextDecoder().decode(o.stdout));
    // node:http parses TRACE (TRACK and others it answers 400 itself).
    for (const method of ["TRACE"]) {
      const known = await ask(method, "/health/live");
      assert.match(known, /^HTTP\/1\.1 405/, known);
      assert.match(known, /^allow: GET, HEAD\r$/im, known);
      assert.match(
        known,
        new RegExp(`"Method ${method} not allowed on /health/live: use GET, HEAD"`),
      );
      const unknown = await ask(method, "/nowhere");
      assert.match(unknown, /^HTTP\/1\.1 404/, unknown);
      assert.match(unknown, new RegExp(`"No route: ${method} /nowhere"`));
    }
  } finally {
    await server.shutdown();
  }
});

async function run(cmd: string, args: string[], env: Record<string, string> = {}, cwd?: string) {
  const out = await new Deno.Command(cmd, { args, env, cwd, stdout: "piped", stderr: "piped" })
    .output();
  const dec = new TextDecoder();
  return { code: out.code, text: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** `python3 -m`-like entry of the schemathesis CLI (its script may not be on PATH). */
const CLI = "import sys; from schemathesis.cli import schemathesis; " +
  "sys.argv[0] = 'schemathesis'; schemathesis()";

async function ensureSchemathesis(): Promise<void> {
  const have = await run("python3", ["-c", "import schemathesis; print(schemathesis.__version__)"]);
  if (have.code === 0 && have.text.trim() === SCHEMATHESIS_VERSION) return;
  const pip = await run("python3", [
    "-m",
    "pip",
    "install",
    "--quiet",
    "--disable-pip-version-check",
    `schemathesis==${SCHEMATHESIS_VERSION}`,
  ]);
  assert.equal(pip.code, 0, `pip install schemathesis failed:\n${pip.text}`);
}

Deno.test({
  name:
    "schemathesis against a running local sluice with a token: 0 server errors, 0 schema violations on every route",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await ensureSchemathesis();
    const token = `tok-${crypto.randomUUID()}`;
    const proc = await startSluiceProcess({
      env: {
        SLUICE_CONTROL_TOKEN: token,
        // schemathesis sets the simulated upstream to hang or to 600 s latency: bound
        // one record's delivery (POST /dlq/{id}/replay waits for it) well under the
        // client's request timeout.
        SLUICE_CONNECT_TIMEOUT_MS: "500",
        SLUICE_READ_TIMEOUT_MS: "1000",
        SLUICE_GLOBAL_TIMEOUT_MS: "3000",
        SLUICE_SHUTDOWN_DRAIN_MS: "2000",
      },
    });
    const reportDir = await Deno.makeTempDir({ prefix: "sluice-schemathesis-" });
    try {
      await withSluice(proc, async () => {
        const common = [
          "-c",
          CLI,
          "run",
          `${proc.url}/openapi.json`,
          "-H",
          `Authorization: Bearer ${token}`,
          "--checks",
          "not_a_server_error,response_schema_conformance",
          // Stops the instance under test; covered by tests/e2e/shutdown_signals_test.ts.
          "--exclude-path",
          "/control/shutdown",
          "--max-examples",
          String(MAX_EXAMPLES),
          "--request-timeout",
          "20",
          "--seed",
          "19",
          "--report",
          "junit",
          "--report-dir",
          reportDir,
        ];
        const env = { NO_COLOR: "1", SCHEMATHESIS_TELEMETRY: "false" };
        // Pass 1, every route but the simulated upstream's: a fuzzed PUT /control/upstream
        // breaks the upstream on purpose, and POST /dlq/{id}/replay then answers its
        // documented 503 circuit_open / 504 replay_timeout. Pass 2 fuzzes that route last.
        const passes = [
          {
            name: "every route but PUT /control/upstream",
            args: [
              "--exclude-path",
              "/control/upstream",
              "--phases",
              "examples,coverage,fuzzing,stateful",
              "--max-time",
              String(MAX_TIME_S),
            ],
          },
          {
            name: "PUT /control/upstream",
            args: [
              "--include-path",
              "/control/upstream",
              "--max-time",
              String(Math.ceil(MAX_TIME_S / 4)),
            ],
          },
        ];
        let operations = 0;
        let generated = 0;
        for (const pass of passes) {
          // cwd: schemathesis keeps a cache (.schemathesis/) in its working directory.
          const st = await run("python3", [...common, ...pass.args], env, reportDir);
          const summary = st.text.slice(st.text.indexOf("SUMMARY"));
          console.log(`--- schemathesis: ${pass.name} ---\n${summary || st.text.slice(-4000)}`);
          assert.doesNotMatch(st.text, /Schema Loading Error/);
          const selected = /Selected: (\d+)\/\d+/.exec(st.text);
          const tested = /Tested: (\d+)/.exec(st.text);
          assert.ok(selected && tested, `no operation count in the output:\n${st.text}`);
          assert.equal(tested[1], selected[1], `operations tested:\n${summary}`);
          const cases = /(\d+) generated/.exec(st.text);
          assert.ok(cases && Number(cases[1]) > 0, "test cases generated");
          assert.doesNotMatch(st.text, /Failures:/, `schemathesis found failures:\n${st.text}`);
          assert.doesNotMatch(st.text, /Errors:/, `schemathesis had errors:\n${st.text}`);
          assert.equal(st.code, 0, st.text.slice(-6000));
          operations += Number(tested[1]);
          generated += Number(cases[1]);
        }
        const doc = await proc.json("/openapi.json") as Json;
        const documented = Object.values(doc.paths as Json).reduce(
          (n: number, m) => n + Object.keys(m as Json).length,
          0,
        );
        console.log(
          `schemathesis ${SCHEMATHESIS_VERSION}: ${operations} operations (of ${documented} ` +
            `documented, POST /control/shutdown left out), ${generated} test cases, 0 failures, 0 errors`,
        );
      });
    } finally {
      await Deno.remove(reportDir, { recursive: true }).catch(() => {});
      await Deno.remove(proc.dataDir, { recursive: true }).catch(() => {});
    }
  },
});
