/**
 * One partition of the embedded log: its segments on disk, group-committed
 * appends (one write and one fdatasync per group, see the durability notes
 * of `log.ts`), recovery at open, retention, reads and waiting for new data.
 *
 * @module
 */
import { logger } from "../../runtime/logger.ts";
import type { SourceRecord } from "../../record/record.ts";
import type { TopicPartition } from "../port.ts";
import { syncDir, writeAll } from "../../runtime/durable_fs.ts";
import type { Core } from "./core.ts";
import {
  atomicWrite,
  encodeBytes,
  type Line,
  parseSegment,
  readJson,
  type SegmentMeta,
  segmentName,
} from "./segment.ts";

const log = logger("embedded-log");
const encoder = new TextEncoder();

/** A message ready to append (bytes copied, partition chosen). */
export interface Prepared {
  key: Uint8Array | null;
  value: Uint8Array | null;
  headers: Record<string, string>;
  timestamp: number;
}

interface PendingAppend {
  messages: Prepared[];
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class PartitionLog {
  readonly tp: TopicPartition;
  /** Sealed segments, oldest first, then the active one (always present). */
  readonly segments: SegmentMeta[];
  #activeFile: Deno.FsFile;
  /** Records of the active segment (the tail of the partition). */
  #activeRecords: SourceRecord[];
  #pending: PendingAppend[] = [];
  #flushing: Promise<void> | null = null;
  #waiters = new Set<() => void>();
  #closed = false;

  private constructor(
    readonly dir: string,
    tp: TopicPartition,
    segments: SegmentMeta[],
    activeFile: Deno.FsFile,
    activeRecords: SourceRecord[],
    private readonly core: Core,
  ) {
    this.tp = tp;
    this.segments = segments;
    this.#activeFile = activeFile;
    this.#activeRecords = activeRecords;
  }

  /** Opens (or creates) a partition directory and recovers its segments. */
  static async open(dir: string, tp: TopicPartition, core: Core): Promise<PartitionLog> {
    await Deno.mkdir(dir, { recursive: true });
    const bases: number[] = [];
    for await (const e of Deno.readDir(dir)) {
      const m = /^(\d{20})\.jsonl$/.exec(e.name);
      if (e.isFile && m) bases.push(Number(m[1]));
      else if (e.isFile && e.name.includes(".tmp-")) await Deno.remove(`${dir}/${e.name}`);
    }
    bases.sort((a, b) => a - b);
    const segments: SegmentMeta[] = [];
    for (const base of bases.slice(0, -1)) {
      const path = `${dir}/${segmentName(base)}`;
      const idx = await readJson(`${path}.index.json`).catch(() => undefined) as
        | Partial<SegmentMeta>
        | undefined;
      if (
        idx && idx.base === base && typeof idx.count === "number" &&
        typeof idx.bytes === "number"
      ) {
        segments.push({ base, count: idx.count, maxTs: idx.maxTs ?? -Infinity, bytes: idx.bytes });
        continue;
      }
      const parsed = parseSegment(await Deno.readTextFile(`${path}.jsonl`), base, tp);
      if (parsed.problem) {
        log.warn("sealed segment ends early", {
          segment: `${path}.jsonl`,
          problem: parsed.problem,
        });
      }
      const meta = {
        base,
        count: parsed.records.length,
        maxTs: parsed.maxTs,
        bytes: parsed.validBytes,
      };
      segments.push(meta);
      await atomicWrite(`${path}.index.json`, JSON.stringify(meta));
    }
    for (let i = 1; i < segments.length; i++) {
      const prev = segments[i - 1];
      if (prev.base + prev.count !== segments[i].base) {
        log.error("gap between segments", {
          partition: `${tp.topic}:${tp.partition}`,
          from: prev.base + prev.count,
          to: segments[i].base,
        });
      }
    }
    // The active segment: parse it, cut a torn tail, keep its records in memory.
    const lastBase = bases.length > 0 ? bases[bases.length - 1] : 0;
    const activePath = `${dir}/${segmentName(lastBase)}.jsonl`;
    let records: SourceRecord[] = [];
    let meta: SegmentMeta = { base: lastBase, count: 0, maxTs: -Infinity, bytes: 0 };
    if (bases.length > 0) {
      const text = await Deno.readTextFile(activePath);
      const parsed = parseSegment(text, lastBase, tp);
      records = parsed.records;
      meta = {
        base: lastBase,
        count: records.length,
        maxTs: parsed.maxTs,
        bytes: parsed.validBytes,
      };
      if (parsed.problem) {
        log.warn("cutting the end of a segment after a crash", {
          segment: activePath,
          problem: parsed.problem,
          keptRecords: records.length,
        });
        await Deno.truncate(activePath, parsed.validBytes);
      }
    }
    const file = await Deno.open(activePath, { create: true, append: true });
    if (bases.length === 0) await syncDir(dir);
    segments.push(meta);
    return new PartitionLog(dir, tp, segments, file, records, core);
  }

  get active(): SegmentMeta {
    return this.segments[this.segments.length - 1];
  }

  /** First offset still in the log. */
  get logStart(): number {
    return this.segments[0].base;
  }

  /** Offset of the next record to be written; records below it are durable. */
  get highWatermark(): number {
    return this.active.base + this.active.count;
  }

  /** Appends messages; resolves once they are on disk. */
  append(messages: Prepared[]): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("embedded log is closed"));
    if (messages.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ messages, resolve, reject });
      this.#flushing ??= this.#flush().finally(() => (this.#flushing = null));
    });
  }

  async #flush(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending.splice(0);
      let i = 0;
      try {
        const { segmentRecords, segmentBytes } = this.core.settings;
        while (i < batch.length) {
          if (
            this.active.count >= segmentRecords ||
            (this.active.count > 0 && this.active.bytes >= segmentBytes)
          ) await this.#roll();
          // Appends going into the current segment: one write, one fdatasync.
          const group: PendingAppend[] = [];
          const lines: string[] = [];
          const records: SourceRecord[] = [];
          let next = this.highWatermark, maxTs = this.active.maxTs;
          let room = segmentRecords - this.active.count;
          // Bytes of the segment with the lines so far (UTF-16 length: a lower bound of the bytes).
          let size = this.active.bytes;
          while (
            i < batch.length &&
            (group.length === 0 || (room >= batch[i].messages.length && size < segmentBytes))
          ) {
            for (const m of batch[i].messages) {
              const line: Line = { o: next++, t: m.timestamp, h: m.headers };
              encodeBytes(line, "k", m.key);
              encodeBytes(line, "v", m.value);
              const text = JSON.stringify(line) + "\n";
              size += text.length;
              lines.push(text);
              records.push({
                ...this.tp,
                offset: String(line.o),
                key: m.key,
                value: m.value,
                headers: m.headers,
                timestamp: String(m.timestamp),
              });
              if (m.timestamp > maxTs) maxTs = m.timestamp;
            }
            room -= batch[i].messages.length;
            group.push(batch[i++]);
          }
          const data = encoder.encode(lines.join(""));
          try {
            await writeAll(this.#activeFile, data);
            await this.#activeFile.syncData();
          } catch (e) {
            // Cut what may have been written, so the next append starts on a clean line.
            await this.#activeFile.truncate(this.active.bytes).catch(() => {});
            i -= group.length;
            throw e;
          }
          const active = this.active;
          active.count += records.length;
          active.bytes += data.length;
          active.maxTs = maxTs;
          for (const r of records) this.#activeRecords.push(r);
          for (const p of group) p.resolve();
          this.#notify();
        }
      } catch (e) {
        log.error("append failed", {
          partition: `${this.tp.topic}:${this.tp.partition}`,
          error: e,
        });
        for (const p of batch.slice(i)) p.reject(e);
      }
    }
  }

  /** Seals the active segment and starts the next one. */
  async #roll(): Promise<void> {
    // Nothing changes in memory until the new file exists: a failure here
    // leaves the active segment as it was, and the next append tries again.
    const sealed = this.active;
    const path = `${this.dir}/${segmentName(sealed.base)}`;
    await atomicWrite(`${path}.index.json`, JSON.stringify(sealed));
    const base = sealed.base + sealed.count;
    const next = await Deno.open(`${this.dir}/${segmentName(base)}.jsonl`, {
      create: true,
      append: true,
    });
    await syncDir(this.dir);
    this.#activeFile.close();
    this.#activeFile = next;
    // Kept parsed only while a group that committed on the topic is still
    // before its end (it reads it next); dropped once every group is past it.
    const floor = this.core.retentionFloor(this.tp);
    if (floor !== null && floor < base) {
      this.core.cacheSegment(`${path}.jsonl`, this.#activeRecords, true);
    }
    this.#activeRecords = [];
    this.segments.push({ base, count: 0, maxTs: -Infinity, bytes: 0 });
    await this.applyRetention().catch((e) => log.warn("retention failed", { error: e }));
  }

  /** Deletes the oldest sealed segments allowed by the retention rule (the module doc of `log.ts`). */
  async applyRetention(): Promise<void> {
    const floor = this.core.retentionFloor(this.tp);
    while (this.segments.length > 1) {
      const oldest = this.segments[0];
      const end = oldest.base + oldest.count;
      if (this.highWatermark - end < this.core.settings.retentionRecords) return;
      if (floor !== null && end > floor) return;
      const path = `${this.dir}/${segmentName(oldest.base)}`;
      this.segments.shift();
      this.core.uncacheSegment(`${path}.jsonl`);
      await Deno.remove(`${path}.jsonl`).catch(() => {});
      await Deno.remove(`${path}.index.json`).catch(() => {});
      log.debug("segment deleted by retention", {
        segment: `${path}.jsonl`,
        records: oldest.count,
      });
    }
  }

  /**
   * Records from `from` (raised to the log start), at most `max`, within one
   * segment; `forGroup`: a consumer group's fetch (see `Core.loadSegment`).
   */
  async read(from: number, max: number, forGroup = false): Promise<SourceRecord[]> {
    const start = Math.max(from, this.logStart);
    if (start >= this.highWatermark) return [];
    const i = this.#segmentIndex(start);
    const seg = this.segments[i];
    const records = i === this.segments.length - 1
      ? this.#activeRecords
      : await this.core.loadSegment(
        `${this.dir}/${segmentName(seg.base)}.jsonl`,
        seg.base,
        this.tp,
        forGroup,
      );
    const at = start - seg.base;
    return records.slice(at, at + max);
  }

  /** Index of the segment holding `offset` (which is within the log). */
  #segmentIndex(offset: number): number {
    let lo = 0, hi = this.segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.segments[mid].base <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Earliest offset with a timestamp ≥ `ts`, else the high watermark. */
  async offsetForTime(ts: number): Promise<number> {
    for (let i = 0; i < this.segments.length; i++) {
      const seg = this.segments[i];
      if (seg.count === 0 || seg.maxTs < ts) continue;
      const records = i === this.segments.length - 1
        ? this.#activeRecords
        : await this.core.loadSegment(
          `${this.dir}/${segmentName(seg.base)}.jsonl`,
          seg.base,
          this.tp,
          false,
        );
      const r = records.find((r) => Number(r.timestamp) >= ts);
      if (r) return Number(r.offset);
    }
    return this.highWatermark;
  }

  /**
   * Resolves when a record at `offset` or later is readable, after
   * `timeoutMs`, or when `wake` is called (whichever first).
   */
  waitForData(offset: number, timeoutMs: number, wakers: Set<() => void>): Promise<void> {
    if (this.highWatermark > offset || this.#closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#waiters.add(done);
      wakers.add(done);
    });
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Waits for pending appends, then closes the active file. */
  async close(): Promise<void> {
    this.#closed = true;
    while (this.#flushing) await this.#flushing;
    this.#notify();
    this.#activeFile.close();
  }
}
