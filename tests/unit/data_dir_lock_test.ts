/**
 * One sluice per data directory: a second instance on the same
 * `SLUICE_DATA_DIR` exits 2 naming the directory and the holder's pid,
 * before it touches anything; the first keeps running, its files untouched.
 */
import assert from "node:assert/strict";
import { DataDirLockedError, lockDataDir } from "../../supervisors/data_dir_lock.ts";
import { startSluiceProcess, withSluice } from "../harness/sluice_process.ts";
import { freePort, waitFor } from "../harness/procs.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

Deno.test("lockDataDir: a second lock on the same directory is refused naming the holder; release frees it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-lock-" });
  try {
    const a = lockDataDir(dir);
    assert.throws(() => lockDataDir(dir), (e: unknown) => {
      assert.ok(e instanceof DataDirLockedError);
      assert.equal(e.holderPid, Deno.pid);
      assert.match(e.message, new RegExp(`${dir}.*pid ${Deno.pid}`));
      return true;
    });
    a.release();
    lockDataDir(dir).release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Every file under `dir` with its size, modification time and inode. */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = `${d}/${e.name}`;
      const st = await Deno.lstat(p);
      if (e.isDirectory) await walk(p);
      else out.set(p.slice(dir.length), `${st.size}/${st.mtime?.getTime()}/${st.ino}`);
    }
  };
  await walk(dir);
  return out;
}

async function runSecond(dataDir: string, env: Record<string, string>) {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", MAIN, "start"],
    env: {
      SLUICE_DATA_DIR: dataDir,
      SLUICE_HTTP_PORT: String(freePort()),
      SLUICE_HTTP_HOST: "127.0.0.1",
      SLUICE_LOG_FORMAT: "pretty",
      ...env,
    },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  return {
    code: out.code,
    text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
    ms: performance.now() - t0,
  };
}

Deno.test("a second sluice on the same data directory exits 2 naming it and the holder's pid; the first is unaffected", async () => {
  const a = await startSluiceProcess({ env: { SLUICE_AUDIT_BATCH_AGE_MS: "200" } });
  await withSluice(a, async () => {
    const pidA = (await a.json("/status") as { pid?: number }).pid ??
      Number(/"pid":(\d+)/.exec(Deno.readTextFileSync(`${a.dataDir}/sluice.lock`))?.[1]);
    assert.ok(Number.isSafeInteger(pidA), "pid of A from its lock file");
    await waitFor(async () => (await a.metric("requests_total")) >= 10, {
      timeoutMs: 20_000,
      message: "A processing records",
    });
    // Quiesce A (no load, consumption drained, spool uploaded) so that any change
    // to its files during B's attempt can only come from B.
    const put = { method: "PUT", headers: { "content-type": "application/json" } };
    await a.json("/control/load", { ...put, body: '{"rate":0}' });
    await a.json("/control/drain", { method: "POST", headers: put.headers });
    let last = "";
    await waitFor(async () => {
      const s = JSON.stringify([...(await snapshot(a.dataDir)).entries()].sort());
      const stable = s === last;
      last = s;
      return stable;
    }, { timeoutMs: 30_000, intervalMs: 1500, message: "A's files to settle" });
    const before = await snapshot(a.dataDir);

    // B in local mode, then B in Kafka mode (brokers that do not exist: the lock comes first).
    const modes: Record<string, string>[] = [{}, { SLUICE_KAFKA_BROKERS: "127.0.0.1:1" }];
    for (const env of modes) {
      const b = await runSecond(a.dataDir, env);
      assert.equal(b.code, 2, b.text);
      assert.match(b.text, new RegExp(`Data directory ${a.dataDir} is in use`), b.text);
      assert.match(b.text, new RegExp(`pid ${pidA}\\b`), b.text);
      assert.ok(b.ms < 15_000, `B took ${b.ms} ms to refuse`);
    }
    assert.deepEqual(await snapshot(a.dataDir), before, "A's files untouched by B");

    // A still runs and still processes.
    const live = await fetch(`${a.url}/health/live`);
    assert.equal(live.status, 200);
    await live.body?.cancel();
    await a.json("/control/resume", { method: "POST", headers: put.headers });
    await a.json("/control/load", { ...put, body: '{"rate":50}' });
    const n0 = await a.metric("requests_total");
    await waitFor(async () => (await a.metric("requests_total")) >= n0 + 20, {
      timeoutMs: 20_000,
      message: "A processing after B was refused",
    });
    const ready = await fetch(`${a.url}/health/ready`);
    assert.equal(ready.status, 200, await ready.text());
  });
  assert.equal(await a.status.then((s) => s.code), 0, a.output().slice(-3000));
});
