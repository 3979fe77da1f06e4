/**
 * The audit uploader's lifecycle machine (`machines/audit_uploader.ts`):
 * uploading ⇄ degraded on upload failures and successes, draining, stopped;
 * the context counters.
 */
import assert from "node:assert/strict";
import { createActor } from "xstate";
import { auditUploaderMachine, uploaderStateName } from "../../machines/audit_uploader.ts";

function start() {
  const actor = createActor(auditUploaderMachine);
  actor.start();
  const state = () => uploaderStateName(actor.getSnapshot().value);
  const ctx = () => actor.getSnapshot().context;
  return { actor, state, ctx };
}

Deno.test("auditUploaderMachine starts uploading with empty counters", () => {
  const { actor, state, ctx } = start();
  assert.equal(state(), "uploading");
  assert.deepEqual(actor.getSnapshot().value, { running: "uploading" });
  assert.deepEqual(ctx(), { failures: 0, lastError: null, uploads: 0 });
  actor.send({ type: "UPLOAD_OK" });
  actor.send({ type: "UPLOAD_OK" });
  assert.equal(state(), "uploading");
  assert.deepEqual(ctx(), { failures: 0, lastError: null, uploads: 2 });
  actor.stop();
});

Deno.test("auditUploaderMachine goes degraded on UPLOAD_FAILED, counts failures, and back to uploading on UPLOAD_OK", () => {
  const { actor, state, ctx } = start();
  actor.send({ type: "UPLOAD_OK" });
  actor.send({ type: "UPLOAD_FAILED", error: "connect ECONNREFUSED" });
  assert.equal(state(), "degraded");
  assert.deepEqual(ctx(), { failures: 1, lastError: "connect ECONNREFUSED", uploads: 1 });
  actor.send({ type: "UPLOAD_FAILED", error: "503 Slow Down" });
  actor.send({ type: "UPLOAD_FAILED", error: "still down" });
  assert.equal(state(), "degraded");
  assert.equal(ctx().failures, 3);
  assert.equal(ctx().lastError, "still down");
  actor.send({ type: "UPLOAD_OK" });
  assert.equal(state(), "uploading");
  assert.deepEqual(ctx(), { failures: 0, lastError: null, uploads: 2 });
  // Failures count again from zero after a success.
  actor.send({ type: "UPLOAD_FAILED", error: "again" });
  assert.equal(state(), "degraded");
  assert.equal(ctx().failures, 1);
  actor.stop();
});

Deno.test("auditUploaderMachine drains on DRAIN (from uploading or degraded), still counting, and STOPPED is final", () => {
  for (const from of ["uploading", "degraded"]) {
    const { actor, state, ctx } = start();
    if (from === "degraded") actor.send({ type: "UPLOAD_FAILED", error: "down" });
    assert.equal(state(), from);
    actor.send({ type: "DRAIN" });
    assert.equal(state(), "draining");
    actor.send({ type: "UPLOAD_FAILED", error: "down while draining" });
    assert.equal(state(), "draining");
    assert.equal(ctx().lastError, "down while draining");
    assert.equal(ctx().failures, from === "degraded" ? 2 : 1);
    actor.send({ type: "UPLOAD_OK" });
    assert.equal(state(), "draining");
    assert.equal(ctx().failures, 0);
    assert.equal(ctx().uploads, 1);
    actor.send({ type: "DRAIN" });
    assert.equal(state(), "draining");
    actor.send({ type: "STOPPED" });
    assert.equal(state(), "stopped");
    assert.equal(actor.getSnapshot().status, "done");
    // A final state ignores everything after.
    actor.send({ type: "UPLOAD_OK" });
    actor.send({ type: "DRAIN" });
    assert.equal(state(), "stopped");
    assert.equal(ctx().uploads, 1);
  }
});

Deno.test("auditUploaderMachine stops directly from uploading or degraded", () => {
  for (const failures of [0, 2]) {
    const { actor, state, ctx } = start();
    for (let i = 0; i < failures; i++) actor.send({ type: "UPLOAD_FAILED", error: `e${i}` });
    actor.send({ type: "STOPPED" });
    assert.equal(state(), "stopped");
    assert.equal(actor.getSnapshot().status, "done");
    assert.equal(ctx().failures, failures);
  }
  assert.equal(uploaderStateName("stopped"), "stopped");
  assert.equal(uploaderStateName({ running: "degraded" }), "degraded");
});
