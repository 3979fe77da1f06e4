/**
 * Every CLI command of sluice, one file per command (or per family of
 * commands), registered here by name; `main.ts` only dispatches.
 *
 *  - `start.ts`: `sluice start`
 *  - `instance.ts`: `status`, `drain`, `resume`, `inspect` (a running instance over HTTP)
 *  - `replay.ts`: `replay`, `dlq`
 *  - `audit.ts`: `audit report`
 *  - `produce.ts`: `produce`
 *  - `common.ts`: option parsing, usage and instance errors, the instance client
 *
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };
import type { Command } from "./common.ts";
import { startCommand } from "./start.ts";
import { httpCommands } from "./instance.ts";
import { produceCommand } from "./produce.ts";
import { auditCommand } from "./audit.ts";
import { dlqCommand, replayCommand } from "./replay.ts";

export * from "./common.ts";

/** The version printed by `--version`. */
export const VERSION: string = denoJson.version;

/** The registered commands, by name. */
export const commands: Record<string, Command> = {};

/** Registers a command (modules of later stages add theirs here). */
export function registerCommand(name: string, command: Command): void {
  commands[name] = command;
}

/** The top-level help: every command with its summary. */
export function topHelp(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  return [
    `sluice ${VERSION}: Kafka to an upstream HTTP service, safely, with an audit trail`,
    "",
    "Usage: sluice <command> [options]",
    "",
    "Commands:",
    ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`),
    "",
    "Options:",
    "  -h, --help     Show help (also after a command: sluice start --help)",
    "  -V, --version  Print the version",
    "",
    "Running instances are reached at $SLUICE_URL (default http://127.0.0.1:$SLUICE_HTTP_PORT),",
    "with $SLUICE_CONTROL_TOKEN as bearer token when set.",
  ].join("\n");
}

registerCommand("start", startCommand);
for (const [name, command] of Object.entries(httpCommands)) registerCommand(name, command);
registerCommand("produce", produceCommand);
registerCommand("audit", auditCommand);
registerCommand("replay", replayCommand);
registerCommand("dlq", dlqCommand);
