/**
 * The README copy-pastes (doc test): the shell commands of the quick start
 * and every `curl`/`sluice` command of the runbook are extracted from
 * README.md and run, as written, against a local instance started by the
 * README's own start line; every one must exit 0.
 *
 * Extraction:
 * - Quick start: the `sh` blocks of "## Quick start" (before "### Against
 *   real Kafka"): the line starting `./sluice start` starts the instance; the
 *   lines of the next block run one by one in `bash` (comments are bash's),
 *   `kill -TERM <pid>` last, with the instance's pid, and must end it with
 *   exit 0.
 * - Runbook: inline code spans of "## Runbook" starting with `curl ` or
 *   `sluice ` (`sluice` is `./sluice`); spans with a placeholder (`<...>`) or
 *   a variable of a remote system (`$...`) are not runnable here and are
 *   listed as skipped. `POST /control/shutdown` runs last and must end the
 *   instance with exit 0.
 *
 * Only the port and the data directory change: `127.0.0.1:9090` becomes the
 * test's free port (and `SLUICE_HTTP_PORT` for the CLI), and every command
 * gets the instance's `SLUICE_DATA_DIR` (the README runs them from the
 * directory sluice runs in, so `./data` is the same). `curl` runs with `--fail-with-body`, so an
 * HTTP error fails the command (the README's `-sS` shows errors, the test
 * also counts them), and pipelines run with `pipefail` (a `grep` that finds
 * nothing fails). The runbook instance consumes `events` and `orders` (the
 * runbook's topic name) from the embedded log.
 */
import assert from "node:assert/strict";
import { freePort, waitFor } from "../harness/procs.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const README = Deno.readTextFileSync(`${ROOT}/README.md`);

/** The text of the `## title` section (up to the next `## `), or of `### title` (up to the next `##`). */
function section(text: string, heading: string): string {
  const start = text.indexOf(`\n${heading}\n`);
  assert.ok(start >= 0, `README has "${heading}"`);
  const level = heading.split(" ")[0];
  const rest = text.slice(start + heading.length + 2);
  const next = new RegExp(`^#{2,${level.length}} `, "m").exec(rest);
  return next ? rest.slice(0, next.index) : rest;
}

function shBlocks(text: string): string[] {
  return [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** Commands of the quick start: the start line, then the lines of the block after it. */
export function quickStartCommands(readme = README): { start: string; commands: string[] } {
  const qs = section(readme, "## Quick start").split("\n### ")[0];
  const blocks = shBlocks(qs);
  assert.ok(blocks.length >= 2, "quick start has its start block and its commands block");
  const start = blocks[0].split("\n").find((l) => l.startsWith("./sluice start"));
  assert.ok(start, "quick start starts sluice with ./sluice start");
  const commands = blocks[1].split("\n").map((l) => l.trim()).filter((l) =>
    l !== "" && !l.startsWith("#")
  );
  return { start: start.replace(/\s+#.*$/, ""), commands };
}

/** Runnable and skipped commands of the runbook. */
export function runbookCommands(readme = README): { run: string[]; skipped: string[] } {
  const rb = section(readme, "## Runbook").replaceAll("\\|", "|");
  const run: string[] = [], skipped: string[] = [];
  for (const m of rb.matchAll(/`([^`\n]+)`/g)) {
    const span = m[1];
    if (!/^(curl|sluice) /.test(span)) continue;
    if (/<[^>]*>|\$/.test(span)) skipped.push(span);
    else run.push(span.replace(/^sluice /, "./sluice "));
  }
  return { run, skipped };
}

/** Our environment without SLUICE_* variables (sluice refuses unknown ones), plus `extra`. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  const env = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("SLUICE_")),
  );
  return { ...env, ...extra };
}

interface Instance {
  pid: number;
  port: number;
  /** The instance's data directory: the CLI reads the same (as from the same directory). */
  dataDir: string;
  out(): string;
  done: Promise<number>;
}

async function startInstance(startLine: string, env: Record<string, string>): Promise<Instance> {
  const port = freePort();
  const dataDir = await Deno.makeTempDir({ prefix: "sluice-readme-" });
  const child = new Deno.Command("bash", {
    args: ["-c", `exec ${startLine}`],
    cwd: ROOT,
    env: childEnv({
      SLUICE_HTTP_PORT: String(port),
      SLUICE_DATA_DIR: dataDir,
      SLUICE_HTTP_HOST: "127.0.0.1",
      ...env,
    }),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const dec = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) text = (text + dec.decode(c, { stream: true })).slice(-300_000);
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const done = child.status.then(async (s) => {
    await pumps;
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    return s.code;
  });
  let exited = false;
  done.then(() => exited = true);
  await waitFor(async () => {
    if (exited) return true;
    const r = await fetch(`http://127.0.0.1:${port}/health/ready`).catch(() => undefined);
    await r?.body?.cancel();
    return r?.status === 200;
  }, { timeoutMs: 90_000, intervalMs: 250, message: "the README's sluice ready" });
  if (exited) throw new Error(`sluice exited before it was ready:\n${text}`);
  return { pid: child.pid, port, dataDir, out: () => text, done };
}

interface Ran {
  command: string;
  code: number;
  output: string;
}

async function runCommand(command: string, inst: Instance): Promise<Ran> {
  const port = inst.port;
  const local = command.replaceAll("127.0.0.1:9090", `127.0.0.1:${port}`);
  const script = [
    "set -o pipefail",
    'curl() { command curl --fail-with-body "$@"; }',
    local,
  ].join("\n");
  const out = await new Deno.Command("bash", {
    args: ["-c", script],
    cwd: ROOT,
    env: childEnv({
      SLUICE_HTTP_PORT: String(port),
      SLUICE_DATA_DIR: inst.dataDir,
      NO_COLOR: "1",
    }),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(180_000),
  }).output();
  const dec = new TextDecoder();
  return {
    command,
    code: out.code,
    output: (dec.decode(out.stdout) + dec.decode(out.stderr)).slice(-2000),
  };
}

function report(title: string, ran: Ran[]): string {
  return [
    `${title}: ${ran.filter((r) => r.code === 0).length}/${ran.length} exit 0`,
    ...ran.map((r) => `  [${r.code}] ${r.command}`),
  ].join("\n");
}

function failures(ran: Ran[]): string {
  return ran.filter((r) => r.code !== 0).map((r) => `--- exit ${r.code}: ${r.command}\n${r.output}`)
    .join("\n");
}

Deno.test("README extraction finds the quick start and the runbook commands", () => {
  const qs = quickStartCommands();
  assert.equal(qs.start, "./sluice start");
  assert.ok(qs.commands.length >= 12, `${qs.commands.length} quick start commands`);
  assert.ok(qs.commands.at(-1)!.startsWith("kill -TERM <pid>"));
  const rb = runbookCommands();
  assert.ok(rb.run.length >= 25, `${rb.run.length} runbook commands`);
  for (const c of [...qs.commands, ...rb.run]) {
    assert.ok(!/curl [^|]*\s:\d+\//.test(c), `no host-less URL: ${c}`);
    assert.ok(!/^open /.test(c), `no macOS open: ${c}`);
  }
  // A host-less URL would be caught:
  assert.ok(/curl [^|]*\s:\d+\//.test("curl -s :9090/metrics"));
});

Deno.test("README quick start: every command runs against the instance its start line started, 0 failures", async () => {
  const { start, commands } = quickStartCommands();
  const inst = await startInstance(start, { SLUICE_BREAKER_RESET_MS: "3000" });
  const ran: Ran[] = [];
  try {
    for (const c of commands) {
      if (c.startsWith("kill -TERM <pid>")) continue;
      ran.push(await runCommand(c, inst));
    }
    const kill = commands.find((c) => c.startsWith("kill -TERM <pid>"))!;
    ran.push(await runCommand(kill.replace("<pid>", String(inst.pid)), inst));
    const code = await inst.done;
    console.log(report("quick start", ran));
    assert.equal(failures(ran), "");
    assert.equal(code, 0, "kill -TERM <pid> ends sluice with exit 0");
  } catch (e) {
    console.error(report("quick start", ran));
    console.error(`--- sluice output\n${inst.out().slice(-6000)}`);
    throw e;
  } finally {
    try {
      Deno.kill(inst.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    await inst.done;
  }
});

Deno.test("README runbook: every curl and sluice command runs against a local instance, 0 failures", async () => {
  const { start } = quickStartCommands();
  const { run, skipped } = runbookCommands();
  const inst = await startInstance(start, {
    SLUICE_TOPICS: "events,orders",
    SLUICE_BREAKER_RESET_MS: "3000",
  });
  const ran: Ran[] = [];
  try {
    const last = run.filter((c) => c.includes("/control/shutdown"));
    for (const c of run.filter((c) => !c.includes("/control/shutdown"))) {
      ran.push(await runCommand(c, inst));
    }
    for (const c of last) ran.push(await runCommand(c, inst));
    const code = await inst.done;
    console.log(report("runbook", ran));
    console.log(
      `runbook: not runnable here (placeholders or remote systems):\n  ${skipped.join("\n  ")}`,
    );
    assert.equal(failures(ran), "");
    assert.equal(code, 0, "POST /control/shutdown ends sluice with exit 0");
  } catch (e) {
    console.error(report("runbook", ran));
    console.error(`--- sluice output\n${inst.out().slice(-6000)}`);
    throw e;
  } finally {
    try {
      Deno.kill(inst.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    await inst.done;
  }
});
