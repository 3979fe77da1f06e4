/**
 * The FIFO queue of the partition worker (`actors/pipeline/fifo_queue.ts`):
 * order, empty queue, clear, drain, and the compaction path (consumed slots
 * given back, order kept across compactions).
 */
import assert from "node:assert/strict";
import { FifoQueue } from "../../actors/pipeline/fifo_queue.ts";

Deno.test("FifoQueue: push/shift/peek in order, undefined when empty", () => {
  const q = new FifoQueue<number>();
  assert.equal(q.length, 0);
  assert.equal(q.shift(), undefined);
  assert.equal(q.peek(), undefined);
  q.push(1);
  q.push(2);
  q.push(3);
  assert.equal(q.length, 3);
  assert.equal(q.peek(), 1);
  assert.equal(q.length, 3, "peek takes nothing");
  assert.equal(q.shift(), 1);
  assert.equal(q.peek(), 2);
  q.push(4);
  assert.deepEqual([q.shift(), q.shift(), q.shift()], [2, 3, 4]);
  assert.equal(q.length, 0);
  assert.equal(q.shift(), undefined);
  // Falsy items are items.
  const z = new FifoQueue<number | string>();
  z.push(0);
  z.push("");
  assert.equal(z.length, 2);
  assert.equal(z.shift(), 0);
  assert.equal(z.shift(), "");
  assert.equal(z.shift(), undefined);
});

Deno.test("FifoQueue: taking the last item empties the backing array", () => {
  const q = new FifoQueue<number>(1000);
  for (let i = 0; i < 10; i++) q.push(i);
  for (let i = 0; i < 9; i++) q.shift();
  assert.equal(q.footprint, 10, "below compactAfter: consumed slots kept");
  assert.equal(q.shift(), 9);
  assert.equal(q.footprint, 0, "empty: released");
  q.push(10);
  assert.equal(q.peek(), 10);
  assert.equal(q.footprint, 1);
});

Deno.test("FifoQueue: compaction after compactAfter consumed slots, once they are half of the array", () => {
  const q = new FifoQueue<number>(4);
  for (let i = 0; i < 20; i++) q.push(i);
  for (let i = 0; i < 10; i++) assert.equal(q.shift(), i);
  // head 10 > 4 but 10 × 2 ≤ 20: not compacted yet.
  assert.equal(q.footprint, 20);
  assert.equal(q.length, 10);
  assert.equal(q.shift(), 10); // head 11 > 4 and 22 > 20: compacted
  assert.equal(q.footprint, 9);
  assert.equal(q.length, 9);
  q.push(20);
  const out: number[] = [];
  for (let v = q.shift(); v !== undefined; v = q.shift()) out.push(v);
  assert.deepEqual(out, Array.from({ length: 10 }, (_, i) => 11 + i), "order kept");
  assert.equal(q.footprint, 0);

  // Interleaved: the footprint stays bounded (≤ 2 × live + compactAfter) and order holds.
  const r = new FifoQueue<number>(8);
  let next = 0;
  let expect = 0;
  for (let round = 0; round < 1000; round++) {
    for (let i = 0; i < 3; i++) r.push(next++);
    for (let i = 0; i < 2; i++) assert.equal(r.shift(), expect++);
    assert.equal(r.length, next - expect);
    assert.ok(r.footprint <= 2 * r.length + 8, `footprint ${r.footprint} for ${r.length}`);
  }
  assert.equal(r.length, 1000);
  assert.equal(r.peek(), expect);
});

Deno.test("FifoQueue: clear and drain", () => {
  const q = new FifoQueue<string>(2);
  for (const s of ["a", "b", "c", "d", "e"]) q.push(s);
  assert.equal(q.shift(), "a");
  assert.deepEqual(q.drain(), ["b", "c", "d", "e"]);
  assert.equal(q.length, 0);
  assert.equal(q.footprint, 0);
  assert.deepEqual(q.drain(), []);
  q.push("f");
  assert.deepEqual(q.drain(), ["f"], "drain from head 0");
  q.push("g");
  q.push("h");
  q.clear();
  assert.equal(q.length, 0);
  assert.equal(q.shift(), undefined);
  q.push("i");
  assert.equal(q.shift(), "i");
  assert.throws(() => new FifoQueue(0), RangeError);
  assert.throws(() => new FifoQueue(1.5), RangeError);
});
