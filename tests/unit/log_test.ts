/**
 * actors/runtime/logger.ts: the `auto` format and the limit on repeated warnings.
 */
import assert from "node:assert/strict";
import {
  configureLog,
  flushRepeatedLogs,
  logger,
  REPEAT_BURST,
  resolveLogFormat,
} from "../../actors/runtime/logger.ts";

function capture(): { lines: string[]; restore(): void } {
  const lines: string[] = [];
  configureLog({ format: "json", level: "info", sink: (l) => lines.push(l) });
  return {
    lines,
    restore: () => {
      flushRepeatedLogs();
      configureLog({
        format: "json",
        sink: (l) => Deno.stderr.writeSync(new TextEncoder().encode(l + "\n")),
      });
    },
  };
}

Deno.test("resolveLogFormat: auto is pretty on a terminal and JSON elsewhere; explicit wins", () => {
  assert.equal(resolveLogFormat("auto", true), "pretty");
  assert.equal(resolveLogFormat("auto", false), "json");
  assert.equal(resolveLogFormat("json", true), "json");
  assert.equal(resolveLogFormat("pretty", false), "pretty");
});

Deno.test("logger: 300 identical warnings in a burst print a few lines and then one count", () => {
  const c = capture();
  try {
    const log = logger("kafka-test");
    for (let i = 0; i < 300; i++) {
      log.warn("Connection error: connect ECONNREFUSED", { broker: "127.0.0.1:9", retry: i });
    }
    assert.equal(c.lines.length, REPEAT_BURST, c.lines.join("\n"));
    flushRepeatedLogs();
    assert.equal(c.lines.length, REPEAT_BURST + 1);
    const summary = JSON.parse(c.lines.at(-1)!);
    assert.equal(summary.msg, "Connection error: connect ECONNREFUSED (repeated)");
    assert.equal(summary.suppressed, 300 - REPEAT_BURST);
    assert.equal(summary.level, "warn");
  } finally {
    c.restore();
  }
});

Deno.test("logger: different messages, info lines and debug lines are not suppressed", () => {
  const c = capture();
  try {
    const log = logger("other");
    for (let i = 0; i < 20; i++) log.info("record", { i });
    for (let i = 0; i < 5; i++) log.warn(`distinct warning ${i}`);
    assert.equal(c.lines.length, 25);
  } finally {
    c.restore();
  }
});
