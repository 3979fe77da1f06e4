/**
 * sluice: entry point; only dispatches to the CLI commands of
 * `supervisors/cli/`. The same file runs as `deno task start`, as the bundled
 * single file and as the compiled binary.
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
import { ConfigError } from "./supervisors/config.ts";
import { DataDirLockedError } from "./supervisors/data_dir_lock.ts";
import { commands, InstanceError, topHelp, UsageError, VERSION } from "./supervisors/cli/mod.ts";

export { registerCommand, VERSION } from "./supervisors/cli/mod.ts";

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
