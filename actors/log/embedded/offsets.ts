/**
 * Committed offsets of one consumer group: kept in memory, written to the
 * group's file atomically (temporary file, fsync, rename), writes coalesced
 * while one is in flight.
 *
 * @module
 */
import { logger } from "../../runtime/logger.ts";
import { atomicWrite, readJson } from "./segment.ts";

const log = logger("embedded-log");

export class GroupOffsets {
  /** topic → partition → next offset to read. */
  readonly offsets = new Map<string, Map<number, number>>();
  #version = 0;
  #written = 0;
  #writing: Promise<void> | null = null;
  #waiters: { version: number; resolve: () => void; reject: (e: unknown) => void }[] = [];

  constructor(readonly groupId: string, readonly path: string) {}

  static async load(groupId: string, path: string): Promise<GroupOffsets> {
    const g = new GroupOffsets(groupId, path);
    const data = await readJson(path) as
      | { offsets?: Record<string, Record<string, string>> }
      | undefined;
    for (const [topic, parts] of Object.entries(data?.offsets ?? {})) {
      const m = new Map<number, number>();
      for (const [p, o] of Object.entries(parts)) m.set(Number(p), Number(o));
      g.offsets.set(topic, m);
    }
    return g;
  }

  get(topic: string, partition: number): number | undefined {
    return this.offsets.get(topic)?.get(partition);
  }

  /** Sets a committed offset; resolves once a write including it is durable. */
  commit(topic: string, partition: number, offset: number): Promise<void> {
    let m = this.offsets.get(topic);
    if (!m) this.offsets.set(topic, m = new Map());
    m.set(partition, offset);
    const version = ++this.#version;
    return new Promise<void>((resolve, reject) => {
      this.#waiters.push({ version, resolve, reject });
      this.#writing ??= this.#writeLoop().finally(() => (this.#writing = null));
    });
  }

  async #writeLoop(): Promise<void> {
    while (this.#written < this.#version) {
      const target = this.#version;
      const snapshot: Record<string, Record<string, string>> = {};
      for (const [topic, parts] of this.offsets) {
        snapshot[topic] = Object.fromEntries([...parts].map(([p, o]) => [String(p), String(o)]));
      }
      const body = JSON.stringify({ group: this.groupId, offsets: snapshot }, null, 1) + "\n";
      const done = this.#waiters.filter((w) => w.version <= target);
      this.#waiters = this.#waiters.filter((w) => w.version > target);
      try {
        await atomicWrite(this.path, body);
        this.#written = target;
        for (const w of done) w.resolve();
      } catch (e) {
        log.error("offset commit failed", { group: this.groupId, error: e });
        // Retried by the next commit, which writes every offset again.
        this.#written = target;
        for (const w of done) w.reject(e);
      }
    }
  }

  async flushed(): Promise<void> {
    while (this.#writing) await this.#writing;
  }
}
