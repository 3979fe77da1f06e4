/**
 * Child process of the crash test in `audit_rgw_test.ts`: appends audit
 * events to a trail on the run's RGW, in rounds of 250 concurrent appends,
 * and prints `durable N` on stdout after each round (every offset below N is
 * then on local disk). It never flushes: the parent kills it with SIGKILL.
 *
 * ```
 * deno run -A tests/audit_crash_child.ts <spool dir> <bucket>
 * ```
 *
 * @module
 */
import { S3AuditStore } from "../actors/audit/store.ts";
import { createAuditTrail } from "../actors/audit/trail.ts";
import { infra } from "./harness/mod.ts";
import { makeEvent } from "./audit_fixture.ts";

const [dir, bucket] = Deno.args;
const { s3 } = infra();
const store = new S3AuditStore({ ...s3, bucket });
const trail = createAuditTrail({ dir, store, batchEvents: 1000, batchAgeMs: 60_000 });
await trail.start();
const encoder = new TextEncoder();
let offset = 0;
while (true) {
  const round = Array.from({ length: 250 }, () => {
    const o = offset++;
    return trail.append(makeEvent({ partition: o % 3, offset: o }));
  });
  await Promise.all(round);
  await Deno.stdout.write(encoder.encode(`durable ${offset}\n`));
}
