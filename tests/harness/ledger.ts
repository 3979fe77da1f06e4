/**
 * The ledger: every produced record must have exactly one final audit
 * outcome (`delivered` or `dead_lettered`); duplicates are listed by
 * idempotency key. Reads the audit objects back from the real store.
 *
 * @module
 */
import type { AuditEvent } from "../../actors/audit/event.ts";
import { type AuditStore, decodeBatch, S3AuditStore } from "../../actors/audit/store.ts";
import { infra } from "./mod.ts";

/** Every audit event under `prefix` in `store`. */
export async function readAllAuditEvents(
  store: AuditStore,
  prefix = "audit/",
): Promise<AuditEvent[]> {
  const events: AuditEvent[] = [];
  for (const key of await store.list(prefix)) {
    events.push(...(await decodeBatch(await store.get(key))).events);
  }
  return events;
}

/** The audit store of a bucket on the run's RGW. */
export function rgwStore(bucket: string): S3AuditStore {
  const { s3 } = infra();
  return new S3AuditStore({
    endpoint: s3.endpoint,
    bucket,
    region: s3.region,
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
  });
}

/** Result of {@link checkLedger}. */
export interface LedgerResult {
  /** Produced records (`topic/partition/offset`) with no final outcome. */
  missing: string[];
  /** Records with more than one final outcome: key → count. */
  duplicates: Map<string, number>;
  /** Final outcomes by kind. */
  outcomes: Record<string, number>;
}

/**
 * Checks that each of `produced` (`topic/partition/offset` strings) has a
 * final audit outcome among `events` (replays excluded).
 */
export function checkLedger(produced: Iterable<string>, events: AuditEvent[]): LedgerResult {
  const seen = new Map<string, number>();
  const outcomes: Record<string, number> = {};
  for (const e of events) {
    if (e.replay) continue;
    const o = e.result.outcome;
    if (o !== "delivered" && o !== "dead_lettered") continue;
    outcomes[o] = (outcomes[o] ?? 0) + 1;
    const k = `${e.topic}/${e.partition}/${e.offset}`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }
  const missing: string[] = [];
  for (const k of produced) if (!seen.has(k)) missing.push(k);
  const duplicates = new Map([...seen].filter(([, n]) => n > 1));
  return { missing, duplicates, outcomes };
}
