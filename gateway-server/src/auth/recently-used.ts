// A bounded map of entries that hold until a time, for what the gateway takes from memory instead
// of asking again (a verified credential, a session read from the store): full, it drops the least
// recently used entry first; an entry whose time is up is no longer handed out.

export class RecentlyUsed<V extends { until: number }> {
  /** In least-recently-used order: a hit moves its entry to the end, eviction takes the first. */
  private readonly entries = new Map<string, V>();

  constructor(readonly maxEntries: number) {}

  /** The entry of this key while its time is not up (a hit counts as a use). */
  get(key: string, now = Date.now()): V | undefined {
    const entry = this.entries.get(key);
    if (!entry || entry.until <= now) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry;
  }

  /** The entry of this key even when its time is up, until it is evicted or replaced (not a use). */
  peek(key: string): V | undefined {
    return this.entries.get(key);
  }

  set(key: string, entry: V): void {
    this.entries.delete(key);
    while (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, entry);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  values(): IterableIterator<V> {
    return this.entries.values();
  }

  get size(): number {
    return this.entries.size;
  }
}
