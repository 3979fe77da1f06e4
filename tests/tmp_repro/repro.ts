import { Kafka, logLevel } from "kafkajs";
import { infra, startKafka, stopKafka, uniqueName } from "../harness/mod.ts";
import { createTopic } from "../harness/kafka_fixture.ts";

const topic = uniqueName("repro");
await createTopic(topic);
const kafka = new Kafka({
  clientId: "repro",
  brokers: infra().kafka.brokers,
  logLevel: logLevel.WARN,
  retry: { initialRetryTime: 300, retries: 8, maxRetryTime: 10_000 },
  logCreator: () => ({ namespace, level, log }) => {
    const { message, stack: _s, ...rest } = log as Record<string, unknown>;
    if (String(message).includes("ECONNREFUSED")) return;
    console.log(
      new Date().toISOString(),
      level,
      namespace,
      message,
      JSON.stringify(rest).slice(0, 200),
    );
  },
});
const p = kafka.producer({
  idempotent: true,
  maxInFlightRequests: 1,
  allowAutoTopicCreation: false,
});
await p.connect();
let sent = 0, failed = 0, last = Date.now();
let stop = false;
const loop = (async () => {
  while (!stop) {
    const t = Date.now();
    try {
      await p.send({ topic, acks: -1, messages: [{ value: "x", partition: sent % 3 }] });
      sent++;
    } catch (e) {
      failed++;
      console.log(
        new Date().toISOString(),
        "send failed after",
        Date.now() - t,
        "ms:",
        (e as Error).message,
      );
    }
    last = Date.now();
    await new Promise((r) => setTimeout(r, 20));
  }
})();
const mon = setInterval(
  () =>
    console.log(
      new Date().toISOString(),
      `sent=${sent} failed=${failed} idle=${Date.now() - last}ms`,
    ),
  2000,
);
await new Promise((r) => setTimeout(r, 3000));
console.log("stopping broker", Deno.args[0] ?? "SIGTERM");
await stopKafka((Deno.args[0] ?? "SIGTERM") as Deno.Signal);
await new Promise((r) => setTimeout(r, 14000));
await startKafka();
console.log(new Date().toISOString(), "broker back");
await new Promise((r) => setTimeout(r, 40000));
stop = true;
clearInterval(mon);
console.log("final", { sent, failed, idle: Date.now() - last });
Deno.exit(0);
