/**
 * Closes a log client's connections at shutdown without letting one that
 * hangs hold the exit: every client is closed at once, and one that has not
 * closed within `timeoutMs` is left (reported through `onLate`). A client
 * that closes in time cancels its own deadline, so nothing is reported for
 * it later, and no timer outlives the close.
 *
 * ```ts
 * await closeAll(open, (c) => c.disconnect(), {
 *   timeoutMs: 3000,
 *   onLate: () => log.warn("a Kafka client did not disconnect in 3 s; leaving it"),
 * });
 * ```
 *
 * Used by both Kafka adapters (`actors/log/kafka.ts`, `actors/log/platformatic.ts`).
 *
 * @module
 */

/** Options of {@link closeAll}. */
export interface CloseAllOptions {
  /** How long one client may take to close (ms). */
  timeoutMs: number;
  /** Called once per client still closing after `timeoutMs`. */
  onLate: () => void;
}

/** Closes every client of `clients` with `close`; resolves when each one closed, failed or ran late. */
export async function closeAll<C>(
  clients: Iterable<C>,
  close: (client: C) => Promise<void>,
  opts: CloseAllOptions,
): Promise<void> {
  await Promise.allSettled([...clients].map((c) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        opts.onLate();
        resolve();
      }, opts.timeoutMs);
      Deno.unrefTimer(timer);
    });
    return Promise.race([close(c), late]).finally(() => clearTimeout(timer));
  }));
}
