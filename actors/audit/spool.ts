/**
 * The durable local spool of audit events: append-only segment files of JSON
 * Lines under one directory.
 *
 * - {@link Spool.append} resolves once the event's line is written and
 *   fsync'd. Appends made while a write is in progress are committed together
 *   by the next write (group commit): one `write` and one `fdatasync` for the
 *   whole group.
 * - The active segment is sealed (closed) when it holds `segmentEvents`
 *   events or `segmentBytes` bytes, or when {@link Spool.rotate} is called
 *   (the batcher does that when the batch is `batchAgeMs` old). A sealed
 *   segment is one upload batch.
 * - A segment file is deleted only by {@link Spool.remove}, which the trail
 *   calls after the store acknowledged every object made from it.
 * - {@link Spool.open} finds the segments left by an earlier process; they
 *   are sealed as they are and come first in {@link Spool.sealed} (file names
 *   sort by creation). A torn last line (crash in the middle of a write) or
 *   any line that is not a JSON object is skipped, logged and listed in the
 *   {@link RecoveryReport}; the lines before it are kept.
 *
 * File names: `{seq, 12 digits}-{8 hex}.jsonl`. The random part is the
 * segment id, used in object keys so that two segments never overwrite each
 * other's objects while a retried upload of one segment does.
 *
 * @module
 */
import type { AuditEvent } from "./event.ts";
import { logger } from "../log.ts";
import { syncDir, writeAll } from "../durable_fs.ts";

const log = logger("audit.spool");
const encoder = new TextEncoder();

/** Options of {@link Spool.open}. */
export interface SpoolOptions {
  /** Seal the active segment at this many events; default 5000. */
  segmentEvents?: number;
  /** Seal the active segment at this many bytes; default 4 MiB. */
  segmentBytes?: number;
  /** Share one write + fsync between concurrent appends; default true. */
  groupCommit?: boolean;
  /** Called when a new active segment receives its first event. */
  onOpen?: (segment: SegmentInfo) => void;
  /** Called when a segment is sealed (by size, count or {@link Spool.rotate}). */
  onSeal?: (segment: SegmentInfo) => void;
}

/** One segment file. */
export interface SegmentInfo {
  /** File name, e.g. `000000000007-3fa9c2d1.jsonl`. */
  name: string;
  /** Random id, unique per segment, used in object keys. */
  id: string;
  seq: number;
  /** Valid events in the segment. */
  events: number;
  /** Bytes of the file. */
  bytes: number;
  /** Time (ms since epoch) of its oldest event: the first append, or for a recovered segment its first event's timestamp. */
  oldestAt: number;
  sealed: boolean;
}

/** A line skipped when reading a segment. */
export interface InvalidLine {
  segment: string;
  /** 1-based line number. */
  line: number;
  bytes: number;
  /** `torn`: last line without its newline (crash mid-write); `invalid`: not a JSON object. */
  reason: "torn" | "invalid";
}

/** What {@link Spool.open} found from an earlier process. */
export interface RecoveryReport {
  segments: number;
  events: number;
  bytes: number;
  invalidLines: InvalidLine[];
}

/** Counters for tests and benchmarks. */
export interface SpoolStats {
  appends: number;
  writes: number;
  fsyncs: number;
}

interface Pending {
  data: Uint8Array;
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Active {
  info: SegmentInfo;
  file: Deno.FsFile;
}

const SEGMENT_RE = /^(\d{12})-([0-9a-f]{8})\.jsonl$/;

/** Parses a segment's text into events, listing skipped lines. */
export function parseSegment(
  name: string,
  text: string,
): { events: AuditEvent[]; invalid: InvalidLine[] } {
  const events: AuditEvent[] = [];
  const invalid: InvalidLine[] = [];
  const lines = text.split("\n");
  const last = lines.pop() ?? "";
  if (last !== "") {
    invalid.push({
      segment: name,
      line: lines.length + 1,
      bytes: encoder.encode(last).length,
      reason: "torn",
    });
  }
  lines.forEach((line, i) => {
    if (line === "") return;
    try {
      const v = JSON.parse(line);
      if (v && typeof v === "object" && !Array.isArray(v)) {
        events.push(v as AuditEvent);
        return;
      }
    } catch {
      // Reported below.
    }
    invalid.push({
      segment: name,
      line: i + 1,
      bytes: encoder.encode(line).length,
      reason: "invalid",
    });
  });
  return { events, invalid };
}

function randomId(): string {
  const b = crypto.getRandomValues(new Uint8Array(4));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** The spool. Create with {@link Spool.open}. */
export class Spool {
  readonly dir: string;
  readonly #segmentEvents: number;
  readonly #segmentBytes: number;
  readonly #groupCommit: boolean;
  readonly #onOpen?: (s: SegmentInfo) => void;
  readonly #onSeal?: (s: SegmentInfo) => void;
  readonly #sealed: SegmentInfo[] = [];
  #sealedBytes = 0;
  #sealedEvents = 0;
  #active: Active | null = null;
  #nextSeq: number;
  #pending: Pending[] = [];
  #scheduled = false;
  #tail: Promise<void> = Promise.resolve();
  #closed = false;
  #stats: SpoolStats = { appends: 0, writes: 0, fsyncs: 0 };

  private constructor(dir: string, nextSeq: number, opts: SpoolOptions) {
    this.dir = dir;
    this.#nextSeq = nextSeq;
    this.#segmentEvents = opts.segmentEvents ?? 5000;
    this.#segmentBytes = opts.segmentBytes ?? 4 * 1024 * 1024;
    this.#groupCommit = opts.groupCommit ?? true;
    this.#onOpen = opts.onOpen;
    this.#onSeal = opts.onSeal;
  }

  /**
   * Opens (creating it if needed) the spool in `dir` and recovers the
   * segments an earlier process left there.
   */
  static async open(
    dir: string,
    opts: SpoolOptions = {},
  ): Promise<{ spool: Spool; report: RecoveryReport }> {
    await Deno.mkdir(dir, { recursive: true });
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && SEGMENT_RE.test(e.name)) names.push(e.name);
    }
    names.sort();
    const report: RecoveryReport = { segments: 0, events: 0, bytes: 0, invalidLines: [] };
    const found: SegmentInfo[] = [];
    for (const name of names) {
      const [, seq, id] = SEGMENT_RE.exec(name)!;
      const path = `${dir}/${name}`;
      const text = await Deno.readTextFile(path);
      const { events, invalid } = parseSegment(name, text);
      const bytes = (await Deno.stat(path)).size;
      const first = Date.parse(events[0]?.timestamp ?? "");
      found.push({
        name,
        id,
        seq: Number(seq),
        events: events.length,
        bytes,
        oldestAt: Number.isFinite(first) ? first : Date.now(),
        sealed: true,
      });
      report.segments++;
      report.events += events.length;
      report.bytes += bytes;
      for (const line of invalid) {
        log.warn("skipping a damaged line of a leftover audit segment", { ...line });
        report.invalidLines.push(line);
      }
    }
    const nextSeq = found.length > 0 ? found[found.length - 1].seq + 1 : 1;
    const spool = new Spool(dir, nextSeq, opts);
    for (const s of found) spool.#pushSealed(s);
    if (found.length > 0) {
      log.info("found leftover audit segments", {
        segments: report.segments,
        events: report.events,
        bytes: report.bytes,
        invalid_lines: report.invalidLines.length,
      });
    }
    return { spool, report };
  }

  /**
   * Appends one event; resolves when it is on disk (written and fsync'd).
   *
   * @throws when the spool is closed or the write fails.
   */
  append(event: AuditEvent): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("Audit spool is closed"));
    const data = encoder.encode(JSON.stringify(event) + "\n");
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ data, resolve, reject });
      this.#stats.appends++;
      if (!this.#groupCommit) {
        this.#serial(() => this.#commit(1)).catch(() => {});
      } else if (!this.#scheduled) {
        this.#scheduled = true;
        this.#serial(() => this.#commit(Infinity)).catch(() => {});
      }
    });
  }

  /** Seals the active segment if it holds any event; returns it, or null. */
  rotate(): Promise<SegmentInfo | null> {
    return this.#serial(async () => {
      // Commit what is waiting first, so the sealed batch is as full as possible.
      if (this.#pending.length > 0) await this.#commit(Infinity);
      return this.#seal();
    });
  }

  /** Sealed segments waiting for upload, oldest first. */
  sealed(): SegmentInfo[] {
    return [...this.#sealed];
  }

  /** Reads a sealed segment's events (skipping damaged lines). */
  async read(segment: SegmentInfo): Promise<{ events: AuditEvent[]; invalid: InvalidLine[] }> {
    const text = await Deno.readTextFile(`${this.dir}/${segment.name}`);
    return parseSegment(segment.name, text);
  }

  /**
   * Deletes a sealed segment: call only once the store acknowledged its
   * upload. Returns false when it was already removed.
   */
  async remove(segment: SegmentInfo): Promise<boolean> {
    const known = this.#sealed.find((s) => s.name === segment.name);
    if (!known) return false;
    try {
      await Deno.remove(`${this.dir}/${known.name}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const i = this.#sealed.indexOf(known);
    if (i < 0) return false;
    this.#sealed.splice(i, 1);
    this.#sealedBytes -= known.bytes;
    this.#sealedEvents -= known.events;
    return true;
  }

  /** Bytes of every segment in the spool (sealed and active). */
  get bytes(): number {
    return this.#sealedBytes + (this.#active?.info.bytes ?? 0);
  }

  /** Events in the spool, not yet uploaded (sealed and active). */
  get pendingEvents(): number {
    return this.#sealedEvents + (this.#active?.info.events ?? 0);
  }

  /** Time (ms since epoch) of the oldest event not yet uploaded, or null. */
  get oldestAt(): number | null {
    const first = this.#sealed.find((s) => s.events > 0) ??
      (this.#active?.info.events ? this.#active.info : undefined);
    return first ? first.oldestAt : null;
  }

  /** Write and fsync counters. */
  stats(): SpoolStats {
    return { ...this.#stats };
  }

  /**
   * Waits for pending appends, closes the active segment's file (without
   * sealing it: a later {@link Spool.open} finds it) and refuses new appends.
   */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#serial(async () => {
      if (this.#pending.length > 0) await this.#commit(Infinity);
      this.#active?.file.close();
      this.#active = null;
    });
  }

  #pushSealed(segment: SegmentInfo): void {
    this.#sealed.push(segment);
    this.#sealedBytes += segment.bytes;
    this.#sealedEvents += segment.events;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(fn);
    this.#tail = p.then(() => {}, () => {});
    return p;
  }

  async #openSegment(): Promise<Active> {
    const seq = this.#nextSeq++;
    const id = randomId();
    const name = `${String(seq).padStart(12, "0")}-${id}.jsonl`;
    const file = await Deno.open(`${this.dir}/${name}`, {
      create: true,
      append: true,
      createNew: true,
    });
    await syncDir(this.dir);
    const info: SegmentInfo = { name, id, seq, events: 0, bytes: 0, oldestAt: 0, sealed: false };
    return { info, file };
  }

  #seal(): SegmentInfo | null {
    const active = this.#active;
    if (!active || active.info.events === 0) return null;
    this.#active = null;
    active.file.close();
    active.info.sealed = true;
    this.#pushSealed(active.info);
    this.#onSeal?.(active.info);
    return active.info;
  }

  /** Writes up to `max` pending lines, splitting them across segments at the size limits. */
  async #commit(max: number): Promise<void> {
    this.#scheduled = false;
    const batch = this.#pending.splice(0, max === Infinity ? this.#pending.length : max);
    if (batch.length === 0) return;
    try {
      let chunk: Uint8Array[] = [];
      let chunkBytes = 0;
      for (const p of batch) {
        if (!this.#active) {
          this.#active = await this.#openSegment();
        }
        const info = this.#active.info;
        if (info.events === 0) {
          info.oldestAt = Date.now();
          this.#onOpen?.(info);
        }
        chunk.push(p.data);
        chunkBytes += p.data.length;
        info.events++;
        info.bytes += p.data.length;
        if (info.events >= this.#segmentEvents || info.bytes >= this.#segmentBytes) {
          await this.#write(this.#active.file, chunk, chunkBytes);
          chunk = [];
          chunkBytes = 0;
          this.#seal();
        }
      }
      if (chunk.length > 0 && this.#active) await this.#write(this.#active.file, chunk, chunkBytes);
    } catch (e) {
      // The segment may end with a partial line now: seal it (readers skip a
      // torn last line) and start the next append in a fresh segment.
      log.error("audit spool write failed", { error: e, dir: this.dir });
      try {
        this.#seal();
      } catch {
        // Closing failed too: the segment is found again at the next open.
      }
      for (const p of batch) p.reject(e);
      return;
    }
    for (const p of batch) p.resolve();
  }

  async #write(file: Deno.FsFile, chunk: Uint8Array[], bytes: number): Promise<void> {
    const data = chunk.length === 1 ? chunk[0] : new Uint8Array(bytes);
    if (chunk.length > 1) {
      let off = 0;
      for (const c of chunk) {
        data.set(c, off);
        off += c.length;
      }
    }
    await writeAll(file, data);
    this.#stats.writes++;
    await file.syncData();
    this.#stats.fsyncs++;
  }
}
