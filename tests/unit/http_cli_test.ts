/** CLI commands `status`, `drain`, `resume`, `inspect` against a served app with a fake pipeline. */
import assert from "node:assert/strict";
import { spawnActor, stopActor } from "../../actors/runtime/registry.ts";
import { setup } from "xstate";
import { createApp } from "../../http/app.ts";
import {
  drainCommand,
  inspectCommand,
  resumeCommand,
  statusCommand,
} from "../../supervisors/cli/instance.ts";
import { serveApp } from "../../http/server.ts";
import { fakeDeps } from "../../http/testing.ts";
import { InstanceError, UsageError } from "../../supervisors/cli/common.ts";

const TOKEN = "cli-token";

/** Runs `fn` with SLUICE_URL / SLUICE_CONTROL_TOKEN set and console.log captured. */
async function withCli(
  env: Record<string, string | undefined>,
  fn: (out: string[]) => Promise<void>,
): Promise<void> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, Deno.env.get(k)]));
  const log = console.log;
  const out: string[] = [];
  console.log = (...args: unknown[]) => void out.push(args.join(" "));
  for (const [k, v] of Object.entries(env)) {
    v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
  try {
    await fn(out);
  } finally {
    console.log = log;
    for (const [k, v] of Object.entries(saved)) {
      v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
  }
}

async function serve(token?: string) {
  const { deps, state } = fakeDeps({ controlToken: token });
  const server = await serveApp(createApp(deps), { port: 0 });
  return {
    state,
    url: `http://127.0.0.1:${server.port}`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("sluice status prints state, readiness, checks and partitions", async () => {
  await using t = await serve();
  t.state.ready.checks.s3 = { ok: false, detail: "degraded: spool 40 MB" };
  await withCli({ SLUICE_URL: t.url, SLUICE_CONTROL_TOKEN: undefined }, async (out) => {
    assert.equal(await statusCommand.run([]), 0);
    const text = out.join("\n");
    assert.match(text, /^sluice: running \(ready\)/);
    assert.match(text, /FAIL {2}s3 +degraded: spool 40 MB/);
    assert.match(text, /ok {4}kafka/);
    assert.match(text, /orders:0 {2}running {2}lag=0/);
    assert.ok(!/[{}"]/.test(text), `readable lines, no JSON:\n${text}`);
    out.length = 0;
    assert.equal(await statusCommand.run(["--json"]), 0);
    assert.equal(JSON.parse(out.join("\n")).state, "running");
  });
});

Deno.test("sluice drain and resume call the control routes with the bearer token", async () => {
  await using t = await serve(TOKEN);
  await withCli({ SLUICE_URL: t.url, SLUICE_CONTROL_TOKEN: TOKEN }, async (out) => {
    assert.equal(await drainCommand.run([]), 0);
    assert.equal(t.state.drains, 1);
    assert.match(out.at(-1)!, /^Draining: state drained/);
    assert.equal(await resumeCommand.run([]), 0);
    assert.equal(t.state.resumes, 1);
    assert.match(out.at(-1)!, /^Resumed: state running/);
  });
  await withCli({ SLUICE_URL: t.url, SLUICE_CONTROL_TOKEN: "wrong" }, async () => {
    await assert.rejects(drainCommand.run([]), (e: InstanceError) => e.status === 401);
  });
  assert.equal(t.state.drains, 1);
});

Deno.test("sluice inspect prints the actor tree with states", async () => {
  await using t = await serve();
  const m = setup({}).createMachine({ initial: "closed", states: { closed: {} } });
  spawnActor(m, { id: "cli:root", kind: "supervisor" });
  spawnActor(m, { id: "cli:breaker", kind: "breaker", parentId: "cli:root" });
  spawnActor(m, { id: "cli:audit", kind: "audit", parentId: "cli:root" });
  try {
    await withCli({ SLUICE_URL: t.url }, async (out) => {
      assert.equal(await inspectCommand.run([]), 0);
      const text = out.join("\n");
      assert.match(
        text,
        /cli:root \[closed\] \(supervisor\)\n├─ cli:breaker \[closed\] \(breaker\)\n└─ cli:audit \[closed\] \(audit\)/,
      );
    });
  } finally {
    for (const id of ["cli:audit", "cli:breaker", "cli:root"]) stopActor(id);
  }
});

Deno.test("commands fail clearly when the instance is unreachable", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close(); // nothing listens there any more
  await withCli({ SLUICE_URL: `http://127.0.0.1:${port}` }, async () => {
    for (const cmd of [statusCommand, drainCommand, resumeCommand, inspectCommand]) {
      await assert.rejects(cmd.run([]), (e: Error) => {
        assert.ok(e instanceof InstanceError);
        assert.match(e.message, new RegExp(`cannot reach sluice at http://127.0.0.1:${port}`));
        return true;
      });
    }
  });
});

Deno.test("main exits 1 with a clear message when the instance is unreachable", async () => {
  const { main, registerCommand } = await import("../../main.ts");
  registerCommand("status", statusCommand);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const errors: string[] = [];
  const error = console.error;
  console.error = (...args: unknown[]) => void errors.push(args.join(" "));
  try {
    await withCli({ SLUICE_URL: `http://127.0.0.1:${port}` }, async () => {
      assert.equal(await main(["status"]), 1);
    });
  } finally {
    console.error = error;
  }
  assert.match(errors.join("\n"), /^sluice status: cannot reach sluice at .*is it running\?/);
});

Deno.test("commands reject unexpected arguments as usage errors", async () => {
  await assert.rejects(statusCommand.run(["extra"]), UsageError);
  await assert.rejects(inspectCommand.run(["--bogus"]), UsageError);
});
