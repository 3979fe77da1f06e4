/**
 * Per topic-partition scheduler and offset tracker (plain code, no actor
 * event per record).
 *
 * ```ts
 * const worker = createPartitionWorker({ topic, partition, generation, process, ordering: "key" });
 * worker.on("full", () => consumer.send({ type: "PAUSE", reason: "inflight" }));
 * worker.on("ready", () => consumer.send({ type: "RESUME", reason: "inflight" }));
 * worker.push(batch.messages.map(toSourceRecord));
 * resolveOffset/commit(worker.committableOffset());
 * ```
 *
 * **Ordering.** `partition` (default): one record at a time, in offset order.
 * `key`: records of one key in offset order, different keys in parallel; all
 * records with a null key form one key of their own. `none`: in parallel, in
 * start order. At most `maxInflight` records run at once (1 in `partition`).
 *
 * **Bound.** `pending` counts records pushed and not finished (queued or
 * running). The worker becomes *full* when `pending ≥ maxInflight` (event
 * `full`; the binding pauses the partition) and *ready* again when `pending`
 * falls to `maxInflight / 2` (event `ready`; the binding resumes). A batch
 * pushed while full is still accepted (the batch was already fetched), so the
 * buffer is bounded by `maxInflight` plus one fetch.
 *
 * **Offsets.** {@link PartitionWorker.committableOffset} is the low
 * watermark: the offset after the highest record such that it and every
 * record pushed before it finished (Kafka's "next offset to read"). It never
 * passes an unfinished record, also across gaps in offsets (compaction).
 * Records whose offset is not above the last one pushed (a re-fetch after a
 * seek) are ignored.
 *
 * **Failures.** `process` should not throw (the processor turns bad input
 * into dead letters). If it rejects anyway, the record stays unfinished (the
 * watermark stops there, so it is consumed again after a restart) and the
 * worker emits `error`; other records go on. A rejection after the worker's
 * signal aborted (drain deadline) is expected and not reported.
 *
 * **Generations.** `generation` is the consumer group generation of the
 * assignment; the binding creates a new worker per assignment and ignores
 * (fences) a worker whose generation is older than the current one.
 *
 * Metric: `queue_depth{topic,partition}` = `pending`.
 *
 * @module
 */
import { FifoQueue } from "./fifo_queue.ts";
import { logger } from "../runtime/logger.ts";
import { queueDepth } from "../runtime/metrics.ts";
import type { SourceRecord } from "../record/record.ts";

const log = logger("partition-worker");

/** Ordering modes (`SLUICE_ORDERING`). */
export type OrderingMode = "partition" | "key" | "none";

/** What processes one record; resolves when the record is finished. */
export type ProcessFn = (record: SourceRecord, signal: AbortSignal) => Promise<unknown>;

/** Options of {@link createPartitionWorker}. */
export interface PartitionWorkerOptions {
  topic: string;
  partition: number;
  process: ProcessFn;
  /** Default `partition` (`SLUICE_ORDERING`). */
  ordering?: OrderingMode;
  /** Records pending before the worker is full. Default 64 (`SLUICE_MAX_INFLIGHT`). */
  maxInflight?: number;
  /** Consumer group generation of the assignment. Default 0. */
  generation?: number;
}

/** Events of a worker. */
export type WorkerEventName = "full" | "ready" | "idle" | "error";

/** Listener arguments per event. */
export interface WorkerEvents {
  full: [];
  ready: [];
  /** Nothing queued or running. */
  idle: [];
  error: [error: unknown, record: SourceRecord];
}

/** Result of {@link PartitionWorker.drain}. */
export interface DrainResult {
  /** True when every started record finished before the deadline. */
  drained: boolean;
  /** {@link PartitionWorker.committableOffset} after the drain. */
  committable: string | null;
  /** Queued records dropped without starting (they will be consumed again). */
  dropped: number;
  /** Records still running at the deadline (their signal was aborted). */
  unfinished: number;
}

interface Entry {
  record: SourceRecord;
  offset: bigint;
  key: string;
  done: boolean;
}

/** One key's records waiting to start, and where the key is (key mode). */
class KeyQueue extends FifoQueue<Entry> {
  /** One of its records is running. */
  active = false;
  /** The key is in the ready queue. */
  inReady = false;

  constructor() {
    super(256);
  }
}

function keyString(key: Uint8Array | null): string {
  if (key === null) return "";
  let s = "k";
  for (let i = 0; i < key.length; i += 4096) {
    s += String.fromCharCode(...key.subarray(i, i + 4096));
  }
  return s;
}

/** One partition's scheduler and offset tracker (see the module doc). */
export class PartitionWorker {
  /** Topic of the partition. */
  readonly topic: string;
  /** Partition number. */
  readonly partition: number;
  /** Consumer group generation of the assignment. */
  readonly generation: number;
  /** Ordering mode. */
  readonly ordering: OrderingMode;
  /** Pending records before the worker is full. */
  readonly maxInflight: number;

  #process: ProcessFn;
  #limit: number;
  // Every entry pushed and not yet passed by the watermark, in offset order.
  #entries = new FifoQueue<Entry>();
  #watermark: bigint | null = null;
  #lastPushed: bigint | null = null;
  // Entries to start (partition and none modes).
  #fifo = new FifoQueue<Entry>();
  // Per key (key mode): each key's queue, and the keys with a record ready to start.
  #keys = new Map<string, KeyQueue>();
  #readyKeys = new FifoQueue<string>();
  #queued = 0;
  #running = 0;
  #full = false;
  #closed = false;
  #starting = true;
  #abort = new AbortController();
  #listeners: { [K in WorkerEventName]: Set<(...args: WorkerEvents[K]) => void> } = {
    full: new Set(),
    ready: new Set(),
    idle: new Set(),
    error: new Set(),
  };
  #idleWaiters: (() => void)[] = [];
  #gauge: { set(v: number): void };

  constructor(options: PartitionWorkerOptions) {
    this.topic = options.topic;
    this.partition = options.partition;
    this.generation = options.generation ?? 0;
    this.ordering = options.ordering ?? "partition";
    this.maxInflight = options.maxInflight ?? 64;
    if (!Number.isInteger(this.maxInflight) || this.maxInflight < 1) {
      throw new RangeError(
        `Invalid maxInflight: expected an integer of at least 1, got ${this.maxInflight}`,
      );
    }
    this.#process = options.process;
    this.#limit = this.ordering === "partition" ? 1 : this.maxInflight;
    this.#gauge = queueDepth.labels({ topic: this.topic, partition: String(this.partition) });
    this.#gauge.set(0);
  }

  /** Records pushed and not finished (queued + running). */
  get pending(): number {
    return this.#queued + this.#running;
  }

  /** Records waiting to start. */
  get queued(): number {
    return this.#queued;
  }

  /** Records running. */
  get running(): number {
    return this.#running;
  }

  /** True once {@link drain} was called: pushes are refused. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True between a `full` event and the next `ready` event. */
  isFull(): boolean {
    return this.#full;
  }

  /** Listens to an event; returns the unsubscribe function. */
  on<K extends WorkerEventName>(
    event: K,
    listener: (...args: WorkerEvents[K]) => void,
  ): () => void {
    this.#listeners[event].add(listener);
    return () => this.#listeners[event].delete(listener);
  }

  #emit<K extends WorkerEventName>(event: K, ...args: WorkerEvents[K]): void {
    for (const l of this.#listeners[event]) {
      try {
        l(...args);
      } catch (e) {
        log.error("Worker listener failed", { event, error: e });
      }
    }
  }

  /**
   * Adds records (in offset order, as fetched). Records at or below the last
   * offset pushed are ignored. Returns how many were accepted.
   *
   * @throws {Error} after {@link drain}.
   */
  push(records: readonly SourceRecord[]): number {
    if (this.#closed) {
      throw new Error(`Partition worker is draining: ${this.topic}/${this.partition}`);
    }
    let accepted = 0;
    for (const record of records) {
      const offset = BigInt(record.offset);
      if (this.#lastPushed !== null && offset <= this.#lastPushed) continue;
      this.#lastPushed = offset;
      const key = this.ordering === "key" ? keyString(record.key) : "";
      const e: Entry = { record, offset, key, done: false };
      this.#entries.push(e);
      this.#queued++;
      accepted++;
      if (this.ordering === "key") {
        let ks = this.#keys.get(key);
        if (!ks) {
          ks = new KeyQueue();
          this.#keys.set(key, ks);
        }
        ks.push(e);
        if (!ks.active && !ks.inReady) {
          ks.inReady = true;
          this.#readyKeys.push(key);
        }
      } else {
        this.#fifo.push(e);
      }
    }
    if (accepted > 0) {
      this.#gauge.set(this.pending);
      if (!this.#full && this.pending >= this.maxInflight) {
        this.#full = true;
        this.#emit("full");
      }
      this.#pump();
    }
    return accepted;
  }

  #next(): Entry | undefined {
    if (this.ordering !== "key") return this.#fifo.shift();
    const key = this.#readyKeys.shift();
    if (key === undefined) return undefined;
    const ks = this.#keys.get(key)!;
    ks.inReady = false;
    ks.active = true;
    return ks.shift();
  }

  #pump(): void {
    while (this.#running < this.#limit) {
      const e = this.#next();
      if (!e) return;
      this.#queued--;
      this.#running++;
      let p: Promise<unknown>;
      try {
        p = this.#process(e.record, this.#abort.signal);
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(() => this.#finish(e, true, undefined), (err) => this.#finish(e, false, err));
    }
  }

  #finish(e: Entry, ok: boolean, err: unknown): void {
    this.#running--;
    if (ok) {
      e.done = true;
      this.#advance();
    } else if (!this.#abort.signal.aborted) {
      log.error("Record processing failed; its offset will not be committed", {
        topic: this.topic,
        partition: this.partition,
        offset: e.record.offset,
        error: err,
      });
      this.#emit("error", err, e.record);
    }
    if (this.ordering === "key") {
      const ks = this.#keys.get(e.key)!;
      ks.active = false;
      if (ks.length > 0) {
        ks.inReady = true;
        this.#readyKeys.push(e.key);
      } else {
        this.#keys.delete(e.key);
      }
    }
    const pending = this.pending;
    this.#gauge.set(pending);
    if (this.#full && pending <= Math.floor(this.maxInflight / 2)) {
      this.#full = false;
      this.#emit("ready");
    }
    if (this.#starting) this.#pump();
    if (this.#running === 0 && this.#queued === 0) {
      this.#emit("idle");
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  #advance(): void {
    const entries = this.#entries;
    for (let e = entries.peek(); e?.done; e = entries.peek()) {
      this.#watermark = e.offset + 1n;
      entries.shift();
    }
  }

  /**
   * The offset to commit: the one after the highest record that finished
   * with every record pushed before it. Null until the first such record.
   */
  committableOffset(): string | null {
    return this.#watermark === null ? null : this.#watermark.toString();
  }

  /**
   * Stops taking records and waits for the running ones, at most
   * `deadlineMs`. Queued records are dropped (default) or, with
   * `dropQueued: false`, still started until the deadline. At the deadline
   * the rest of the queue is dropped and the records still running get their
   * signal aborted. Dropped records are never committed past.
   */
  async drain(deadlineMs: number, options: { dropQueued?: boolean } = {}): Promise<DrainResult> {
    this.#closed = true;
    let dropped = 0;
    if (options.dropQueued ?? true) dropped += this.#dropQueue();
    if (this.pending > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const idle = new Promise<"idle">((r) => this.#idleWaiters.push(() => r("idle")));
      const timeout = new Promise<"timeout">((r) => {
        timer = setTimeout(() => r("timeout"), Math.max(0, deadlineMs));
      });
      const res = await Promise.race([idle, timeout]);
      clearTimeout(timer);
      if (res === "timeout") {
        this.#starting = false;
        dropped += this.#dropQueue();
        this.#idleWaiters = [];
        const unfinished = this.#running;
        this.#abort.abort(new DOMException("Partition drain deadline passed", "AbortError"));
        return { drained: false, committable: this.committableOffset(), dropped, unfinished };
      }
    }
    this.#starting = false;
    return { drained: true, committable: this.committableOffset(), dropped, unfinished: 0 };
  }

  #dropQueue(): number {
    const n = this.#queued;
    this.#queued = 0;
    this.#fifo.clear();
    this.#readyKeys.clear();
    for (const [k, ks] of this.#keys) {
      ks.clear();
      ks.inReady = false;
      if (!ks.active) this.#keys.delete(k);
    }
    this.#gauge.set(this.pending);
    return n;
  }

  /** Aborts the records running (their signal) and removes the gauge. */
  dispose(): void {
    this.#closed = true;
    this.#starting = false;
    if (!this.#abort.signal.aborted) {
      this.#abort.abort(new DOMException("Partition worker disposed", "AbortError"));
    }
    for (const s of Object.values(this.#listeners)) s.clear();
    queueDepth.remove({ topic: this.topic, partition: String(this.partition) });
  }
}

/** Creates a worker for one assigned topic-partition. */
export function createPartitionWorker(options: PartitionWorkerOptions): PartitionWorker {
  return new PartitionWorker(options);
}
