/**
 * The embedded log (actors/log/embedded/, created by log.ts): partitioning and order,
 * resolve/commit semantics across a restart, pause/resume, stop waiting for
 * handlers, offsetsForTimes, readRange, retention, crash recovery, locking.
 * Every wait is on a condition with a deadline, never on a fixed sleep.
 */
import assert from "node:assert/strict";
import {
  createEmbeddedLog,
  type EmbeddedLogOptions,
  LogLockedError,
  murmur2,
  UnknownTopicError,
} from "../../actors/log/embedded/log.ts";
import type { SourceRecord } from "../../actors/record/record.ts";
import type { Batch, BatchHandler, LogClient, TopicPartition } from "../../actors/log/port.ts";
import { waitFor } from "../harness/procs.ts";

const decoder = new TextDecoder();
const text = (b: Uint8Array | null) => (b === null ? null : decoder.decode(b));

/** The harness's `waitFor`, with this file's argument order. */
async function waitUntil(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  await waitFor(cond, { timeoutMs, intervalMs: 5, message: what });
}

async function withLog(
  opts: Partial<EmbeddedLogOptions>,
  fn: (open: (extra?: Partial<EmbeddedLogOptions>) => LogClient, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-embedded-" });
  const clients: LogClient[] = [];
  try {
    await fn((extra) => {
      const c = createEmbeddedLog({ dir, ...opts, ...extra });
      clients.push(c);
      return c;
    }, dir);
  } finally {
    for (const c of clients) await c.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A handler that keeps every record, resolves each batch and commits it (unless told not to). */
function collector(opts: { commit?: (b: Batch) => string | null } = {}) {
  const byPartition = new Map<string, SourceRecord[]>();
  const assignments: { tps: TopicPartition[]; generation: number }[] = [];
  const handler: BatchHandler = {
    onAssignment: (tps, generation) => assignments.push({ tps, generation }),
    async eachBatch(batch) {
      const k = `${batch.topic}:${batch.partition}`;
      byPartition.set(k, [...(byPartition.get(k) ?? []), ...batch.records]);
      const next = String(Number(batch.records[batch.records.length - 1].offset) + 1);
      batch.resolve(next);
      const commit = opts.commit ? opts.commit(batch) : next;
      if (commit !== null) assert.equal(await batch.commit(commit), true);
    },
  };
  const count = () => [...byPartition.values()].reduce((n, l) => n + l.length, 0);
  const offsets = (tp: string) => (byPartition.get(tp) ?? []).map((r) => Number(r.offset));
  return { handler, byPartition, assignments, count, offsets };
}

const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

Deno.test("murmur2 matches the Kafka Java client's hash", () => {
  const enc = new TextEncoder();
  // Vectors generated with org.apache.kafka.common.utils.Utils.murmur2.
  const vectors: Record<string, number> = {
    "0": 971027396,
    "1": -1993445489,
    "128": -326012175,
    "2187": -1508407203,
    "16384": -325739742,
    "100:48069": 1009543857,
  };
  for (const [k, v] of Object.entries(vectors)) assert.equal(murmur2(enc.encode(k)), v, k);
});

Deno.test("embeddedLog delivers every partition in offset order to the one member", async () => {
  await withLog({ partitions: 3 }, async (open) => {
    const log = open();
    const producer = await log.producer();
    const keys = range(12).map((i) => `k${i}`);
    for (let round = 0; round < 25; round++) {
      await producer.send(
        "orders",
        keys.map((k) => ({ key: k, value: JSON.stringify({ k, round }), headers: { h: k } })),
      );
    }
    const c = collector();
    const consumer = log.consumer("g1");
    await consumer.run(["orders"], c.handler);
    await waitUntil(() => c.count() === 300, "300 records");
    assert.deepEqual(c.assignments.length, 1);
    assert.equal(c.assignments[0].generation, 1);
    assert.deepEqual(
      c.assignments[0].tps.map((tp) => `${tp.topic}:${tp.partition}`),
      ["orders:0", "orders:1", "orders:2"],
    );
    const partitionOfKey = new Map<string, number>();
    for (const [tp, records] of c.byPartition) {
      assert.deepEqual(c.offsets(tp), range(records.length), `${tp} contiguous from 0`);
      const rounds = new Map<string, number>();
      for (const r of records) {
        const k = text(r.key)!;
        assert.equal(r.headers.h, k);
        assert.match(r.timestamp, /^\d+$/);
        const v = JSON.parse(text(r.value)!);
        assert.equal(v.round, (rounds.get(k) ?? -1) + 1, "same key in order");
        rounds.set(k, v.round);
        assert.equal(partitionOfKey.get(k) ?? r.partition, r.partition, "one partition per key");
        partitionOfKey.set(k, r.partition);
      }
    }
    assert.ok(c.byPartition.size >= 2, "keys spread over partitions");
    const admin = await log.admin();
    const hw = await admin.highWatermarks("orders");
    assert.equal(hw.reduce((n, p) => n + Number(p.offset), 0), 300);
    assert.deepEqual(await admin.committed("g1", "orders"), hw);
    await consumer.disconnect();
  });
});

Deno.test("embeddedLog wakes a waiting fetcher when records arrive, and round-robins keyless records", async () => {
  await withLog({ partitions: 2 }, async (open) => {
    const log = open();
    const c = collector();
    const consumer = log.consumer("g");
    await consumer.run(["live"], c.handler);
    const producer = await log.producer();
    await producer.send("live", [{ key: null, value: "a" }, { key: null, value: "b" }]);
    await producer.send("live", [{ key: null, value: "x", partition: 1 }]);
    await waitUntil(() => c.count() === 3, "3 records");
    assert.deepEqual(c.offsets("live:0"), [0]);
    assert.deepEqual(c.offsets("live:1"), [0, 1]);
    await assert.rejects(
      producer.send("live", [{ key: null, value: "z", partition: 2 }]),
      /partition out of range: 2/,
    );
    await consumer.stop();
  });
});

Deno.test("embeddedLog resumes a restarted group at the committed offset: nothing skipped, nothing re-read", async () => {
  await withLog({ partitions: 1, maxBatchRecords: 25 }, async (open) => {
    let log = open();
    const producer = await log.producer();
    await producer.send("t", range(100).map((i) => ({ key: null, value: `v${i}` })));
    // Resolve every batch, but commit only up to offset 60.
    const first = collector({ commit: (b) => Number(b.records[0].offset) < 60 ? "60" : null });
    let consumer = log.consumer("g");
    await consumer.run(["t"], first.handler);
    await waitUntil(() => first.count() === 100, "first pass");
    assert.deepEqual(first.offsets("t:0"), range(100), "resolved batches are not fetched again");
    await consumer.disconnect();
    assert.deepEqual(await (await log.admin()).committed("g", "t"), [{
      partition: 0,
      offset: "60",
    }]);
    await log.close();

    log = open();
    const second = collector();
    consumer = log.consumer("g");
    await consumer.run(["t"], second.handler);
    await waitUntil(() => second.count() === 40, "second pass");
    assert.deepEqual(second.offsets("t:0"), range(40, 60));
    assert.equal(text(second.byPartition.get("t:0")![0].value), "v60");
    await consumer.stop();
    // A batch of a stopped (not yet disconnected) consumer may still commit; after disconnect it is stale.
    await consumer.disconnect();
    assert.deepEqual(await (await log.admin()).committed("g", "t"), [{
      partition: 0,
      offset: "100",
    }]);
  });
});

Deno.test("embeddedLog fetches the same records again when nothing was resolved", async () => {
  await withLog({ partitions: 1 }, async (open) => {
    const log = open();
    await (await log.producer()).send("t", range(3).map((i) => ({ key: null, value: `${i}` })));
    const seen: string[] = [];
    let calls = 0;
    const consumer = log.consumer("g");
    await consumer.run(["t"], {
      onAssignment() {},
      eachBatch(batch) {
        calls++;
        seen.push(batch.records.map((r) => r.offset).join(","));
        if (calls === 2) batch.resolve("2");
        return Promise.resolve();
      },
    });
    await waitUntil(() => calls >= 3, "three batches");
    await consumer.stop();
    assert.deepEqual(seen.slice(0, 3), ["0,1,2", "0,1,2", "2"]);
  });
});

Deno.test("embeddedLog pause stops fetching one partition until resume", async () => {
  await withLog({ partitions: 3 }, async (open) => {
    const log = open();
    const c = collector();
    const consumer = log.consumer("g");
    const p0 = { topic: "t", partition: 0 };
    await consumer.run(["t"], c.handler);
    consumer.pause([p0]);
    const producer = await log.producer();
    for (const partition of [0, 1, 2]) {
      await producer.send("t", range(5).map(() => ({ key: null, value: "x", partition })));
    }
    await waitUntil(() => c.offsets("t:1").length === 5 && c.offsets("t:2").length === 5, "p1, p2");
    // p0 had the same chance as p1 and p2 to be fetched: it is paused.
    assert.deepEqual(c.offsets("t:0"), []);
    consumer.resume([p0]);
    await waitUntil(() => c.offsets("t:0").length === 5, "p0 after resume");
    await consumer.stop();
  });
});

Deno.test("embeddedLog stop waits for running batch handlers", async () => {
  await withLog({ partitions: 1 }, async (open) => {
    const log = open();
    await (await log.producer()).send("t", [{ key: null, value: "x" }]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered = false, finished = false, runningInside: boolean | null = null;
    const consumer = log.consumer("g");
    await consumer.run(["t"], {
      onAssignment() {},
      async eachBatch(batch) {
        entered = true;
        await gate;
        runningInside = batch.isRunning();
        batch.resolve("1");
        assert.equal(await batch.commit("1"), true, "commit during stop still counts");
        finished = true;
      },
    });
    await waitUntil(() => entered, "handler entered");
    let stopped = false;
    const stopping = consumer.stop().then(() => (stopped = true));
    // Let every pending timer and promise run: stop must still wait.
    for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 1));
    assert.equal(stopped, false);
    release();
    await stopping;
    assert.equal(finished, true);
    assert.equal(runningInside, false, "isRunning() is false once stopping");
    assert.deepEqual(await (await log.admin()).committed("g", "t"), [{
      partition: 0,
      offset: "1",
    }]);
  });
});

Deno.test("embeddedLog admin: topics, offsetsForTimes, unknown topics", async () => {
  await withLog({ partitions: 2 }, async (open) => {
    const log = open();
    const admin = await log.admin();
    await assert.rejects(admin.partitions("nope"), UnknownTopicError);
    await assert.rejects(admin.partitions("nope"), /unknown topic: nope/);
    await admin.ensureTopics([{ topic: "four", partitions: 4 }]);
    await admin.ensureTopics([{ topic: "four", partitions: 8 }]); // existing: unchanged
    assert.deepEqual(await admin.partitions("four"), [0, 1, 2, 3]);
    const producer = await log.producer();
    await producer.send(
      "four",
      [1000, 2000, 3000].map((t) => ({
        key: null,
        value: "v",
        partition: 0,
        timestamp: String(t),
      })),
    );
    assert.deepEqual(await admin.offsetsForTimes("four", 2500), [
      { partition: 0, offset: "2" },
      { partition: 1, offset: "0" },
      { partition: 2, offset: "0" },
      { partition: 3, offset: "0" },
    ]);
    assert.equal((await admin.offsetsForTimes("four", 0))[0].offset, "0");
    assert.equal((await admin.offsetsForTimes("four", 9999))[0].offset, "3");
    assert.deepEqual(
      await admin.committed("nobody", "four"),
      [0, 1, 2, 3].map((partition) => ({
        partition,
        offset: "-1",
      })),
    );
    assert.equal(await log.ping(), true);
    assert.equal(log.kind, "embedded");
  });
});

Deno.test("embeddedLog readRange reads [from, to) across segments and stops on abort", async () => {
  await withLog({ partitions: 1, segmentRecords: 100, maxBatchRecords: 64 }, async (open) => {
    let log = open();
    const producer = await log.producer();
    for (let i = 0; i < 10; i++) {
      await producer.send("t", range(50).map((j) => ({ key: null, value: `${i * 50 + j}` })));
    }
    const read = async (from: string, to: string, abort?: AbortController) => {
      const out: number[] = [];
      const tp = { topic: "t", partition: 0 };
      for await (const batch of log.readRange(tp, { from, to, signal: abort?.signal })) {
        assert.ok(batch.length <= 64);
        for (const r of batch) {
          assert.equal(text(r.value), r.offset);
          out.push(Number(r.offset));
        }
        if (out.length >= 100) abort?.abort();
      }
      return out;
    };
    assert.deepEqual(await read("30", "470"), range(440, 30));
    assert.deepEqual(await read("480", "9999"), range(20, 480), "stops at the high watermark");
    assert.deepEqual(await read("5", "5"), []);
    const aborted = await read("0", "500", new AbortController());
    assert.ok(aborted.length >= 100 && aborted.length < 200, `aborted after ${aborted.length}`);
    // Sealed segments are read back from disk after a restart.
    await log.close();
    log = open();
    assert.deepEqual(await read("0", "500"), range(500));
    await assert.rejects(async () => {
      for await (const _ of log.readRange({ topic: "zz", partition: 0 }, { from: "0", to: "1" })) {
        // nothing
      }
    }, UnknownTopicError);
  });
});

Deno.test("embeddedLog retention never drops records below a group's committed offset", async () => {
  await withLog(
    { partitions: 1, segmentRecords: 10, retentionRecords: 20, maxBatchRecords: 1000 },
    async (open, dir) => {
      const log = open();
      const producer = await log.producer();
      const firstOffset = async () => {
        for await (
          const b of log.readRange({ topic: "t", partition: 0 }, { from: "0", to: "9999" })
        ) {
          return Number(b[0].offset);
        }
        return -1;
      };
      // A group that committed 0: nothing may go.
      const consumer = log.consumer("slow");
      let commitTo: string | null = "0";
      await consumer.run(["t"], {
        onAssignment() {},
        async eachBatch(b) {
          if (commitTo !== null) await b.commit(commitTo);
          commitTo = null;
        },
      });
      for (let i = 0; i < 10; i++) {
        await producer.send("t", range(10).map(() => ({ key: null, value: "x" })));
      }
      await waitUntil(() => commitTo === null, "first commit");
      await consumer.stop();
      assert.equal(await firstOffset(), 0, "uncommitted records kept beyond the count");
      // The group moves to 55: segments ending at or below 55 may go, keeping ≥ 20 records.
      await consumer.run(["t"], {
        onAssignment() {},
        async eachBatch(b) {
          await b.commit("55");
          commitTo = "done";
        },
      });
      await waitUntil(() => commitTo === "done", "second commit");
      await consumer.disconnect();
      assert.equal(await firstOffset(), 50);
      const files = [...Deno.readDirSync(`${dir}/topics/t/0`)].map((e) => e.name).filter((n) =>
        n.endsWith(".jsonl")
      );
      assert.equal(files.length, 5, files.join(" ")); // 50..89 sealed, 90..99 active (full)
      const hw = await (await log.admin()).highWatermarks("t");
      assert.deepEqual(hw, [{ partition: 0, offset: "100" }]);
    },
  );
});

Deno.test("embeddedLog recovers from a torn last line and keeps appending after it", async () => {
  await withLog({ partitions: 1 }, async (open, dir) => {
    let log = open();
    await (await log.producer()).send("t", range(5).map((i) => ({ key: `k${i}`, value: `v${i}` })));
    await log.close();
    const seg = `${dir}/topics/t/0/${"0".padStart(20, "0")}.jsonl`;
    await Deno.writeTextFile(seg, '{"o":5,"t":1,"k":"torn', { append: true });
    log = open();
    const admin = await log.admin();
    assert.deepEqual(await admin.highWatermarks("t"), [{ partition: 0, offset: "5" }]);
    const binary = new Uint8Array([0, 255, 254, 10, 13]);
    await (await log.producer()).send("t", [{ key: binary, value: binary, headers: { a: "b" } }]);
    await log.close();
    log = open();
    const all: SourceRecord[] = [];
    for await (const b of log.readRange({ topic: "t", partition: 0 }, { from: "0", to: "100" })) {
      all.push(...b);
    }
    assert.deepEqual(all.map((r) => r.offset), ["0", "1", "2", "3", "4", "5"]);
    assert.deepEqual(all[5].key, binary);
    assert.deepEqual(all[5].value, binary);
    assert.deepEqual(all[5].headers, { a: "b" });
    assert.equal(text(all[4].value), "v4");
  });
});

Deno.test("embeddedLog allows one process (and one open log) per directory", async () => {
  await withLog({}, async (open) => {
    const a = open();
    await a.producer();
    const b = open();
    await assert.rejects(b.producer(), LogLockedError);
    assert.equal(await b.ping(), false);
    await a.close();
    await b.producer();
    assert.equal(await b.ping(), true);
  });
});

Deno.test("embeddedLog refuses a second member of one group and bad offsets", async () => {
  await withLog({ partitions: 1 }, async (open) => {
    const log = open();
    await (await log.producer()).send("t", [{ key: null, value: "x" }]);
    const c1 = log.consumer("g");
    let batch: Batch | null = null;
    await c1.run(["t"], {
      onAssignment() {},
      eachBatch(b) {
        batch ??= b;
        b.resolve("1");
        return Promise.resolve();
      },
    });
    await assert.rejects(log.consumer("g").run(["t"], collector().handler), /already has a member/);
    await waitUntil(() => batch !== null, "a batch");
    await assert.rejects(batch!.commit("2"), /past the end/);
    await assert.rejects(batch!.commit("-1"), /invalid offset/);
    await c1.disconnect();
    assert.equal(batch!.isStale(), true, "stale after disconnect");
    assert.equal(await batch!.commit("1"), false);
  });
});

/**
 * In a child process (for `gc()`): 45,000 records of ~400 bytes (18 MB)
 * written through an embedded log with its default settings, while a group
 * consumes and commits them when `consume`; the MB the log keeps reachable
 * once they are written (and consumed).
 */
async function retainedAfterWriting(consume: boolean): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "sluice-embedded-mem-" });
  const script = `
    import { createEmbeddedLog } from ${
    JSON.stringify(new URL("../../actors/log/embedded/log.ts", import.meta.url).href)
  };
    const log = createEmbeddedLog({ dir: ${JSON.stringify(dir)} });
    const producer = await log.producer();
    const value = JSON.stringify({ payload: "x".repeat(360) });
    await producer.send("t", [{ key: "warm", value }]);
    let committed = 0;
    const consumer = ${consume} ? log.consumer("g") : null;
    await consumer?.run(["t"], {
      onAssignment() {},
      async eachBatch(b) {
        const next = String(Number(b.records[b.records.length - 1].offset) + 1);
        b.resolve(next);
        await b.commit(next);
        committed += b.records.length;
      },
    });
    const used = () => { gc(); gc(); const m = Deno.memoryUsage(); return m.heapUsed + m.external; };
    const before = used();
    for (let i = 0; i < 90; i++) {
      await producer.send("t", Array.from({ length: 500 }, (_, j) => ({ key: "k" + ((i * 500 + j) % 97), value })));
    }
    const deadline = Date.now() + 60_000;
    while (consumer && committed < 45_001) {
      if (Date.now() > deadline) throw new Error("consumed only " + committed);
      await new Promise((r) => setTimeout(r, 20));
    }
    await consumer?.stop();
    const after = used();
    console.log(JSON.stringify({ retainedMb: (after - before) / 1e6 }));

    await log.close();
  `;
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--v8-flags=--expose-gc", script],
      stdin: "null",
    }).output();
    assert.equal(out.code, 0, decoder.decode(out.stderr));
    return JSON.parse(decoder.decode(out.stdout).trim().split("\n").pop()!).retainedMb;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("embeddedLog holds a bounded tail in memory, not every record written (default settings)", async () => {
  // Found running `deno task start` for 40 minutes at the load generator's
  // 20 records/s: the RSS grew from 97 to 264 MB. Each partition kept its
  // whole active segment (up to 10,000 records) parsed in memory, and 8 sealed
  // ones more. 18 MB written: 43.5 MB reachable when every record stayed
  // parsed, 6.9 MB with 1 MiB segments (three active ones, nothing cached: no
  // group).
  const retainedMb = await retainedAfterWriting(false);
  assert.ok(retainedMb < 12, `the embedded log keeps ${retainedMb.toFixed(1)} MB reachable`);
});

Deno.test("embeddedLog drops a sealed segment from memory once the groups have committed past it", async () => {
  // A group that follows the writes (as the pipeline and the audit uploader
  // do): segments sealed while it is behind are cached for it, and must not
  // stay cached (up to 8 × 1 MiB) once it has committed past them.
  const retainedMb = await retainedAfterWriting(true);
  assert.ok(retainedMb < 12, `the embedded log keeps ${retainedMb.toFixed(1)} MB reachable`);
});

Deno.test("embeddedLog seals a segment at segmentBytes; a lagging group and a restart read every record in order", async () => {
  await withLog({ partitions: 1, segmentBytes: 2048, maxBatchRecords: 40 }, async (open, dir) => {
    let log = open();
    const producer = await log.producer();
    const value = (i: number) => `${i}:${"y".repeat(90)}`;
    for (let i = 0; i < 30; i++) {
      await producer.send("t", range(10, i * 10).map((n) => ({ key: null, value: value(n) })));
    }
    const files: number[] = [];
    for await (const e of Deno.readDir(`${dir}/topics/t/0`)) {
      if (e.name.endsWith(".jsonl")) {
        files.push((await Deno.stat(`${dir}/topics/t/0/${e.name}`)).size);
      }
    }
    // 300 lines of about 130 bytes: sealed past 2,048 bytes, one send (10 lines) at most beyond.
    assert.ok(files.length >= 15, `${files.length} segment files`);
    for (const size of files) assert.ok(size < 2048 + 10 * 140, `a segment of ${size} bytes`);
    // A group that starts now reads the sealed segments back from disk, in order.
    const c = collector();
    const consumer = log.consumer("late");
    await consumer.run(["t"], c.handler);
    await waitUntil(() => c.count() === 300, "300 records");
    assert.deepEqual(c.offsets("t:0"), range(300));
    assert.deepEqual(c.byPartition.get("t:0")!.map((r) => text(r.value)), range(300).map(value));
    await consumer.stop();
    await log.close();
    log = open();
    const back: string[] = [];
    for await (const b of log.readRange({ topic: "t", partition: 0 }, { from: "0", to: "300" })) {
      for (const r of b) back.push(text(r.value)!);
    }
    assert.deepEqual(back, range(300).map(value));
  });
});
