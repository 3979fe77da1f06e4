/**
 * A real single-node Apache Kafka broker (KRaft, broker+controller) for the
 * tests, run from the Maven Central jars with the machine's Java.
 *
 * The jars are fetched once by Maven (`dependency:copy-dependencies` on
 * `kafka-pom.xml`) into the cache directory and reused across runs.
 *
 * @module
 */
import { type Daemon, freePort, run, startDaemon, stopDaemon, tailFile, waitFor } from "./procs.ts";

/** Kafka version the harness runs (from kafka-pom.xml). */
export const KAFKA_VERSION = "4.1.2";

/** What a test or the runner needs to reach, stop and restart the broker. */
export interface KafkaState {
  version: string;
  brokers: string[];
  port: number;
  controllerPort: number;
  dir: string;
  libs: string;
  log: string;
  daemon?: Daemon;
}

/** Makes sure Java and Maven are there, and the Kafka jars are in `cacheDir`. */
export async function ensureKafkaJars(cacheDir: string): Promise<string> {
  const libs = `${cacheDir}/kafka-${KAFKA_VERSION}/libs`;
  const marker = `${libs}/.complete`;
  try {
    Deno.statSync(marker);
    return libs;
  } catch {
    // Not fetched yet.
  }
  const pom = new URL("./kafka-pom.xml", import.meta.url).pathname;
  await Deno.mkdir(libs, { recursive: true });
  await run("mvn", [
    "-q",
    "-B",
    "-f",
    pom,
    `-Dmaven.repo.local=${cacheDir}/m2`,
    "dependency:copy-dependencies",
    `-DoutputDirectory=${libs}`,
    "-DincludeScope=runtime",
  ], { what: "Fetching the Kafka jars from Maven Central" });
  await Deno.writeTextFile(marker, new Date().toISOString());
  return libs;
}

const LOG4J2 = `Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaApis
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
`;

/** Writes the configuration and formats the storage of a fresh broker in `dir`. */
export async function prepareKafka(dir: string, libs: string): Promise<KafkaState> {
  await Deno.mkdir(`${dir}/data`, { recursive: true });
  const port = freePort();
  const controllerPort = freePort();
  const props = [
    "process.roles=broker,controller",
    "node.id=1",
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    "controller.listener.names=CONTROLLER",
    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    `controller.quorum.bootstrap.servers=127.0.0.1:${controllerPort}`,
    `log.dirs=${dir}/data`,
    "offsets.topic.replication.factor=1",
    "offsets.topic.num.partitions=5",
    "transaction.state.log.replication.factor=1",
    "transaction.state.log.min.isr=1",
    "share.coordinator.state.topic.replication.factor=1",
    "share.coordinator.state.topic.min.isr=1",
    "group.initial.rebalance.delay.ms=0",
    "num.partitions=1",
    "auto.create.topics.enable=false",
    "log.flush.interval.messages=9223372036854775807",
  ].join("\n");
  await Deno.writeTextFile(`${dir}/server.properties`, props + "\n");
  await Deno.writeTextFile(`${dir}/log4j2.yaml`, LOG4J2);
  const cp = `${libs}/*`;
  const uuid = (await run("java", ["-cp", cp, "kafka.tools.StorageTool", "random-uuid"], {
    what: "Kafka StorageTool random-uuid",
  })).trim().split("\n").pop()!.trim();
  await run("java", [
    `-Dlog4j2.configurationFile=${dir}/log4j2.yaml`,
    "-cp",
    cp,
    "kafka.tools.StorageTool",
    "format",
    "--standalone",
    "-t",
    uuid,
    "-c",
    `${dir}/server.properties`,
  ], { what: "Kafka StorageTool format" });
  return {
    version: KAFKA_VERSION,
    brokers: [`127.0.0.1:${port}`],
    port,
    controllerPort,
    dir,
    libs,
    log: `${dir}/kafka.log`,
  };
}

function countStarts(log: string): number {
  try {
    return Deno.readTextFileSync(log).split("Kafka Server started").length - 1;
  } catch {
    return 0;
  }
}

/** Starts the broker of `state` and waits until it serves its listener. */
export async function launchKafka(state: KafkaState, timeoutMs = 60_000): Promise<Daemon> {
  const before = countStarts(state.log);
  const daemon = await startDaemon("kafka", [
    "java",
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-Djava.awt.headless=true",
    `-Dlog4j2.configurationFile=${state.dir}/log4j2.yaml`,
    "-cp",
    `${state.libs}/*`,
    "kafka.Kafka",
    `${state.dir}/server.properties`,
  ], { log: state.log, cwd: state.dir });
  await waitFor(async () => {
    if (countStarts(state.log) > before) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port: state.port });
      c.close();
      return true;
    }
    if (!Deno.readTextFileSync(`/proc/${daemon.pid}/cmdline`)) throw new Error("exited");
    return false;
  }, { timeoutMs, intervalMs: 100, message: `Kafka to start\n${tailFile(state.log, 30)}` })
    .catch(async (e) => {
      await stopDaemon(daemon, { signal: "SIGKILL" });
      throw e;
    });
  return daemon;
}

/** Stops the broker gracefully (SIGTERM, then SIGKILL after `graceMs`). */
export async function haltKafka(daemon: Daemon, graceMs = 20_000): Promise<void> {
  await stopDaemon(daemon, { graceMs, signal: graceMs === 0 ? "SIGKILL" : "SIGTERM" });
}
