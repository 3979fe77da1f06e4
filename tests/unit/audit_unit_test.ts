/**
 * Unit tests of the audit store and report on the local file system: fs
 * store, report, window prefixes and the `audit report` command. The writer
 * and the uploader have their own files (`audit_writer_test.ts`,
 * `audit_uploader_test.ts`).
 */
import assert from "node:assert/strict";
import {
  type AuditStore,
  encodeBatch,
  FsAuditStore,
  hourPrefix,
} from "../../actors/audit/store.ts";
import type { AuditEvent } from "../../actors/audit/event.ts";
import {
  buildReport,
  parseTime,
  renderMarkdown,
  windowPrefixes,
} from "../../actors/audit/report.ts";
import { UsageError } from "../../supervisors/cli/common.ts";
import { auditCommand } from "../../supervisors/cli/audit.ts";
import {
  FIXTURE_EXPECTED,
  FIXTURE_FROM,
  FIXTURE_TO,
  FIXTURE_TRACE,
  mixedFixture,
  readAll,
} from "../harness/audit_fixture.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-audit-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * Writes `events` to `store` as the uploader would lay them out: one object
 * per topic, partition and UTC hour, under the hour prefix of its events
 * (`tag` keeps the keys of several calls apart).
 */
async function putGrouped(store: AuditStore, tag: string, events: AuditEvent[]): Promise<void> {
  const groups = new Map<string, AuditEvent[]>();
  for (const e of events) {
    const key = `${hourPrefix("audit", new Date(e.timestamp))}${e.topic}-${e.partition}-${tag}`;
    groups.set(key, [...(groups.get(key) ?? []), e]);
  }
  for (const [key, group] of groups) await store.put(`${key}.jsonl.gz`, await encodeBatch(group));
}

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

Deno.test("buildReport counts outcomes, error causes, duplicates and a trace timeline", async () => {
  await withDir(async (dir) => {
    const store = new FsAuditStore(dir);
    const events = mixedFixture();
    // Spread over several objects, as uploads would.
    await putGrouped(store, "00000001", events.slice(0, 12));
    await putGrouped(store, "00000002", events.slice(12));
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
    await putGrouped(store, "00000003", mixedFixture());
    const run = async (format: string) => {
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
