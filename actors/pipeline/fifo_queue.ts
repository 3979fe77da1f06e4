/**
 * A first-in first-out queue on one array: `shift` moves a head index
 * instead of moving the items (O(1)), and the consumed slots are given back
 * by compaction.
 *
 * ```ts
 * const q = new FifoQueue<Entry>();
 * q.push(e);
 * const next = q.shift(); // undefined when empty
 * ```
 *
 * **Compaction.** When the last item is taken, the array is emptied (its
 * slots are released at once). Otherwise, once more than `compactAfter`
 * slots were consumed and they are more than half of the array, the live
 * items are copied to a new array (one copy per at least `compactAfter`
 * shifts, so amortised O(1)). Memory stays bounded by twice the live items
 * plus `compactAfter`.
 *
 * @module
 */

/** A FIFO queue with a head index and compaction (see the module doc). */
export class FifoQueue<T> {
  #items: T[] = [];
  #head = 0;
  readonly #compactAfter: number;

  /** @param compactAfter consumed slots tolerated before a compaction (default 4096, at least 1). */
  constructor(compactAfter = 4096) {
    if (!Number.isInteger(compactAfter) || compactAfter < 1) {
      throw new RangeError(`Invalid compactAfter: expected an integer ≥ 1, got ${compactAfter}`);
    }
    this.#compactAfter = compactAfter;
  }

  /** Items in the queue. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Slots of the backing array, consumed ones included (diagnostics, tests). */
  get footprint(): number {
    return this.#items.length;
  }

  /** Adds `item` at the tail. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** The head item without taking it; undefined when empty. */
  peek(): T | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined;
  }

  /** Takes the head item; undefined when empty. */
  shift(): T | undefined {
    const items = this.#items;
    if (this.#head >= items.length) return undefined;
    const item = items[this.#head];
    this.#head++;
    if (this.#head === items.length) {
      items.length = 0;
      this.#head = 0;
    } else if (this.#head > this.#compactAfter && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Removes every item. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }

  /** Removes every item and returns them, head first. */
  drain(): T[] {
    const out = this.#head === 0 ? this.#items : this.#items.slice(this.#head);
    this.#items = [];
    this.#head = 0;
    return out;
  }
}
