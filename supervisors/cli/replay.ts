/**
 * CLI of the replay driver and the dead-letter store (registered in
 * `supervisors/cli/mod.ts`), talking to a running instance over HTTP:
 *
 * ```
 * sluice replay --topic T --from TIME --to TIME [--rate N] [--partitions 0,1] [--detach]
 * sluice replay status ID | sluice replay cancel ID
 * sluice dlq list [--topic T] [--reason R] [--from TIME] [--to TIME] [--limit N] [--cursor C] [--json]
 * sluice dlq replay --id ID
 * sluice dlq replay [--topic T] [--reason R] [--from TIME] [--to TIME] [--rate N]   (bulk)
 * sluice dlq replay --all                      (every dead letter; bare: asks on a terminal)
 * ```
 *
 * Times are ISO 8601, `now`, or `now-15m` / `now-2h` / `now-1d`.
 *
 * While a replay runs, a progress bar goes to stderr: rewritten in place on a
 * terminal, one line per second otherwise (logs, CI). Ctrl-C cancels the
 * replay (`DELETE /control/replay/:id`), prints the partial counts and exits
 * 130. Exit codes: 0 done; 1 failed, cancelled or instance error (with a
 * message); 2 usage error.
 *
 * @module
 */
import { parseTime } from "../../actors/audit/report.ts";
import {
  callInstance,
  type Command,
  parseOptions,
  terminalJson,
  terminalSafe,
  UsageError,
} from "./common.ts";

/** The fields of a progress answer the CLI shows. */
interface Progress {
  id: string;
  state: string;
  topic: string;
  total: number | null;
  scanned: number;
  delivered: number;
  skipped_duplicate: number;
  dead_lettered: number;
  outside_window?: number;
  rate_actual: number;
  eta_s: number | null;
  elapsed_s: number;
  error: string | null;
  pause_reasons?: string[];
}

const FINAL = new Set(["done", "cancelled", "failed"]);

/** One progress line: bar, counts, rate, ETA. */
export function formatProgress(p: Progress, width = 24): string {
  const handled = p.scanned + (p.outside_window ?? 0);
  const frac = p.total ? Math.min(1, handled / p.total) : p.state === "done" ? 1 : 0;
  const filled = Math.round(frac * width);
  const bar = `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  const eta = p.eta_s === null ? "?" : `${p.eta_s}s`;
  const paused = p.state === "paused" && p.pause_reasons?.length
    ? ` (${p.pause_reasons.join(",")})`
    : "";
  return `${p.state}${paused} ${bar} ${pct} ${handled}/${
    p.total ?? "?"
  }  delivered ${p.delivered}` +
    `  skipped ${p.skipped_duplicate}  dead-lettered ${p.dead_lettered}` +
    `  ${p.rate_actual}/s  eta ${eta}`;
}

/** The final line of a replay. */
export function formatSummary(p: Progress): string {
  return `replay ${p.id} ${p.state}: ${p.scanned} scanned, ${p.delivered} delivered, ` +
    `${p.skipped_duplicate} skipped (already delivered), ${p.dead_lettered} dead-lettered` +
    `${p.outside_window ? `, ${p.outside_window} outside the window` : ""} in ${p.elapsed_s} s` +
    (p.error ? ` (error: ${p.error})` : "");
}

const encoder = new TextEncoder();

/**
 * Follows replay `id` until it ends, drawing the progress on stderr; Ctrl-C
 * cancels it. Returns the exit code.
 */
export async function followReplay(
  id: string,
  opts: { intervalMs?: number; json?: boolean } = {},
): Promise<number> {
  const tty = Deno.stderr.isTerminal();
  const path = `/control/replay/${encodeURIComponent(id)}`;
  let interrupted = false;
  const wake = Promise.withResolvers<void>();
  const onSigint = () => {
    interrupted = true;
    wake.resolve();
  };
  Deno.addSignalListener("SIGINT", onSigint);
  let lastLine = 0;
  const draw = (p: Progress, force = false) => {
    const line = formatProgress(p);
    if (tty) {
      Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${line}`));
    } else if (force || Date.now() - lastLine >= 1000) {
      lastLine = Date.now();
      Deno.stderr.writeSync(encoder.encode(`${line}\n`));
    }
  };
  try {
    let p = await callInstance("GET", path) as Progress;
    draw(p, true);
    while (!FINAL.has(p.state) && !interrupted) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((r) => (timer = setTimeout(r, opts.intervalMs ?? 250))),
        wake.promise,
      ]);
      clearTimeout(timer);
      if (interrupted) break;
      p = await callInstance("GET", path) as Progress;
      draw(p);
    }
    if (interrupted) {
      if (tty) Deno.stderr.writeSync(encoder.encode("\n"));
      console.error(`sluice replay: interrupted: cancelling ${id}`);
      p = await callInstance("DELETE", path) as Progress;
    }
    draw(p, true);
    if (tty) Deno.stderr.writeSync(encoder.encode("\n"));
    console.log(opts.json ? JSON.stringify(p, null, 2) : formatSummary(p));
    if (interrupted) return 130;
    if (p.state === "done") return 0;
    console.error(
      `sluice replay: replay ${id} ${p.state}${p.error ? `: ${p.error}` : ""}`,
    );
    return 1;
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

function time(v: string | undefined, option: string): string | undefined {
  return v === undefined ? undefined : parseTime(v, option).toISOString();
}

function rate(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--rate: must be a number > 0, got ${v}`);
  return n;
}

/** `sluice replay`. */
export const replayCommand: Command = {
  summary: "Replay a time window of a topic at a controlled rate (progress bar; Ctrl-C cancels)",
  usage: [
    "Usage: sluice replay --topic T --from TIME --to TIME [--rate N] [--partitions 0,1] [--detach]",
    "       sluice replay status ID [--json]",
    "       sluice replay cancel ID",
    "",
    "  --topic T          Topic to replay",
    "  --from TIME        Window start, inclusive (record timestamps)",
    "  --to TIME          Window end, exclusive",
    "  --rate N           Records per second (default: SLUICE_REPLAY_RATE of the instance, 100)",
    "  --partitions LIST  Only these partitions (comma-separated)",
    "  --detach           Print the replay id and return at once",
    "  --json             Print the final progress as JSON",
    "",
    "TIME: ISO 8601 (2025-01-31T10:00:00Z), now, or now-15m / now-2h / now-1d.",
    "Records whose idempotency key was already delivered are skipped and counted.",
    "The live consumer group's offsets are not touched. Ctrl-C cancels the replay.",
    "Exit: 0 done, 1 failed/cancelled/error, 2 usage, 130 interrupted.",
  ].join("\n"),
  async run(args) {
    const { values, positionals } = parseOptions(args, {
      topic: { type: "string" },
      from: { type: "string" },
      to: { type: "string" },
      rate: { type: "string" },
      partitions: { type: "string" },
      detach: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (positionals[0] === "status" || positionals[0] === "cancel") {
      const id = positionals[1];
      if (!id || positionals.length > 2) throw new UsageError(`${positionals[0]} needs one ID`);
      const path = `/control/replay/${encodeURIComponent(id)}`;
      const p = await callInstance(
        positionals[0] === "status" ? "GET" : "DELETE",
        path,
      ) as Progress;
      console.log(values.json ? JSON.stringify(p, null, 2) : formatSummary(p));
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
    if (!values.topic) throw new UsageError("--topic is required");
    if (!values.from) throw new UsageError("--from is required");
    if (!values.to) throw new UsageError("--to is required");
    const body: Record<string, unknown> = {
      topic: values.topic,
      from: time(values.from, "--from"),
      to: time(values.to, "--to"),
    };
    const r = rate(values.rate);
    if (r !== undefined) body.rate = r;
    if (values.partitions !== undefined) {
      const ps = values.partitions.split(",").map((s) => s.trim());
      if (ps.some((s) => !/^\d+$/.test(s))) {
        throw new UsageError(`--partitions: expected numbers like 0,1, got ${values.partitions}`);
      }
      body.partitions = ps.map(Number);
    }
    const started = await callInstance("POST", "/control/replay", body) as { id: string };
    console.error(`replay ${started.id} started`);
    if (values.detach) {
      console.log(started.id);
      return 0;
    }
    return await followReplay(started.id, { json: values.json });
  },
};

interface DlqItem {
  id: string;
  timestamp: string;
  original_topic: string;
  failure_reason: string;
  error_message: string;
  retry_count: number;
  is_reprocessed: boolean;
  /** The original record was delivered since (any replay, or consumed again). */
  delivered_since?: boolean;
}

/** The dead letters as a text table. */
export function formatDlqTable(items: DlqItem[]): string {
  if (items.length === 0) return "(no dead letters)";
  // Every cell comes from records (a hostile producer's bytes): escaped for the terminal.
  const rows = items.map((d) =>
    [
      d.id,
      d.timestamp,
      d.failure_reason,
      String(d.retry_count),
      d.delivered_since ? "yes" : "no",
      d.error_message.length > 60 ? `${d.error_message.slice(0, 57)}...` : d.error_message,
    ].map((c) => terminalSafe(String(c ?? "")))
  );
  const head = ["ID", "DEAD-LETTERED", "REASON", "RETRIES", "DELIVERED-SINCE", "MESSAGE"];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

/** Dead letters of every consumed topic, as text: `12`, or `1000+` past one page. */
async function countDeadLetters(): Promise<string> {
  const page = await callInstance("GET", "/dlq?limit=1000") as {
    items: unknown[];
    next_cursor?: string;
  };
  return page.next_cursor ? `${page.items.length}+` : String(page.items.length);
}

/** Asks a yes/no question on the terminal; true only for y or yes. */
async function confirm(question: string): Promise<boolean> {
  Deno.stderr.writeSync(new TextEncoder().encode(question));
  const buf = new Uint8Array(256);
  const n = await Deno.stdin.read(buf);
  const answer = n === null ? "" : new TextDecoder().decode(buf.subarray(0, n)).trim();
  return /^(y|yes)$/i.test(answer);
}

/** `sluice dlq`. */
export const dlqCommand: Command = {
  summary: "List dead letters, replay one by id, or replay many by reason and time",
  usage: [
    "Usage: sluice dlq list [--topic T] [--reason R] [--from TIME] [--to TIME] [--limit N] [--cursor C] [--json]",
    "       sluice dlq replay --id ID [--json]",
    "       sluice dlq replay [--topic T] [--reason R] [--from TIME] [--to TIME] [--rate N] [--detach]",
    "       sluice dlq replay --all [--rate N] [--detach]",
    "",
    "  --topic T    Original topic (default: every consumed topic)",
    "  --reason R   DESERIALIZATION_ERROR, VALIDATION_ERROR, PROCESSING_ERROR, TIMEOUT_ERROR,",
    "               CIRCUIT_OPEN or UNKNOWN_ERROR",
    "  --from/--to  When the record was dead-lettered (ISO 8601, now, now-15m)",
    "  --limit N    Page size, 1..1000 (default 100); --cursor C: the next page",
    "  --id ID      Dead letter id (topic:partition:offset of the original record)",
    "",
    "Replaying re-delivers the original payload through the breaker and the audit trail.",
    "A record already delivered is not sent again: the answer says already_delivered.",
    "Without --id, replay runs as a job with a progress bar (Ctrl-C cancels it).",
    "Without --id and without a filter it needs --all (on a terminal it asks instead).",
  ].join("\n"),
  async run(args) {
    const { values, positionals } = parseOptions(args, {
      topic: { type: "string" },
      reason: { type: "string" },
      from: { type: "string" },
      to: { type: "string" },
      limit: { type: "string" },
      cursor: { type: "string" },
      id: { type: "string" },
      rate: { type: "string" },
      all: { type: "boolean" },
      detach: { type: "boolean" },
      json: { type: "boolean" },
    });
    const [sub, ...rest] = positionals;
    if (rest.length > 0) throw new UsageError(`unexpected argument: ${rest[0]}`);
    if (sub === "list") {
      const q = new URLSearchParams();
      if (values.topic) q.set("topic", values.topic);
      if (values.reason) q.set("reason", values.reason);
      if (values.from) q.set("from", time(values.from, "--from")!);
      if (values.to) q.set("to", time(values.to, "--to")!);
      if (values.limit) q.set("limit", values.limit);
      if (values.cursor) q.set("cursor", values.cursor);
      const qs = q.toString();
      const page = await callInstance("GET", `/dlq${qs ? `?${qs}` : ""}`) as {
        items: DlqItem[];
        next_cursor?: string;
      };
      if (values.json) {
        console.log(terminalJson(page));
      } else {
        console.log(formatDlqTable(page.items));
        if (page.next_cursor) {
          console.log(`\nmore: sluice dlq list --cursor ${terminalSafe(page.next_cursor)}`);
        }
      }
      return 0;
    }
    if (sub === "replay") {
      if (values.id !== undefined) {
        const res = await callInstance(
          "POST",
          `/dlq/${encodeURIComponent(values.id)}/replay`,
        ) as Record<string, unknown>;
        if (values.json) console.log(JSON.stringify(res, null, 2));
        else if (res.status === "delivered") {
          console.log(`${values.id}: delivered (upstream status ${res.upstream_status})`);
        } else if (res.status === "already_delivered") {
          console.log(`${values.id}: already delivered; nothing sent`);
        } else {
          console.log(
            `${values.id}: ${res.status}: ${res.failure_reason ?? ""} ${res.error_message ?? ""}`
              .trim(),
          );
        }
        return res.status === "dead_lettered" ? 1 : 0;
      }
      const filtered = values.topic !== undefined || values.reason !== undefined ||
        values.from !== undefined || values.to !== undefined;
      if (!filtered && !values.all) {
        // Every dead letter of every topic is a big decision: say it, or confirm it.
        const count = await countDeadLetters();
        const question = `Replay all ${count} dead letters of every topic? [y/N] `;
        if (!Deno.stdin.isTerminal() || !Deno.stderr.isTerminal()) {
          throw new UsageError(
            `no --id and no filter: this would replay all ${count} dead letters of every topic; ` +
              "add --all to mean it, or narrow it with --topic, --reason, --from, --to",
          );
        }
        if (!(await confirm(question))) {
          console.error("Nothing replayed");
          return 1;
        }
      }
      const body: Record<string, unknown> = {};
      if (values.topic) body.topic = values.topic;
      if (values.reason) body.reason = values.reason;
      if (values.from) body.from = time(values.from, "--from");
      if (values.to) body.to = time(values.to, "--to");
      const r = rate(values.rate);
      if (r !== undefined) body.rate = r;
      const started = await callInstance("POST", "/dlq/replay", body) as { id: string };
      console.error(`dead-letter replay ${started.id} started`);
      if (values.detach) {
        console.log(started.id);
        return 0;
      }
      return await followReplay(started.id, { json: values.json });
    }
    throw new UsageError(sub ? `unknown subcommand: ${sub}` : "missing subcommand: list or replay");
  },
};
