/**
 * The CLI says what is true (issue 15): `audit report` names a store that is
 * not there (exit 1) instead of "No events in the window"; a bare
 * `dlq replay` replays nothing without `--all` when it cannot ask; with
 * `--all` it replays every dead letter. Against a fake instance (no
 * infrastructure); `dlq list`'s "delivered since" and the ETA are in
 * tests/unit/replay_unit_test.ts, `status` in tests/unit/http_cli_test.ts.
 */
import assert from "node:assert/strict";
import { closeApp, createApp } from "../../http/app.ts";
import { serveApp } from "../../http/server.ts";
import { fakeDeps } from "../../http/testing.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

async function cli(args: string[], env: Record<string, string>) {
  const clean = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("SLUICE_")),
  );
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { ...clean, NO_COLOR: "1", ...env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("audit report where there is no store names the missing store and exits 1", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-nostore-" });
  try {
    const r = await cli(["audit", "report", "--from", "now-1h", "--to", "now"], {
      SLUICE_DATA_DIR: `${dir}/data`,
    });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, new RegExp(`no audit store at ${dir}/data/audit`));
    assert.match(r.stderr, /SLUICE_DATA_DIR/);
    assert.ok(!r.stdout.includes("No events in the window"));

    // An existing, empty store: the report runs and says so (exit 0).
    await Deno.mkdir(`${dir}/data/audit`, { recursive: true });
    const ok = await cli(["audit", "report", "--from", "now-1h", "--to", "now"], {
      SLUICE_DATA_DIR: `${dir}/data`,
    });
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /No events in the window/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("audit report on an unreachable S3 store names it and exits 1", async () => {
  const r = await cli(["audit", "report", "--from", "now-1h", "--to", "now"], {
    SLUICE_S3_ENDPOINT: "http://127.0.0.1:1",
    SLUICE_S3_BUCKET: "no-such-bucket",
    SLUICE_S3_ACCESS_KEY: "x",
    SLUICE_S3_SECRET_KEY: "y",
  });
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr, /cannot read the audit store .*no-such-bucket/);
});

Deno.test("dlq replay without --id, filter or --all replays nothing off a terminal (exit 2); --all replays", async () => {
  const { deps } = fakeDeps();
  const bulk: unknown[] = [];
  deps.dlq = {
    ...deps.dlq!,
    replayBulk: (req) => {
      bulk.push(req);
      return { status: "started", id: `rp-${bulk.length}` };
    },
  };
  const app = createApp(deps);
  const server = await serveApp(app, { port: 0 });
  try {
    const env = { SLUICE_URL: `http://127.0.0.1:${server.port}` };
    const bare = await cli(["dlq", "replay"], env);
    assert.equal(bare.code, 2, bare.stdout + bare.stderr);
    assert.match(bare.stderr, /add --all to mean it/);
    assert.equal(bulk.length, 0, "nothing started");

    const all = await cli(["dlq", "replay", "--all", "--detach"], env);
    assert.equal(all.code, 0, all.stdout + all.stderr);
    assert.deepEqual(bulk, [{}], "one bulk replay of everything started");

    const filtered = await cli(["dlq", "replay", "--topic", "orders", "--detach"], env);
    assert.equal(filtered.code, 0, filtered.stderr);
    assert.deepEqual(bulk[1], { topic: "orders" });
  } finally {
    await server.shutdown();
    closeApp(app);
  }
});
