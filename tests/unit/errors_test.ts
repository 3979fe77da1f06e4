/**
 * Domain errors (`actors/runtime/errors.ts`) and their one mapping to HTTP
 * statuses (`http/errors.ts`): each kind has one status, the code and message
 * pass through, `retriable` says whether the same call may succeed later.
 */
import assert from "node:assert/strict";
import {
  ConflictError,
  SluiceError,
  TimeoutError,
  UnavailableError,
  UnknownTopicError,
  ValidationError,
} from "../../actors/runtime/errors.ts";
import { HttpError, toHttpError } from "../../http/errors.ts";

Deno.test("each kind of domain error maps to one HTTP status, with its code and message", () => {
  const cases: [SluiceError, number, string, boolean][] = [
    [new ValidationError("bad window"), 422, "validation_error", false],
    [new UnknownTopicError("nope"), 404, "unknown_topic", false],
    [new ConflictError("shutting_down", "Sluice is shutting down"), 409, "shutting_down", false],
    [new UnavailableError("not_ready", "Pipeline not started"), 503, "not_ready", true],
    [new TimeoutError("audit_timeout", "no answer"), 504, "audit_timeout", true],
  ];
  for (const [err, status, code, retriable] of cases) {
    assert.ok(err instanceof SluiceError && err instanceof Error);
    assert.equal(err.retriable, retriable, err.name);
    const h = toHttpError(err);
    assert.ok(h instanceof HttpError, err.name);
    assert.equal(h.status, status, err.name);
    assert.equal(h.code, code, err.name);
    assert.equal(h.message, err.message, err.name);
  }
});

Deno.test("an error that is not a domain error is not mapped (a 500 whose detail stays in the log)", () => {
  assert.equal(toHttpError(new Error("boom")), undefined);
});
