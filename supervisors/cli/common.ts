/**
 * Shared pieces of the CLI: the command shape, usage errors, strict option
 * parsing, and the client that talks to a running instance over HTTP.
 * Each command has its file in this folder and is registered in `mod.ts`.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** A usage error: printed with the command's help, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** One CLI command. `run` returns the exit code. */
export interface Command {
  summary: string;
  usage: string;
  run(args: string[]): Promise<number>;
}

type OptionDefs = Record<
  string,
  { type: "string" | "boolean"; short?: string; multiple?: boolean }
>;

/** Parses options strictly: unknown options are usage errors. */
export function parseOptions<T extends OptionDefs>(args: string[], options: T) {
  try {
    return parseArgs({
      args,
      options: { ...options, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/** Base URL of the running instance: `$SLUICE_URL`, else loopback on `$SLUICE_HTTP_PORT`. */
export function instanceUrl(): string {
  const url = Deno.env.get("SLUICE_URL");
  if (url) return url.replace(/\/$/, "");
  return `http://127.0.0.1:${Deno.env.get("SLUICE_HTTP_PORT") ?? "9090"}`;
}

/** An error answered by the running instance, or the instance not answering. */
export class InstanceError extends Error {
  constructor(message: string, readonly status?: number, readonly code?: string) {
    super(message);
    this.name = "InstanceError";
  }
}

/**
 * Calls the running instance and returns its JSON answer. Sends
 * `$SLUICE_CONTROL_TOKEN` as bearer token when set.
 *
 * @throws {InstanceError} when it cannot be reached or answers an error.
 */
export async function callInstance(
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const token = Deno.env.get("SLUICE_CONTROL_TOKEN");
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  // Every call but a read says JSON: without a token sluice refuses anything else (browser guard).
  if (body !== undefined || (method !== "GET" && method !== "HEAD")) {
    headers["content-type"] = "application/json";
  }
  const url = `${instanceUrl()}${path}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    throw new InstanceError(
      `cannot reach sluice at ${instanceUrl()}: ${
        e instanceof Error ? e.message : e
      } (is it running? set SLUICE_URL)`,
    );
  }
  const text = await res.text();
  let json: unknown = text;
  try {
    json = text === "" ? null : JSON.parse(text);
  } catch {
    // Not JSON: keep the text.
  }
  if (!res.ok) {
    const err = (json as { error?: { code?: string; message?: string } })?.error;
    throw new InstanceError(
      `${method} ${path}: ${res.status} ${err?.code ?? ""} ${err?.message ?? text}`.trim(),
      res.status,
      err?.code,
    );
  }
  return json;
}

/**
 * Text safe to print on an operator's terminal: every C0 and C1 control
 * character and DEL (escape sequences, NUL, carriage returns, bidi-free) is
 * shown as a visible escape (`\x1b`, `\x00`), so data taken from records
 * cannot drive the terminal. `keepNewlines` leaves `\n` as is (multi-line output).
 */
export function terminalSafe(text: string, keepNewlines = false): string {
  return text.replace(
    // deno-lint-ignore no-control-regex
    /[\u0000-\u001f\u007f-\u009f]/g,
    (ch) =>
      keepNewlines && ch === "\n" ? ch : `\\x${ch.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/** JSON for a terminal: as `JSON.stringify`, with C1 controls and DEL escaped too (`\u009b`). */
export function terminalJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    /[\u007f-\u009f]/g,
    (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}
