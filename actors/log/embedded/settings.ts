/**
 * Settings of an open embedded log (the options of `createEmbeddedLog` with
 * their defaults applied) and the checks of names and offsets that callers
 * pass in.
 *
 * @module
 */

export interface Settings {
  dir: string;
  partitions: number;
  retentionRecords: number;
  segmentRecords: number;
  segmentBytes: number;
  maxBatchRecords: number;
  fromBeginning: boolean;
  cachedSegments: number;
}

export function positiveInt(n: number, name: string): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name}: expected a positive integer`);
  return n;
}

export const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;

export function checkTopicName(topic: string): void {
  if (!TOPIC_NAME.test(topic) || topic === "." || topic === "..") {
    throw new Error(
      `invalid topic name: ${JSON.stringify(topic)} (letters, digits, '.', '_', '-')`,
    );
  }
}

/** Parses an offset given as a decimal string. */
export function parseOffset(offset: string, what: string): number {
  if (typeof offset !== "string" || !/^\d{1,16}$/.test(offset)) {
    throw new RangeError(`invalid ${what}: ${JSON.stringify(offset)}`);
  }
  return Number(offset);
}
