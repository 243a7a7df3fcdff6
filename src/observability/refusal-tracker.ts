/**
 * Refusals per client address over the last hour, for `/api/top?by=refusals`.
 *
 * Each address keeps a short list of one-minute buckets (only minutes in
 * which it was refused), so the window slides with at most a minute's
 * blur. The Map is kept in order of last refusal (an address refused again
 * moves to the end): the first entry is always the stalest, so addresses
 * quiet for an hour are dropped from the front as refusals come in, and
 * when maxAddresses is passed the stalest tenth goes. A flood from many
 * addresses costs bounded memory; the top of the list stays right unless
 * more than maxAddresses distinct addresses are refused within an hour.
 *
 * Both sweeps walk the Map from its front, where deletions leave holes an
 * iterator must step over, so they run in batches (expiry at most once a
 * second, eviction a tenth at a time), not once per refusal.
 */
import type { Clock } from '../core/clock.js';

export interface RefusalTrackerOptions {
  readonly windowMs?: number;
  readonly bucketMs?: number;
  /** About 1 KiB each at worst (60 buckets): 10,000 addresses stay near 10 MiB. */
  readonly maxAddresses?: number;
}

/** Expiry sweeps at most this often: a second's blur on an hour's window. */
const EXPIRE_EVERY_MS = 1000;

interface Entry {
  country: string | null;
  /** Bucket numbers (time / bucketMs), ascending, and their counts. */
  readonly buckets: number[];
  readonly counts: number[];
  last: number;
}

export interface TopRefused {
  readonly address: string;
  readonly country: string | null;
  readonly count: number;
}

export class RefusalTracker {
  private readonly clock: Clock;
  private readonly windowMs: number;
  private readonly bucketMs: number;
  private readonly max: number;
  private readonly entries = new Map<string, Entry>();
  private expiredAt = -Infinity;

  constructor(clock: Clock, opts: RefusalTrackerOptions = {}) {
    this.clock = clock;
    this.windowMs = opts.windowMs ?? 3_600_000;
    this.bucketMs = opts.bucketMs ?? 60_000;
    this.max = opts.maxAddresses ?? 10_000;
  }

  /** Addresses kept now (some may be past the window until the next record or top). */
  get size(): number {
    return this.entries.size;
  }

  record(address: string, country: string | null): void {
    const now = this.clock.now();
    const bucket = Math.floor(now / this.bucketMs);
    let e = this.entries.get(address);
    if (e === undefined) {
      e = { country, buckets: [], counts: [], last: now };
    } else {
      // Re-inserted below, so the Map stays in order of last refusal.
      this.entries.delete(address);
      e.country = country;
      e.last = now;
    }
    const n = e.buckets.length;
    if (n > 0 && e.buckets[n - 1] === bucket) e.counts[n - 1] = (e.counts[n - 1] as number) + 1;
    else {
      e.buckets.push(bucket);
      e.counts.push(1);
    }
    this.trim(e, bucket);
    this.entries.set(address, e);
    if (now - this.expiredAt >= EXPIRE_EVERY_MS) this.expire(now);
    if (this.entries.size > this.max) this.evict(this.entries.size - Math.floor(this.max * 0.9));
  }

  /** The `limit` addresses refused most in the window, most first (ties by address). */
  top(limit: number): TopRefused[] {
    const now = this.clock.now();
    this.expire(now);
    const first = this.firstBucket(now);
    const out: TopRefused[] = [];
    for (const [address, e] of this.entries) {
      let count = 0;
      for (let i = e.buckets.length - 1; i >= 0 && (e.buckets[i] as number) >= first; i--) count += e.counts[i] as number;
      if (count > 0) out.push({ address, country: e.country, count });
    }
    return out.sort((a, b) => b.count - a.count || (a.address < b.address ? -1 : 1)).slice(0, limit);
  }

  /** The oldest bucket still inside the window. */
  private firstBucket(now: number): number {
    return Math.floor((now - this.windowMs) / this.bucketMs) + 1;
  }

  private trim(e: Entry, bucket: number): void {
    const first = bucket - Math.ceil(this.windowMs / this.bucketMs) + 1;
    let drop = 0;
    while (drop < e.buckets.length && (e.buckets[drop] as number) < first) drop++;
    if (drop > 0) {
      e.buckets.splice(0, drop);
      e.counts.splice(0, drop);
    }
  }

  private evict(n: number): void {
    for (const address of this.entries.keys()) {
      if (n-- <= 0) break;
      this.entries.delete(address);
    }
  }

  /** Drops addresses whose last refusal is out of the window: they are all at the front. */
  private expire(now: number): void {
    this.expiredAt = now;
    for (const [address, e] of this.entries) {
      if (now - e.last < this.windowMs) break;
      this.entries.delete(address);
    }
  }
}
