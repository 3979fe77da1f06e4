/**
 * The idempotency store: which idempotency keys were delivered to the
 * upstream, kept in Deno KV (`${dataDir}/idempotency.kv`, embedded, no
 * server) for a window (`SLUICE_IDEMPOTENCY_TTL_HOURS`, default 168 h).
 *
 * ```ts
 * const store = await openIdempotencyStore({ path: `${dataDir}/idempotency.kv` });
 * store.record("orders-42");                       // live pipeline: sync, buffered
 * const seen = await store.has(["orders-42", "x"]); // replay: Set {"orders-42"}
 * await store.markDelivered(["x"]);                 // replay: durable before answering
 * await store.close();                              // flushes what is buffered
 * ```
 *
 * **Write-behind on the hot path.** {@link IdempotencyStore.record} only
 * appends the key to an in-memory buffer; a timer flushes the buffer every
 * `flushMs` (default 100 ms) in `kv.atomic()` batches (at most 500 keys and
 * ~400 KB each, under Deno KV's limits). The live record path never awaits a
 * KV write.
 *
 * **What a crash can lose, and why that is safe.** A crash (kill -9) loses
 * the keys recorded in the last ~`flushMs` (plus a flush in progress). A later
 * replay would then not know those records were delivered and would send
 * them again: the upstream still receives the same `Idempotency-Key` header,
 * which is the actual end-to-end guarantee; the store only spares the
 * upstream the duplicate calls. The live pipeline never reads the store.
 * Lookups ({@link IdempotencyStore.has}) also see keys still in the buffer,
 * so within one process nothing is ever missed.
 *
 * **Expiry.** Each key is written with `expireIn` = the TTL. Deno KV deletes
 * expired keys lazily, so the value also holds `expiresAt` and
 * {@link IdempotencyStore.has} ignores expired entries itself.
 *
 * **Long keys.** Deno KV keys are limited to 2 KiB; an idempotency key longer
 * than 512 characters is stored under its SHA-256 (hex) instead.
 *
 * Deno KV is an unstable API on Deno 2.x: `deno.json` enables it with
 * `"unstable": ["kv"]` (no `--unstable-kv` flag needed).
 *
 * @module
 */
import { logger } from "../runtime/logger.ts";

const log = logger("idempotency");

/** Default retention of a delivered key: 168 h (7 days). */
export const DEFAULT_IDEMPOTENCY_TTL_MS = 168 * 3600_000;
/** Default write-behind flush period (ms). */
export const DEFAULT_IDEMPOTENCY_FLUSH_MS = 100;

const PREFIX = "delivered";
const HASHED = "delivered#";
const MAX_PLAIN_KEY = 512;
const BATCH_KEYS = 500;
const BATCH_BYTES = 400_000;
/** Deno KV's `getMany` reads at most 10 keys per call. */
const GET_MANY = 10;

/** Options of {@link openIdempotencyStore}. */
export interface IdempotencyStoreOptions {
  /** KV file, e.g. `${dataDir}/idempotency.kv`; `:memory:` for tests. */
  path: string;
  /** How long a delivered key is remembered (ms). Default 168 h. */
  ttlMs?: number;
  /** Write-behind flush period (ms). Default 100. */
  flushMs?: number;
  /** Clock (ms since epoch); tests pass their own. Default `Date.now`. */
  now?: () => number;
}

/** Counters of the store, for `/status` and the inspector. */
export interface IdempotencyStats {
  /** Keys waiting in the write-behind buffer. */
  pending: number;
  /** Keys written to KV since start. */
  written: number;
  /** Flushes that failed (their keys are retried at the next flush). */
  flush_errors: number;
  ttl_ms: number;
}

/** The store. */
export interface IdempotencyStore {
  /** Records a delivered key (buffered; never blocks). No-op after `close`. */
  record(key: string): void;
  /** Records delivered keys and waits until they are in KV. */
  markDelivered(keys: string[]): Promise<void>;
  /** The subset of `keys` delivered within the TTL (KV and the buffer). */
  has(keys: string[]): Promise<Set<string>>;
  /** Writes the buffer now. */
  flush(): Promise<void>;
  stats(): IdempotencyStats;
  /** Flushes, stops the timer and closes KV. Idempotent. */
  close(): Promise<void>;
}

async function sha256(s: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(s)));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function kvKey(key: string): Promise<Deno.KvKey> {
  return key.length > MAX_PLAIN_KEY ? [HASHED, await sha256(key)] : [PREFIX, key];
}

/**
 * `Deno.openKv`, or an in-memory KV when the runtime lacks it (a bundled
 * file run without the project's `deno.json` and without `--unstable-kv`):
 * sluice still runs, with a warning, and remembers keys until it stops.
 */
async function openKv(path: string): Promise<Deno.Kv> {
  const open = (Deno as { openKv?: (path?: string) => Promise<Deno.Kv> }).openKv;
  if (typeof open === "function") return await open(path);
  log.warn(
    "Deno KV is not available (run with the project's deno.json or --unstable-kv): " +
      "the idempotency store is kept in memory only",
    { path },
  );
  return memoryKv() as unknown as Deno.Kv;
}

/** The subset of `Deno.Kv` this module uses, in memory. */
function memoryKv() {
  const data = new Map<string, unknown>();
  const id = (k: Deno.KvKey) => JSON.stringify(k);
  return {
    atomic() {
      const sets: [Deno.KvKey, unknown][] = [];
      const op = {
        set(k: Deno.KvKey, v: unknown) {
          sets.push([k, v]);
          return op;
        },
        commit() {
          for (const [k, v] of sets) data.set(id(k), v);
          return Promise.resolve({ ok: true });
        },
      };
      return op;
    },
    getMany(keys: Deno.KvKey[]) {
      return Promise.resolve(keys.map((k) => ({ key: k, value: data.get(id(k)) ?? null })));
    },
    close() {},
  };
}

/** Opens (creating when needed) the store at `opts.path`. */
export async function openIdempotencyStore(
  opts: IdempotencyStoreOptions,
): Promise<IdempotencyStore> {
  const ttl = opts.ttlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS;
  const now = opts.now ?? Date.now;
  const kv = await openKv(opts.path);
  /** Keys recorded and not yet written (value: when recorded). */
  let buffer = new Map<string, number>();
  /** Keys of a flush in progress (still visible to `has`). */
  let writing = new Map<string, number>();
  let written = 0, flushErrors = 0, closed = false;

  async function writeBatch(entries: [string, number][]): Promise<void> {
    let op = kv.atomic(), n = 0, bytes = 0;
    const commits: Promise<void>[] = [];
    const commit = (a: Deno.AtomicOperation) =>
      commits.push(
        a.commit().then((r) => {
          if (!r.ok) throw new Error("idempotency store: atomic write refused");
        }),
      );
    for (const [key, at] of entries) {
      // No await (a microtask per key) unless the key is long enough to be hashed.
      const k = key.length > MAX_PLAIN_KEY ? await kvKey(key) : [PREFIX, key];
      op.set(k, { at, expiresAt: at + ttl }, { expireIn: Math.max(1, at + ttl - now()) });
      n++;
      bytes += key.length + 64;
      if (n >= BATCH_KEYS || bytes >= BATCH_BYTES) {
        commit(op);
        op = kv.atomic();
        n = 0;
        bytes = 0;
      }
    }
    if (n > 0) commit(op);
    await Promise.all(commits);
  }

  /** Flushes run one after the other. */
  let chain: Promise<void> = Promise.resolve();
  let flushRunning = false;
  async function runFlush(): Promise<void> {
    if (buffer.size === 0) return;
    flushRunning = true;
    writing = buffer;
    buffer = new Map();
    try {
      await writeBatch([...writing]);
      written += writing.size;
    } catch (e) {
      flushErrors++;
      log.warn("idempotency flush failed; retrying at the next flush", {
        keys: writing.size,
        error: e,
      });
      for (const [k, at] of writing) if (!buffer.has(k)) buffer.set(k, at);
    } finally {
      writing = new Map();
      flushRunning = false;
    }
  }
  function flush(): Promise<void> {
    chain = chain.then(runFlush);
    return chain;
  }

  const timer = setInterval(() => {
    if (buffer.size > 0 && !flushRunning) void flush();
  }, opts.flushMs ?? DEFAULT_IDEMPOTENCY_FLUSH_MS);

  return {
    record(key) {
      if (closed) return;
      buffer.set(key, now());
    },
    async markDelivered(keys) {
      if (closed) throw new Error("idempotency store is closed");
      const at = now();
      await writeBatch(keys.map((k) => [k, at]));
      written += keys.length;
    },
    async has(keys) {
      const found = new Set<string>();
      const t = now();
      const lookup: string[] = [];
      for (const k of keys) {
        if (buffer.has(k) || writing.has(k)) found.add(k);
        else lookup.push(k);
      }
      const chunks: Promise<void>[] = [];
      for (let i = 0; i < lookup.length; i += GET_MANY) {
        const part = lookup.slice(i, i + GET_MANY);
        chunks.push((async () => {
          const entries = await kv.getMany<{ expiresAt: number }[]>(
            await Promise.all(part.map(kvKey)),
          );
          entries.forEach((e, j) => {
            if (e.value && e.value.expiresAt > t) found.add(part[j]);
          });
        })());
      }
      await Promise.all(chunks);
      return found;
    },
    flush,
    stats: () => ({
      pending: buffer.size + writing.size,
      written,
      flush_errors: flushErrors,
      ttl_ms: ttl,
    }),
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      await flush().catch(() => {});
      kv.close();
    },
  };
}
