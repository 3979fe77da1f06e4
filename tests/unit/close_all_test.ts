/**
 * Unit tests of `actors/log/close_all.ts`: the Kafka adapters' close, which
 * must not wait past its deadline for a client that hangs, nor report a
 * client that closed in time.
 *
 * @module
 */
import assert from "node:assert/strict";
import { closeAll } from "../../actors/log/close_all.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

Deno.test("closeAll: closes every client at once, leaves a hung one at the deadline, reports only that one", async () => {
  let late = 0;
  const closed: string[] = [];
  let release = () => {};
  const hung = new Promise<void>((r) => (release = r));
  const clients = {
    quick: () => sleep(5).then(() => void closed.push("quick")),
    failing: () => Promise.reject(new Error("broken pipe")),
    hung: () => hung,
  };
  // The deadline timer is unref'd (it must not hold a process's exit): keep
  // this test's event loop alive while the hung client waits.
  const keepAlive = setTimeout(() => {}, 10_000);
  const started = performance.now();
  await closeAll(Object.values(clients), (close) => close(), {
    timeoutMs: 200,
    onLate: () => late++,
  });
  const took = performance.now() - started;
  assert.deepEqual(closed, ["quick"]);
  assert.equal(late, 1, "the hung client, once");
  assert.ok(took >= 190, `close returned at the deadline, not before (${took.toFixed(0)} ms)`);
  // The quick and failing clients' deadlines were cancelled: nothing more comes.
  await sleep(300);
  assert.equal(late, 1);
  release();
  clearTimeout(keepAlive);
});

Deno.test("closeAll: clients that close in time are never reported, and no deadline timer outlives the close", async () => {
  let late = 0;
  await closeAll([1, 2, 3], () => sleep(5), { timeoutMs: 100, onLate: () => late++ });
  // Past the deadline: a timer left behind would report here (and the test's
  // sanitizer would flag it as a timer never cleared).
  await sleep(200);
  assert.equal(late, 0);
});
