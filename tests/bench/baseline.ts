/**
 * The hand-written kafkajs consumers sluice is compared with, run as their own
 * process (like sluice) by `tests/bench/bench.ts`:
 *
 * - `batch-noop`: `eachBatch`, no work per record, manual offset resolution
 *   and commit (the raw consumption ceiling);
 * - `batch-post`: `eachBatch`, every record POSTed to the upstream with
 *   `fetch` (keep-alive), up to `--concurrency` calls at once per batch,
 *   partitions consumed concurrently, then resolve and commit: the same work
 *   as sluice with a no-op upstream, minus audit, ordering and resilience;
 * - `message-fetch`: the naive loop: `eachMessage` + `await fetch(...)`,
 *   kafkajs defaults (one partition at a time).
 *
 * ```
 * deno run -A tests/bench/baseline.ts --mode batch-post --brokers B --topic T \
 *   --group G --url U --count N [--seconds S] [--concurrency C]
 * ```
 *
 * Prints one JSON line: `{ records, seconds, rps, cpuMsPer1k }`, measured
 * from the first record handled to the last one finished.
 *
 * @module
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { kafkaClient, PARTITIONS } from "./lib.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    mode: { type: "string" },
    brokers: { type: "string" },
    topic: { type: "string" },
    group: { type: "string" },
    url: { type: "string", default: "" },
    count: { type: "string" },
    seconds: { type: "string", default: "0" },
    concurrency: { type: "string", default: "256" },
  },
});
const mode = values.mode!;
const count = Number(values.count);
const capMs = Number(values.seconds) * 1000;
const concurrency = Number(values.concurrency);
if (!["batch-noop", "batch-post", "message-fetch"].includes(mode) || !(count > 0)) {
  console.error("usage: baseline.ts --mode batch-noop|batch-post|message-fetch ... --count N");
  Deno.exit(2);
}

const kafka = kafkaClient(values.brokers!.split(","), "sluice-bench-baseline");
const consumer = kafka.consumer({ groupId: values.group!, maxBytesPerPartition: 1024 * 1024 });
let done = 0, first = 0, last = 0;
let cpu0 = 0;
const cpuNow = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const finished = Promise.withResolvers<void>();
let timer: ReturnType<typeof setTimeout> | undefined;

function started() {
  if (first !== 0) return;
  first = performance.now();
  cpu0 = cpuNow();
  if (capMs > 0) timer = setTimeout(() => finished.resolve(), capMs);
}

function finish(n: number) {
  done += n;
  last = performance.now();
  if (done >= count) finished.resolve();
}

async function post(value: Buffer | null, requestId: string) {
  const res = await fetch(values.url!, {
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": requestId },
    body: value ? new Uint8Array(value) : "",
  });
  await res.arrayBuffer();
  if (!res.ok) throw new Error(`upstream answered ${res.status}`);
}

function requestId(value: Buffer | null): string {
  try {
    return JSON.parse(value?.toString() ?? "null")?.request_id ?? "";
  } catch {
    return "";
  }
}

await consumer.connect();
await consumer.subscribe({ topic: values.topic!, fromBeginning: true });
if (mode === "message-fetch") {
  await consumer.run({
    eachMessage: async ({ message }) => {
      started();
      await post(message.value, requestId(message.value));
      finish(1);
    },
  });
} else {
  await consumer.run({
    eachBatchAutoResolve: false,
    autoCommit: true,
    partitionsConsumedConcurrently: PARTITIONS,
    eachBatch: async (
      { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, uncommittedOffsets, isRunning },
    ) => {
      started();
      const msgs = batch.messages;
      if (mode === "batch-post") {
        let next = 0;
        const worker = async () => {
          while (next < msgs.length && isRunning()) {
            const m = msgs[next++];
            await post(m.value, requestId(m.value));
          }
        };
        await Promise.all(Array.from({ length: Math.min(concurrency, msgs.length) }, worker));
      }
      if (msgs.length > 0) resolveOffset(msgs[msgs.length - 1].offset);
      await heartbeat();
      await commitOffsetsIfNecessary(uncommittedOffsets());
      finish(msgs.length);
    },
  });
}
await finished.promise;
clearTimeout(timer);
const seconds = (last - first) / 1000;
const cpuMsPer1k = (1000 * (cpuNow() - cpu0)) / Math.max(1, done);
await consumer.disconnect();
console.log(
  JSON.stringify({ records: done, seconds, rps: done / Math.max(seconds, 1e-9), cpuMsPer1k }),
);
Deno.exit(0);
