/**
 * The recent refusals of each client address, for `doorman why`: every
 * front-end's refusal (through the refusal event), with its rule, cause,
 * counts, retry-after or ban, and the front-end that applied it.
 *
 * Bounded, whatever comes: at most MAX_ADDRESSES addresses, PER_ADDRESS
 * records each, none older than MAX_AGE_MS shown. A refusal like the
 * address's newest one (same service, front-end and rule; for a ban, the
 * same ban) is folded into it
 * (a count, first and last time, the latest counts), so an address refused a
 * thousand times in a row by its ban keeps one record, and the older,
 * different refusals stay readable beside it. The Map is kept in order of
 * last refusal (an address refused again moves to the end), so the stalest
 * address is always first; past the cap the stalest tenth goes at once
 * (deletions leave holes a front-to-back walk must step over, so they are
 * batched, as in ./refusal-tracker.ts).
 *
 * Memory: a record is about 0.4 KiB with its reason text, so the worst case
 * (every address with PER_ADDRESS different refusals) is about
 * 4,096 × 8 × 0.4 KiB ≈ 13 MiB; a flood from many addresses, each refused
 * for one reason, keeps one record per address, about 3 MiB. Under a flood
 * from more than 4,096 addresses, an address's record lasts only until
 * 4,096 others are refused after it.
 *
 * The allowed path never reaches this: only refusals are events.
 */
import type { Clock } from '../core/clock.js';
import type { Refusal } from '../core/decision.js';
import type { RefusalEvent } from '../core/events.js';

/** Addresses kept. */
export const MAX_ADDRESSES = 4096;
/** Records kept per address (different refusals; repeats fold into one). */
export const PER_ADDRESS = 8;
/** Records older than this are not shown (they go when their address is refused again or evicted). */
export const MAX_AGE_MS = 24 * 3_600_000;

export interface RefusalLogOptions {
  readonly maxAddresses?: number;
  readonly perAddress?: number;
  readonly maxAgeMs?: number;
}

/** One refusal, or a run of like ones, of one address. */
export interface RefusalRecord {
  /** Epoch ms (the engine's clock) of the first and the latest refusal of the run. */
  readonly first: number;
  last: number;
  /** Refusals folded into this record. */
  times: number;
  readonly service: string;
  /** The front-end: proxy, policy, dovecot, nginx, haproxy. */
  readonly by: string;
  country: string | null;
  /** The latest refusal of the run: its counts, retry-after, ban. */
  refusal: Refusal;
}

export class RefusalLog {
  private readonly clock: Clock;
  private readonly max: number;
  private readonly per: number;
  readonly maxAgeMs: number;
  /** Address → its records, oldest first. */
  private readonly byAddress = new Map<string, RefusalRecord[]>();

  constructor(clock: Clock, opts: RefusalLogOptions = {}) {
    this.clock = clock;
    this.max = opts.maxAddresses ?? MAX_ADDRESSES;
    this.per = opts.perAddress ?? PER_ADDRESS;
    this.maxAgeMs = opts.maxAgeMs ?? MAX_AGE_MS;
  }

  /** Addresses held now. */
  get size(): number {
    return this.byAddress.size;
  }

  /** The bounds, for what `doorman why` says when it has nothing. */
  get bounds(): { addresses: number; perAddress: number; maxAgeMs: number } {
    return { addresses: this.max, perAddress: this.per, maxAgeMs: this.maxAgeMs };
  }

  /** The refusal event's listener (the event's `address` is canonical: every front-end formats it so). */
  readonly onRefusal = (e: RefusalEvent): void => this.record(e);

  record(e: RefusalEvent): void {
    const now = this.clock.now();
    let list = this.byAddress.get(e.address);
    if (list === undefined) list = [];
    // Re-inserted below, so the Map stays in order of last refusal.
    else this.byAddress.delete(e.address);
    const top = list[list.length - 1];
    if (top !== undefined && top.service === e.service && top.by === e.by && sameKind(top.refusal, e.refusal) && now - top.last < this.maxAgeMs) {
      top.last = now;
      top.times++;
      top.country = e.country;
      top.refusal = e.refusal;
    } else {
      list.push({ first: now, last: now, times: 1, service: e.service, by: e.by, country: e.country, refusal: e.refusal });
      if (list.length > this.per) list.shift();
    }
    this.byAddress.set(e.address, list);
    if (this.byAddress.size > this.max) this.evict(this.byAddress.size - Math.floor(this.max * 0.9));
  }

  /** The address's records within MAX_AGE_MS, newest first (by their latest refusal). `address` in canonical form. */
  recent(address: string): RefusalRecord[] {
    const list = this.byAddress.get(address);
    if (list === undefined) return [];
    const since = this.clock.now() - this.maxAgeMs;
    // Only the newest record is ever folded into, so the list stays in order of last refusal.
    return list.filter((r) => r.last > since).reverse();
  }

  private evict(n: number): void {
    for (const address of this.byAddress.keys()) {
      if (n-- <= 0) break;
      this.byAddress.delete(address);
    }
  }
}

/**
 * Whether `b` repeats `a`: the same rule and, for a ban, the same ban (by
 * target, origin and end: a fleet's state re-adds its bans as new objects,
 * and a repeat offender's next ban is a new record).
 */
function sameKind(a: Refusal, b: Refusal): boolean {
  if (a.rule !== b.rule) return false;
  const x = a.ban;
  const y = b.ban;
  return x === y || (x !== undefined && y !== undefined && x.target === y.target && x.origin === y.origin && x.until === y.until);
}
