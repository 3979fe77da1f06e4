/**
 * CLI commands that talk to a running instance over HTTP: `status`, `drain`,
 * `resume`, `inspect`. `main.ts` registers them. An unreachable instance
 * surfaces as `InstanceError` (main prints it and exits 1).
 *
 * @module
 */
import { callInstance, type Command, parseOptions, UsageError } from "../supervisors/cli.ts";
import type { ActorNode, ActorTree } from "./inspector.ts";

function noPositionals(positionals: string[]): void {
  if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
}

function value(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** Formats the answer of `GET /status` for a terminal. */
export function formatStatus(s: Record<string, unknown>): string {
  const lines = [`sluice: ${s.state ?? "unknown"} (${s.ready ? "ready" : "NOT READY"})`];
  const checks = (s.checks ?? {}) as Record<string, { ok: boolean; detail?: string }>;
  const names = Object.keys(checks);
  if (names.length > 0) {
    lines.push("checks:");
    const w = Math.max(...names.map((n) => n.length));
    for (const n of names) {
      const c = checks[n];
      lines.push(`  ${c.ok ? "ok  " : "FAIL"}  ${n.padEnd(w)}${c.detail ? `  ${c.detail}` : ""}`);
    }
  }
  const skip = new Set(["state", "ready", "checks", "partitions"]);
  const rest = Object.entries(s).filter(([k]) => !skip.has(k));
  if (rest.length > 0) {
    const w = Math.max(...rest.map(([k]) => k.length));
    for (const [k, v] of rest) lines.push(`${k.padEnd(w)}  ${value(v)}`);
  }
  const parts = s.partitions as Array<Record<string, unknown>> | undefined;
  if (Array.isArray(parts) && parts.length > 0) {
    lines.push("partitions:");
    for (const p of parts) {
      const extra = Object.entries(p).filter(([k]) => !["topic", "partition", "state"].includes(k))
        .map(([k, v]) => `${k}=${value(v)}`).join(" ");
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
