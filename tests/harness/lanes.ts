/**
 * How `deno task test` (`tests/run_tests.ts`) splits the test files into
 * lanes that run at the same time on the one Kafka and RGW it starts.
 *
 * @module
 */

/**
 * Files that measure throughput or wall-clock rates of a whole process: they
 * run alone, after the other lanes, so another lane's load cannot move their
 * figures. The flow-control file measures delivered rates against the
 * upstream's capacity (within 15 %) and a 30 s outage's catch-up: beside
 * another infra lane on 2 cores it failed there (252 records/s for 300, a
 * catch-up past its 90 s), alone it passes.
 */
const EXCLUSIVE = [
  "e2e/http_load_test.ts",
  "e2e/embedded_load_test.ts",
  "infra/flow_control_kafka_test.ts",
];

/**
 * Infra files that stop the shared broker or RGW: they run while no other
 * infra file runs (the no-infra lane runs meanwhile: nothing there uses them).
 */
const OUTAGE = ["infra/outage_kafka_test.ts", "infra/e2e_http_test.ts"];

/**
 * Seconds each infra file took in a full run with the lanes (2026-12-01, two
 * infra lanes side by side, so slower than alone), to split the infra files
 * into two lanes of about the same length; a file not listed counts 60.
 */
const INFRA_SECONDS: Record<string, number> = {
  "durability_kafka_test.ts": 239,
  "shutdown_kafka_test.ts": 163,
  "resilience_kafka_test.ts": 152,
  "bench_quick_test.ts": 100,
  "pipeline_kafka_test.ts": 81,
  "replay_kafka_test.ts": 63,
  "log_client_kafka_test.ts": 45,
  "harness_test.ts": 24,
  "process_model_test.ts": 18,
  "schema_kafka_test.ts": 12,
  "audit_rgw_test.ts": 10,
  "tracing_kafka_test.ts": 6,
  "smoke_test.ts": 6,
};

/** The test files of each lane; `tests/run_tests.ts` says when each runs. */
export interface Lanes {
  /** No Kafka or Ceph needed (unit, e2e). */
  local: string[];
  /** Infra files that stop the broker or RGW ({@link OUTAGE}). */
  outage: string[];
  /** The other infra files, in two lanes of about the same length. */
  infra: [string[], string[]];
  /** Files that measure a whole process ({@link EXCLUSIVE}). */
  alone: string[];
}

/** Splits the test files into lanes (see {@link Lanes}). */
export function lanes(files: string[]): Lanes {
  const alone = files.filter((f) => EXCLUSIVE.some((e) => f.endsWith(e)));
  const rest = files.filter((f) => !alone.includes(f));
  const infraAll = rest.filter((f) => /(^|\/)infra\//.test(f));
  const local = rest.filter((f) => !infraAll.includes(f));
  const outage = infraAll.filter((f) => OUTAGE.some((o) => f.endsWith(o)));
  const weight = (f: string) => INFRA_SECONDS[f.slice(f.lastIndexOf("/") + 1)] ?? 60;
  // Longest first, each to the lane with less so far.
  const infra: [string[], string[]] = [[], []];
  const load = [0, 0];
  for (
    const f of infraAll.filter((f) => !outage.includes(f)).sort((a, b) => weight(b) - weight(a))
  ) {
    const i = load[0] <= load[1] ? 0 : 1;
    infra[i].push(f);
    load[i] += weight(f);
  }
  return { local, outage, infra, alone };
}
