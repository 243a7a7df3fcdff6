/**
 * The embedded counter store: one process, no I/O, synchronous.
 *
 * Layout: a KeyIndex from key to slot number (key bytes in typed arrays, see
 * ./key-index.ts), and per slot a few typed-array cells (count, window start,
 * current and previous count per metric): about 120 bytes a tracked client,
 * with no per-key object for the garbage collector to trace. The arrays come
 * in pages of PAGE_SIZE slots that are added, never copied: growing by
 * doubling left the old arrays behind as garbage, about 75 bytes per client
 * of RSS at a million clients.
 *
 * Sweeping and eviction walk the slots round-robin with a cursor, a bounded
 * number per call.
 *
 * A full table (maxEntries keys) first gives up an idle key (count 0);
 * a key with live connections is never dropped, because its count would come
 * back wrong. When no idle key is found in a short scan, the new key is
 * answered as a first-time client without being stored ("untracked"): the
 * caller logs it and Doorman keeps serving.
 */
import { BOOKKEEPING_PREFIX, METRIC_COUNT, METRIC_INDEX, RATE_METRICS, type KeySnapshot, type RateMetric } from '../core/metrics.js';
import type { RateAlgorithm, RateTable } from './rate.js';
import { KeyIndex } from './key-index.js';
import type { AcquireResult, CounterStore, HitResult, Owner, StoreStats } from '../core/ports.js';

export interface MemoryStoreOptions {
  readonly rate: RateAlgorithm;
  readonly maxEntries: number;
  /** Keys examined per sweep() call. */
  readonly sweepBudget?: number;
}

/** Members kept per set, and sets kept in all: a login seen from more countries than this is long past any limit. */
const MAX_MEMBERS = 64;
const MAX_SETS = 100_000;

/** How far to look for an idle key to evict before giving up on storing a new one. */
const EVICT_SCAN = 64;
const PAGE_BITS = 16;
/** Slots per page: 64 Ki slots are 3.75 MiB of arrays. */
const PAGE_SIZE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE_SIZE - 1;

/** One page of slots: a rate table plus the concurrent count per slot. */
interface Page extends RateTable {
  readonly count: Int32Array;
}

class MemoryOwner implements Owner {
  readonly id: string;
  /** key → connections this owner holds on it. */
  readonly keys = new Map<string, number>();
  held = 0;
  constructor(id: string) {
    this.id = id;
  }
}

export class MemoryStore implements CounterStore {
  readonly kind = 'memory';
  private readonly rate: RateAlgorithm;
  private readonly maxEntries: number;
  private readonly sweepBudget: number;
  private readonly index = new KeyIndex();
  private capacity = 0;
  private readonly pages: Page[] = [];
  private free: number[] = [];
  private nextSlot = 0;
  private ownerSeq = 0;
  private sweepCursor = 0;
  private evictCursor = 0;
  private evicted = 0;
  /** key → member → last touched. Insertion order is age order, so the oldest set goes first when full. */
  private readonly sets = new Map<string, Map<string, number>>();
  private untracked = 0;

  constructor(opts: MemoryStoreOptions) {
    this.rate = opts.rate;
    this.maxEntries = opts.maxEntries;
    this.sweepBudget = opts.sweepBudget ?? 20_000;
  }

  createOwner(label: string): Owner {
    return new MemoryOwner(`${label}#${++this.ownerSeq}`);
  }

  acquire(key: string, owner: Owner, now: number): AcquireResult {
    const slot = this.slotFor(key, now);
    if (slot < 0) return { count: 1, rate: 1, tracked: false };
    const page = this.pages[slot >>> PAGE_BITS] as Page;
    const count = this.take(page, slot & PAGE_MASK, key, owner as MemoryOwner);
    return { count, rate: this.rate.hit(page, slot & PAGE_MASK, 0, now), tracked: true };
  }

  /** Whether `owner` holds a connection of `key`. */
  holds(owner: Owner, key: string): boolean {
    return (owner as MemoryOwner).keys.has(key);
  }

  acquireMany(keys: readonly string[], owner: Owner, now: number): AcquireResult[] {
    return keys.map((key) => this.acquire(key, owner, now));
  }

  releaseMany(keys: readonly string[], owner: Owner, now: number): number[] {
    return keys.map((key) => this.release(key, owner, now));
  }

  release(key: string, owner: Owner, now: number): number {
    void now;
    const slot = this.index.get(key);
    if (slot < 0) return 0;
    const page = this.pages[slot >>> PAGE_BITS] as Page;
    const i = slot & PAGE_MASK;
    const o = owner as MemoryOwner;
    const held = o.keys.get(key);
    if (held === undefined) return page.count[i] as number;
    if (held === 1) o.keys.delete(key);
    else o.keys.set(key, held - 1);
    o.held--;
    const c = (page.count[i] as number) - 1;
    page.count[i] = c;
    return c;
  }

  hit(key: string, metric: RateMetric, now: number, holder?: Owner): HitResult {
    const slot = this.slotFor(key, now);
    if (slot < 0) return { rate: 1, count: holder ? 1 : 0, tracked: false };
    const page = this.pages[slot >>> PAGE_BITS] as Page;
    const i = slot & PAGE_MASK;
    if (holder !== undefined && !(holder as MemoryOwner).keys.has(key)) {
      this.take(page, i, key, holder as MemoryOwner);
      this.rate.hit(page, i, 0, now);
    }
    const rate = this.rate.hit(page, i, METRIC_INDEX[metric], now);
    return { rate, count: page.count[i] as number, tracked: true };
  }

  read(key: string, now: number): KeySnapshot | null {
    const slot = this.index.get(key);
    if (slot < 0) return null;
    const page = this.pages[slot >>> PAGE_BITS] as Page;
    const i = slot & PAGE_MASK;
    const rates = {} as Record<RateMetric, number>;
    for (let m = 0; m < METRIC_COUNT; m++) rates[RATE_METRICS[m] as RateMetric] = this.rate.read(page, i, m, now);
    return { count: page.count[i] as number, rates };
  }

  touchMember(key: string, member: string, now: number, windowMs: number): { size: number; added: boolean } {
    let set = this.sets.get(key);
    if (set === undefined) {
      if (this.sets.size >= MAX_SETS) this.sets.delete(this.sets.keys().next().value as string);
      set = new Map();
    } else {
      this.sets.delete(key); // re-inserted below: most recently used last
    }
    for (const [m, at] of set) if (now - at >= windowMs) set.delete(m);
    const added = !set.has(member);
    set.delete(member);
    set.set(member, now);
    if (set.size > MAX_MEMBERS) set.delete(set.keys().next().value as string);
    this.sets.set(key, set);
    return { size: set.size, added };
  }

  members(key: string, member: string | null, now: number, windowMs: number): { size: number; has: boolean } {
    const set = this.sets.get(key);
    if (set === undefined) return { size: 0, has: false };
    let size = 0;
    for (const at of set.values()) if (now - at < windowMs) size++;
    const at = member === null ? undefined : set.get(member);
    return { size, has: at !== undefined && now - at < windowMs };
  }

  releaseOwner(owner: Owner, now: number): number {
    void now;
    const o = owner as MemoryOwner;
    let released = 0;
    for (const [key, held] of o.keys) {
      const slot = this.index.get(key);
      if (slot < 0) continue;
      const page = this.pages[slot >>> PAGE_BITS] as Page;
      const i = slot & PAGE_MASK;
      page.count[i] = Math.max(0, (page.count[i] as number) - held);
      released += held;
    }
    o.keys.clear();
    o.held = 0;
    return released;
  }

  sweep(now: number): void {
    let budget = Math.min(this.sweepBudget, this.nextSlot);
    while (budget-- > 0) {
      if (this.sweepCursor >= this.nextSlot) this.sweepCursor = 0;
      const slot = this.sweepCursor++;
      if (!this.index.used(slot)) continue;
      const page = this.pages[slot >>> PAGE_BITS] as Page;
      const i = slot & PAGE_MASK;
      if (page.count[i] === 0 && this.rate.idle(page, i, now)) this.drop(slot);
    }
  }

  top(prefix: string, by: 'count' | RateMetric, limit: number, now: number, maxScan: number): { items: Array<{ key: string; snapshot: KeySnapshot }>; scanned: number; complete: boolean } {
    // A sorted array of at most `limit` candidates: limits are small (≤ 100), inserts rare after the first.
    const best: Array<{ slot: number; value: number }> = [];
    const m = by === 'count' ? -1 : METRIC_INDEX[by];
    let scanned = 0;
    for (let slot = 0; slot < this.nextSlot && scanned < maxScan; slot++) {
      if (!this.index.used(slot)) continue;
      scanned++;
      const page = this.pages[slot >>> PAGE_BITS] as Page;
      const i = slot & PAGE_MASK;
      const value = m < 0 ? (page.count[i] as number) : this.rate.read(page, i, m, now);
      if (value <= 0 || (best.length === limit && value <= (best[best.length - 1] as { value: number }).value)) continue;
      const key = this.index.keyOf(slot) ?? '';
      if (key.startsWith(BOOKKEEPING_PREFIX) || (prefix !== '' && !key.startsWith(prefix))) continue;
      let at = best.length;
      while (at > 0 && (best[at - 1] as { value: number }).value < value) at--;
      best.splice(at, 0, { slot, value });
      if (best.length > limit) best.pop();
    }
    const items = best.map(({ slot }) => {
      const key = this.index.keyOf(slot) as string;
      return { key, snapshot: this.read(key, now) as KeySnapshot };
    });
    return { items, scanned, complete: scanned >= this.index.size };
  }

  stats(): StoreStats {
    return { entries: this.index.size, evicted: this.evicted, untracked: this.untracked };
  }

  close(): void {
    this.index.clear();
    this.pages.length = 0;
    this.free = [];
    this.capacity = 0;
    this.nextSlot = 0;
  }

  /** Gives `owner` one more connection on slot i of the page; returns the key's count. */
  private take(page: Page, i: number, key: string, owner: MemoryOwner): number {
    owner.keys.set(key, (owner.keys.get(key) ?? 0) + 1);
    owner.held++;
    const c = (page.count[i] as number) + 1;
    page.count[i] = c;
    return c;
  }

  /** The key's slot, made if need be; -1 when the table is full of live keys. */
  private slotFor(key: string, now: number): number {
    const found = this.index.get(key);
    if (found >= 0) return found;
    if (this.index.size >= this.maxEntries && !this.evictOne(now)) {
      this.untracked++;
      return -1;
    }
    let slot = this.free.pop();
    if (slot === undefined) {
      if (this.nextSlot >= this.capacity) this.addPage();
      slot = this.nextSlot++;
    }
    this.index.insert(key, slot);
    const page = this.pages[slot >>> PAGE_BITS] as Page;
    page.count[slot & PAGE_MASK] = 0;
    this.rate.init(page, slot & PAGE_MASK, now);
    return slot;
  }

  /** Drops the next idle key the eviction cursor finds within EVICT_SCAN slots. */
  private evictOne(now: number): boolean {
    void now;
    for (let n = 0; n < EVICT_SCAN; n++) {
      if (this.evictCursor >= this.nextSlot) this.evictCursor = 0;
      const slot = this.evictCursor++;
      if (this.index.used(slot) && (this.pages[slot >>> PAGE_BITS] as Page).count[slot & PAGE_MASK] === 0) {
        this.drop(slot);
        this.evicted++;
        return true;
      }
    }
    return false;
  }

  private drop(slot: number): void {
    this.index.removeSlot(slot);
    this.free.push(slot);
  }

  /** Adds a page; a small table (maxEntries under a page) gets a small page. */
  private addPage(): void {
    const size = Math.min(PAGE_SIZE, this.maxEntries - this.capacity);
    this.pages.push({ count: new Int32Array(size), start: new Float64Array(size), counts: new Int32Array(size * METRIC_COUNT * 2) });
    this.capacity += PAGE_SIZE;
  }
}
