/**
 * One sluice per data directory: an exclusive lock taken at start, before
 * any child touches the directory (spool, embedded log, idempotency store,
 * local audit store), in every mode.
 *
 * The lock is an advisory `flock` on `<data dir>/sluice.lock`
 * (`Deno.FsFile.tryLockSync(true)`, non-blocking), held by the open file for
 * the life of the process. The kernel releases it when the process ends,
 * however it ends (SIGKILL, crash, OOM), so there is no stale lock to clean
 * up and no pid-reuse guess, unlike a pid file. The holder writes its pid
 * (and host and start time) into the file so that a refused second instance
 * can name it.
 *
 * ```ts
 * const lock = lockDataDir(config.dataDir);   // throws DataDirLockedError
 * ...
 * lock.release();
 * ```
 *
 * @module
 */
import { hostname } from "node:os";

/** The lock file's name inside the data directory. */
export const LOCK_FILE = "sluice.lock";

/** Another process holds the lock: `sluice start` exits 2 with this message. */
export class DataDirLockedError extends Error {
  override name = "DataDirLockedError";
  constructor(readonly dir: string, readonly holderPid: number | undefined, readonly path: string) {
    super(
      `Data directory ${dir} is in use by another sluice (pid ${
        holderPid ?? "unknown"
      }; lock ${path}): stop it, or give this instance its own SLUICE_DATA_DIR`,
    );
  }
}

/** A held lock. */
export interface DataDirLock {
  readonly path: string;
  /** Releases the lock (idempotent). */
  release(): void;
}

/** What the holder wrote into the lock file. */
export function readLockHolder(dir: string): { pid?: number; host?: string; since?: string } {
  try {
    const j = JSON.parse(Deno.readTextFileSync(`${dir}/${LOCK_FILE}`));
    return { pid: Number.isSafeInteger(j.pid) ? j.pid : undefined, host: j.host, since: j.since };
  } catch {
    return {};
  }
}

/**
 * Takes the exclusive lock on `dir` (created when missing).
 *
 * @throws {DataDirLockedError} when another process (or another lock in this
 * process) holds it.
 */
export function lockDataDir(dir: string): DataDirLock {
  Deno.mkdirSync(dir, { recursive: true });
  const path = `${dir}/${LOCK_FILE}`;
  // Not truncated on open: the holder's pid must stay readable for the refused one.
  const file = Deno.openSync(path, { read: true, write: true, create: true });
  let locked = false;
  try {
    locked = file.tryLockSync(true);
  } finally {
    if (!locked) file.close();
  }
  if (!locked) throw new DataDirLockedError(dir, readLockHolder(dir).pid, path);
  const info = JSON.stringify({ pid: Deno.pid, host: hostname(), since: new Date().toISOString() });
  file.truncateSync(0);
  file.writeSync(new TextEncoder().encode(info + "\n"));
  file.syncSync();
  let released = false;
  return {
    path,
    release() {
      if (released) return;
      released = true;
      try {
        file.truncateSync(0);
        file.unlockSync();
      } finally {
        file.close();
      }
    },
  };
}
