/**
 * The configuration schema: validation, masking, the README table, and the
 * CLI's exit code on a bad variable.
 */
import assert from "node:assert/strict";
import {
  CONFIG_SCHEMA,
  ConfigError,
  configTable,
  describeConfig,
  loadConfig,
} from "../../supervisors/config.ts";

Deno.test("loadConfig gives the documented defaults with an empty environment", () => {
  const c = loadConfig({});
  for (const spec of CONFIG_SCHEMA) {
    assert.deepEqual((c as Record<string, unknown>)[spec.key], spec.default, spec.env);
  }
  assert.equal(c.httpPort, 9090);
  assert.deepEqual(c.kafkaBrokers, []);
});

Deno.test("loadConfig parses every type", () => {
  const c = loadConfig({
    SLUICE_KAFKA_BROKERS: "a:9092, b:9092",
    SLUICE_HTTP_PORT: "8080",
    SLUICE_RATE_LIMIT: "12.5",
    SLUICE_ORDERING: "key",
    SLUICE_UPSTREAM_URL: "http://127.0.0.1:8000/ingest",
  });
  assert.deepEqual(c.kafkaBrokers, ["a:9092", "b:9092"]);
  assert.equal(c.httpPort, 8080);
  assert.equal(c.rateLimit, 12.5);
  assert.equal(c.orderingMode, "key");
  assert.equal(c.upstreamUrl, "http://127.0.0.1:8000/ingest");
});

Deno.test("loadConfig reports every problem at once, naming the variable and what is allowed", () => {
  try {
    loadConfig({
      SLUICE_HTTP_PORT: "abc",
      SLUICE_ORDERING: "random",
      SLUICE_MAX_INFLIGHT: "0",
      SLUICE_UPSTREAM_URL: "ftp://x",
      SLUICE_S3_ENDPOINT: "http://127.0.0.1:7480",
      SLUICE_TYPO: "1",
    });
    assert.fail("expected a ConfigError");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    const text = e.problems.join("\n");
    assert.match(text, /SLUICE_HTTP_PORT="abc": expected an integer/);
    assert.match(text, /SLUICE_ORDERING="random": expected one of partition, key, none/);
    assert.match(text, /SLUICE_MAX_INFLIGHT="0": must be from 1 to 100000/);
    assert.match(text, /SLUICE_UPSTREAM_URL="ftp:\/\/x": expected an http/);
    assert.match(text, /SLUICE_S3_ACCESS_KEY: required when SLUICE_S3_ENDPOINT is set/);
    assert.match(text, /SLUICE_TYPO: unknown variable/);
    assert.equal(e.problems.length, 7);
  }
});

Deno.test("describeConfig masks secrets", () => {
  const c = loadConfig({
    SLUICE_CONTROL_TOKEN: "s3cr3t",
    SLUICE_S3_ENDPOINT: "http://h:1",
    SLUICE_S3_ACCESS_KEY: "a",
    SLUICE_S3_SECRET_KEY: "b",
  });
  const d = describeConfig(c);
  assert.equal(d.SLUICE_CONTROL_TOKEN, "********");
  assert.equal(d.SLUICE_S3_SECRET_KEY, "********");
  assert.ok(!JSON.stringify(d).includes("s3cr3t"));
});

Deno.test("the README configuration table matches the schema (regenerate with deno task docs:config)", () => {
  const readme = Deno.readTextFileSync(new URL("../../README.md", import.meta.url));
  const m = /<!-- config-table:start -->\n([\s\S]*?)\n<!-- config-table:end -->/.exec(readme);
  assert.ok(m, "README has the config-table markers");
  // deno fmt aligns Markdown tables: compare cell by cell.
  const cells = (table: string) =>
    table.trim().split("\n").map((row) =>
      row.split(/(?<!\\)\|/).map((c) => c.trim()).map((c) => /^-+$/.test(c) ? "---" : c).join("|")
    );
  assert.deepEqual(cells(m[1]), cells(configTable()));
});

Deno.test("main.ts start exits 2 naming an invalid variable", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../../main.ts", import.meta.url).pathname, "start"],
    env: { SLUICE_HTTP_PORT: "abc" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 2);
  assert.match(new TextDecoder().decode(out.stderr), /SLUICE_HTTP_PORT="abc": expected an integer/);
});
