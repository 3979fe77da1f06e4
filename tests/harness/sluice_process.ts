/**
 * Runs `main.ts start` as a real child process for integration tests, with
 * its output kept (and printed when a test fails), helpers to read its
 * metrics and HTTP endpoints, and a stop that sends a real signal.
 *
 * @module
 */
import { freePort, waitFor } from "./procs.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A running sluice process. */
export interface SluiceProcess {
  url: string;
  port: number;
  dataDir: string;
  output(): string;
  /** Value of one sample of `/metrics` (sum over samples matching the labels). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  json(path: string, init?: RequestInit): Promise<unknown>;
  /** Sends `signal` and waits for the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
  /** Resolves with the exit code when the process ends by itself. */
  status: Promise<Deno.CommandStatus>;
}

/** Options of {@link startSluiceProcess}. */
export interface SluiceProcessOptions {
  env: Record<string, string>;
  /** Data directory (spool, KV); default a new temporary directory. */
  dataDir?: string;
  /** Wait for `/health/ready` 200; default true. */
  waitReady?: boolean;
  /**
   * Extra `deno run` flags before the script (e.g. `--cpu-prof`, `--inspect`);
   * default none. A `--v8-flags` here replaces {@link START_V8_FLAGS}.
   */
  denoArgs?: string[];
}

/** How much of a process's output is kept (the tail); `SLUICE_TEST_OUTPUT_BYTES`, default 200 kB. */
/** The Kafka client the started processes use (`SLUICE_TEST_KAFKA_CLIENT`); unset = sluice's default. */
const TEST_KAFKA_CLIENT = Deno.env.get("SLUICE_TEST_KAFKA_CLIENT");
const OUTPUT_BYTES = Number(Deno.env.get("SLUICE_TEST_OUTPUT_BYTES") ?? "200000");

/**
 * The `--v8-flags=…` of `deno task start` (deno.json), so that the sluice
 * processes of the tests and benchmarks run as deployed (README, Benchmarks).
 */
export const START_V8_FLAGS: string[] = (() => {
  const config = JSON.parse(
    Deno.readTextFileSync(new URL("../../deno.json", import.meta.url)),
  ) as { tasks: Record<string, string> };
  return config.tasks.start.match(/--v8-flags=\S+/g) ?? [];
})();

/** In {@link SluiceProcessOptions.denoArgs}: run without {@link START_V8_FLAGS}. */
export const NO_START_V8_FLAGS = "--no-start-v8-flags";

/** Starts sluice with `env` (plus a free port and a data directory). */
export async function startSluiceProcess(opts: SluiceProcessOptions): Promise<SluiceProcess> {
  const port = freePort();
  const dataDir = opts.dataDir ?? await Deno.makeTempDir({ prefix: "sluice-it-" });
  // sluice refuses unknown SLUICE_* variables: pass none of ours (a wrapper or
  // the runner may set some), only the test's.
  const inherited = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([k]) => !k.startsWith("SLUICE_")),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      // Own V8 flags (a benchmark experiment) replace those of the start task;
      // `--no-start-v8-flags` drops them (V8's defaults).
      ...(opts.denoArgs?.some((a) => a.startsWith("--v8-flags") || a === NO_START_V8_FLAGS)
        ? []
        : START_V8_FLAGS),
      ...(opts.denoArgs ?? []).filter((a) => a !== NO_START_V8_FLAGS),
      MAIN,
      "start",
    ],
    clearEnv: true,
    env: {
      ...inherited,
      SLUICE_HTTP_PORT: String(port),
      SLUICE_HTTP_HOST: "127.0.0.1",
      SLUICE_DATA_DIR: dataDir,
      SLUICE_LOG_FORMAT: "pretty",
      // `SLUICE_TEST_KAFKA_CLIENT=platformatic` runs every started sluice on
      // the second Kafka client (README: Kafka client choice); a test's own
      // `SLUICE_KAFKA_CLIENT` still wins.
      ...(TEST_KAFKA_CLIENT ? { SLUICE_KAFKA_CLIENT: TEST_KAFKA_CLIENT } : {}),
      ...opts.env,
    },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let out = "";
  const decoder = new TextDecoder();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) {
      out = (out + decoder.decode(chunk, { stream: true })).slice(-OUTPUT_BYTES);
    }
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]);
  const status = child.status.then(async (s) => {
    await pumps;
    return s;
  });
  const url = `http://127.0.0.1:${port}`;
  let exited = false;
  status.then(() => (exited = true));
  const proc: SluiceProcess = {
    url,
    port,
    dataDir,
    output: () => out,
    status,
    async metric(name, labels = {}) {
      const text = await (await fetch(`${url}/metrics`)).text();
      let sum = 0;
      for (const line of text.split("\n")) {
        if (!line.startsWith(name)) continue;
        const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
        if (!m || m[1] !== name) continue;
        const ok = Object.entries(labels).every(([k, v]) => (m[2] ?? "").includes(`${k}="${v}"`));
        if (ok) sum += Number(m[3]);
      }
      return sum;
    },
    async json(path, init) {
      // Control calls say JSON, as sluice requires without a token (like the CLI does).
      const headers = new Headers(init?.headers);
      if ((init?.method ?? "GET") !== "GET" && !headers.has("content-type")) {
        headers.set("content-type", "application/json");
      }
      const res = await fetch(`${url}${path}`, { ...init, headers });
      const text = await res.text();
      if (!res.ok) throw new Error(`${init?.method ?? "GET"} ${path}: ${res.status} ${text}`);
      return JSON.parse(text);
    },
    async stop(signal = "SIGTERM") {
      if (!exited) {
        try {
          child.kill(signal);
        } catch {
          // Already exited.
        }
      }
      return (await status).code;
    },
  };
  if (opts.waitReady ?? true) {
    try {
      await waitFor(async () => {
        if (exited) return true;
        const res = await fetch(`${url}/health/ready`).catch(() => undefined);
        await res?.body?.cancel();
        return res?.status === 200;
      }, { timeoutMs: 60_000, intervalMs: 200, message: "sluice to be ready" });
      if (exited) {
        throw new Error(`sluice exited before it was ready (exit ${(await status).code})`);
      }
    } catch (e) {
      await proc.stop("SIGKILL");
      throw new Error(
        `${e instanceof Error ? e.message : e}\n--- sluice output ---\n${out.slice(-8000)}`,
      );
    }
  }
  return proc;
}

/** Runs `fn`; on failure prints the process output, always stops it (SIGKILL if SIGTERM hangs). */
export async function withSluice<T>(proc: SluiceProcess, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    console.error(`--- sluice output (last 6000 chars) ---\n${proc.output().slice(-6000)}`);
    throw e;
  } finally {
    const killer = setTimeout(() => proc.stop("SIGKILL"), 30_000);
    await proc.stop("SIGTERM");
    clearTimeout(killer);
  }
}
