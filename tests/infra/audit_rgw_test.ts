/**
 * The audit path against a real Kafka and a real Ceph RGW (run through
 * `deno task test tests/infra/audit_rgw_test.ts`): 50,000 concurrent appends
 * through the audit writer, uploaded by the audit uploader to RGW exactly
 * once each; and the report read back from RGW and from the file-system
 * store alike.
 */
import assert from "node:assert/strict";
import {
  type AuditStore,
  encodeBatch,
  FsAuditStore,
  hourPrefix,
} from "../../actors/audit/store.ts";
import type { AuditEvent } from "../../actors/audit/event.ts";
import { AuditWriter, ensureAuditTopic } from "../../actors/audit/writer.ts";
import { AuditUploader } from "../../actors/audit/uploader.ts";
import { buildReport } from "../../actors/audit/report.ts";
import { createKafkaLog } from "../../actors/log/kafka.ts";
import { infra, uniqueName, waitFor } from "../harness/mod.ts";
import { createTopic, groupLag } from "../harness/kafka_fixture.ts";
import { readAllAuditEvents, rgwStore } from "../harness/ledger.ts";
import {
  FIXTURE_EXPECTED,
  FIXTURE_FROM,
  FIXTURE_TO,
  FIXTURE_TRACE,
  makeEvent,
  mixedFixture,
  notExactlyOnce,
} from "../harness/audit_fixture.ts";

/** Writes `events` as one object per topic, partition and UTC hour (`tag` keeps calls apart). */
async function putGrouped(store: AuditStore, tag: string, events: AuditEvent[]): Promise<void> {
  const groups = new Map<string, AuditEvent[]>();
  for (const e of events) {
    const key = `${hourPrefix("audit", new Date(e.timestamp))}${e.topic}-${e.partition}-${tag}`;
    groups.set(key, [...(groups.get(key) ?? []), e]);
  }
  for (const [key, group] of groups) await store.put(`${key}.jsonl.gz`, await encodeBatch(group));
}

Deno.test("audit writer and uploader put 50,000 concurrent appends on real Kafka into RGW exactly once each", async () => {
  const { kafka } = infra();
  const source = uniqueName("audit-src");
  const topic = uniqueName("audit-topic");
  const group = uniqueName("audit-uploader");
  const bucket = uniqueName("audit");
  await createTopic(source, { partitions: 8 });
  const log = createKafkaLog({ brokers: kafka.brokers, clientId: "audit-rgw-test" });
  const store = rgwStore(bucket);
  let uploader: AuditUploader | undefined;
  try {
    const partitions = await ensureAuditTopic(await log.admin(), { topic, sources: [source] });
    assert.equal(partitions, 8);
    const producer = await log.producer();
    const writer = new AuditWriter(producer, { topic, partitions });
    uploader = new AuditUploader({
      log,
      topic,
      groupId: group,
      store,
      batchEvents: 5000,
      batchAgeMs: 1000,
      id: "audit-uploader-rgw-test",
    });
    await uploader.start();
    const n = 50_000;
    const keys = Array.from({ length: n }, (_, i) => `${source}/${i % 8}/${i}`);
    const started = performance.now();
    await Promise.all(
      Array.from(
        { length: n },
        (_, i) => writer.append(makeEvent({ topic: source, partition: i % 8, offset: i })),
      ),
    );
    const appendS = (performance.now() - started) / 1000;
    const ws = writer.status();
    assert.equal(ws.written, n);
    assert.equal(ws.errors, 0);
    const u = uploader;
    await waitFor(async () => (await groupLag(group, topic)) === 0, {
      timeoutMs: 120_000,
      intervalMs: 250,
      message: "the uploader group's lag to reach 0",
    });
    const totalS = (performance.now() - started) / 1000;
    await waitFor(() => u.status().backlogEvents === 0, {
      timeoutMs: 10_000,
      message: "status().backlogEvents to be 0",
    });
    const events = await readAllAuditEvents(store);
    assert.equal(events.length, n);
    assert.deepEqual(notExactlyOnce(events, keys), []);
    assert.equal(u.status().uploadedEvents, n);
    assert.equal(u.status().degraded, false);
    const objects = (await store.list("audit/")).length;
    console.log(
      `50,000 events: appended to Kafka in ${appendS.toFixed(2)} s (${
        Math.round(n / appendS)
      }/s), all in RGW and committed after ${totalS.toFixed(2)} s, ${objects} objects`,
    );
    writer.close();
  } finally {
    await uploader?.stop();
    await log.close();
    store.close();
  }
});

Deno.test("audit report reads a fixture back from RGW and from the fs store alike", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sluice-audit-report-" });
  const s3Store = rgwStore(uniqueName("audit"));
  const fsStore = new FsAuditStore(`${dir}/audit`);
  try {
    const events = mixedFixture();
    for (const store of [s3Store, fsStore]) {
      await putGrouped(store, "00000001", events.slice(0, 13));
      await putGrouped(store, "00000002", events.slice(13));
    }
    const reports = [];
    for (const store of [s3Store, fsStore]) {
      const r = await buildReport(store, {
        from: FIXTURE_FROM,
        to: FIXTURE_TO,
        traceId: FIXTURE_TRACE,
      });
      assert.equal(r.events, FIXTURE_EXPECTED.events);
      assert.deepEqual(r.byOutcome, FIXTURE_EXPECTED.byOutcome);
      assert.deepEqual(r.errors.byErrorCode, FIXTURE_EXPECTED.byErrorCode);
      assert.equal(r.duplicates.keys, FIXTURE_EXPECTED.duplicateKeys);
      assert.equal(r.trace?.events, FIXTURE_EXPECTED.traceEvents);
      reports.push({ ...r, store: "" });
    }
    assert.deepEqual(reports[0], reports[1]);

    // The CLI, with the store taken from the environment.
    const { s3 } = infra();
    const code = `import { auditCommand } from ${
      JSON.stringify(new URL("../../supervisors/cli/audit.ts", import.meta.url).href)
    };
      Deno.exit(await auditCommand.run(Deno.args));`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        code,
        "report",
        "--from",
        FIXTURE_FROM.toISOString(),
        "--to",
        FIXTURE_TO.toISOString(),
        "--format",
        "json",
      ],
      env: {
        HOME: Deno.env.get("HOME") ?? "/root",
        PATH: Deno.env.get("PATH") ?? "",
        SLUICE_S3_ENDPOINT: s3.endpoint,
        SLUICE_S3_REGION: s3.region,
        SLUICE_S3_ACCESS_KEY: s3.accessKey,
        SLUICE_S3_SECRET_KEY: s3.secretKey,
        SLUICE_S3_BUCKET: s3Store.bucket,
      },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const json = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(json.events, FIXTURE_EXPECTED.events);
    assert.match(json.store, /^s3 /);
  } finally {
    s3Store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
