/**
 * Structured logger: one JSON object per line (default) or a human-readable
 * line, on stderr. Level and format come from `SLUICE_LOG_LEVEL` and
 * `SLUICE_LOG_FORMAT` through {@link configureLog}.
 *
 * @module
 */

/** Log levels, lowest first. */
export type LogLevel = "debug" | "info" | "warn" | "error";
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

import { redactText } from "./redact.ts";

let minLevel: LogLevel = "info";
let sink: ((line: string, level: LogLevel) => void) | undefined;

/** Tests: sends every log line (already formatted and redacted) to `fn` instead of stderr; none restores. */
export function setLogSink(fn?: (line: string, level: LogLevel) => void): void {
  sink = fn;
}
let format: "json" | "pretty" = "json";
const encoder = new TextEncoder();

/** Sets the level and format for every logger. */
export function configureLog(opts: { level?: LogLevel; format?: "json" | "pretty" }): void {
  if (opts.level) minLevel = opts.level;
  if (opts.format) format = opts.format;
}

/** A logger bound to one component name. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function write(level: LogLevel, component: string, msg: string, fields?: Record<string, unknown>) {
  if (ORDER[level] < ORDER[minLevel]) return;
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
    line = `${ts} ${level.toUpperCase().padEnd(5)} [${component}] ${msg}${extra}`;
  }
  line = redactText(line);
  if (sink) return sink(line, level);
  try {
    Deno.stderr.writeSync(encoder.encode(line + "\n"));
  } catch {
    // stderr closed: nothing sensible left to do with a log line.
  }
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
