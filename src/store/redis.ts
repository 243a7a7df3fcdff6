/**
 * The fleet's counter store: every node of a fleet counts in one Redis, so a
 * client allowed 5 sessions holds 5 across the fleet, not 5 per host.
 *
 * Each operation is one Lua script call (./redis-scripts.ts): one round trip
 * per decision. Concurrency is kept as leases: a node's connections on a key
 * are its own field in the key's hash, with an expiry the node renews while
 * it lives (every lease/3, by writing its absolute counts). A node that dies
 * loses its connections within the lease; a node that restarts drops its
 * previous life's at start, from the set of keys it recorded holding.
 *
 * Local bookkeeping — what each owner and the node hold — is updated before
 * a call is sent, so the renewal, sent on the same connection after it,
 * always carries counts that include every call before it. A call that fails
 * is undone locally and rejected with StoreUnavailableError; the renewal then
 * mends whatever the server did or did not apply.
 *
 * Times are the nodes' clocks (kept in step by NTP, as mail hosts are), so a
 * controllable clock drives this store exactly as it drives the memory store.
 */
import type { Cluster, Redis } from 'ioredis';
import { BOOKKEEPING_PREFIX, METRIC_COUNT, METRIC_INDEX, RATE_METRICS, type KeySnapshot, type RateMetric } from '../core/metrics.js';
import type { RateAlgorithm } from './rate.js';
import { StoreUnavailableError } from '../errors.js';
import { ACQUIRE, HIT, MEMBERS, READ, RELEASE, RENEW, TOUCH } from './redis-scripts.js';
import type { AcquireResult, CounterStore, HitResult, Owner, StoreStats } from '../core/ports.js';

export interface RedisStoreOptions {
  readonly rate: RateAlgorithm;
  /** This node's name, unique in the fleet. */
  readonly node: string;
  /** Key prefix, e.g. "doorman:". */
  readonly prefix: string;
  /** How long a node's connections outlive its last renewal. */
  readonly leaseMs: number;
  /** Keys a renewal writes per script call. */
  readonly renewBatch?: number;
}

type Client = Redis | Cluster;

/** The scripts as ioredis defines them: numkeys, keys…, args…. */
interface ScriptClient {
  doormanAcquire(numKeys: number, ...args: Array<string | number>): Promise<number[]>;
  doormanRelease(numKeys: number, ...args: Array<string | number>): Promise<number[]>;
  doormanHit(numKeys: number, ...args: Array<string | number>): Promise<[number, number]>;
  doormanRead(numKeys: number, ...args: Array<string | number>): Promise<number[] | null>;
  doormanRenew(numKeys: number, ...args: Array<string | number>): Promise<number>;
  doormanTouch(numKeys: number, ...args: Array<string | number>): Promise<[number, number]>;
  doormanMembers(numKeys: number, ...args: Array<string | number>): Promise<[number, number]>;
}

class RedisOwner implements Owner {
  readonly id: string;
  readonly keys = new Map<string, number>();
  held = 0;
  constructor(id: string) {
    this.id = id;
  }
}

/** A key's hash lives this much longer than its longest window or lease. */
const TTL_SLACK_MS = 5_000;
const DEFAULT_RENEW_BATCH = 500;
/** Members per SADD to the node's key set (one key: any size works on a cluster too). */
const SET_BATCH = 500;

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

export class RedisStore implements CounterStore {
  readonly kind = 'redis';
  readonly node: string;
  private readonly client: Client;
  private readonly scripts: ScriptClient;
  private readonly rate: RateAlgorithm;
  private readonly prefix: string;
  private readonly leaseMs: number;
  private readonly ttlMs: number;
  private readonly algo: 's' | 'f';
  private readonly renewBatch: number;
  private readonly nodeKeys: string;
  /** Redis Cluster: a script may only touch keys of one slot, so each key gets its own call. */
  private readonly cluster: boolean;
  /** key → connections this node holds on it, over all owners. */
  private readonly held = new Map<string, number>();
  /** Keys recorded in the node's key set since the last rewrite of it. */
  private readonly recorded = new Set<string>();
  /** Keys to add to the node's key set at the end of this turn. */
  private unrecorded: string[] = [];
  private ownerSeq = 0;
  private entries = 0;

  constructor(client: Client, opts: RedisStoreOptions) {
    this.client = client;
    this.rate = opts.rate;
    this.node = opts.node;
    this.prefix = opts.prefix;
    this.leaseMs = opts.leaseMs;
    this.ttlMs = Math.max(opts.leaseMs, 2 * opts.rate.unitMs) + TTL_SLACK_MS;
    this.algo = opts.rate.name === 'fixed-window' ? 'f' : 's';
    this.cluster = 'nodes' in client && typeof client.nodes === 'function';
    this.renewBatch = this.cluster ? 1 : (opts.renewBatch ?? DEFAULT_RENEW_BATCH);
    this.nodeKeys = `${opts.prefix}node:${opts.node}:keys`;
    defineScripts(client);
    this.scripts = client as unknown as ScriptClient;
  }

  private k(key: string): string {
    return `${this.prefix}k:${key}`;
  }

  createOwner(label: string): Owner {
    return new RedisOwner(`${this.node}/${label}#${++this.ownerSeq}`);
  }

  /**
   * Drops every connection this node held in an earlier life (it restarted:
   * those sessions are gone) and starts a fresh record of its keys.
   */
  async start(now: number): Promise<number> {
    const stale = await this.call(this.client.smembers(this.nodeKeys));
    // Nothing is held yet, so each count written is 0: the node leaves those keys.
    const base = this.k('');
    await Promise.all(this.writeCounts(stale.map((full) => full.slice(base.length)), now));
    await this.call(this.client.del(this.nodeKeys));
    this.recorded.clear();
    return stale.length;
  }

  acquire(key: string, owner: Owner, now: number): Promise<AcquireResult> {
    return this.acquireMany([key], owner, now).then((r) => r[0] as AcquireResult);
  }

  async acquireMany(keys: readonly string[], owner: Owner, now: number): Promise<AcquireResult[]> {
    const o = owner as RedisOwner;
    for (const key of keys) this.take(o, key, 1);
    try {
      const flat = await this.perSlot(keys, (some) => this.scripts.doormanAcquire(some.length, ...some.map((key) => this.k(key)), now, this.node, this.leaseMs, this.algo, this.rate.unitMs, this.ttlMs));
      const out: AcquireResult[] = [];
      for (let i = 0; i < keys.length; i++) out.push({ count: flat[2 * i] as number, rate: flat[2 * i + 1] as number, tracked: true });
      return out;
    } catch (err) {
      for (const key of keys) this.give(o, key, 1);
      throw err;
    }
  }

  release(key: string, owner: Owner, now: number): Promise<number> {
    return this.releaseMany([key], owner, now).then((r) => r[0] as number);
  }

  /** Keys the owner does not hold are left alone; a failed call is mended by the next renewal. */
  releaseMany(keys: readonly string[], owner: Owner, now: number): Promise<number[]> {
    const o = owner as RedisOwner;
    const amounts = keys.map((key) => (this.give(o, key, 1) ? 1 : 0));
    return this.perSlot(keys, (some) => {
      const n = some.length === keys.length ? amounts : [amounts[keys.indexOf(some[0] as string)] as number];
      return this.scripts.doormanRelease(some.length, ...some.map((key) => this.k(key)), now, this.node, this.leaseMs, this.ttlMs, ...n);
    });
  }

  async hit(key: string, metric: RateMetric, now: number, holder?: Owner): Promise<HitResult> {
    const o = holder as RedisOwner | undefined;
    const give = o !== undefined && !o.keys.has(key);
    if (give) this.take(o, key, 1);
    try {
      const [rate, count] = await this.call(this.scripts.doormanHit(1, this.k(key), now, this.node, this.leaseMs, this.algo, this.rate.unitMs, this.ttlMs, METRIC_INDEX[metric], give ? '1' : '0'));
      return { rate, count, tracked: true };
    } catch (err) {
      if (give) this.give(o, key, 1);
      throw err;
    }
  }

  async read(key: string, now: number): Promise<KeySnapshot | null> {
    const r = await this.call(this.scripts.doormanRead(1, this.k(key), now, this.algo, this.rate.unitMs));
    return r === null ? null : snapshotOf(r);
  }

  async touchMember(key: string, member: string, now: number, windowMs: number): Promise<{ size: number; added: boolean }> {
    const [size, added] = await this.call(this.scripts.doormanTouch(1, `${this.prefix}m:${key}`, now, member, windowMs, 64));
    return { size, added: added === 1 };
  }

  async members(key: string, member: string | null, now: number, windowMs: number): Promise<{ size: number; has: boolean }> {
    const [size, has] = await this.call(this.scripts.doormanMembers(1, `${this.prefix}m:${key}`, now, member ?? '', member === null ? 0 : 1, windowMs));
    return { size, has: has === 1 };
  }

  async releaseOwner(owner: Owner, now: number): Promise<number> {
    const o = owner as RedisOwner;
    const keys = [...o.keys.keys()];
    let released = 0;
    for (const [key, n] of o.keys) {
      released += n;
      this.forget(key, n);
    }
    o.keys.clear();
    o.held = 0;
    // The node's counts on those keys, now without this owner's; a call that fails is mended by the next renewal.
    await Promise.allSettled(this.writeCounts(keys, now));
    return released;
  }

  /**
   * Renews this node's lease on every key it holds, writing its absolute
   * counts, and rewrites its record of those keys. Run every lease/3, and at
   * once when Redis comes back.
   */
  async renew(now: number): Promise<void> {
    const keys = [...this.held.keys()];
    await Promise.all(this.writeCounts(keys, now));
    const tx = this.client.multi().del(this.nodeKeys);
    for (const batch of chunks(keys, SET_BATCH)) tx.sadd(this.nodeKeys, ...batch.map((key) => this.k(key)));
    await this.call(tx.exec());
    this.recorded.clear();
    for (const key of keys) this.recorded.add(key);
    this.entries = (await this.call(this.client.dbsize())) as number;
  }

  /**
   * The busiest keys under `prefix`, scanning at most `maxScan` keys. Not on
   * any request path: SCAN in pages of 500, one READ per key, pipelined.
   */
  async top(prefix: string, by: 'count' | RateMetric, limit: number, now: number, maxScan: number): Promise<{ items: Array<{ key: string; snapshot: KeySnapshot }>; scanned: number; complete: boolean }> {
    const base = `${this.prefix}k:`;
    const match = `${globEscape(base + prefix)}*`;
    const best: Array<{ key: string; snapshot: KeySnapshot; value: number }> = [];
    let scanned = 0;
    let complete = true;
    const servers: Redis[] = this.cluster ? (this.client as Cluster).nodes('master') : [this.client as Redis];
    for (const redis of servers) {
      let cursor = '0';
      do {
        const [next, found] = await this.call(redis.scan(cursor, 'MATCH', match, 'COUNT', 500));
        cursor = next;
        const reads = await Promise.all(found.slice(0, maxScan - scanned).map((full) => this.call(this.scripts.doormanRead(1, full, now, this.algo, this.rate.unitMs)).then((r) => ({ key: full.slice(base.length), r }))));
        scanned += reads.length;
        for (const { key, r } of reads) {
          if (r === null || key.startsWith(BOOKKEEPING_PREFIX)) continue;
          const snapshot = snapshotOf(r);
          const value = by === 'count' ? snapshot.count : snapshot.rates[by];
          if (value <= 0) continue;
          best.push({ key, snapshot, value });
        }
        best.sort((a, b) => b.value - a.value);
        best.length = Math.min(best.length, limit);
      } while (cursor !== '0' && scanned < maxScan);
      if (cursor !== '0') complete = false;
    }
    return { items: best.map(({ key, snapshot }) => ({ key, snapshot })), scanned, complete };
  }

  /** Idle keys expire in Redis by themselves. */
  sweep(): void {}

  stats(): StoreStats {
    return { entries: this.entries, evicted: 0, untracked: 0 };
  }

  async ping(): Promise<void> {
    await this.call(this.client.ping());
  }

  /** Connections this node holds, over all keys. */
  get heldTotal(): number {
    let n = 0;
    for (const v of this.held.values()) n += v;
    return n;
  }

  /** Closes the connection; connections still held are left to their lease. */
  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }

  private take(o: RedisOwner, key: string, n: number): void {
    o.keys.set(key, (o.keys.get(key) ?? 0) + n);
    o.held += n;
    const before = this.held.get(key) ?? 0;
    this.held.set(key, before + n);
    if (!this.recorded.has(key)) {
      this.recorded.add(key);
      // A crash before the next renewal still leaves the key findable at restart: recorded
      // at once, in one SADD for all the keys new in this turn of the event loop.
      this.unrecorded.push(key);
      if (this.unrecorded.length === 1) setImmediate(() => this.record());
    }
  }

  private record(): void {
    const keys = this.unrecorded;
    this.unrecorded = [];
    for (const batch of chunks(keys, SET_BATCH)) {
      this.client.sadd(this.nodeKeys, ...batch.map((key) => this.k(key))).catch(() => {
        for (const key of batch) this.recorded.delete(key);
      });
    }
  }

  /** Undoes one of the owner's connections on `key`; false if it held none. */
  private give(o: RedisOwner, key: string, n: number): boolean {
    const had = o.keys.get(key);
    if (had === undefined) return false;
    if (had <= n) o.keys.delete(key);
    else o.keys.set(key, had - n);
    o.held -= Math.min(had, n);
    this.forget(key, Math.min(had, n));
    return true;
  }

  private forget(key: string, n: number): void {
    const left = (this.held.get(key) ?? 0) - n;
    if (left > 0) this.held.set(key, left);
    else this.held.delete(key);
  }

  /**
   * Writes this node's own count on each key, as it holds it now (RENEW: 0
   * takes the node off the key), in batches sent together.
   */
  private writeCounts(keys: readonly string[], now: number): Array<Promise<number>> {
    return chunks(keys, this.renewBatch).map((batch) =>
      this.call(this.scripts.doormanRenew(batch.length, ...batch.map((key) => this.k(key)), now, this.node, this.leaseMs, this.ttlMs, ...batch.map((key) => this.held.get(key) ?? 0))),
    );
  }

  /** One script call for all keys; on a cluster, one per key, sent together. */
  private perSlot(keys: readonly string[], f: (some: readonly string[]) => Promise<number[]>): Promise<number[]> {
    if (!this.cluster || keys.length === 1) return this.call(f(keys));
    return Promise.all(keys.map((key) => this.call(f([key])))).then((parts) => parts.flat());
  }

  /** Any failure of a call — refused, timed out, disconnected — is a StoreUnavailableError. */
  private async call<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      throw new StoreUnavailableError(`redis: ${(err as Error).message}`, { cause: err });
    }
  }
}

function snapshotOf(r: number[]): KeySnapshot {
  const rates = {} as Record<RateMetric, number>;
  for (let m = 0; m < METRIC_COUNT; m++) rates[RATE_METRICS[m] as RateMetric] = r[m + 1] as number;
  return { count: r[0] as number, rates };
}

function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

const defined = new WeakSet<object>();

/** Registers the scripts on a client once (ioredis sends EVALSHA, and EVAL after a NOSCRIPT). */
export function defineScripts(client: Client): void {
  if (defined.has(client)) return;
  defined.add(client);
  client.defineCommand('doormanAcquire', { lua: ACQUIRE });
  client.defineCommand('doormanRelease', { lua: RELEASE });
  client.defineCommand('doormanHit', { lua: HIT });
  client.defineCommand('doormanRead', { lua: READ, readOnly: true });
  client.defineCommand('doormanRenew', { lua: RENEW });
  client.defineCommand('doormanTouch', { lua: TOUCH });
  client.defineCommand('doormanMembers', { lua: MEMBERS });
}
