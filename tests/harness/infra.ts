/**
 * The test infrastructure of one run: a Kafka broker and a Ceph RGW started
 * in parallel in a temporary directory, a state file the tests read, a ledger
 * of every daemon started, and the clean-up that stops them all, also for
 * runs that died without cleaning up.
 *
 * @module
 */
import { cephLogs, type CephState, launchCeph, prepareCeph } from "./ceph.ts";
import { ensureKafkaJars, type KafkaState, launchKafka, prepareKafka } from "./kafka.ts";
import { isAlive, readLedger, run, stopDaemon, tailFile } from "./procs.ts";

/** What the tests see (through `SLUICE_TEST_STATE`). */
export interface InfraState {
  runnerPid: number;
  runDir: string;
  ledger: string;
  kafka: KafkaState;
  ceph: CephState;
}

/** Debian packages the tests need, by the binary that tells they are there. */
const DEBIAN_PACKAGES: [binary: string, pkg: string][] = [
  ["ceph-mon", "ceph-mon"],
  ["ceph-osd", "ceph-osd"],
  ["radosgw", "radosgw"],
  ["ceph", "ceph-common"],
  ["kcat", "kcat"],
  ["promtool", "prometheus"],
  ["java", "openjdk-17-jre-headless"],
  ["mvn", "maven"],
  ["chromium", "chromium"],
  ["setsid", "util-linux"],
  ["tmux", "tmux"],
  ["curl", "curl"],
];

async function hasBinary(name: string): Promise<boolean> {
  const out = await new Deno.Command("sh", {
    args: ["-c", `command -v ${name}`],
    stdout: "null",
    stderr: "null",
  })
    .output();
  return out.success;
}

/** Installs the missing Debian packages (as root), or explains what to install. */
export async function ensureDebianPackages(log: (s: string) => void): Promise<void> {
  const missing: string[] = [];
  for (const [bin, pkg] of DEBIAN_PACKAGES) if (!(await hasBinary(bin))) missing.push(pkg);
  if (missing.length === 0) return;
  if (Deno.uid() !== 0) {
    throw new Error(
      `The tests need these Debian packages: ${
        missing.join(" ")
      }; install them with: sudo apt-get install -y ${missing.join(" ")}`,
    );
  }
  log(`installing Debian packages: ${missing.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const lock = ["-o", "DPkg::Lock::Timeout=600"];
  await run("apt-get", [...lock, "update", "-q"], { env, what: "apt-get update" });
  // A half-finished earlier install blocks every later one: finish it first.
  await run("apt-get", [...lock, "install", "-y", "-q", "-f"], { env, what: "apt-get install -f" });
  await run("apt-get", [...lock, "install", "-y", "-q", "--no-install-recommends", ...missing], {
    env,
    what: "apt-get install",
  });
}

/** The cache directory reused across runs (Maven repository, Kafka jars). */
export function cacheDir(): string {
  return Deno.env.get("SLUICE_TEST_CACHE") ??
    `${Deno.env.get("HOME") ?? "/tmp"}/.cache/sluice-test`;
}

/** Stops the daemons of earlier runs whose runner is gone (killed, crashed). */
export async function reapStaleRuns(log: (s: string) => void): Promise<void> {
  const dir = `${cacheDir()}/runs`;
  await Deno.mkdir(dir, { recursive: true });
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    let rec: { runnerPid: number; runDir: string; ledger: string; cmd: string };
    try {
      rec = JSON.parse(Deno.readTextFileSync(path));
    } catch {
      continue;
    }
    if (isAlive({ pid: rec.runnerPid, cmd: rec.cmd })) continue;
    const daemons = readLedger(rec.ledger).filter(isAlive);
    if (daemons.length > 0) {
      log(`stopping ${daemons.length} daemons left by an earlier run (${rec.runDir})`);
    }
    await Promise.all(daemons.map((d) => stopDaemon(d, { signal: "SIGKILL" })));
    await Deno.remove(rec.runDir, { recursive: true }).catch(() => {});
    await Deno.remove(path).catch(() => {});
  }
}

/** Starts Kafka and Ceph in parallel; returns the state (also written to disk). */
export async function startInfra(log: (s: string) => void): Promise<InfraState> {
  await reapStaleRuns(log);
  const runDir = await Deno.makeTempDir({ prefix: "sluice-test-" });
  const ledger = `${runDir}/daemons.jsonl`;
  Deno.env.set("SLUICE_TEST_DAEMONS", ledger);
  const self = Deno.readTextFileSync(`/proc/${Deno.pid}/cmdline`).replaceAll("\0", " ").slice(
    0,
    200,
  );
  await Deno.writeTextFile(
    `${cacheDir()}/runs/${Deno.pid}.json`,
    JSON.stringify({ runnerPid: Deno.pid, runDir, ledger, cmd: self }),
  );
  const t0 = Date.now();
  const [kafka, ceph] = await Promise.all([
    (async () => {
      const libs = await ensureKafkaJars(cacheDir());
      const k = await prepareKafka(`${runDir}/kafka`, libs);
      k.daemon = await launchKafka(k);
      log(
        `Kafka ${k.version} ready on ${k.brokers.join(",")} after ${
          ((Date.now() - t0) / 1000).toFixed(1)
        } s`,
      );
      return k;
    })(),
    (async () => {
      const c = await prepareCeph(`${runDir}/ceph`);
      await launchCeph(c);
      log(
        `${c.version.split(" (")[0]} RGW ready on ${c.endpoint} after ${
          ((Date.now() - t0) / 1000).toFixed(1)
        } s`,
      );
      return c;
    })(),
  ]);
  const state: InfraState = { runnerPid: Deno.pid, runDir, ledger, kafka, ceph };
  await Deno.writeTextFile(`${runDir}/state.json`, JSON.stringify(state, null, 2));
  return state;
}

/** Stops every daemon of the run (ledger order reversed) and removes its directory. */
export async function stopInfra(
  state: { runDir: string; ledger: string },
  keep = false,
): Promise<number> {
  const daemons = readLedger(state.ledger).reverse();
  await Promise.all(
    daemons.map((d) => stopDaemon(d, { graceMs: d.name === "kafka" ? 15_000 : 5_000 })),
  );
  const left = daemons.filter(isAlive).length;
  if (!keep) await Deno.remove(state.runDir, { recursive: true }).catch(() => {});
  await Deno.remove(`${cacheDir()}/runs/${Deno.pid}.json`).catch(() => {});
  return left;
}

/** Log files worth reading when a test fails. */
export function infraLogs(state: InfraState): string[] {
  return [state.kafka.log, ...cephLogs(state.ceph)];
}

/** The last lines of every infrastructure log. */
export function logTails(state: InfraState, lines = 25): string {
  return infraLogs(state).map((f) => `----- ${f} (last ${lines} lines)\n${tailFile(f, lines)}`)
    .join("\n");
}
