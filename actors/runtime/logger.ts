/**
 * Structured logger on stderr: one JSON object per line, or a human-readable
 * line. Level and format come from `SLUICE_LOG_LEVEL` and `SLUICE_LOG_FORMAT`
 * through {@link configureLog}; format `auto` (the default) is human-readable
 * when stderr is a terminal and JSON otherwise (files, pipes, journald,
 * containers).
 *
 * Repeated warnings and errors are rate-limited: the same component, level
 * and message print at most {@link REPEAT_BURST} times per
 * {@link REPEAT_WINDOW_MS}; the rest are counted, and the next line of that
 * kind (or a periodic sweep) says how many were suppressed (`suppressed=N`).
 * A broker outage thus logs a few lines every 10 s instead of hundreds.
 * Debug and info lines are never suppressed.
 *
 * @module
 */

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
/** Log formats; `auto` resolves at {@link configureLog} from `Deno.stderr.isTerminal()`. */
export type LogFormat = "json" | "pretty" | "auto";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Same warning/error lines printed per window before the rest are counted instead. */
export const REPEAT_BURST = 3;
/** Window of the repeated-line limit (ms). */
export const REPEAT_WINDOW_MS = 10_000;
import { redactText } from "./redact.ts";

let minLevel: LogLevel = "info";
let testSink: ((line: string, level: LogLevel) => void) | undefined;

/** Tests: sends every log line (already formatted and redacted) to `fn` instead of stderr; none restores. */
export function setLogSink(fn?: (line: string, level: LogLevel) => void): void {
  testSink = fn;
}
let format: "json" | "pretty" = "json";
let sink: (line: string) => void = writeStderr;
const encoder = new TextEncoder();

function writeStderr(line: string): void {
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // stderr closed: nothing sensible left to do with a log line.
  }
}

function stderrIsTerminal(): boolean {
  try {
    return Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/** Resolves `auto` to `pretty` on a terminal, `json` otherwise. */
export function resolveLogFormat(f: LogFormat, isTerminal = stderrIsTerminal()): "json" | "pretty" {
  if (f === "auto") return isTerminal ? "pretty" : "json";
  return f;
}

/** Sets the level and format for every logger; `sink` replaces stderr (tests). */
export function configureLog(
  opts: { level?: LogLevel; format?: LogFormat; sink?: (line: string) => void },
): void {
  if (opts.level) minLevel = opts.level;
  if (opts.format) format = resolveLogFormat(opts.format);
  if (opts.sink) sink = opts.sink;
}

/** The format in force (`auto` already resolved). */
export function logFormat(): "json" | "pretty" {
  return format;
}

/** A logger bound to one component name. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

interface Repeat {
  windowStart: number;
  printed: number;
  suppressed: number;
  level: LogLevel;
  component: string;
  msg: string;
}
const repeats = new Map<string, Repeat>();
let sweeper: ReturnType<typeof setInterval> | undefined;

/** Reports suppressed counts of windows that ended, and forgets quiet keys. */
function sweep(force = false): void {
  const now = Date.now();
  for (const [key, r] of repeats) {
    if (!force && now - r.windowStart < REPEAT_WINDOW_MS) continue;
    if (r.suppressed > 0) {
      emit(r.level, r.component, `${r.msg} (repeated)`, {
        suppressed: r.suppressed,
        window_s: REPEAT_WINDOW_MS / 1000,
      });
      r.suppressed = 0;
      r.printed = 0;
      r.windowStart = now;
    } else repeats.delete(key);
  }
  if (repeats.size === 0 && sweeper !== undefined) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

/** True when the line may print; counts it otherwise. Adds `suppressed` to `fields` when due. */
function admit(
  level: LogLevel,
  component: string,
  msg: string,
  fields: Record<string, unknown> | undefined,
): { ok: boolean; fields?: Record<string, unknown> } {
  if (ORDER[level] < ORDER.warn) return { ok: true, fields };
  const key = `${level}\u0000${component}\u0000${msg}`;
  const now = Date.now();
  let r = repeats.get(key);
  if (!r) {
    r = { windowStart: now, printed: 0, suppressed: 0, level, component, msg };
    repeats.set(key, r);
    if (sweeper === undefined) {
      const timer = setInterval(() => sweep(), REPEAT_WINDOW_MS);
      Deno.unrefTimer(timer);
      sweeper = timer;
    }
  }
  if (now - r.windowStart >= REPEAT_WINDOW_MS) {
    const suppressed = r.suppressed;
    r.windowStart = now;
    r.printed = 1;
    r.suppressed = 0;
    return {
      ok: true,
      fields: suppressed > 0 ? { ...fields, suppressed_before: suppressed } : fields,
    };
  }
  if (r.printed < REPEAT_BURST) {
    r.printed++;
    return { ok: true, fields };
  }
  r.suppressed++;
  return { ok: false };
}

function emit(level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>) {
  const ts = new Date().toISOString();
  let line: string;
  if (format === "json") {
    line = JSON.stringify({ ts, level, component, msg, ...fields }, errorReplacer);
  } else {
    const extra = fields && Object.keys(fields).length > 0
      ? " " +
        Object.entries(fields).map(([k, v]) =>
          `${k}=${typeof v === "string" ? v : JSON.stringify(v, errorReplacer)}`
        ).join(" ")
      : "";
    // Time of day in UTC is enough on a terminal; JSON keeps the full timestamp.
    line = `${ts.slice(11, 23)}Z ${level.toUpperCase().padEnd(5)} [${component}] ${msg}${extra}`;
  }
  line = redactText(line);
  if (testSink) return testSink(line, level);
  sink(line);
}

function write(level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>) {
  if (ORDER[level] < ORDER[minLevel]) return;
  const admitted = admit(level, component, msg, fields);
  if (!admitted.ok) return;
  emit(level, component, msg, admitted.fields);
}

/** Prints the pending `suppressed` counts now (tests, and before exit). */
export function flushRepeatedLogs(): void {
  sweep(true);
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message };
  if (typeof value === "bigint") return value.toString();
  return value;
}

/** Returns a logger for `component`. */
export function logger(component: string): Logger {
  return {
    debug: (m, f) => write("debug", component, m, f),
    info: (m, f) => write("info", component, m, f),
    warn: (m, f) => write("warn", component, m, f),
    error: (m, f) => write("error", component, m, f),
  };
}
