/**
 * The `LogClient` port on the real broker, run on both Kafka clients
 * (`actors/log/kafka.ts` on kafkajs, `actors/log/platformatic.ts` on
 * `@platformatic/kafka`): the same assertions for each, so a difference in
 * what the pipeline relies on shows up here before it shows up as a lost or
 * duplicated record. README: Kafka client choice.
 */
import assert from "node:assert/strict";
import { createKafkaLog } from "../../actors/log/kafka.ts";
import { createPlatformaticLog } from "../../actors/log/platformatic.ts";
import type { Batch, LogClient, PartitionOffset, TopicPartition } from "../../actors/log/port.ts";
import { UnknownTopicError } from "../../actors/runtime/errors.ts";
import { setLogSink } from "../../actors/runtime/logger.ts";
import { infra, uniqueName, waitFor } from "../harness/mod.ts";

const CLIENTS: [string, (brokers: string[], clientId: string) => LogClient][] = [
  ["kafkajs", (brokers, clientId) => createKafkaLog({ brokers, clientId })],
  ["platformatic", (brokers, clientId) => createPlatformaticLog({ brokers, clientId })],
];

const PARTITIONS = 3;
const RECORDS = 600;

for (const [name, create] of CLIENTS) {
  Deno.test(`${name}: topics, produce with keys and headers, group consumption with a partial batch, pause/resume, commits, admin reads and ranges`, async () => {
    const log = create(infra().kafka.brokers, `port-${name}`);
    const topic = uniqueName(`port-${name}`);
    const group = uniqueName(`port-${name}-g`);
    try {
      const admin = await log.admin();
      await admin.ensureTopics([{ topic, partitions: PARTITIONS }]);
      // A second call with the topic present is a no-op.
      await admin.ensureTopics([{ topic, partitions: PARTITIONS }]);
      assert.deepEqual(await admin.partitions(topic), [0, 1, 2]);
      // Both adapters type an unknown topic (what replay and the DLQ map to 404, never by message).
      const missing = uniqueName("no-such-topic");
      await assert.rejects(admin.partitions(missing), UnknownTopicError);
      const before = Date.now();
      const producer = await log.producer();
      for (let i = 0; i < RECORDS; i += 100) {
        await producer.send(
          topic,
          Array.from({ length: 100 }, (_, j) => ({
            key: `key-${(i + j) % 40}`,
            value: JSON.stringify({ seq: i + j }),
            headers: { "x-seq": String(i + j) },
          })),
        );
      }
      // Explicit partition wins over the key.
      await producer.send(topic, [{ key: "key-0", value: "pinned", partition: 2 }]);
      const high = await admin.highWatermarks(topic);
      assert.equal(high.reduce((s, h) => s + Number(h.offset), 0), RECORDS + 1);
      assert.ok(high.every((h) => Number(h.offset) > 0), "keys spread over every partition");
      const since = await admin.offsetsForTimes(topic, before - 1000);
      assert.deepEqual(since.map((o) => o.offset), [0, 1, 2].map(() => "0"));
      const future = await admin.offsetsForTimes(topic, Date.now() + 3_600_000);
      assert.deepEqual(
        future.map((o) => o.offset),
        high.map((h) => h.offset),
        "no record after the time: the high watermark",
      );

      const consumer = log.consumer(group);
      const seen = new Map<string, { key: string; seq: number; header: string }>();
      let partialDone = false;
      const assignments: TopicPartition[][] = [];
      let resumedAt = 0;
      // Nothing in the handler throws: a throw makes the client deliver the
      // batch again, so one slow commit under load would turn into a loop of
      // "delivered twice" failures that never commits. Contract breaks are
      // collected and asserted at the end; what the client recovered from
      // (a failed or refused commit, a rebalance) is recorded, and only then
      // may uncommitted records come again (at least once, never a committed one).
      const problems: string[] = [];
      const incidents: string[] = [];
      const committedNext = new Map<number, bigint>();
      let redelivered = 0;
      const why = () =>
        `contract breaks: ${problems.slice(0, 5).join("; ") || "none"}; recovered: ${
          incidents.slice(-5).join("; ") || "none"
        }; redelivered ${redelivered}; ${assignments.length} assignment(s)`;
      await consumer.run([topic], {
        onAssignment: (a) => assignments.push(a),
        eachBatch: async (b: Batch) => {
          for (let i = 1; i < b.records.length; i++) {
            if (BigInt(b.records[i].offset) !== BigInt(b.records[i - 1].offset) + 1n) {
              problems.push(
                `p${b.partition}: offset ${b.records[i].offset} after ${b.records[i - 1].offset}`,
              );
            }
          }
          const take = !partialDone && b.partition === 0 && b.records.length > 5
            ? b.records.slice(0, 5)
            : b.records;
          for (const r of take) {
            const id = `${r.partition}:${r.offset}`;
            if (seen.has(id)) {
              redelivered++;
              if (BigInt(r.offset) < (committedNext.get(r.partition) ?? 0n)) {
                problems.push(`record ${id} delivered again after its offset was committed`);
              }
              continue;
            }
            const value = new TextDecoder().decode(r.value!);
            seen.set(id, {
              key: new TextDecoder().decode(r.key!),
              seq: value === "pinned" ? -1 : JSON.parse(value).seq,
              header: r.headers["x-seq"] ?? "",
            });
          }
          const next = BigInt(take.at(-1)!.offset) + 1n;
          if (take !== b.records) {
            // Ends early: only what was resolved is done; the partition
            // pauses and, once resumed, is fetched again from `next`.
            partialDone = true;
            b.resolve(next.toString());
            consumer.pause([{ topic, partition: 0 }]);
            setTimeout(() => {
              resumedAt = Date.now();
              consumer.resume([{ topic, partition: 0 }]);
            }, 300);
            return;
          }
          if (b.isStale()) {
            incidents.push(`p${b.partition}: stale batch at ${next}`);
            return;
          }
          if (BigInt(b.highWatermark) < next) {
            problems.push(`p${b.partition}: high watermark ${b.highWatermark} below ${next}`);
          }
          try {
            if (await b.commit(next.toString())) {
              const before = committedNext.get(b.partition) ?? 0n;
              if (next > before) committedNext.set(b.partition, next);
            } else incidents.push(`p${b.partition}: commit of ${next} refused (stale)`);
          } catch (e) {
            // The client retries the batch: what the pipeline relies on too.
            incidents.push(
              `p${b.partition}: commit of ${next} failed: ${e instanceof Error ? e.message : e}`,
            );
            throw e;
          }
        },
      });
      const explain = (e: Error) => {
        throw new Error(`${e.message} (${why()})`);
      };
      await waitFor(() => seen.size === RECORDS + 1, {
        timeoutMs: 30_000,
        message: `all ${RECORDS + 1} records (${seen.size} so far)`,
      }).catch(explain);
      assert.ok(
        partialDone && resumedAt > 0,
        "partition 0 was paused after a partial batch and resumed",
      );
      assert.ok(assignments.length >= 1);
      assert.deepEqual(
        assignments.at(-1)!.map((tp) => tp.partition).sort(),
        [0, 1, 2],
        "a single member gets every partition",
      );
      // Every record once, its key, value and header intact; a key stays on one partition.
      const partitionOfKey = new Map<string, number>();
      for (const [id, r] of seen) {
        const partition = Number(id.split(":")[0]);
        if (r.seq === -1) {
          assert.equal(partition, 2, "the pinned record is on its partition");
          continue;
        }
        assert.equal(r.header, String(r.seq));
        assert.equal(r.key, `key-${r.seq % 40}`);
        const p = partitionOfKey.get(r.key);
        if (p !== undefined) assert.equal(p, partition, `${r.key} on one partition`);
        partitionOfKey.set(r.key, partition);
      }
      const highOf = new Map(high.map((h) => [h.partition, h.offset]));
      let committed: PartitionOffset[] = [];
      await waitFor(async () => {
        committed = await admin.committed(group, topic);
        return committed.every((c) => c.offset === highOf.get(c.partition));
      }, { timeoutMs: 60_000, message: "every partition committed to its high watermark" })
        .catch((e) =>
          explain(
            new Error(`${e.message}: ${JSON.stringify(committed)} of ${JSON.stringify(high)}`),
          )
        );
      // Sorted by partition, whatever order the broker answers in (it
      // depends on the topic's name): callers may index them by partition.
      for (const list of [high, committed, since, future]) {
        assert.deepEqual(list.map((o) => o.partition), [0, 1, 2], "sorted by partition");
      }
      assert.deepEqual(problems, [], why());
      // Records come again only after something the client recovered from.
      if (redelivered > 0) {
        assert.ok(
          incidents.length > 0 || assignments.length > 1,
          `redelivered without cause: ${why()}`,
        );
      }
      await consumer.stop();
      await consumer.disconnect();

      // A range outside the group: [3, 20) of partition 1, in order, nothing outside.
      const range: string[] = [];
      for await (const recs of log.readRange({ topic, partition: 1 }, { from: "3", to: "20" })) {
        range.push(...recs.map((r) => r.offset));
      }
      assert.deepEqual(range, Array.from({ length: 17 }, (_, i) => String(i + 3)));
      // A range past the end stops at the high watermark.
      const tail: string[] = [];
      const end = Number(high[1].offset);
      for await (
        const recs of log.readRange({ topic, partition: 1 }, {
          from: String(end - 2),
          to: String(end + 100),
        })
      ) tail.push(...recs.map((r) => r.offset));
      assert.deepEqual(tail, [String(end - 2), String(end - 1)]);
      const retention = await admin.retentionMs?.(topic);
      assert.equal(typeof retention, "number");
      assert.ok(await log.ping());
    } finally {
      await log.close();
    }
  });

  Deno.test(`${name}: close disconnects every client, and no "did not disconnect" warning follows a close that went well`, async () => {
    const log = create(infra().kafka.brokers, `port-close-${name}`);
    const topic = uniqueName(`port-close-${name}`);
    const lines: string[] = [];
    try {
      const admin = await log.admin();
      await admin.ensureTopics([{ topic, partitions: 1 }]);
      const producer = await log.producer();
      await producer.send(topic, [{ key: "k", value: new TextEncoder().encode("v") }]);
      assert.ok(await log.ping());
    } finally {
      setLogSink((line) => lines.push(line));
      try {
        await log.close();
        // Past the 3 s a client is given to disconnect: the deadline of a
        // client that closed in time must not fire.
        await new Promise((r) => setTimeout(r, 3_300));
      } finally {
        setLogSink();
      }
    }
    const late = lines.filter((l) => /did not (disconnect|close)/.test(l));
    assert.deepEqual(late, [], "no client was reported late");
  });

  Deno.test(`${name}: a second member joining stops the first member's batch (a stale batch does not commit) and the partitions are shared`, async () => {
    const brokers = infra().kafka.brokers;
    const a = create(brokers, `port-${name}-a`);
    const b = create(brokers, `port-${name}-b`);
    const topic = uniqueName(`port-${name}-rb`);
    const group = uniqueName(`port-${name}-rb-g`);
    try {
      const admin = await a.admin();
      await admin.ensureTopics([{ topic, partitions: 4 }]);
      const producer = await a.producer();
      await producer.send(
        topic,
        Array.from({ length: 200 }, (_, i) => ({ key: `k${i}`, value: String(i) })),
      );
      // Member A holds its first batch (heartbeating, as the pipeline does)
      // until it is told to stop (rebalance), then commits it.
      let held: Batch | undefined;
      let outcome: { stale: boolean; ok?: boolean; error?: string } | undefined;
      const aAssign: TopicPartition[][] = [];
      const ca = a.consumer(group);
      await ca.run([topic], {
        onAssignment: (x) => aAssign.push(x),
        eachBatch: async (batch) => {
          if (held) return;
          held = batch;
          await waitFor(async () => {
            await batch.heartbeat();
            return !batch.isRunning();
          }, {
            timeoutMs: 60_000,
            intervalMs: 500,
            message: "the held batch stops running after the second member joined",
          });
          const stale = batch.isStale();
          try {
            const ok = await batch.commit((BigInt(batch.records.at(-1)!.offset) + 1n).toString());
            outcome = { stale, ok };
          } catch (e) {
            outcome = { stale, error: e instanceof Error ? e.message : String(e) };
          }
        },
      });
      await waitFor(() => held, { timeoutMs: 30_000, message: "member A got a batch" });
      const bAssign: TopicPartition[][] = [];
      const cb = b.consumer(group);
      await cb.run([topic], {
        onAssignment: (x) => bAssign.push(x),
        eachBatch: async () => {},
      });
      await waitFor(() => outcome, { timeoutMs: 60_000, message: "member A's commit returned" });
      if (outcome!.stale) {
        assert.equal(outcome!.ok, false, "a stale batch does not commit");
      } else {
        // Told to stop during the rebalance, still in its generation: the
        // commit goes through, or the coordinator refuses it for the rebalance.
        assert.ok(
          outcome!.ok === true || /rebalanc/i.test(outcome!.error ?? ""),
          `commit during the rebalance: ${JSON.stringify(outcome)}`,
        );
      }
      await waitFor(
        () =>
          aAssign.length >= 2 && bAssign.length >= 1 &&
          aAssign.at(-1)!.length + bAssign.at(-1)!.length === 4,
        { timeoutMs: 60_000, message: "the 4 partitions shared by the two members" },
      );
      assert.ok(
        aAssign.at(-1)!.length > 0 && bAssign.at(-1)!.length > 0,
        "both members hold partitions",
      );
      await Promise.all([ca.stop(), cb.stop()]);
      await Promise.all([ca.disconnect(), cb.disconnect()]);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
}
