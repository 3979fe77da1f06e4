import assert from "node:assert/strict";
import { FailureCollector, signalSummary } from "../harness/test_output.ts";

Deno.test("the runner's failure summary names each failed test once, with its error line", () => {
  const esc = String.fromCharCode(27);
  const out = [
    "running 2 tests from ./tests/infra/x_test.ts",
    "a ... ok (1s)",
    "b ... FAILED (2s)",
    "",
    ` ${esc}[0m${esc}[1m${esc}[37m${esc}[41m ERRORS ${esc}[0m`,
    "",
    `b => ./tests/infra/x_test.ts:96:6`,
    `${esc}[0m${esc}[1m${esc}[31merror${esc}[0m: Error: consumption to resume after stop 2 (SIGKILL): timed out`,
    "--- sluice output ---",
    "    at waitFor (file:///x/tests/harness/procs.ts:10:5)",
    "c => ./tests/infra/y_test.ts:3:6",
    "",
    "",
    "",
    "error: a later, unrelated line",
    "",
    " FAILURES ",
    "",
    "b => ./tests/infra/x_test.ts:96:6",
    "c => ./tests/infra/y_test.ts:3:6",
  ];
  const f = new FailureCollector();
  for (const l of out) f.line(l);
  assert.deepEqual(f.summaries(), [
    "b => ./tests/infra/x_test.ts:96:6\n      error: Error: consumption to resume after stop 2 (SIGKILL): timed out",
    "c => ./tests/infra/y_test.ts:3:6",
  ]);
});

Deno.test("a signal fails an interrupted run, but ends a held infrastructure cleanly", () => {
  assert.deepEqual(signalSummary(false, 0), { line: "0 passed, 1 failed", code: 130 });
  assert.deepEqual(signalSummary(false, 2), { line: "0 passed, 1 failed", code: 130 });
  assert.deepEqual(signalSummary(true, 0), { line: "held infrastructure stopped", code: 0 });
  assert.deepEqual(signalSummary(true, 1), {
    line: "held infrastructure: 1 processes could not be stopped",
    code: 1,
  });
});
