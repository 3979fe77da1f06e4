/**
 * CLI commands that talk to a running instance over HTTP: `status`, `drain`,
 * `resume`, `inspect`. `mod.ts` registers them. An unreachable instance
 * surfaces as `InstanceError` (main prints it and exits 1).
 *
 * @module
 */
import { callInstance, type Command, parseOptions, UsageError } from "./common.ts";
import type { ActorNode, ActorTree } from "../../http/inspector.ts";

function noPositionals(positionals: string[]): void {
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
}

function value(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

function scalar(v: unknown): string {
  if (v === null || v === undefined) return "–";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return v.length === 0 ? "none" : v.map(scalar).join(", ");
  return Object.entries(v as Record<string, unknown>).map(([k, x]) => `${k}=${scalar(x)}`).join(
    " ",
  );
}

/** `key  value` lines of an object, nested objects as indented blocks (never JSON). */
function block(obj: Record<string, unknown>, indent: string): string[] {
  const entries = Object.entries(obj).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return [];
  const w = Math.max(...entries.map(([k]) => k.length));
  const lines: string[] = [];
  for (const [k, v] of entries) {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      lines.push(`${indent}${k}:`);
      lines.push(...block(v as Record<string, unknown>, indent + "  "));
    } else lines.push(`${indent}${k.padEnd(w)}  ${scalar(v)}`);
  }
  return lines;
}

/** Formats the answer of `GET /status` for a terminal: readable lines, no JSON. */
export function formatStatus(s: Record<string, unknown>): string {
  const lines = [`sluice: ${s.state ?? "unknown"} (${s.ready ? "ready" : "NOT READY"})`];
  const checks = (s.checks ?? {}) as Record<string, { ok: boolean; detail?: string }>;
  const names = Object.keys(checks);
  if (names.length > 0) {
    lines.push("checks:");
    const w = Math.max(...names.map((n) => n.length));
    for (const n of names) {
      const c = checks[n];
      lines.push(
        `  ${c.ok ? "ok  " : "FAIL"}  ${n.padEnd(w)}${c.detail ? `  ${c.detail}` : ""}`.trimEnd(),
      );
    }
  }
  const top: Record<string, unknown> = {};
  const skip = new Set(["state", "ready", "checks", "partitions"]);
  for (const [k, v] of Object.entries(s)) {
    if (skip.has(k)) continue;
    if (k === "rate" && v && typeof v === "object") {
      const r = v as { rate?: number; burst?: number };
      top.rate = `${r.rate === 0 ? "unlimited" : `${r.rate}/s`}, burst ${r.burst}`;
    } else if (k === "uptime_s" && typeof v === "number") {
      top.uptime = v < 120
        ? `${v} s`
        : v < 7200
        ? `${Math.floor(v / 60)} min`
        : `${Math.floor(v / 3600)} h ${Math.floor((v % 3600) / 60)} min`;
    } else top[k] = v;
  }
  lines.push(...block(top, ""));
  const parts = s.partitions as Array<Record<string, unknown>> | undefined;
  if (Array.isArray(parts) && parts.length > 0) {
    lines.push("partitions:");
    for (const p of parts) {
      const extra = Object.entries(p).filter(([k]) => !["topic", "partition", "state"].includes(k))
        .map(([k, v]) => `${k}=${scalar(v)}`).join(" ");
      lines.push(`  ${p.topic}:${p.partition}  ${p.state}${extra ? `  ${extra}` : ""}`);
    }
  }
  return lines.join("\n");
}

/** Formats the actor tree as an indented text tree with states. */
export function formatTree(tree: ActorTree): string {
  const lines: string[] = [];
  const summary = (n: ActorNode) => {
    const s = Object.entries(n.summary ?? {}).map(([k, v]) => `${k}=${value(v)}`).join(" ");
    return s ? `  ${s}` : "";
  };
  const walk = (nodes: ActorNode[], prefix: string, top: boolean) => {
    nodes.forEach((n, i) => {
      const last = i === nodes.length - 1;
      const branch = top ? "" : last ? "└─ " : "├─ ";
      lines.push(`${prefix}${branch}${n.id} [${n.state}] (${n.kind})${summary(n)}`);
      walk(n.children ?? [], top ? prefix : prefix + (last ? "   " : "│  "), false);
    });
  };
  walk(tree.roots, "", true);
  if (lines.length === 0) lines.push("(no actors registered)");
  return lines.join("\n");
}

/** `sluice status`. */
export const statusCommand: Command = {
  summary: "Show the state of a running instance",
  usage: [
    "Usage: sluice status [--json]",
    "",
    "  --json  Print the raw JSON answer of GET /status",
    "",
    "Exit code 1 when the instance cannot be reached.",
  ].join("\n"),
  async run(args) {
    const { values, positionals } = parseOptions(args, { json: { type: "boolean" } });
    noPositionals(positionals);
    const s = await callInstance("GET", "/status") as Record<string, unknown>;
    console.log(values.json ? JSON.stringify(s, null, 2) : formatStatus(s));
    return 0;
  },
};

function controlCommand(action: "drain" | "resume", summary: string, done: string): Command {
  return {
    summary,
    usage: [
      `Usage: sluice ${action} [--json]`,
      "",
      "  --json  Print the raw JSON answer",
      "",
      `Calls POST /control/${action} (bearer $SLUICE_CONTROL_TOKEN when set).`,
    ].join("\n"),
    async run(args) {
      const { values, positionals } = parseOptions(args, { json: { type: "boolean" } });
      noPositionals(positionals);
      const res = await callInstance("POST", `/control/${action}`) as {
        status?: Record<string, unknown>;
      };
      if (values.json) console.log(JSON.stringify(res, null, 2));
      else console.log(`${done}: state ${res?.status?.state ?? "unknown"}`);
      return 0;
    },
  };
}

/** `sluice drain`. */
export const drainCommand: Command = controlCommand(
  "drain",
  "Stop fetching and finish in-flight records",
  "Draining",
);

/** `sluice resume`. */
export const resumeCommand: Command = controlCommand(
  "resume",
  "Fetch again after a drain",
  "Resumed",
);

/** `sluice inspect`. */
export const inspectCommand: Command = {
  summary: "Print the actor tree of a running instance",
  usage: [
    "Usage: sluice inspect [--json]",
    "",
    "  --json  Print the raw JSON tree of GET /inspect/actors",
    "",
    "The live view is the /inspect page of the instance.",
  ].join("\n"),
  async run(args) {
    const { values, positionals } = parseOptions(args, { json: { type: "boolean" } });
    noPositionals(positionals);
    const tree = await callInstance("GET", "/inspect/actors") as ActorTree;
    console.log(values.json ? JSON.stringify(tree, null, 2) : formatTree(tree));
    return 0;
  },
};

/** Every command of this module, by name (for `registerCommand`). */
export const httpCommands: Record<string, Command> = {
  status: statusCommand,
  drain: drainCommand,
  resume: resumeCommand,
  inspect: inspectCommand,
};
