/**
 * Helpers of the delivery-guarantee tests on the real broker and RGW
 * (`tests/infra/durability_kafka_test.ts`, `tests/infra/outage_kafka_test.ts`).
 *
 * @module
 */
import assert from "node:assert/strict";
import { uniqueName } from "./mod.ts";
import { envelope, type Message } from "./kafka_fixture.ts";
import type { SluiceProcess } from "./sluice_process.ts";
import type { UpstreamStub } from "./upstream_stub.ts";

/** A fresh topic, consumer group and bucket name for one test. */
export function names(prefix: string): { topic: string; group: string; bucket: string } {
  return {
    topic: uniqueName(prefix),
    group: uniqueName(`${prefix}-group`),
    bucket: uniqueName(`${prefix}-audit`),
  };
}

/** Upstream deliveries beyond the first, over every idempotency key. */
export function upstreamDuplicates(stub: UpstreamStub): number {
  let n = 0;
  for (const c of stub.delivered.values()) n += c - 1;
  return n;
}

/** `count` envelopes with every `every`-th replaced by a malformed value; returns the malformed offsets' sequence numbers. */
export function mixedMessages(topic: string, from: number, count: number, every: number) {
  const messages: Message[] = [];
  const malformed: number[] = [];
  for (let s = from; s < from + count; s++) {
    const key = `key-${s % 200}`;
    if (s % every === every - 1) {
      malformed.push(s);
      messages.push({
        key,
        value: s % 2 === 0 ? `{not json ${s}` : JSON.stringify({ payload: s }),
      });
    } else {
      messages.push({ key, value: envelope(topic, s, key) });
    }
  }
  return { messages, malformed };
}

/** Asserts a graceful exit (0); otherwise fails with the shutdown and error lines of the output. */
export async function assertCleanExit(p: SluiceProcess): Promise<void> {
  const code = (await p.status).code;
  const lines = p.output().split("\n").filter((l) => /shutdown|phase|ERROR|WARN/.test(l));
  assert.equal(code, 0, `graceful exit; last lines:\n${lines.slice(-40).join("\n")}`);
}

/** Runs `fn`; when it throws, adds the last `n` lines of sluice's output to the error. */
export async function withOutput<T>(p: SluiceProcess, n: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const dump = Deno.env.get("SLUICE_TEST_DUMP_DIR");
    if (dump) await Deno.writeTextFile(`${dump}/sluice-${p.port}.log`, p.output());
    const tail = p.output().split("\n")
      .filter((l) => !/^\s+at |ECONNREFUSED/.test(l))
      .slice(-n).map((l) => l.slice(0, 400)).join("\n");
    throw new Error(`${e instanceof Error ? e.message : e}\n--- sluice output ---\n${tail}`);
  }
}

/** Sum of `queue_depth` (records admitted and not finished) of a running instance. */
export async function admitted(p: SluiceProcess): Promise<number> {
  return await p.metric("queue_depth").catch(() => 0);
}
