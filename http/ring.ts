/**
 * A fixed-capacity FIFO that drops its oldest item when full. Push and shift
 * are O(1); used for per-client WebSocket buffers and the inspector's
 * transition history.
 *
 * @module
 */

/** Bounded FIFO with drop-oldest. */
export class Ring<T> {
  #items: Array<T | undefined>;
  #head = 0;
  #size = 0;

  /** @param capacity Maximum number of items kept, >= 1. */
  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`Ring capacity must be an integer >= 1: ${capacity}`);
    }
    this.#items = new Array(capacity);
  }

  /** Number of items held. */
  get size(): number {
    return this.#size;
  }

  /** Appends; returns true when the oldest item was dropped to make room. */
  push(item: T): boolean {
    const tail = (this.#head + this.#size) % this.capacity;
    this.#items[tail] = item;
    if (this.#size < this.capacity) {
      this.#size++;
      return false;
    }
    this.#head = (this.#head + 1) % this.capacity;
    return true;
  }

  /** Removes and returns the oldest item. */
  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.capacity;
    this.#size--;
    return item;
  }

  /** The items, oldest first (a copy). */
  toArray(): T[] {
    const out: T[] = [];
    for (let i = 0; i < this.#size; i++) {
      out.push(this.#items[(this.#head + i) % this.capacity] as T);
    }
    return out;
  }

  /** Drops every item. */
  clear(): void {
    this.#items = new Array(this.capacity);
    this.#head = 0;
    this.#size = 0;
  }
}
