/**
 * Per-topic payload JSON Schemas (`SLUICE_SCHEMA_DIR`, `actors/record/schema.ts`):
 * loading and the start-up check (exit 2), the failure messages (path and
 * rule), and the processor turning a failing record into a
 * `VALIDATION_ERROR` dead letter. No infrastructure: the same path on real
 * Kafka is in `tests/infra/schema_kafka_test.ts`.
 */
import assert from "node:assert/strict";
import type { AuditEvent } from "../../actors/audit/event.ts";
import type { DeadLetter } from "../../actors/record/dead_letter.ts";
import { parseEnvelope } from "../../actors/record/envelope.ts";
import { createProcessor } from "../../actors/pipeline/processor.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import { loadPayloadSchemas, SchemaDirError } from "../../actors/record/schema.ts";

const ORDER_SCHEMA = {
  type: "object",
  required: ["id", "amount", "items"],
  additionalProperties: false,
  properties: {
    id: { type: "string", pattern: "^o-[0-9]+$" },
    amount: { type: "number", minimum: 0 },
    at: { type: "string", format: "date-time" },
    items: {
      type: "array",
      minItems: 1,
      items: {
        type: "object",
        required: ["sku"],
        properties: { sku: { type: "string" }, qty: { type: "integer", minimum: 1 } },
      },
    },
  },
};

function schemaDir(files: Record<string, unknown>): string {
  const dir = Deno.makeTempDirSync({ prefix: "sluice-schemas-" });
  for (const [name, content] of Object.entries(files)) {
    Deno.writeTextFileSync(
      `${dir}/${name}`,
      typeof content === "string" ? content : JSON.stringify(content),
    );
  }
  return dir;
}

function record(payload: unknown, topic = "orders"): SourceRecord {
  return {
    topic,
    partition: 1,
    offset: "7",
    key: null,
    value: new TextEncoder().encode(JSON.stringify({
      request_id: "r-7",
      timestamp: "2026-11-30T10:00:00Z",
      payload,
    })),
    headers: {},
    timestamp: "0",
  } as SourceRecord;
}

const good = { id: "o-1", amount: 12.5, items: [{ sku: "a", qty: 2 }] };

Deno.test("schemas: a valid payload passes; each failure names the path and the rule", () => {
  const dir = schemaDir({ "orders.schema.json": ORDER_SCHEMA, "notes.txt": "ignored" });
  try {
    const s = loadPayloadSchemas(dir);
    assert.deepEqual(s.topics, ["orders"]);
    assert.equal(s.validate("orders", good), null);
    assert.equal(s.validate("other-topic", "anything"), null, "no schema, no check");
    const cases: [unknown, string][] = [
      [
        { ...good, amount: -1 },
        "/payload/amount must be >= 0 (rule minimum at #/properties/amount/minimum)",
      ],
      [
        { ...good, id: "x" },
        '/payload/id must match pattern "^o-[0-9]+$" (rule pattern at #/properties/id/pattern)',
      ],
      [
        { id: "o-1", amount: 1 },
        "/payload must have required property 'items' (rule required at #/required)",
      ],
      [
        { ...good, extra: 1 },
        "/payload/extra must NOT have additional properties (rule additionalProperties at #/additionalProperties)",
      ],
      [
        { ...good, at: "yesterday" },
        '/payload/at must match format "date-time" (rule format at #/properties/at/format)',
      ],
      [
        { ...good, items: [{ sku: "a", qty: 0 }] },
        "/payload/items/0/qty must be >= 1 (rule minimum at #/properties/items/items/properties/qty/minimum)",
      ],
      ["text", "/payload must be object (rule type at #/type)"],
    ];
    for (const [payload, expected] of cases) {
      assert.equal(
        s.validate("orders", payload),
        `Payload does not match orders.schema.json: ${expected}`,
      );
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("schemas: drafts 2019-09 and 2020-12 are chosen by $schema", () => {
  const dir = schemaDir({
    "a.schema.json": {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      prefixItems: [{ type: "string" }, { type: "integer" }],
      items: false,
    },
    "b.schema.json": {
      $schema: "https://json-schema.org/draft/2019-09/schema",
      type: "object",
      dependentRequired: { card: ["cvv"] },
    },
  });
  try {
    const s = loadPayloadSchemas(dir);
    assert.equal(s.validate("a", ["x", 1]), null);
    assert.match(
      s.validate("a", ["x", 1, 2])!,
      /\/payload must NOT have more than 2 items \(rule items/,
    );
    assert.match(s.validate("b", { card: "4242" })!, /rule dependentRequired/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("schemas: every invalid file is reported at once, naming it", () => {
  const dir = schemaDir({
    "a.schema.json": "{ not json",
    "b.schema.json": { type: "objekt" },
    "c.schema.json": { type: "object", requird: ["id"] },
    "d.schema.json": { type: "string", format: "no-such-format" },
    "e.schema.json": { $ref: "https://example.com/remote.json" },
    "f.schema.json": { $schema: "http://example.com/my-meta" },
    "g.schema.json": [1, 2],
    "ok.schema.json": { type: "object" },
  });
  try {
    let problems: string[] = [];
    try {
      loadPayloadSchemas(dir);
    } catch (e) {
      assert.ok(e instanceof SchemaDirError);
      problems = e.problems;
    }
    assert.equal(problems.length, 7, problems.join("\n"));
    const text = problems.join("\n");
    assert.match(text, /a\.schema\.json: not JSON/);
    assert.match(
      text,
      /b\.schema\.json: not a valid JSON Schema: data\/type must be equal to one of/,
    );
    assert.match(text, /c\.schema\.json: strict mode: unknown keyword: "requird"/);
    assert.match(text, /d\.schema\.json: unknown format "no-such-format"/);
    assert.match(
      text,
      /e\.schema\.json: can't resolve reference https:\/\/example\.com\/remote\.json/,
    );
    assert.match(text, /f\.schema\.json: unsupported \$schema/);
    assert.match(text, /g\.schema\.json: a schema must be a JSON object or a boolean/);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  assert.throws(
    () => loadPayloadSchemas("/nonexistent/sluice-schemas"),
    /cannot read the directory/,
  );
  const empty = schemaDir({});
  try {
    assert.throws(() => loadPayloadSchemas(empty), /no <topic>\.schema\.json file/);
  } finally {
    Deno.removeSync(empty, { recursive: true });
  }
});

Deno.test("parseEnvelope: a payload rejected by the schema is a VALIDATION_ERROR with the message", () => {
  const dir = schemaDir({ "orders.schema.json": ORDER_SCHEMA });
  try {
    const s = loadPayloadSchemas(dir);
    const ok = parseEnvelope(record(good), { validatePayload: s.validate });
    assert.equal(ok.ok, true);
    const bad = parseEnvelope(record({ ...good, amount: "12" }), { validatePayload: s.validate });
    assert.equal(bad.ok, false);
    if (bad.ok) return;
    assert.equal(bad.reason, "VALIDATION_ERROR");
    assert.equal(
      bad.message,
      "Payload does not match orders.schema.json: /payload/amount must be number (rule type at #/properties/amount/type)",
    );
    assert.equal(bad.requestId, "r-7");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("processor: a record failing its topic's schema is dead-lettered, never sent upstream", async () => {
  const dir = schemaDir({ "orders.schema.json": ORDER_SCHEMA });
  try {
    const s = loadPayloadSchemas(dir);
    const dlq: DeadLetter[] = [];
    const audit: AuditEvent[] = [];
    let upstreamCalls = 0;
    const p = createProcessor({
      consumerGroup: "g",
      processingHost: "sluice@test",
      validatePayload: s.validate,
      upstream: {
        host: "upstream:80",
        deliver: () => {
          upstreamCalls++;
          return Promise.resolve({
            outcome: "delivered",
            reason: null,
            message: null,
            status: 200,
            latencyMs: 1,
            attempts: 1,
            retries: 0,
            timeouts: 0,
            timeoutType: null,
            firstFailureAt: null,
            lastFailureAt: null,
          });
        },
      },
      publishDeadLetter: (dl) => {
        dlq.push(dl);
        return Promise.resolve();
      },
      audit: {
        append: (e) => {
          audit.push(e);
          return Promise.resolve();
        },
      },
    });
    const delivered = await p.process(record(good));
    assert.equal(delivered.outcome, "delivered");
    const out = await p.process(record({ ...good, items: [] }));
    assert.equal(out.outcome, "dead_lettered");
    assert.equal(upstreamCalls, 1);
    assert.equal(dlq.length, 1);
    assert.equal(dlq[0].failure_reason, "VALIDATION_ERROR");
    assert.equal(
      dlq[0].error_message,
      "Payload does not match orders.schema.json: /payload/items must NOT have fewer than 1 items (rule minItems at #/properties/items/minItems)",
    );
    assert.equal(audit[1].result.error_code, "VALIDATION_ERROR");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("main.ts start exits 2 naming an invalid schema file, before starting anything", async () => {
  const dir = schemaDir({
    "orders.schema.json": { type: "object", properties: { n: { minimum: "0" } } },
  });
  const data = Deno.makeTempDirSync({ prefix: "sluice-schema-start-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../../main.ts", import.meta.url).pathname, "start"],
      env: { SLUICE_SCHEMA_DIR: dir, SLUICE_DATA_DIR: data, SLUICE_HTTP_PORT: "0" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 2, stderr);
    assert.match(stderr, /Invalid configuration:/);
    assert.match(
      stderr,
      /orders\.schema\.json: not a valid JSON Schema: data\/properties\/n\/minimum must be number/,
    );
    assert.deepEqual([...Deno.readDirSync(data)], [], "nothing was started");
  } finally {
    Deno.removeSync(dir, { recursive: true });
    Deno.removeSync(data, { recursive: true });
  }
});
