/**
 * What tests use to reach the real infrastructure started by the runner
 * (`deno task test`): connection settings, outage helpers (stop and start
 * RGW or Kafka), `waitFor`, unique names.
 *
 * ```ts
 * import { infra, stopRgw, startRgw, uniqueName, waitFor } from "./harness/mod.ts";
 * const { kafka, s3 } = infra();
 * ```
 *
 * @module
 */
import { S3Client } from "@aws-sdk/client-s3";
import { haltRgw, launchRgw } from "./ceph.ts";
import type { InfraState } from "./infra.ts";
import { haltKafka, launchKafka } from "./kafka.ts";

export { freePort, sleep, waitFor } from "./procs.ts";
import { isAlive, procCpuSeconds, readLedger } from "./procs.ts";

/** Connection settings of the run's real Kafka and Ceph RGW. */
export interface Infra {
  kafka: { brokers: string[]; version: string };
  s3: { endpoint: string; region: string; accessKey: string; secretKey: string; version: string };
}

function statePath(): string {
  const path = Deno.env.get("SLUICE_TEST_STATE");
  if (!path) {
    throw new Error(
      "This test needs the real Kafka and Ceph RGW: run it through the runner: deno task test <file>",
    );
  }
  return path;
}

function readState(): InfraState {
  return JSON.parse(Deno.readTextFileSync(statePath()));
}

function writeState(state: InfraState): void {
  Deno.writeTextFileSync(statePath(), JSON.stringify(state, null, 2));
}

/**
 * The run's infrastructure.
 *
 * @throws when the test was not started by the runner.
 */
export function infra(): Infra {
  const s = readState();
  return {
    kafka: { brokers: s.kafka.brokers, version: s.kafka.version },
    s3: {
      endpoint: s.ceph.endpoint,
      region: s.ceph.region,
      accessKey: s.ceph.accessKey,
      secretKey: s.ceph.secretKey,
      version: s.ceph.version,
    },
  };
}

/**
 * CPU seconds used so far by the test infrastructure's daemons, by kind:
 * `kafka` (the broker's JVM) and `ceph` (mon, osd, radosgw together).
 */
export function infraCpuSeconds(): { kafka: number; ceph: number } {
  let kafka = 0, ceph = 0;
  for (const d of readLedger(readState().ledger).filter(isAlive)) {
    let cpu: number;
    try {
      cpu = procCpuSeconds(d.pid);
    } catch {
      continue; // Gone since.
    }
    if (d.name === "kafka") kafka += cpu;
    else if (d.name.startsWith("ceph-") || d.name === "radosgw") ceph += cpu;
  }
  return { kafka, ceph };
}

/** Kills radosgw (SIGKILL: an abrupt outage). */
export async function stopRgw(): Promise<void> {
  await haltRgw(readState().ceph);
}

/** Starts radosgw again and waits until it answers. */
export async function startRgw(): Promise<void> {
  const s = readState();
  await launchRgw(s.ceph);
  writeState(s);
}

/** Stops the Kafka broker (SIGTERM, or `SIGKILL` for a crash). */
export async function stopKafka(signal: Deno.Signal = "SIGTERM"): Promise<void> {
  const s = readState();
  if (s.kafka.daemon) await haltKafka(s.kafka.daemon, signal === "SIGKILL" ? 0 : 20_000);
}

/** Starts the Kafka broker again on the same ports and data, and waits until it serves. */
export async function startKafka(): Promise<void> {
  const s = readState();
  s.kafka.daemon = await launchKafka(s.kafka);
  writeState(s);
}

/** A name unique to this test run: `prefix-<time>-<random>`. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 6)}`;
}

/** An S3 client for the run's RGW (path-style). */
export function s3Client(): S3Client {
  const { s3 } = infra();
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
  });
}
