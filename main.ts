/**
 * sluice: entry point and CLI. The same file runs as `deno task start`, as
 * the bundled single file and as the compiled binary.
 *
 * ```
 * sluice start [--print-config]
 * sluice status | drain | resume | inspect        (talk to a running instance)
 * sluice replay --topic T --from TIME --to TIME [--rate N]
 * sluice dlq list | dlq replay --id ID
 * sluice audit report --from TIME --to TIME [--trace-id X] [--format md|json]
 * sluice produce --topic T --rate N --count N
 * ```
 *
 * Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error,
 * 3 forced shutdown (second signal).
 *
 * @module
 */
import { CONFIG_SCHEMA, ConfigError, describeConfig, loadConfig } from "./supervisors/config.ts";
import { type Command, InstanceError, parseOptions, UsageError } from "./supervisors/cli.ts";
import denoJson from "./deno.json" with { type: "json" };
import { DataDirLockedError } from "./supervisors/data_dir_lock.ts";
import { httpCommands } from "./http/cli_commands.ts";
import { auditCommand } from "./actors/audit/report.ts";
import { produceCommand } from "./supervisors/cli/produce.ts";
import { dlqCommand, replayCommand } from "./supervisors/cli/replay.ts";

/** The version printed by `--version`. */
export const VERSION: string = denoJson.version;

const commands: Record<string, Command> = {};

/** Registers a command (modules of later stages add theirs here). */
export function registerCommand(name: string, command: Command): void {
  commands[name] = command;
}

function topHelp(): string {
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

registerCommand("start", {
  summary: "Run the pipeline (embedded Kafka/S3/upstream when not configured)",
  usage: [
    "Usage: sluice start [--print-config]",
    "",
    "  --print-config  Print the effective configuration (secrets masked) and exit",
    "",
    "Configuration comes from the environment:",
    ...(CONFIG_SCHEMA.map((s) => `  ${s.env.padEnd(32)} ${s.doc}`)),
  ].join("\n"),
  async run(args) {
    const { values } = parseOptions(args, { "print-config": { type: "boolean" } });
    const config = loadConfig();
    if (values["print-config"]) {
      console.log(JSON.stringify(describeConfig(config), null, 2));
      return 0;
    }
    const { runSluice } = await import("./supervisors/sluice.ts");
    return await runSluice(config);
  },
});

for (const [name, command] of Object.entries(httpCommands)) registerCommand(name, command);
registerCommand("produce", produceCommand);
registerCommand("audit", auditCommand);
registerCommand("replay", replayCommand);
registerCommand("dlq", dlqCommand);

/** A configuration error anywhere in `e`'s cause chain (a child that could not start for it). */
function configErrorIn(e: unknown): ConfigError | undefined {
  for (let c = e, n = 0; c instanceof Error && n < 10; c = c.cause, n++) {
    if (c instanceof ConfigError) return c;
  }
  return undefined;
}

/** Runs the CLI with `argv`; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "-h" || name === "--help" || name === "help") {
    console.log(topHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === "-V" || name === "--version" || name === "version") {
    console.log(`sluice ${VERSION}`);
    return 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`sluice: unknown command: ${name}\n\n${topHelp()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    const config = configErrorIn(e);
    if (config) {
      console.error(`sluice: ${config.message}`);
      return 2;
    }
    if (e instanceof ConfigError) {
      console.error(`sluice: ${e.message}`);
      return 2;
    }
    if (e instanceof DataDirLockedError) {
      console.error(`sluice ${name}: ${e.message}`);
      return 2;
    }
    if (e instanceof InstanceError) {
      console.error(`sluice ${name}: ${e.message}`);
      return 1;
    }
    if (e instanceof UsageError) {
      console.error(`sluice ${name}: ${e.message}\n\n${command.usage}`);
      return 2;
    }
    console.error(`sluice ${name}: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
