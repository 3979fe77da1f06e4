/**
 * Reads `deno test`'s output line by line and keeps, for each failed test,
 * its `name => ./tests/x_test.ts:line:col` header and the first line of its
 * error, so that the runner can end a run with what failed and why: a CI log
 * cut to its tail still says both.
 *
 * deno test prints each failure twice: in the ERRORS section the header is
 * followed by `error: <message>`, in the FAILURES section by nothing.
 *
 * @module
 */

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");
/** A line of deno test's ERRORS/FAILURES summary: `name => ./tests/x_test.ts:12:6`. */
const FAILURE_LINE = /^(.+) => \S+_test\.ts:\d+:\d+$/;
/** How far after its header an `error:` line still belongs to it. */
const REASON_WINDOW = 3;
const REASON_MAX = 400;

/** Collects failed tests and their reasons from deno test's output lines. */
export class FailureCollector {
  #reasons = new Map<string, string>();
  #current: string | undefined;
  #since = 0;

  /** Feeds one output line (ANSI colours allowed). */
  line(raw: string): void {
    const plain = raw.replace(ANSI, "").trim();
    if (FAILURE_LINE.test(plain)) {
      if (!this.#reasons.has(plain)) this.#reasons.set(plain, "");
      this.#current = plain;
      this.#since = 0;
      return;
    }
    if (this.#current === undefined) return;
    this.#since += 1;
    if (plain.startsWith("error:") && this.#reasons.get(this.#current) === "") {
      // The message may span lines; its first line names the assertion.
      this.#reasons.set(this.#current, plain.slice(0, REASON_MAX));
      this.#current = undefined;
    } else if (this.#since >= REASON_WINDOW) {
      this.#current = undefined;
    }
  }

  /** `header` then, indented, `error: ...` when one was seen; in order of first failure. */
  summaries(): string[] {
    return [...this.#reasons].map(([h, r]) => (r ? `${h}\n      ${r}` : h));
  }
}

/**
 * The runner's last line and exit code when a signal stops it. A run of the
 * tests that is interrupted has failed (`0 passed, 1 failed`, 130, as the
 * CI's last line expects); `--hold` ends with Ctrl-C by design, so a held
 * infrastructure stopped cleanly is not a failure (code 0). `left` counts
 * the infrastructure processes that could not be stopped.
 */
export function signalSummary(holding: boolean, left: number): { line: string; code: number } {
  if (!holding) return { line: "0 passed, 1 failed", code: 130 };
  return left === 0
    ? { line: "held infrastructure stopped", code: 0 }
    : { line: `held infrastructure: ${left} processes could not be stopped`, code: 1 };
}
