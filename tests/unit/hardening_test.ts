/**
 * Issue 14 outside the HTTP routes: configuration bounds and names refused at
 * start (exit 2, every problem at once), credentials in URLs masked wherever
 * shown and userinfo sent as Basic auth, a warning for a weak token, compose
 * without a default token, the local audit store's directory sync, and
 * `dlq list` that cannot write escape sequences to a terminal.
 */
import assert from "node:assert/strict";
import { parse as parseYaml } from "../harness/npm/yaml.ts";
import { FsAuditStore } from "../../actors/audit/store.ts";
import { redactText, redactUrl } from "../../actors/runtime/redact.ts";
import { createApp } from "../../http/app.ts";
import { serveApp } from "../../http/server.ts";
import { fakeDeps } from "../../http/testing.ts";
import { dlqCommand } from "../../supervisors/cli/replay.ts";
import {
  ConfigError,
  controlTokenWarning,
  describeConfig,
  loadConfig,
  memoryBudgetWarning,
} from "../../supervisors/config.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

function problemsOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems.join("\n");
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(env)}`);
}

Deno.test("every *_MS setting and rate is bounded: past a timer's range is refused naming the range", () => {
  const text = problemsOf({
    SLUICE_GLOBAL_TIMEOUT_MS: "3000000000",
    SLUICE_BREAKER_RESET_MS: "2147483648",
    SLUICE_SHUTDOWN_DRAIN_MS: "86400000",
    SLUICE_RATE_LIMIT: "0.000000001",
    SLUICE_RATE_BURST: "1000000000",
    SLUICE_REPLAY_RATE: "1e308",
  });
  assert.match(text, /SLUICE_GLOBAL_TIMEOUT_MS="3000000000": must be from 1 to 2147483647/);
  assert.match(text, /SLUICE_BREAKER_RESET_MS="2147483648": must be from 10 to 2147483647/);
  assert.match(text, /SLUICE_SHUTDOWN_DRAIN_MS="86400000": must be from 1 to 3600000/);
  assert.match(text, /SLUICE_RATE_LIMIT=1e-9: must be 0 \(unlimited\) or from 0\.001 to 1000000/);
  assert.match(text, /SLUICE_RATE_BURST="1000000000": must be from 1 to 1000000/);
  assert.match(text, /SLUICE_REPLAY_RATE="1e308": expected a number/);
  // Every *_MS int option has an upper bound a timer honours.
  for (const [k, v] of Object.entries(describeConfig(loadConfig({})))) {
    if (!k.endsWith("_MS")) continue;
    const over = problemsOf({ [k]: "2147483648" });
    assert.match(over, new RegExp(`${k}="2147483648": must be`), k);
    assert.ok(typeof v === "number");
  }
});

Deno.test("0x10, 1e20 and the like are not integers; bad names are refused at once, all together", () => {
  assert.match(
    problemsOf({ SLUICE_MAX_INFLIGHT: "0x10" }),
    /SLUICE_MAX_INFLIGHT="0x10": expected an integer/,
  );
  assert.match(
    problemsOf({ SLUICE_MAX_RETRIES: "1e20" }),
    /SLUICE_MAX_RETRIES="1e20": expected an integer/,
  );
  assert.match(problemsOf({ SLUICE_RATE_LIMIT: "Infinity" }), /expected a number/);
  const text = problemsOf({
    SLUICE_AUDIT_PREFIX: "../x",
    SLUICE_TOPICS: "ok,bad topic,..",
    SLUICE_DLQ_SUFFIX: "/dlq",
    SLUICE_HTTP_HOST: "not a host!",
    SLUICE_KAFKA_BROKERS: "kafka:9092,nohostport",
    SLUICE_ALLOWED_ORIGINS: "https://ok.example,https://x.example/path",
  });
  for (
    const re of [
      /SLUICE_AUDIT_PREFIX="\.\.\/x"/,
      /SLUICE_TOPICS: "bad topic" is not a Kafka topic name/,
      /SLUICE_TOPICS: "\.\." is not a Kafka topic name/,
      /SLUICE_DLQ_SUFFIX="\/dlq"/,
      /SLUICE_HTTP_HOST="not a host!"/,
      /SLUICE_KAFKA_BROKERS: "nohostport" is not host:port/,
      /SLUICE_ALLOWED_ORIGINS: "https:\/\/x\.example\/path" is not an origin/,
    ]
  ) assert.match(text, re);
  assert.equal(text.split("\n").length, 7, text);
  // Valid ones pass.
  loadConfig({
    SLUICE_AUDIT_PREFIX: "audit/prod-1",
    SLUICE_TOPICS: "orders,a.b_c-d",
    SLUICE_HTTP_HOST: "::",
    SLUICE_KAFKA_BROKERS: "kafka-1:9092,10.0.0.1:9093",
  });
});

Deno.test("sluice start exits 2 on SLUICE_AUDIT_PREFIX=../x before starting anything", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-cfg-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", MAIN, "start"],
      env: { SLUICE_AUDIT_PREFIX: "../x", SLUICE_DATA_DIR: `${dir}/data`, SLUICE_HTTP_PORT: "0" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 2, new TextDecoder().decode(out.stderr));
    assert.match(new TextDecoder().decode(out.stderr), /SLUICE_AUDIT_PREFIX/);
    assert.deepEqual([...Deno.readDirSync(dir)], [], "nothing created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("redactUrl and redactText mask userinfo and credential-looking query values only", () => {
  assert.equal(
    redactUrl("http://u:p@h/x?api_key=K&page=2&token=T"),
    "http://***@h/x?api_key=***&page=2&token=***",
  );
  assert.equal(redactUrl("https://h:8443/ingest?x=1"), "https://h:8443/ingest?x=1");
  assert.equal(
    redactText('upstream "http://admin:hunter2@h:80/p?sig=abc&x=1" failed'),
    'upstream "http://***@h:80/p?sig=***&x=1" failed',
  );
  const d = describeConfig(loadConfig({ SLUICE_UPSTREAM_URL: "http://u:p@h/x?api_key=K" }));
  assert.equal(d.SLUICE_UPSTREAM_URL, "http://***@h/x?api_key=***");
});

Deno.test("credentials in SLUICE_UPSTREAM_URL: masked on /status, /health/ready, the dashboard, logs and banner; userinfo sent as Basic auth", async () => {
  const auth: Array<string | null> = [];
  const stub = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    auth.push(req.headers.get("authorization"));
    return new Response("{}");
  });
  const url = `http://sluice-user:hunter2-pw@127.0.0.1:${stub.addr.port}/x?api_key=K3Y-s3cret`;
  const p = await startSluiceProcess({ env: { SLUICE_UPSTREAM_URL: url } });
  try {
    await withSluice(p, async () => {
      const bodies: string[] = [];
      for (const path of ["/status", "/health/ready", "/dashboard/data"]) {
        const res = await fetch(`${p.url}${path}`);
        bodies.push(await res.text());
      }
      const cfg = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", MAIN, "start", "--print-config"],
        env: { SLUICE_UPSTREAM_URL: url },
        stdout: "piped",
      }).output();
      bodies.push(new TextDecoder().decode(cfg.stdout));
      for (const b of bodies) {
        assert.doesNotMatch(b, /hunter2|K3Y-s3cret|sluice-user/, b.slice(0, 400));
      }
      assert.match(bodies[0], /http:\/\/\*\*\*@127\.0\.0\.1:\d+\/x\?api_key=\*\*\*/);
      await new Promise<void>((resolve, reject) => {
        const t0 = Date.now();
        const check = () =>
          auth.length > 0
            ? resolve()
            : Date.now() - t0 > 20_000
            ? reject(new Error("no request reached the upstream"))
            : setTimeout(check, 100);
        check();
      });
      assert.equal(auth[0], `Basic ${btoa("sluice-user:hunter2-pw")}`);
    });
    assert.doesNotMatch(p.output(), /hunter2|K3Y-s3cret/, "logs and banner masked");
    assert.match(p.output(), /upstream: +http:\/\/\*\*\*@127\.0\.0\.1/);
  } finally {
    await stub.shutdown();
  }
});

Deno.test("a short or well-known control token gets a warning; a long random one does not", () => {
  assert.match(controlTokenWarning("local-dev-token-change-me") ?? "", /well-known/);
  assert.match(controlTokenWarning("abc123") ?? "", /short \(6 characters/);
  assert.equal(controlTokenWarning(crypto.randomUUID()), undefined);
  assert.equal(controlTokenWarning(undefined), undefined);
});

Deno.test("compose demands a control token: no default value, start refused without one", () => {
  const doc = parseYaml(
    Deno.readTextFileSync(new URL("../../compose/docker-compose.yml", import.meta.url)),
  ) as { services: { sluice: { environment: Record<string, string> } } };
  const v = String(doc.services.sluice.environment.SLUICE_CONTROL_TOKEN);
  assert.match(v, /^\$\{SLUICE_CONTROL_TOKEN:\?/, v);
  assert.doesNotMatch(
    Deno.readTextFileSync(new URL("../../compose/docker-compose.yml", import.meta.url)),
    /local-dev-token-change-me/,
  );
});

Deno.test("FsAuditStore syncs the directory after the rename, so the object survives a crash", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-fsstore-" });
  const opened: string[] = [];
  const open = Deno.open;
  // deno-lint-ignore no-explicit-any
  (Deno as any).open = (path: string | URL, opts?: Deno.OpenOptions) => {
    opened.push(String(path));
    return open(path, opts);
  };
  try {
    await new FsAuditStore(dir).put("audit/2026/01/a.jsonl.gz", new Uint8Array([1, 2, 3]));
  } finally {
    // deno-lint-ignore no-explicit-any
    (Deno as any).open = open;
  }
  try {
    assert.ok(opened.includes(`${dir}/audit/2026/01`), `directory synced: ${opened.join(", ")}`);
    assert.deepEqual(
      await Deno.readFile(`${dir}/audit/2026/01/a.jsonl.gz`),
      new Uint8Array([1, 2, 3]),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("dlq list prints control bytes from records as visible escapes, table and --json", async () => {
  const hostile = "bad\x1b]0;owned\x07\x1b[2J\0\u009b31m";
  const { deps } = fakeDeps({
    dlq: {
      list: () => ({
        items: [{
          id: "orders:0:1",
          timestamp: "2026-01-01T00:00:00Z\x1b[1A",
          failure_reason: "DESERIALIZATION_ERROR",
          retry_count: 0,
          is_reprocessed: false,
          error_message: hostile,
          original_payload: hostile,
        }],
        next_cursor: "c\x1b[0m",
      }),
      replay: () => undefined,
    },
  });
  const server = await serveApp(createApp(deps), { port: 0 });
  const saved = Deno.env.get("SLUICE_URL");
  const log = console.log;
  const out: string[] = [];
  console.log = (...a: unknown[]) => void out.push(a.join(" "));
  Deno.env.set("SLUICE_URL", `http://127.0.0.1:${server.port}`);
  try {
    assert.equal(await dlqCommand.run(["list"]), 0);
    assert.equal(await dlqCommand.run(["list", "--json"]), 0);
  } finally {
    console.log = log;
    saved === undefined ? Deno.env.delete("SLUICE_URL") : Deno.env.set("SLUICE_URL", saved);
    await server.shutdown();
  }
  const text = out.join("\n");
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, JSON.stringify(text));
  assert.match(text, /bad\\x1b\]0;owned\\x07/);
  assert.match(text, /\\u009b/);
});

Deno.test("a memory budget the V8 heap limit cannot hold is warned about at start, with the flag to set", () => {
  assert.equal(memoryBudgetWarning(64, 176), undefined);
  const w = memoryBudgetWarning(512, 176) ?? "";
  assert.match(w, /SLUICE_MEMORY_BUDGET_MB=512 needs a V8 heap of about 1056 MB/);
  assert.match(w, /limit of 176 MB/);
  assert.match(w, /--max-old-space-size=1056/);
});
