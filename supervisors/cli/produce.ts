/**
 * `sluice produce`: writes load-generator records (valid envelopes, optionally
 * a share of malformed ones) to a topic at a given rate, into real Kafka when
 * `--brokers` or `SLUICE_KAFKA_BROKERS` is set, else into the embedded log
 * under `${SLUICE_DATA_DIR}/log` (the one `sluice start` consumes in local
 * mode; the embedded log takes one process at a time, so stop a running
 * local-mode instance first or change its load over `PUT /control/rate`).
 *
 * ```
 * sluice produce --topic events --rate 500 --count 10000
 * sluice produce --count 100 --malformed 0.1 --brokers 127.0.0.1:9092
 * ```
 *
 * @module
 */
import { type Command, parseOptions, UsageError } from "./common.ts";
import { type Config, loadConfig } from "../config.ts";
import type { LogClient } from "../../actors/log/port.ts";

/** What {@link createProduceCommand} needs to open a log. */
export interface OpenLogOptions {
  /** Kafka brokers; empty = embedded log. */
  brokers: string[];
  clientId: string;
  dataDir: string;
  /** Partitions of topics the embedded log creates. */
  partitions: number;
}

/** Dependencies of {@link createProduceCommand}, replaceable in tests. */
export interface ProduceDeps {
  /** Reads the configuration; default {@link loadConfig} on the environment. */
  loadConfig?: () => Config;
  /** Opens the log; default: Kafka (`actors/log/kafka.ts`) with brokers, else the embedded log. */
  openLog?: (opts: OpenLogOptions) => Promise<LogClient>;
  /** Prints the final line; default `console.log`. */
  out?: (line: string) => void;
  /** Prints progress; default stderr (rewritten in place on a terminal). */
  progress?: (line: string) => void;
  /** Give up after sends failed this long without progress (ms); default 30 000. */
  stallTimeoutMs?: number;
}

const USAGE = [
  "Usage: sluice produce [--topic T] [--rate N] [--count N] [--malformed F] [--brokers LIST]",
  "",
  "Produces load-generator records (JSON envelopes with request_id, idempotency_key,",
  "timestamp, payload and a traceparent header) to a topic.",
  "",
  "  --topic T       Topic (default: the first of SLUICE_TOPICS)",
  "  --rate N        Records per second (default 100)",
  "  --count N       Records to produce (default 1000)",
  "  --malformed F   Share of deliberately malformed records, 0..1 (default 0)",
  "  --brokers LIST  Kafka brokers, comma-separated (default SLUICE_KAFKA_BROKERS;",
  "                  unset = the embedded log under SLUICE_DATA_DIR/log)",
].join("\n");

/** Opens Kafka when brokers are given, else the embedded log. */
export async function openDefaultLog(opts: OpenLogOptions): Promise<LogClient> {
  if (opts.brokers.length > 0) {
    const { createKafkaLog } = await import("../../actors/log/kafka.ts");
    return createKafkaLog({ brokers: opts.brokers, clientId: opts.clientId });
  }
  // Loaded by the command, not by every start of the CLI.
  const { createEmbeddedLog, embeddedLogDir } = await import("../../actors/log/embedded/log.ts");
  return createEmbeddedLog({ dir: embeddedLogDir(opts.dataDir), partitions: opts.partitions });
}

function numberOption(raw: string | undefined, name: string, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`--${name}: expected a number, got ${JSON.stringify(raw)}`);
  }
  return n;
}

function stderrProgress(): (line: string) => void {
  const encoder = new TextEncoder();
  const tty = Deno.stderr.isTerminal();
  return (line) => {
    try {
      Deno.stderr.writeSync(encoder.encode(tty ? `\r\x1b[2K${line}` : `${line}\n`));
    } catch {
      // stderr closed: progress is optional.
    }
  };
}

/** Builds the `produce` command with its dependencies. */
export function createProduceCommand(deps: ProduceDeps = {}): Command {
  return {
    summary: "Produce test records to a topic (Kafka, or the embedded log)",
    usage: USAGE,
    async run(args) {
      const { values, positionals } = parseOptions(args, {
        topic: { type: "string" },
        rate: { type: "string" },
        count: { type: "string" },
        malformed: { type: "string" },
        brokers: { type: "string" },
      });
      if (positionals.length > 0) {
        throw new UsageError(`unexpected argument: ${positionals[0]}`);
      }
      const rate = numberOption(values.rate, "rate", 100);
      if (!(rate > 0)) throw new UsageError("--rate: expected a number > 0");
      const count = numberOption(values.count, "count", 1000);
      if (!Number.isInteger(count) || count < 1) {
        throw new UsageError("--count: expected a whole number ≥ 1");
      }
      const malformed = numberOption(values.malformed, "malformed", 0);
      if (!(malformed >= 0 && malformed <= 1)) {
        throw new UsageError("--malformed: expected a number between 0 and 1");
      }
      const config = (deps.loadConfig ?? loadConfig)();
      const topic = values.topic ?? config.topics[0];
      if (!topic) throw new UsageError("--topic: required (SLUICE_TOPICS is empty)");
      const brokers = values.brokers !== undefined
        ? values.brokers.split(",").map((b) => b.trim()).filter((b) => b !== "")
        : [...config.kafkaBrokers];
      if (values.brokers !== undefined && brokers.length === 0) {
        throw new UsageError("--brokers: expected a comma-separated list of host:port");
      }
      const out = deps.out ?? ((l: string) => console.log(l));
      const progress = deps.progress ?? stderrProgress();
      const stallTimeoutMs = deps.stallTimeoutMs ?? 30_000;

      const client = await (deps.openLog ?? openDefaultLog)({
        brokers,
        clientId: config.clientId,
        dataDir: config.dataDir,
        partitions: config.embeddedPartitions,
      });
      const started = performance.now();
      let failure: string | null = null;
      try {
        const producer = await client.producer();
        const { startLoadGenerator } = await import("../../actors/local/load_generator.ts");
        const gen = startLoadGenerator({
          producer,
          topic,
          rate,
          count,
          malformedFraction: malformed,
          id: "produce",
        });
        let lastProduced = 0, lastProgressAt = performance.now();
        const report = () => {
          const s = gen.stats();
          const now = performance.now();
          if (s.produced !== lastProduced) {
            lastProduced = s.produced;
            lastProgressAt = now;
          } else if (s.lastError !== null && now - lastProgressAt > stallTimeoutMs) {
            failure = `no record produced for ${
              Math.round((now - lastProgressAt) / 1000)
            } s: ${s.lastError}`;
            void gen.stop();
          }
          const secs = (now - started) / 1000;
          progress(
            `produced ${s.produced}/${count} to ${topic} (${
              Math.round(s.produced / Math.max(secs, 0.001))
            }/s)${s.lastError ? ` — failing: ${s.lastError}` : ""}`,
          );
        };
        const timer = setInterval(report, 1000);
        const onSignal = () => void gen.stop();
        Deno.addSignalListener("SIGINT", onSignal);
        try {
          await gen.done();
        } finally {
          clearInterval(timer);
          Deno.removeSignalListener("SIGINT", onSignal);
          await producer.disconnect().catch(() => {});
        }
        const s = gen.stats();
        report();
        if (!deps.progress && Deno.stderr.isTerminal()) console.error("");
        const secs = ((performance.now() - started) / 1000).toFixed(1);
        out(
          `produced ${s.produced} record${s.produced === 1 ? "" : "s"} to ${topic} ` +
            `(${s.malformed} malformed) on ${client.description} in ${secs} s`,
        );
        if (failure) throw new Error(failure);
        return s.produced === count ? 0 : 1;
      } finally {
        await client.close();
      }
    },
  };
}

/** `sluice produce` with the default dependencies (registered in `supervisors/cli/mod.ts`). */
export const produceCommand: Command = createProduceCommand();
