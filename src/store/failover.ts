/**
 * The fleet store as the engine sees it: Redis while Redis answers, and a
 * per-service choice when it does not (`on_store_failure`):
 *   open    count in this host's own memory store, so limits still apply
 *           per host;
 *   closed  refuse: the call rejects with StoreUnavailableError, which the
 *           gatekeeper turns into the protocol's temporary failure.
 * The first failed call switches to the fallback (logged, counted); a probe
 * every second switches back when Redis answers again, and the node renews
 * its leases at once, so shared counting resumes without a restart.
 * Connections counted in memory during an outage are given back there.
 */
import type { Logger } from 'pino';
import type { KeySnapshot, RateMetric } from '../core/metrics.js';
import type { MemoryStore } from './memory.js';
import { StoreUnavailableError } from '../errors.js';
import type { RedisStore } from './redis.js';
import type { AcquireResult, CounterStore, HitResult, Owner, StoreStats, StoreStatus } from '../core/ports.js';
import type { Awaitable } from '../core/awaitable.js';

export type StoreFailurePolicy = 'open' | 'closed';

export interface FailoverOptions {
  /** The policy of the service a key belongs to (the text before the key's first ':'). */
  readonly policyOf: (service: string) => StoreFailurePolicy;
  readonly log: Logger;
  readonly clock: { now(): number };
  /** How often a down Redis is probed, and a live node's leases renewed (lease/3). */
  readonly probeMs?: number;
  readonly renewMs: number;
}

class FailoverOwner implements Owner {
  readonly id: string;
  readonly primary: Owner;
  readonly fallback: Owner;
  constructor(primary: Owner, fallback: Owner) {
    this.id = primary.id;
    this.primary = primary;
    this.fallback = fallback;
  }
  get held(): number {
    return this.primary.held + this.fallback.held;
  }
}

function serviceOf(key: string): string {
  const i = key.indexOf(':');
  return i < 0 ? key : key.slice(0, i);
}

export class FailoverStore implements CounterStore {
  readonly kind = 'redis';
  private readonly primary: RedisStore;
  private readonly fallback: MemoryStore;
  private readonly opts: FailoverOptions;
  private up = true;
  private failovers = 0;
  private since: number;
  private timers: NodeJS.Timeout[] = [];
  private probing = false;
  private renewing = false;

  constructor(primary: RedisStore, fallback: MemoryStore, opts: FailoverOptions) {
    this.primary = primary;
    this.fallback = fallback;
    this.opts = opts;
    this.since = opts.clock.now();
  }

  /** Drops this node's connections from an earlier life, then starts renewing and probing. */
  async start(): Promise<void> {
    try {
      const stale = await this.primary.start(this.opts.clock.now());
      if (stale > 0) this.opts.log.info({ keys: stale }, 'store: connections this node held before its restart released');
    } catch (err) {
      this.down(err);
    }
    const renew = setInterval(() => void this.tick(), this.opts.renewMs);
    const probe = setInterval(() => void this.probe(), this.opts.probeMs ?? 1000);
    renew.unref();
    probe.unref();
    this.timers.push(renew, probe);
  }

  status(): StoreStatus {
    return { backend: this.up ? 'redis' : 'memory', up: this.up, failovers: this.failovers, since: this.since };
  }

  createOwner(label: string): Owner {
    return new FailoverOwner(this.primary.createOwner(label), this.fallback.createOwner(label));
  }

  acquire(key: string, owner: Owner, now: number): Awaitable<AcquireResult> {
    return this.run(key, () => this.primary.acquire(key, (owner as FailoverOwner).primary, now), () => this.fallback.acquire(key, (owner as FailoverOwner).fallback, now));
  }

  acquireMany(keys: readonly string[], owner: Owner, now: number): Awaitable<AcquireResult[]> {
    const o = owner as FailoverOwner;
    return this.run(keys[0] ?? '', () => this.primary.acquireMany(keys, o.primary, now), () => this.fallback.acquireMany(keys, o.fallback, now));
  }

  /** Given back where it was counted: in memory if this owner holds it there, else in Redis. */
  release(key: string, owner: Owner, now: number): Awaitable<number> {
    const o = owner as FailoverOwner;
    if (this.fallback.holds(o.fallback, key)) return this.fallback.release(key, o.fallback, now);
    return this.primary.release(key, o.primary, now).catch(() => 0);
  }

  releaseMany(keys: readonly string[], owner: Owner, now: number): Awaitable<number[]> {
    const o = owner as FailoverOwner;
    const inMemory = keys.filter((key) => this.fallback.holds(o.fallback, key));
    if (inMemory.length === keys.length) return this.fallback.releaseMany(keys, o.fallback, now);
    // The usual case, all counted in Redis: one call for all the keys.
    if (inMemory.length === 0) return this.primary.releaseMany(keys, o.primary, now).catch(() => keys.map(() => 0));
    return Promise.all(keys.map((key) => this.release(key, owner, now)));
  }

  hit(key: string, metric: RateMetric, now: number, holder?: Owner): Awaitable<HitResult> {
    const o = holder as FailoverOwner | undefined;
    return this.run(key, () => this.primary.hit(key, metric, now, o?.primary), () => this.fallback.hit(key, metric, now, o?.fallback));
  }

  read(key: string, now: number): Awaitable<KeySnapshot | null> {
    return this.run(key, () => this.primary.read(key, now), () => this.fallback.read(key, now));
  }

  touchMember(key: string, member: string, now: number, windowMs: number): Awaitable<{ size: number; added: boolean }> {
    // "logins:SERVICE:login": the service is the second part.
    const service = key.startsWith('logins:') ? key.slice(7) : key;
    return this.run(service, () => this.primary.touchMember(key, member, now, windowMs), () => this.fallback.touchMember(key, member, now, windowMs));
  }

  members(key: string, member: string | null, now: number, windowMs: number): Awaitable<{ size: number; has: boolean }> {
    return this.run(key, () => this.primary.members(key, member, now, windowMs), () => this.fallback.members(key, member, now, windowMs));
  }

  async releaseOwner(owner: Owner, now: number): Promise<number> {
    const o = owner as FailoverOwner;
    return this.fallback.releaseOwner(o.fallback, now) + (await this.primary.releaseOwner(o.primary, now));
  }

  top(prefix: string, by: 'count' | RateMetric, limit: number, now: number, maxScan: number): ReturnType<CounterStore['top']> {
    if (!this.up) return this.fallback.top(prefix, by, limit, now, maxScan);
    return this.primary.top(prefix, by, limit, now, maxScan).catch((err: unknown) => {
      this.down(err);
      return this.fallback.top(prefix, by, limit, now, maxScan);
    });
  }

  sweep(now: number): void {
    this.fallback.sweep(now);
  }

  stats(): StoreStats {
    return this.up ? this.primary.stats() : this.fallback.stats();
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.fallback.close();
    await this.primary.close();
  }

  /** Redis first; on failure (or while down) the key's service policy. */
  private run<T>(key: string, onRedis: () => Promise<T>, inMemory: () => T): Awaitable<T> {
    if (!this.up) return this.degraded(key, inMemory);
    return onRedis().catch((err: unknown) => {
      if (!(err instanceof StoreUnavailableError)) throw err;
      this.down(err);
      return this.degraded(key, inMemory);
    });
  }

  /** A closed service's call rejects (never throws): callers handle one kind of failure. */
  private degraded<T>(key: string, inMemory: () => T): Awaitable<T> {
    const service = serviceOf(key);
    if (this.opts.policyOf(service) === 'closed') {
      return Promise.reject(new StoreUnavailableError(`the shared store is unreachable and ${service} has on_store_failure: closed`));
    }
    return inMemory();
  }

  private down(err: unknown): void {
    if (!this.up) return;
    this.up = false;
    this.failovers++;
    this.since = this.opts.clock.now();
    this.opts.log.error({ err: (err as Error).message }, 'store: Redis unreachable; services follow on_store_failure (open: counting per host in memory, closed: refusing)');
  }

  private async probe(): Promise<void> {
    if (this.up || this.probing) return;
    this.probing = true;
    try {
      await this.primary.ping();
      await this.primary.renew(this.opts.clock.now());
      const downSince = this.since;
      this.up = true;
      this.since = this.opts.clock.now();
      this.opts.log.info({ down_ms: this.since - downSince }, 'store: Redis answers again; shared counting resumed');
    } catch {
      // still down; the next probe tries again
    } finally {
      this.probing = false;
    }
  }

  private async tick(): Promise<void> {
    if (!this.up || this.renewing) return;
    this.renewing = true;
    try {
      await this.primary.renew(this.opts.clock.now());
    } catch (err) {
      this.down(err);
    } finally {
      this.renewing = false;
    }
  }
}
