/**
 * `sluice start [--print-config]`: runs the supervision tree
 * (`supervisors/sluice.ts`) with the configuration from the environment.
 *
 * @module
 */
import { CONFIG_SCHEMA, describeConfig, loadConfig } from "../config.ts";
import { type Command, parseOptions } from "./common.ts";

/** `sluice start`: see its usage. */
export const startCommand: Command = {
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
    const { runSluice } = await import("../sluice.ts");
    return await runSluice(config);
  },
};
