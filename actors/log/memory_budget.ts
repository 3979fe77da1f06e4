/**
 * Fetch sizes from the memory budget (`SLUICE_MEMORY_BUDGET_MB`) and
 * `SLUICE_MAX_INFLIGHT`: what bounds the records sitting in the heap between
 * the broker and the partition workers (README, Configuration; Benchmarks).
 *
 * ```ts
 * const { maxBytes, maxBytesPerPartition } = fetchSizes({ memoryBudgetMb: 64, maxInflight: 64 });
 * ```
 *
 * - A fetch (one request to a broker, every assigned partition) returns at
 *   most `budget / 8` bytes: a decoded record takes several times its wire
 *   size in the heap (key, value, headers, offset strings, the envelope).
 * - A partition returns at most `maxInflight × 256 B`, between 64 KiB and
 *   1 MiB (kafkajs' own default), and never more than the fetch. A partition
 *   worker takes `maxInflight` records at a time, so fetching far more only
 *   queues them in memory; fetching far fewer would starve it (kafkajs
 *   fetches a partition again only once its batch is finished). 256 B is
 *   about a small JSON record on the wire: measured on the framework
 *   benchmark (230-byte records, 1,000 in flight per partition), 256 B
 *   instead of 1 KiB per record in flight took the reachable heap at steady
 *   state from 87 to 56 MB and the RSS peak from about 465 to 380 MB, with
 *   no change in records/s or CPU per record beyond the run-to-run noise
 *   (README, Benchmarks).
 *
 * The broker still returns a first record batch larger than these limits
 * (KIP-74), so a large record never blocks a partition.
 *
 * @module
 */

/** Bytes per record in flight assumed for the per-partition fetch size. */
export const FETCH_BYTES_PER_INFLIGHT = 256;

/** Fetch sizes (bytes) of the Kafka consumer; see the module doc. */
export function fetchSizes(
  opts: { memoryBudgetMb: number; maxInflight: number },
): { maxBytes: number; maxBytesPerPartition: number } {
  const maxBytes = Math.floor((opts.memoryBudgetMb * 1024 * 1024) / 8);
  const perPartition = Math.min(
    1024 * 1024,
    Math.max(64 * 1024, opts.maxInflight * FETCH_BYTES_PER_INFLIGHT),
  );
  return { maxBytes, maxBytesPerPartition: Math.min(perPartition, maxBytes) };
}
