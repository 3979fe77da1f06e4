/**
 * The kafkajs group consumer restarts itself after a crash (a broker outage
 * outlasting its retries) only while it is in use: once `stop()` or
 * `disconnect()` was called, a later crash ends it. A broker-restart test
 * (tests/infra/outage_kafka_test.ts) saw the audit uploader's watchdog give up
 * on a consumer whose stop did not answer within its bound and start a new
 * one; the old one crashed later, was restarted and rejoined the group beside
 * the new one, holding half the audit partitions with a handler that no
 * longer ran, so the audit backlog never emptied.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Kafka } from "kafkajs";
import { KafkaGroupConsumer } from "../../actors/log/kafka.ts";

type RestartOnFailure = (e: Error) => Promise<boolean>;

function fakeKafka() {
  const configs: { retry: { restartOnFailure: RestartOnFailure } }[] = [];
  const kafka = {
    consumer: (config: { retry: { restartOnFailure: RestartOnFailure } }) => {
      configs.push(config);
      return {
        stop: () => new Promise<void>(() => {}), // a stop that never answers (broker away)
        disconnect: () => Promise.resolve(),
      };
    },
  } as unknown as Kafka;
  return { kafka, configs };
}

Deno.test("KafkaGroupConsumer: a crash restarts the consumer while in use, not once stop() or disconnect() was called", async () => {
  const crash = new Error("Closed connection");
  {
    const { kafka, configs } = fakeKafka();
    const c = new KafkaGroupConsumer(kafka, "g-stop", { brokers: [] });
    const restart = configs[0].retry.restartOnFailure;
    assert.equal(await restart(crash), true, "in use: restarted");
    void c.stop(); // does not answer; the caller's bound gives up on it
    assert.equal(await restart(crash), false, "after stop(): not restarted");
  }
  {
    const { kafka, configs } = fakeKafka();
    const c = new KafkaGroupConsumer(kafka, "g-disconnect", { brokers: [] });
    await c.disconnect();
    assert.equal(await configs[0].retry.restartOnFailure(crash), false);
  }
});
