/**
 * The test runner's lanes (`tests/harness/lanes.ts`): every file in exactly
 * one lane, the outage files apart from the other infra files, the measuring
 * files alone, the two infra lanes balanced.
 */
import assert from "node:assert/strict";
import { lanes } from "../harness/lanes.ts";

Deno.test("lanes: each test file in exactly one lane, outages and measurements apart, infra balanced", () => {
  const root = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
  const files: string[] = [];
  for (const kind of ["unit", "infra", "e2e"]) {
    for (const e of Deno.readDirSync(`${root}/${kind}`)) {
      if (e.name.endsWith("_test.ts")) files.push(`${root}/${kind}/${e.name}`);
    }
  }
  const l = lanes(files);
  const all = [...l.local, ...l.outage, ...l.infra[0], ...l.infra[1], ...l.alone];
  assert.deepEqual([...all].sort(), [...files].sort(), "every file once");
  assert.equal(new Set(all).size, all.length);
  assert.ok(l.local.every((f) => /\/(unit|e2e)\//.test(f)), "no infra file in the local lane");
  assert.ok([...l.outage, ...l.infra[0], ...l.infra[1]].every((f) => f.includes("/infra/")));
  // The files that stop the shared broker or RGW run apart from the other infra files.
  const stops = (f: string) => /\b(stopKafka|stopRgw)\(/.test(Deno.readTextFileSync(f));
  assert.deepEqual(
    files.filter((f) => f.includes("/infra/") && stops(f)).sort(),
    [...l.outage].sort(),
    "the outage lane is exactly the infra files that stop the broker or RGW",
  );
  assert.deepEqual(l.alone.map((f) => f.slice(root.length)).sort(), [
    "/e2e/embedded_load_test.ts",
    "/e2e/http_load_test.ts",
    "/infra/flow_control_kafka_test.ts",
  ]);
  assert.ok(l.infra[0].length > 0 && l.infra[1].length > 0, "two infra lanes");
});
