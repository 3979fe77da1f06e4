/**
 * The pipeline's handling of records whose outcome is already audited (an
 * instance died after auditing them, before committing them), the processor's
 * `skipAudited`, and which heartbeat refusals stop admission: on the embedded
 * log, no infrastructure.
 *
 * @module
 */
import assert from "node:assert/strict";
import { createEmbeddedLog } from "../../actors/log/embedded/log.ts";
import { rebalanceError } from "../../actors/log/kafka.ts";
import { registry } from "../../actors/runtime/metrics.ts";
import { Pipeline } from "../../actors/pipeline/pipeline.ts";
import { createProcessor } from "../../actors/pipeline/processor.ts";
import type { AuditEvent } from "../../actors/audit/event.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import { waitFor } from "../harness/procs.ts";

Deno.test("Pipeline passes already audited records to skip, the others to process, and commits past all", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-audited-" });
  const log = createEmbeddedLog({ dir, partitions: 1 });
  const processed: string[] = [];
  const skipped: string[] = [];
  const asked: string[] = [];
  const pl = new Pipeline({
    log,
    topics: ["t"],
    groupId: "g",
    process: (r: SourceRecord) => {
      processed.push(r.offset);
      return Promise.resolve();
    },
    skip: (r: SourceRecord) => {
      skipped.push(r.offset);
      return Promise.resolve();
    },
    audited: (tp) => {
      asked.push(`${tp.topic}:${tp.partition}`);
      return Promise.resolve(new Set(["1", "3"]));
    },
    lagIntervalMs: 100,
    watchdogMs: 0,
  });
  try {
    const admin = await log.admin();
    await admin.ensureTopics([{ topic: "t", partitions: 1 }]);
    const p = await log.producer();
    await p.send("t", [0, 1, 2, 3, 4].map((i) => ({ key: "k", value: `{"i":${i}}` })));
    await pl.start();
    await waitFor(async () => (await admin.committed("g", "t"))[0]?.offset === "5", {
      timeoutMs: 10_000,
      message: "offset 5 committed",
    });
    assert.deepEqual(asked, ["t:0"], "asked once, on assignment");
    assert.deepEqual(processed, ["0", "2", "4"]);
    assert.deepEqual(skipped, ["1", "3"]);
    assert.equal(pl.skipped, 2);
    assert.equal(pl.finished, 5);
    await p.disconnect();
  } finally {
    await pl.close();
    await log.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Pipeline processes every record when the audit topic cannot be read", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-audited-" });
  const log = createEmbeddedLog({ dir, partitions: 1 });
  const processed: string[] = [];
  const pl = new Pipeline({
    log,
    topics: ["t"],
    groupId: "g",
    process: (r: SourceRecord) => {
      processed.push(r.offset);
      return Promise.resolve();
    },
    skip: () => Promise.reject(new Error("not expected")),
    audited: () => Promise.reject(new Error("audit topic unreachable")),
    watchdogMs: 0,
  });
  try {
    const admin = await log.admin();
    await admin.ensureTopics([{ topic: "t", partitions: 1 }]);
    const p = await log.producer();
    await p.send("t", [0, 1, 2].map((i) => ({ key: "k", value: `{"i":${i}}` })));
    await pl.start();
    await waitFor(async () => (await admin.committed("g", "t"))[0]?.offset === "3", {
      timeoutMs: 10_000,
      message: "offset 3 committed",
    });
    assert.deepEqual(processed, ["0", "1", "2"]);
    await p.disconnect();
  } finally {
    await pl.close();
    await log.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("processor.skipAudited audits skipped_duplicate and sends nothing upstream", async () => {
  const events: AuditEvent[] = [];
  let calls = 0;
  const processor = createProcessor({
    upstream: {
      host: "upstream.test",
      deliver: () => {
        calls++;
        return Promise.reject(new Error("not expected"));
      },
    },
    publishDeadLetter: () => Promise.reject(new Error("not expected")),
    audit: {
      append: (e) => {
        events.push(e);
        return Promise.resolve();
      },
    },
    consumerGroup: "g",
  });
  const before = (await registry.getSingleMetric("requests_total")!.get()).values
    .find((v) => v.labels.outcome === "skipped_duplicate")?.value ?? 0;
  await processor.skipAudited({
    topic: "orders",
    partition: 2,
    offset: "41",
    key: null,
    value: new TextEncoder().encode(
      JSON.stringify({ request_id: "r-1", idempotency_key: "order-41", payload: {} }),
    ),
    headers: {},
    timestamp: String(Date.now()),
  });
  assert.equal(calls, 0);
  assert.equal(events.length, 1);
  assert.equal(events[0].result.outcome, "skipped_duplicate");
  assert.equal(events[0].event_type, "record.skipped_duplicate");
  assert.equal(events[0].idempotency_key, "order-41");
  assert.equal(events[0].offset, "41");
  const after = (await registry.getSingleMetric("requests_total")!.get()).values
    .find((v) => v.labels.outcome === "skipped_duplicate")?.value ?? 0;
  assert.equal(after - before, 1);
});

Deno.test("rebalanceError is true only for REBALANCE_IN_PROGRESS (a moved coordinator is not a rebalance)", () => {
  const err = (type: string) => Object.assign(new Error(type), { type });
  assert.equal(rebalanceError(err("REBALANCE_IN_PROGRESS")), true);
  assert.equal(rebalanceError(err("NOT_COORDINATOR_FOR_GROUP")), false);
  assert.equal(rebalanceError(err("GROUP_COORDINATOR_NOT_AVAILABLE")), false);
  assert.equal(rebalanceError(new Error("Connection error: connect ECONNREFUSED")), false);
  assert.equal(rebalanceError(undefined), false);
});
