/**
 * Small helpers for durable writes on local disk, shared by the audit spool,
 * the local audit store and the embedded log.
 *
 * @module
 */

/** Writes all of `data` (a single `write` may write less). */
export async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await file.write(data.subarray(off));
}

/** fsyncs a directory, so a created or renamed entry in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // Some file systems refuse to sync a directory; the data itself is synced.
  }
}
