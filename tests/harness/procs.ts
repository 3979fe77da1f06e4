/**
 * Process helpers for the test harness: start a daemon detached from the
 * caller (its own session, output to a log file), know whether a pid is still
 * the process we started, and stop it.
 *
 * Daemons are started through `setsid sh -c '... & echo $!'` so that a test
 * process may start one (to restart RGW or Kafka) without Deno's test
 * sanitizers seeing a leaked child; the runner stops them all by pid. Every
 * daemon started is appended to the ledger file named by
 * `SLUICE_TEST_DAEMONS`, so nothing started by a test escapes the clean-up.
 *
 * @module
 */

/**
 * The tests' lockfile, for every `deno` a test starts on a test script: the
 * test-only npm packages stay out of the root deno.lock (README, Benchmarks:
 * "Cold start").
 */
export const TEST_LOCK = new URL("../deno.lock", import.meta.url).pathname;

/** A daemon we started. */
export interface Daemon {
  name: string;
  pid: number;
  /** First bytes of /proc/<pid>/cmdline (for people; a late `exec` changes it). */
  cmd: string;
  log: string;
  /**
   * Start time of the process (/proc/<pid>/stat field 22, clock ticks since
   * boot): with the pid, what identifies it. It does not change at `exec`,
   * unlike the command line, which may still be the `sh` wrapper's when it is
   * read right after the start.
   */
  startTime?: number;
}

/** The fields of `/proc/<pid>/stat` after the command name (`fields[0]` is the state); throws when gone. */
function procStat(pid: number): string[] {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** Start time of `pid` (clock ticks since boot), or undefined when there is no such process. */
export function procStartTime(pid: number): number | undefined {
  try {
    const t = Number(procStat(pid)[19]);
    return Number.isFinite(t) ? t : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) `pid` has used so far; throws when there is no such process. */
export function procCpuSeconds(pid: number): number {
  const fields = procStat(pid);
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ)
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Starts `argv` detached, appending stdout and stderr to `log`. */
export async function startDaemon(
  name: string,
  argv: string[],
  opts: { log: string; cwd?: string; env?: Record<string, string> },
): Promise<Daemon> {
  const cmdline = argv.map(shellQuote).join(" ");
  const out = await new Deno.Command("setsid", {
    args: ["sh", "-c", `${cmdline} >>${shellQuote(opts.log)} 2>&1 </dev/null & echo $!`],
    cwd: opts.cwd,
    env: opts.env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const pid = Number(new TextDecoder().decode(out.stdout).trim());
  if (!out.success || !Number.isInteger(pid) || pid <= 0) {
    throw new Error(
      `Cannot start ${name}: ${new TextDecoder().decode(out.stderr)} (see ${opts.log})`,
    );
  }
  const daemon: Daemon = {
    name,
    pid,
    cmd: readCmdline(pid) ?? argv[0],
    log: opts.log,
    startTime: procStartTime(pid),
  };
  const ledger = Deno.env.get("SLUICE_TEST_DAEMONS");
  if (ledger) Deno.writeTextFileSync(ledger, JSON.stringify(daemon) + "\n", { append: true });
  return daemon;
}

/** Daemons listed in a ledger file written by {@link startDaemon}. */
export function readLedger(path: string): Daemon[] {
  try {
    return Deno.readTextFileSync(path).split("\n").filter((l) => l.trim()).map((l) =>
      JSON.parse(l)
    );
  } catch {
    return [];
  }
}

function readCmdline(pid: number): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").slice(0, 200);
  } catch {
    return undefined;
  }
}

/**
 * True while `d.pid` is alive and is still the process we started: same
 * start time (same command for ledgers written before start times were kept).
 */
export function isAlive(d: Pick<Daemon, "pid" | "cmd" | "startTime">): boolean {
  try {
    if (procStat(d.pid)[0] === "Z") return false;
  } catch {
    return false;
  }
  if (d.startTime !== undefined) return procStartTime(d.pid) === d.startTime;
  const cmd = readCmdline(d.pid);
  if (cmd === undefined || cmd === "") return false;
  return cmd.split(" ")[0] === d.cmd.split(" ")[0];
}

/**
 * Processes (other than this one) whose environment holds `name=value`:
 * everything a run started inherits its marker variable, so this finds what a
 * run left behind, wherever it was started from. Zombies have no environment.
 */
export function processesWithEnv(name: string, value: string): Array<{ pid: number; cmd: string }> {
  const needle = new TextEncoder().encode(`${name}=${value}\0`);
  const found: Array<{ pid: number; cmd: string }> = [];
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!Number.isInteger(pid) || pid === Deno.pid) continue;
    let env: Uint8Array;
    try {
      env = Deno.readFileSync(`/proc/${pid}/environ`);
    } catch {
      continue;
    }
    if (indexOf(env, needle) >= 0) found.push({ pid, cmd: readCmdline(pid) ?? "?" });
  }
  return found;
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    if (i > 0 && hay[i - 1] !== 0) continue; // variables start after a NUL
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** Sends `signal`, waits up to `graceMs`, then SIGKILLs. Resolves when gone. */
export async function stopDaemon(
  d: Daemon,
  opts: { signal?: Deno.Signal; graceMs?: number } = {},
): Promise<void> {
  if (!isAlive(d)) return;
  try {
    Deno.kill(d.pid, opts.signal ?? "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + (opts.graceMs ?? 10_000);
  while (isAlive(d) && Date.now() < deadline) await sleep(50);
  if (isAlive(d)) {
    try {
      Deno.kill(d.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    const hard = Date.now() + 5_000;
    while (isAlive(d) && Date.now() < hard) await sleep(50);
  }
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Runs a command to completion; throws with its output on failure. */
export async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; what?: string } = {},
): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, {
      args,
      cwd: opts.cwd,
      env: opts.env,
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).output();
  } catch (e) {
    throw new Error(
      `${opts.what ?? cmd}: cannot run ${cmd}: ${e instanceof Error ? e.message : e}`,
    );
  }
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) {
    throw new Error(
      `${opts.what ?? cmd} failed (exit ${out.code}): ${cmd} ${args.join(" ")}\n${tail(text, 40)}`,
    );
  }
  return text;
}

/** The last `n` lines of `text`. */
export function tail(text: string, n: number): string {
  return text.split("\n").slice(-n).join("\n");
}

/** The last `n` lines of a file, or a note that it cannot be read. */
export function tailFile(path: string, n: number): string {
  try {
    return tail(Deno.readTextFileSync(path), n);
  } catch (e) {
    return `(cannot read ${path}: ${e instanceof Error ? e.message : e})`;
  }
}

/** Waits until `fn()` is truthy; throws with `message` after `timeoutMs`. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; message?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let lastError: unknown;
  while (true) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      const why = lastError instanceof Error ? `: last error: ${lastError.message}` : "";
      throw new Error(
        `Timed out after ${opts.timeoutMs ?? 10_000} ms waiting for ${
          opts.message ?? "condition"
        }${why}`,
      );
    }
    await sleep(opts.intervalMs ?? 50);
  }
}
