/**
 * The single-file build (`deno task bundle` → `dist/sluice.js`): it holds
 * every npm dependency (kafkajs, @aws-sdk/client-s3, undici, prom-client,
 * opossum, hono, xstate), so it runs with an empty `DENO_DIR`, `--no-remote`
 * and `--no-npm`, from a directory with no deno.json: `--help`, `--version`,
 * and an embedded-mode start that becomes ready and exits 0 on SIGTERM.
 * Also: undici loads with the upstream client's cheaper assert in a bundle
 * too; `deno task compile` without a usable denort says what it needs.
 */
import assert from "node:assert/strict";
import denoJson from "../../deno.json" with { type: "json" };
import { freePort, waitFor } from "../harness/procs.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const decoder = new TextDecoder();

/** A fresh directory (cwd, HOME) and an empty DENO_DIR for the bundle. */
async function sandbox(): Promise<{ dir: string; env: Record<string, string> }> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-bundle-" });
  await Deno.mkdir(`${dir}/deno_dir`);
  await Deno.mkdir(`${dir}/data`);
  await Deno.copyFile(`${ROOT}dist/sluice.js`, `${dir}/sluice.js`);
  return {
    dir,
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: dir,
      DENO_DIR: `${dir}/deno_dir`,
      NO_COLOR: "1",
    },
  };
}

/** How the bundle is run (`--unstable-kv`: the idempotency store is Deno KV). */
const RUN = [
  "run",
  "--allow-all",
  "--unstable-kv",
  "--no-remote",
  "--no-npm",
  "--no-config",
  "sluice.js",
];

async function runBundle(args: string[], box: { dir: string; env: Record<string, string> }) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...RUN, ...args],
    cwd: box.dir,
    env: box.env,
    clearEnv: true,
    stdin: "null",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("deno task bundle builds dist/sluice.js, which runs alone with an empty DENO_DIR and --no-remote", async (t) => {
  const built = await new Deno.Command(Deno.execPath(), {
    args: ["task", "bundle"],
    cwd: ROOT,
    stdin: "null",
  }).output();
  assert.equal(built.code, 0, `deno task bundle failed:\n${decoder.decode(built.stderr)}`);
  const bundle = await Deno.readTextFile(`${ROOT}dist/sluice.js`);
  // Only node: built-ins may stay imports (deno.json, inlined as data, names npm: packages).
  const imports = [...bundle.matchAll(/(?:\bfrom|\bimport\(?)\s*["']([a-z]+:[^"']*)["']/g)]
    .map((m) => m[1]);
  assert.ok(imports.length > 0, "the bundle imports node: built-ins");
  assert.deepEqual(imports.filter((s) => !s.startsWith("node:")), [], "npm/jsr/https imports left");
  // One character above U+00FF makes V8 keep the whole 7 MB source two bytes
  // per character (README: Single file and binary).
  const wide = [...bundle.matchAll(/[\u0100-\uffff]/g)].map((m) =>
    JSON.stringify(bundle.slice(Math.max(0, m.index - 40), m.index + 10))
  );
  assert.deepEqual(wide, [], "characters above U+00FF in the bundle");

  const box = await sandbox();
  try {
    await t.step("--help: the same CLI as main.ts", async () => {
      const fromSource = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", `${ROOT}main.ts`, "--help"],
        cwd: ROOT,
        stdin: "null",
      }).output();
      const r = await runBundle(["--help"], box);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Usage: sluice <command>/);
      assert.equal(r.stdout, decoder.decode(fromSource.stdout));
      const sub = await runBundle(["start", "--help"], box);
      assert.equal(sub.code, 0, sub.stderr);
      assert.match(sub.stdout, /SLUICE_KAFKA_BROKERS/);
    });

    await t.step("--version", async () => {
      const r = await runBundle(["--version"], box);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), `sluice ${denoJson.version}`);
    });

    await t.step("unknown command: exit 2", async () => {
      const r = await runBundle(["no-such-command"], box);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /unknown command/);
    });

    await t.step("embedded start: ready, then SIGTERM, exit 0", async () => {
      const port = freePort();
      const child = new Deno.Command(Deno.execPath(), {
        args: [...RUN, "start"],
        cwd: box.dir,
        env: {
          ...box.env,
          SLUICE_HTTP_PORT: String(port),
          SLUICE_HTTP_HOST: "127.0.0.1",
          SLUICE_DATA_DIR: `${box.dir}/data`,
        },
        clearEnv: true,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let output = "";
      const pump = async (s: ReadableStream<Uint8Array>) => {
        for await (const c of s) output += decoder.decode(c, { stream: true });
      };
      const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
      let exited = false;
      const status = child.status.then((s) => {
        exited = true;
        return s;
      });
      try {
        await waitFor(async () => {
          if (exited) return true;
          const res = await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => undefined);
          await res?.body?.cancel();
          return res?.status === 200;
        }, { timeoutMs: 60_000, intervalMs: 100, message: "the bundled sluice to be ready" });
        assert.equal(exited, false, `exited before ready:\n${output}`);
        const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        assert.match(metrics, /requests_total\{outcome="delivered"\}/);
        // What loads at first use is in the single file too: ws at the first
        // upgrade (an event arrives), zod at the first control request.
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/events?severity=info`);
        const closed = new Promise((r) => ws.addEventListener("close", r));
        try {
          const event = await new Promise<string>((resolve, reject) => {
            ws.addEventListener("message", (m) => resolve(String(m.data)), { once: true });
            ws.addEventListener("error", () => reject(new Error(`WebSocket failed:\n${output}`)));
          });
          assert.equal(typeof (JSON.parse(event) as { type: unknown }).type, "string");
        } finally {
          ws.close();
          await closed;
        }
        const refused = await fetch(`http://127.0.0.1:${port}/control/rate`, {
          method: "PUT",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ rate: -1 }),
        });
        await refused.body?.cancel();
        assert.equal(refused.status, 422);
        child.kill("SIGTERM");
        const s = await status;
        await pumps;
        assert.equal(s.code, 0, `exit code after SIGTERM:\n${output.slice(-4000)}`);
        // Not a terminal: the banner is a JSON log line with the version and the pid.
        assert.match(output, /"msg":"sluice is running","version":"\d+\.\d+\.\d+","pid":\d+/);
        assert.match(output, /shutdown completed/);
      } finally {
        if (!exited) child.kill("SIGKILL");
        await status;
        await pumps;
      }
    });

    await t.step("nothing was fetched into the empty DENO_DIR", () => {
      // Deno creates an empty npm/ folder; no package and no remote module may be in it.
      const names = (dir: string) => {
        try {
          return [...Deno.readDirSync(dir)].map((e) => e.name);
        } catch {
          return [];
        }
      };
      assert.deepEqual(names(`${box.dir}/deno_dir/npm`), []);
      assert.deepEqual(names(`${box.dir}/deno_dir/remote`), []);
    });
  } finally {
    await Deno.remove(box.dir, { recursive: true });
  }
});

Deno.test("in a bundle too, undici's modules load with the upstream client's cheaper assert", async () => {
  // actors/pipeline/undici_assert.ts: in the single file undici's require()s
  // go through createRequire, the loader the window replaces. A probe bundle
  // of the upstream client's undici module, built as deno task bundle builds.
  const entry = `${ROOT}dist/undici_assert_probe.ts`;
  const output = `${ROOT}dist/undici_assert_probe.js`;
  await Deno.mkdir(`${ROOT}dist`, { recursive: true });
  await Deno.writeTextFile(
    entry,
    'import { cheapAssertServed } from "../actors/pipeline/undici.ts";\n' +
      "console.log(cheapAssertServed.length);\n",
  );
  try {
    const built = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "deno", "--packages", "bundle", "--output", output, entry],
      cwd: ROOT,
      stdin: "null",
      stdout: "null",
    }).output();
    assert.equal(built.code, 0, decoder.decode(built.stderr));
    const ran = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--no-remote", "--no-npm", "--no-config", output],
      cwd: ROOT,
      stdin: "null",
    }).output();
    assert.equal(ran.code, 0, decoder.decode(ran.stderr));
    // Source form: 7 of undici's modules require node:assert on the Pool's path.
    const served = Number(decoder.decode(ran.stdout).trim());
    assert.ok(served >= 5, `undici modules served the cheaper assert in the bundle: ${served}`);
  } finally {
    await Deno.remove(entry).catch(() => {});
    await Deno.remove(output).catch(() => {});
  }
});

Deno.test("deno task compile without a usable denort stops with a message saying what it needs", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "compile"],
    cwd: ROOT,
    env: { DENORT_BIN: "/nonexistent/denort" },
    stdin: "null",
  }).output();
  const stderr = decoder.decode(out.stderr);
  assert.equal(out.code, 1, stderr);
  assert.match(stderr, /DENORT_BIN=\/nonexistent\/denort is not a file/);
  assert.match(stderr, /unzipped denort binary/);
});
