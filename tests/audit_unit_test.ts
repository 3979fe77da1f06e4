/**
 * Unit tests of the audit trail on the local file system: fs store, object
 * keys, spool (group commit, rotation, torn line), trail (uploads, batch age,
 * degraded, backpressure, leftovers), report and the `audit report` command.
 */
import assert from "node:assert/strict";
import { FsAuditStore, groupSegment, objectKey } from "../actors/audit/store.ts";
import { parseSegment, Spool } from "../actors/audit/spool.ts";
import { createAuditTrail } from "../actors/audit/trail.ts";
import {
  auditCommand,
  buildReport,
  parseTime,
  renderMarkdown,
  windowPrefixes,
} from "../actors/audit/report.ts";
import { encodeBatch } from "../actors/audit/store.ts";
import { UsageError } from "../supervisors/cli.ts";
import { registry } from "../actors/metrics.ts";
import {
  FIXTURE_EXPECTED,
  FIXTURE_FROM,
  FIXTURE_TO,
  FIXTURE_TRACE,
  FlakyStore,
  makeEvent,
  mixedFixture,
  notExactlyOnce,
  readAll,
} from "./audit_fixture.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-audit-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function waitUntil(fn: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function metric(name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values[0]?.value as number | undefined) ?? 0;
}

const KEY_RE =
  /^audit\/\d{4}\/\d{2}\/\d{2}\/\d{2}\/[A-Za-z0-9._-]+-\d+-\d+-\d+\.[0-9a-f]{8}\.jsonl\.gz$/;

Deno.test("FsAuditStore writes atomically, overwrites, lists by prefix and reads back", async () => {
  await withDir(async (dir) => {
    const store = new FsAuditStore(`${dir}/audit-store`);
    const body = new TextEncoder().encode("one");
    await store.put("audit/2025/03/04/10/orders-0-1-2.aaaaaaaa.jsonl.gz", body);
    await store.put("audit/2025/03/04/11/orders-0-3-4.bbbbbbbb.jsonl.gz", body);
    await store.put("audit/2025/03/05/00/orders-0-5-6.cccccccc.jsonl.gz", body);
    await store.put(
      "audit/2025/03/04/10/orders-0-1-2.aaaaaaaa.jsonl.gz",
      new TextEncoder().encode("two"),
    );
    assert.deepEqual(await store.list("audit/2025/03/04/10/"), [
      "audit/2025/03/04/10/orders-0-1-2.aaaaaaaa.jsonl.gz",
    ]);
    assert.equal((await store.list("audit/2025/03/04/")).length, 2);
    assert.equal((await store.list("audit/")).length, 3);
    assert.deepEqual(await store.list("audit/2024/"), []);
    assert.deepEqual(await store.list("audit/2025/03/0"), [
      "audit/2025/03/04/10/orders-0-1-2.aaaaaaaa.jsonl.gz",
      "audit/2025/03/04/11/orders-0-3-4.bbbbbbbb.jsonl.gz",
      "audit/2025/03/05/00/orders-0-5-6.cccccccc.jsonl.gz",
    ]);
    const text = new TextDecoder().decode(
      await store.get("audit/2025/03/04/10/orders-0-1-2.aaaaaaaa.jsonl.gz"),
    );
    assert.equal(text, "two");
    const leftovers = [...Deno.readDirSync(`${dir}/audit-store/audit/2025/03/04/10`)];
    assert.deepEqual(leftovers.map((e) => e.name), ["orders-0-1-2.aaaaaaaa.jsonl.gz"]);
    await assert.rejects(() => store.put("audit/../escape", body), /Invalid audit object key/);
  });
});

Deno.test("groupSegment makes one object per topic, partition and hour with deterministic keys", () => {
  const events = [
    makeEvent({ partition: 0, offset: 10, timestamp: "2025-03-04T10:59:59.000Z" }),
    makeEvent({ partition: 1, offset: 5, timestamp: "2025-03-04T10:30:00.000Z" }),
    makeEvent({ partition: 0, offset: 9, timestamp: "2025-03-04T10:59:59.500Z" }),
    makeEvent({ partition: 0, offset: 11, timestamp: "2025-03-04T11:00:00.000Z" }),
    makeEvent({ topic: "pay/ments", partition: 0, offset: 1, timestamp: "2025-03-04T10:00:00Z" }),
  ];
  const groups = groupSegment("audit", "0a1b2c3d", events);
  assert.deepEqual(groups.map((g) => g.key), [
    "audit/2025/03/04/10/orders-0-9-10.0a1b2c3d.jsonl.gz",
    "audit/2025/03/04/10/orders-1-5-5.0a1b2c3d.jsonl.gz",
    "audit/2025/03/04/10/pay_ments-0-1-1.0a1b2c3d.jsonl.gz",
    "audit/2025/03/04/11/orders-0-11-11.0a1b2c3d.jsonl.gz",
  ]);
  assert.deepEqual(groups[0].events.map((e) => e.offset), ["10", "9"], "spool order kept");
  assert.deepEqual(
    groupSegment("audit", "0a1b2c3d", events).map((g) => g.key),
    groups.map((g) => g.key),
  );
  assert.equal(
    objectKey("p", new Date("2025-12-31T23:00:00Z"), "t", 3, "1", "99", "ffffffff"),
    "p/2025/12/31/23/t-3-1-99.ffffffff.jsonl.gz",
  );
});

Deno.test("Spool group commit shares one write and fsync between concurrent appends", async () => {
  await withDir(async (dir) => {
    const { spool: grouped } = await Spool.open(`${dir}/g`, { segmentEvents: 100_000 });
    await Promise.all(
      Array.from({ length: 1000 }, (_, i) => grouped.append(makeEvent({ offset: i }))),
    );
    const g = grouped.stats();
    assert.equal(g.appends, 1000);
    assert.ok(g.fsyncs <= 10, `1000 concurrent appends took ${g.fsyncs} fsyncs`);
    assert.equal(g.writes, g.fsyncs);
    assert.equal(grouped.pendingEvents, 1000);
    await grouped.close();

    const { spool: single } = await Spool.open(`${dir}/s`, { groupCommit: false });
    await Promise.all(
      Array.from({ length: 200 }, (_, i) => single.append(makeEvent({ offset: i }))),
    );
    assert.equal(single.stats().fsyncs, 200);
    await single.close();

    // Every line is there, in append order.
    const { spool: again, report } = await Spool.open(`${dir}/g`);
    assert.equal(report.events, 1000);
    assert.deepEqual(report.invalidLines, []);
    const { events } = await again.read(again.sealed()[0]);
    assert.deepEqual(
      events.map((e) => Number(e.offset)),
      Array.from({ length: 1000 }, (_, i) => i),
    );
    await again.close();
  });
});

Deno.test("Spool seals segments by count and by bytes, and rotate() seals the rest", async () => {
  await withDir(async (dir) => {
    const sealed: number[] = [];
    let opened = 0;
    const { spool } = await Spool.open(dir, {
      segmentEvents: 10,
      segmentBytes: 1_000_000,
      onSeal: (s) => sealed.push(s.events),
      onOpen: () => opened++,
    });
    await Promise.all(Array.from({ length: 25 }, (_, i) => spool.append(makeEvent({ offset: i }))));
    assert.deepEqual(sealed, [10, 10]);
    assert.equal(spool.pendingEvents, 25);
    assert.equal(await spool.rotate().then((s) => s?.events), 5);
    assert.equal(await spool.rotate(), null, "nothing to seal");
    assert.deepEqual(sealed, [10, 10, 5]);
    assert.equal(opened, 3);
    const size = new TextEncoder().encode(JSON.stringify(makeEvent()) + "\n").length;
    await spool.close();

    const bySize: number[] = [];
    const { spool: s2 } = await Spool.open(`${dir}/b`, {
      segmentBytes: size * 3,
      onSeal: (s) => bySize.push(s.events),
    });
    for (let i = 0; i < 7; i++) await s2.append(makeEvent({ offset: i }));
    assert.deepEqual(bySize, [3, 3]);
    for (const seg of s2.sealed()) await s2.remove(seg);
    assert.equal(s2.pendingEvents, 1);
    await s2.close();
  });
});

Deno.test("Spool.open reports a torn last line, skips it and keeps the earlier events", async () => {
  await withDir(async (dir) => {
    const good = [0, 1, 2].map((i) => JSON.stringify(makeEvent({ offset: i }))).join("\n") + "\n";
    const torn = JSON.stringify(makeEvent({ offset: 3 })).slice(0, 40);
    await Deno.writeTextFile(`${dir}/000000000001-0123abcd.jsonl`, good + torn);
    await Deno.writeTextFile(`${dir}/000000000002-4567abcd.jsonl`, good);
    const { spool, report } = await Spool.open(dir);
    assert.equal(report.segments, 2);
    assert.equal(report.events, 6);
    assert.deepEqual(report.invalidLines, [{
      segment: "000000000001-0123abcd.jsonl",
      line: 4,
      bytes: 40,
      reason: "torn",
    }]);
    assert.deepEqual(spool.sealed().map((s) => s.name), [
      "000000000001-0123abcd.jsonl",
      "000000000002-4567abcd.jsonl",
    ]);
    // New appends go to a new segment after the leftovers.
    await spool.append(makeEvent({ offset: 9 }));
    await spool.rotate();
    assert.equal(spool.sealed()[2].seq, 3);
    await spool.close();
    assert.deepEqual(parseSegment("x", "{}\nnot json\n[1]\n").invalid.map((l) => l.reason), [
      "invalid",
      "invalid",
    ]);
  });
});

Deno.test("createAuditTrail uploads every event exactly once and empties the spool", async () => {
  await withDir(async (dir) => {
    const store = new FsAuditStore(`${dir}/store`);
    const trail = createAuditTrail({
      dir: `${dir}/spool`,
      store,
      batchEvents: 500,
      batchAgeMs: 60_000,
      id: "audit-batcher-unit",
    });
    const writesBefore = await metric("audit_writes_total");
    await trail.start();
    assert.equal(trail.status().state, "collecting");
    assert.deepEqual(trail.ready(), { ready: true });
    const keys = Array.from({ length: 2000 }, (_, i) => `orders/${i % 3}/${i}`);
    await Promise.all(
      Array.from(
        { length: 2000 },
        (_, i) => trail.append(makeEvent({ partition: i % 3, offset: i })),
      ),
    );
    const result = await trail.flush(10_000);
    assert.equal(result.remaining, 0);
    assert.ok(result.uploaded > 0 && result.uploaded <= 2000, `flush uploaded ${result.uploaded}`);
    assert.equal(trail.status().state, "stopped");
    await trail.stop();
    const all = await readAll(store, "audit/");
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
    for (const k of all.keys) assert.match(k, KEY_RE);
    assert.deepEqual([...Deno.readDirSync(`${dir}/spool`)], [], "spool is empty");
    assert.equal((await metric("audit_writes_total")) - writesBefore, 2000);
    assert.equal(await metric("audit_backlog_depth"), 0);
    await assert.rejects(() => trail.append(makeEvent()), /stopped/);
  });
});

Deno.test("createAuditTrail uploads a batch once it is batchAgeMs old, without a flush", async () => {
  await withDir(async (dir) => {
    const store = new FsAuditStore(`${dir}/store`);
    const trail = createAuditTrail({
      dir: `${dir}/spool`,
      store,
      batchAgeMs: 50,
      id: "audit-batcher-unit",
    });
    await trail.start();
    for (let i = 0; i < 3; i++) await trail.append(makeEvent({ offset: i }));
    await waitUntil(async () => (await store.list("audit/")).length === 1, "the aged batch");
    await waitUntil(() => trail.status().backlogEvents === 0, "an empty backlog");
    assert.equal((await readAll(store, "audit/")).events.length, 3);
    await trail.stop();
    await assert.rejects(() => trail.append(makeEvent()), /stopped/);
    await assert.rejects(() => createAuditTrail({ dir, store }).append(makeEvent()), /not started/);
  });
});

Deno.test("createAuditTrail rejects an event without a valid timestamp", async () => {
  await withDir(async (dir) => {
    const trail = createAuditTrail({ dir, store: new FsAuditStore(`${dir}/s`), id: "audit-u" });
    await trail.start();
    await assert.rejects(
      () => trail.append({ ...makeEvent(), timestamp: "yesterday" }),
      TypeError,
    );
    await trail.stop();
  });
});

Deno.test("createAuditTrail goes degraded and signals backpressure past a tiny budget, then recovers", async () => {
  await withDir(async (dir) => {
    const store = new FlakyStore(new FsAuditStore(`${dir}/store`));
    store.failing = true;
    const signals: boolean[] = [];
    const trail = createAuditTrail({
      dir: `${dir}/spool`,
      store,
      batchEvents: 5,
      batchAgeMs: 20,
      spoolBudgetBytes: 4000,
      retryBaseMs: 10,
      retryMaxMs: 50,
      gaugeIntervalMs: 20,
      id: "audit-batcher-unit",
    });
    const unsubscribe = trail.onBackpressure((on) => signals.push(on));
    const errorsBefore = await metric("audit_write_errors_total");
    await trail.start();
    const keys: string[] = [];
    for (let i = 0; i < 50; i++) {
      keys.push(`orders/0/${i}`);
      await trail.append(makeEvent({ offset: i })); // resolves: durable locally
    }
    await waitUntil(() => trail.status().degraded, "degraded");
    const s = trail.status();
    assert.equal(s.state, "degraded");
    assert.equal(s.backpressure, true);
    assert.equal(s.backlogEvents, 50);
    assert.ok(s.spoolBytes > 4000);
    assert.match(s.lastError ?? "", /Store unavailable/);
    assert.deepEqual(signals, [true]);
    const ready = trail.ready();
    assert.equal(ready.ready, false);
    assert.match(ready.reason ?? "", /audit store failing/);
    await waitUntil(async () => (await metric("audit_backlog_depth")) === 50, "backlog gauge");
    assert.ok((await metric("audit_spool_bytes")) > 4000);
    await waitUntil(
      async () => (await metric("audit_write_errors_total")) - errorsBefore >= 2,
      "retried failures counted",
    );

    store.failing = false;
    await waitUntil(() => trail.status().backlogEvents === 0, "the backlog to drain");
    await waitUntil(() => !trail.status().backpressure, "backpressure released");
    assert.deepEqual(signals, [true, false]);
    assert.deepEqual(trail.ready(), { ready: true });
    assert.equal(trail.status().degraded, false);
    assert.equal(trail.status().lastError, null, "lastError cleared once uploads succeed again");
    const all = await readAll(store.inner, "audit/");
    assert.deepEqual(notExactlyOnce(all.events, keys), []);
    unsubscribe();
    await trail.stop();
  });
});

Deno.test("createAuditTrail uploads the segments left by an earlier run first, oldest first", async () => {
  await withDir(async (dir) => {
    const store = new FsAuditStore(`${dir}/store`);
    const down = new FlakyStore(store);
    down.failing = true;
    const first = createAuditTrail({
      dir: `${dir}/spool`,
      store: down,
      batchEvents: 10,
      batchAgeMs: 60_000,
      retryBaseMs: 60_000,
      id: "audit-batcher-unit",
    });
    await first.start();
    // The store is down: stop leaves every event in the spool (as a crash would).
    for (let i = 0; i < 25; i++) await first.append(makeEvent({ offset: i }));
    await first.stop();
    assert.deepEqual(await store.list("audit/"), []);
    // A torn line, as from a crash mid-write, at the end of the active segment.
    const names = [...Deno.readDirSync(`${dir}/spool`)].map((e) => e.name).sort();
    assert.equal(names.length, 3);
    await Deno.writeTextFile(`${dir}/spool/${names.at(-1)}`, '{"event_version":1,"tim', {
      append: true,
    });

    const up = new FlakyStore(store);
    const second = createAuditTrail({ dir: `${dir}/spool`, store: up, id: "audit-batcher-unit" });
    const report = await second.start();
    assert.equal(report.segments, 3);
    assert.equal(report.events, 25);
    assert.deepEqual(report.invalidLines.map((l) => [l.segment, l.reason]), [[names[2], "torn"]]);
    // start() resolved once the leftovers were up, oldest segment first.
    assert.equal(second.status().backlogEvents, 0);
    assert.deepEqual(up.keys.map((k) => k.split("/").at(-1)!.split(".")[0]), [
      "orders-0-0-9",
      "orders-0-10-19",
      "orders-0-20-24",
    ]);
    const all = await readAll(store, "audit/");
    const expected = Array.from({ length: 25 }, (_, i) => `orders/0/${i}`);
    assert.deepEqual(notExactlyOnce(all.events, expected), []);
    assert.deepEqual([...Deno.readDirSync(`${dir}/spool`)], []);
    await second.stop();
  });
});

Deno.test("buildReport counts outcomes, error causes, duplicates and a trace timeline", async () => {
  await withDir(async (dir) => {
    const store = new FsAuditStore(dir);
    const events = mixedFixture();
    // Spread over several objects, as uploads would.
    for (const g of groupSegment("audit", "00000001", events.slice(0, 12))) {
      await store.put(g.key, await encodeBatch(g.events));
    }
    for (const g of groupSegment("audit", "00000002", events.slice(12))) {
      await store.put(g.key, await encodeBatch(g.events));
    }
    const r = await buildReport(store, {
      from: FIXTURE_FROM,
      to: FIXTURE_TO,
      traceId: FIXTURE_TRACE,
    });
    const x = FIXTURE_EXPECTED;
    assert.equal(r.events, x.events);
    assert.deepEqual(r.byOutcome, x.byOutcome);
    assert.deepEqual(r.errors.byErrorCode, x.byErrorCode);
    assert.deepEqual(r.errors.byStatusCode, x.byStatusCode);
    assert.deepEqual(r.errors.byTimeoutType, x.byTimeoutType);
    assert.deepEqual(r.errors.timeouts, x.timeouts);
    assert.deepEqual(r.errors.retries, x.retries);
    assert.equal(r.duplicates.keys, x.duplicateKeys);
    assert.equal(r.duplicates.deliveredTwice, x.deliveredTwice);
    assert.equal(r.duplicates.list[0].idempotency_key, "order-300");
    assert.equal(r.trace?.events, x.traceEvents);
    assert.deepEqual(r.trace?.timeline.map((e) => e.outcome), [
      "dead_lettered",
      "delivered",
      "delivered",
    ]);
    assert.equal(r.firstEvent, FIXTURE_FROM.toISOString());
    const times = r.trace!.timeline.map((e) => e.timestamp);
    assert.deepEqual(times, [...times].sort());
    const md = renderMarkdown(r);
    for (
      const s of [
        "# Audit report",
        "## Outcomes",
        "## Errors by cause",
        "TIMEOUT_ERROR",
        "order-300",
        `## Timeline of trace ${FIXTURE_TRACE}`,
      ]
    ) {
      assert.ok(md.includes(s), `markdown lacks ${s}`);
    }
    // A narrower window only sees its own events.
    const r2 = await buildReport(store, {
      from: new Date("2025-03-04T11:00:00Z"),
      to: new Date("2025-03-04T11:10:00Z"),
    });
    assert.ok(r2.events > 0 && r2.events < x.events);
    assert.ok(
      r2.events ===
        (await readAll(store, "audit/2025/03/04/11/")).events.filter((e) =>
          e.timestamp < "2025-03-04T11:10"
        ).length,
    );
  });
});

Deno.test("windowPrefixes lists hours, or days for long windows", () => {
  assert.deepEqual(
    windowPrefixes("audit", new Date("2025-03-04T10:30:00Z"), new Date("2025-03-04T12:00:00Z")),
    ["audit/2025/03/04/10/", "audit/2025/03/04/11/"],
  );
  assert.deepEqual(
    windowPrefixes("audit", new Date("2025-03-04T10:30:00Z"), new Date("2025-03-07T00:00:01Z")),
    ["audit/2025/03/04/", "audit/2025/03/05/", "audit/2025/03/06/", "audit/2025/03/07/"],
  );
});

Deno.test("auditCommand rejects bad arguments with a UsageError", async () => {
  const bad: [string[], RegExp][] = [
    [[], /missing subcommand/],
    [["list"], /unknown subcommand: list/],
    [["report", "--to", "now"], /--from is required/],
    [["report", "--from", "now-1h"], /--to is required/],
    [["report", "--from", "yesterday-ish", "--to", "now"], /--from: cannot read "yesterday-ish"/],
    [["report", "--from", "now", "--to=-1h"], /must be before --to/],
    [["report", "--from", "2025-03-04T10:00Z", "--to", "2025-03-04T10:00Z"], /must be before/],
    [
      ["report", "--from", "now-1h", "--to", "now", "--format", "xml"],
      /--format: expected md or json/,
    ],
    [["report", "--from", "now-1h", "--to", "now", "--bogus"], /bogus/],
  ];
  for (const [args, re] of bad) {
    await assert.rejects(() => auditCommand.run(args), (e: unknown) => {
      assert.ok(e instanceof UsageError, `${args.join(" ")}: ${e}`);
      assert.match((e as Error).message, re);
      return true;
    });
  }
  const now = Date.parse("2025-03-04T12:00:00Z");
  assert.equal(parseTime("now-90m", "--from", now).toISOString(), "2025-03-04T10:30:00.000Z");
  assert.equal(parseTime("-90m", "--from", now).toISOString(), "2025-03-04T10:30:00.000Z");
  assert.equal(parseTime("2025-03-04", "--from", now).toISOString(), "2025-03-04T00:00:00.000Z");
});

Deno.test("auditCommand prints the report of the local store as JSON and Markdown", async () => {
  await withDir(async (dir) => {
    const store = new FsAuditStore(`${dir}/audit`);
    for (const g of groupSegment("audit", "00000003", mixedFixture())) {
      await store.put(g.key, await encodeBatch(g.events));
    }
    const run = async (format: string) => {
      const code = `import { auditCommand } from ${
        JSON.stringify(new URL("../actors/audit/report.ts", import.meta.url).href)
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
          "--trace-id",
          FIXTURE_TRACE,
          "--format",
          format,
        ],
        env: {
          HOME: Deno.env.get("HOME") ?? "/root",
          PATH: Deno.env.get("PATH") ?? "",
          SLUICE_DATA_DIR: dir,
          SLUICE_LOG_LEVEL: "error",
        },
        clearEnv: true,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      return new TextDecoder().decode(out.stdout);
    };
    const json = JSON.parse(await run("json"));
    assert.equal(json.events, FIXTURE_EXPECTED.events);
    assert.deepEqual(json.byOutcome, FIXTURE_EXPECTED.byOutcome);
    assert.equal(json.trace.events, FIXTURE_EXPECTED.traceEvents);
    assert.match(await run("md"), /## Duplicates by idempotency key/);
  });
});
