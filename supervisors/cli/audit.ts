/**
 * `sluice audit report`: the audit report (`actors/audit/report.ts`) over the
 * audit store the environment configures (S3 / Ceph RGW, else the local store).
 *
 * @module
 */
import { type Command, parseOptions, UsageError } from "./common.ts";
import { loadConfig } from "../config.ts";
import { type AuditStore, FsAuditStore, S3AuditStore } from "../../actors/audit/store.ts";
import { buildReport, parseTime, renderMarkdown } from "../../actors/audit/report.ts";

/** The audit store configured by the environment: S3 when `SLUICE_S3_ENDPOINT` is set, else `${SLUICE_DATA_DIR}/audit`. */
export function storeFromConfig(
  env: Record<string, string | undefined> = Deno.env.toObject(),
): { store: AuditStore; prefix: string } {
  const c = loadConfig(env);
  const store = c.s3Endpoint
    ? new S3AuditStore({
      endpoint: c.s3Endpoint,
      bucket: c.s3Bucket,
      region: c.s3Region,
      accessKey: c.s3AccessKey!,
      secretKey: c.s3SecretKey!,
    })
    : new FsAuditStore(`${c.dataDir}/audit`);
  return { store, prefix: c.auditPrefix };
}

/**
 * Why the configured store cannot be read, or undefined when it can. A
 * report over a store that is not there would say "No events in the
 * window", which reads as "nothing happened".
 */
export async function missingStore(store: AuditStore, prefix: string): Promise<string | undefined> {
  if (store instanceof FsAuditStore) {
    const dir = store.dir.startsWith("/") ? store.dir : `${Deno.cwd()}/${store.dir}`;
    try {
      const st = await Deno.stat(dir);
      if (!st.isDirectory) return `the local audit store ${dir} is not a directory`;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      return `no audit store at ${dir}: nothing was ever written there. Run the report with the ` +
        `service's settings: its SLUICE_DATA_DIR (local store <data dir>/audit), or its ` +
        `SLUICE_S3_ENDPOINT, SLUICE_S3_BUCKET and keys when it writes to S3`;
    }
    return undefined;
  }
  try {
    await store.list(`${prefix}/`);
  } catch (e) {
    return `cannot read the audit store ${store.describe()}: ${
      e instanceof Error ? e.message : String(e)
    }`;
  }
  return undefined;
}

const USAGE = [
  "Usage: sluice audit report --from TIME --to TIME [--trace-id ID] [--format md|json]",
  "",
  "Rebuilds what happened in [from, to) from the audit store: outcomes, error causes",
  "(error codes, upstream status codes, timeouts, retries), duplicates by idempotency key,",
  "and with --trace-id the timeline of one trace.",
  "",
  "  --from TIME      Window start, inclusive: ISO 8601, now, or relative (now-15m, now-2h, now-1d)",
  "  --to TIME        Window end, exclusive (same forms)",
  "  --trace-id ID    Add the timeline of this trace",
  "  --format FORMAT  md (default) or json",
  "",
  "The store comes from the environment: SLUICE_S3_ENDPOINT, SLUICE_S3_BUCKET, SLUICE_S3_REGION,",
  "SLUICE_S3_ACCESS_KEY, SLUICE_S3_SECRET_KEY, SLUICE_AUDIT_PREFIX; without an endpoint, the",
  "local store under $SLUICE_DATA_DIR/audit.",
].join("\n");

/** `sluice audit report ...`: see {@link USAGE}. Registered in `supervisors/cli/mod.ts` as `audit`. */
export const auditCommand: Command = {
  summary: "Audit trail: report on a time window (outcomes, errors, duplicates, one trace)",
  usage: USAGE,
  async run(args: string[]): Promise<number> {
    const [sub, ...rest] = args;
    if (sub !== "report") {
      throw new UsageError(
        sub === undefined ? "missing subcommand: report" : `unknown subcommand: ${sub}`,
      );
    }
    const { values, positionals } = parseOptions(rest, {
      from: { type: "string" },
      to: { type: "string" },
      "trace-id": { type: "string" },
      format: { type: "string" },
    });
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    if (positionals.length > 0) throw new UsageError(`unexpected argument: ${positionals[0]}`);
    if (values.from === undefined) throw new UsageError("--from is required");
    if (values.to === undefined) throw new UsageError("--to is required");
    const now = Date.now();
    const from = parseTime(values.from, "--from", now);
    const to = parseTime(values.to, "--to", now);
    if (from.getTime() >= to.getTime()) {
      throw new UsageError(
        `--from (${from.toISOString()}) must be before --to (${to.toISOString()})`,
      );
    }
    const format = values.format ?? "md";
    if (format !== "md" && format !== "json") {
      throw new UsageError(`--format: expected md or json, got ${JSON.stringify(format)}`);
    }
    const { store, prefix } = storeFromConfig();
    try {
      const missing = await missingStore(store, prefix);
      if (missing) {
        console.error(`sluice audit: ${missing}`);
        return 1;
      }
      const report = await buildReport(store, {
        from,
        to,
        prefix,
        traceId: values["trace-id"],
      });
      console.log(format === "json" ? JSON.stringify(report, null, 2) : renderMarkdown(report));
    } finally {
      store.close();
    }
    return 0;
  },
};
