/**
 * The on-disk format of a partition: segment files of one JSON record per
 * line (encoding, and parsing that stops at a torn or invalid line), segment
 * names and metadata, and the atomic file write used for segment indexes,
 * topic metadata and committed offsets.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { SourceRecord } from "../../record/record.ts";
import type { TopicPartition } from "../port.ts";
import { syncDir, writeAll } from "../../runtime/durable_fs.ts";

const encoder = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Writes `text` to `path` atomically: temporary file, fsync, rename, fsync of the directory. */
export async function atomicWrite(path: string, text: string): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf("/")) || ".";
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await writeAll(file, encoder.encode(text));
    await file.sync();
  } finally {
    file.close();
  }
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dir);
}

export async function readJson(path: string): Promise<unknown | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

// ---------------------------------------------------------------------------
// Record encoding: one JSON object per line. Keys and values are stored as
// text when they are valid UTF-8 (`k`, `v`), else as base64 (`kb`, `vb`).

export interface Line {
  o: number;
  t: number;
  k?: string | null;
  kb?: string;
  v?: string | null;
  vb?: string;
  h: Record<string, string>;
}

export function encodeBytes(line: Line, field: "k" | "v", bytes: Uint8Array | null): void {
  if (bytes === null) {
    line[field] = null;
    return;
  }
  try {
    line[field] = strictUtf8.decode(bytes);
  } catch {
    line[`${field}b`] = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(
      "base64",
    );
  }
}

function decodeBytes(line: Line, field: "k" | "v"): Uint8Array | null {
  const b64 = line[`${field}b`];
  if (typeof b64 === "string") return new Uint8Array(Buffer.from(b64, "base64"));
  const text = line[field];
  return typeof text === "string" ? encoder.encode(text) : null;
}

function toRecord(topic: string, partition: number, line: Line): SourceRecord {
  return {
    topic,
    partition,
    offset: String(line.o),
    key: decodeBytes(line, "k"),
    value: decodeBytes(line, "v"),
    headers: line.h ?? {},
    timestamp: String(line.t),
  };
}

/**
 * Parses a segment's text: the records with contiguous offsets from `base`,
 * and the byte length of the valid prefix (a torn or invalid line ends it).
 */
export function parseSegment(
  text: string,
  base: number,
  tp: TopicPartition,
): { records: SourceRecord[]; validBytes: number; maxTs: number; problem?: string } {
  const records: SourceRecord[] = [];
  let pos = 0, validBytes = 0, maxTs = -Infinity;
  while (pos < text.length) {
    const nl = text.indexOf("\n", pos);
    if (nl < 0) return { records, validBytes, maxTs, problem: "torn last line" };
    const raw = text.slice(pos, nl);
    let line: Line;
    try {
      line = JSON.parse(raw);
    } catch {
      return {
        records,
        validBytes,
        maxTs,
        problem: `invalid line at offset ${base + records.length}`,
      };
    }
    if (line?.o !== base + records.length || typeof line.t !== "number") {
      return {
        records,
        validBytes,
        maxTs,
        problem: `unexpected line at offset ${base + records.length}`,
      };
    }
    records.push(toRecord(tp.topic, tp.partition, line));
    if (line.t > maxTs) maxTs = line.t;
    validBytes += encoder.encode(raw).length + 1;
    pos = nl + 1;
  }
  return { records, validBytes, maxTs };
}

export interface SegmentMeta {
  base: number;
  count: number;
  /** Largest record timestamp (ms); -Infinity when empty. */
  maxTs: number;
  bytes: number;
}

export const segmentName = (base: number) => String(base).padStart(20, "0");
