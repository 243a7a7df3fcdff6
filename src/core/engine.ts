/**
 * The counting engine: the one place that turns requests from every front-end
 * (anvil socket, policy services, guard proxy) into store operations, keeps
 * peak statistics and keeps the table swept. Front-ends never touch the store.
 *
 * Keys are "service:client" strings, e.g. "smtp:203.0.113.9" — for the anvil
 * service, exactly the ident Postfix sends.
 */
import type { Logger } from 'pino';
import { then } from './awaitable.js';
import type { Clock } from './clock.js';
import { EMPTY_SNAPSHOT, type KeySnapshot, type RateMetric } from './metrics.js';
import { PeakStats } from './peaks.js';
import type { AcquireResult, CounterStore, HitResult, Owner, StoreStatus } from './ports.js';
import type { Awaitable } from './awaitable.js';

export interface EngineOptions {
  readonly rateUnitMs: number;
  /** How often peak statistics are logged (and reset). */
  readonly statusUpdateMs: number;
  /** How often the table is swept of expired keys. */
  readonly sweepIntervalMs?: number;
}

/** At most one "table is full" warning per this interval, with the counts since the last. */
const FULL_WARNING_INTERVAL_MS = 60_000;

export class Engine {
  readonly peaks = new PeakStats();
  private readonly store: CounterStore;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly opts: EngineOptions;
  private timers: NodeJS.Timeout[] = [];
  private reportedFull = { evicted: 0, untracked: 0, at: 0 };

  constructor(store: CounterStore, clock: Clock, log: Logger, opts: EngineOptions) {
    this.store = store;
    this.clock = clock;
    this.log = log;
    this.opts = opts;
  }

  /** Starts the sweep and statistics timers. They never keep the process alive. */
  start(): void {
    const sweep = setInterval(() => this.maintain(), this.opts.sweepIntervalMs ?? 1000);
    const status = setInterval(() => this.logStatistics(), this.opts.statusUpdateMs);
    sweep.unref();
    status.unref();
    this.timers.push(sweep, status);
  }

  /** Stops the timers and logs the final statistics, as anvil does at exit. */
  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.logStatistics();
    await this.store.close();
  }

  createOwner(label: string): Owner {
    return this.store.createOwner(label);
  }

  connect(key: string, owner: Owner): Awaitable<AcquireResult> {
    const now = this.clock.now();
    return then(this.store.acquire(key, owner, now), (r) => {
      this.peaks.update('count', r.count, key, now);
      this.peaks.update('conn', r.rate, key, now);
      return r;
    });
  }

  /** connect() for each key (a client's address and its network), in one store call. */
  connectMany(keys: readonly string[], owner: Owner): Awaitable<AcquireResult[]> {
    const now = this.clock.now();
    return then(this.store.acquireMany(keys, owner, now), (rs) => {
      for (let i = 0; i < rs.length; i++) {
        const r = rs[i] as AcquireResult;
        this.peaks.update('count', r.count, keys[i] as string, now);
        this.peaks.update('conn', r.rate, keys[i] as string, now);
      }
      return rs;
    });
  }

  disconnectMany(keys: readonly string[], owner: Owner): Awaitable<number[]> {
    return this.store.releaseMany(keys, owner, this.clock.now());
  }

  disconnect(key: string, owner: Owner): Awaitable<number> {
    return this.store.release(key, owner, this.clock.now());
  }

  /**
   * Counts one event; `holder` is given a connection first if it holds none
   * of `key`. `peak: false` for a key that is the engine's bookkeeping and not
   * a client (the AUTH-failure dedupe keys, which hold a login and a password
   * hash): its rate must never become the peak that the log, the API and the
   * dashboard show.
   */
  event(key: string, metric: RateMetric, holder?: Owner, opts: { peak?: boolean } = {}): Awaitable<HitResult> {
    const now = this.clock.now();
    return then(this.store.hit(key, metric, now, holder), (r) => {
      if (opts.peak === false) return r;
      this.peaks.update(metric, r.rate, key, now);
      if (holder !== undefined) this.peaks.update('count', r.count, key, now);
      return r;
    });
  }

  /** Adds `member` to the set at `key` within a sliding window; see CounterStore.touchMember. */
  touchMember(key: string, member: string, windowMs: number): Awaitable<{ size: number; added: boolean }> {
    return this.store.touchMember(key, member, this.clock.now(), windowMs);
  }

  /** Reads a touchMember set; see CounterStore.members. */
  members(key: string, member: string | null, windowMs: number): Awaitable<{ size: number; has: boolean }> {
    return this.store.members(key, member, this.clock.now(), windowMs);
  }

  lookup(key: string): Awaitable<KeySnapshot> {
    return then(this.store.read(key, this.clock.now()), (s) => s ?? EMPTY_SNAPSHOT);
  }

  /** The busiest keys under `prefix` (e.g. "smtp:"), by count or a rate; see CounterStore.top. */
  top(prefix: string, by: 'count' | RateMetric, limit: number, maxScan = 1_000_000): ReturnType<CounterStore['top']> {
    return this.store.top(prefix, by, limit, this.clock.now(), maxScan);
  }

  /** Releases everything `owner` holds: its process or socket went away. */
  closeOwner(owner: Owner): Awaitable<number> {
    return this.store.releaseOwner(owner, this.clock.now());
  }

  /** The store kind ("memory", "redis") and, for a fleet store, its health. */
  get storeKind(): string {
    return this.store.kind;
  }

  storeStatus(): StoreStatus | null {
    return this.store.status?.() ?? null;
  }

  get entries(): number {
    return this.store.stats().entries;
  }

  /** Sweeps a slice of the table, records its size, warns when it is full. */
  maintain(): void {
    const now = this.clock.now();
    this.store.sweep(now);
    const s = this.store.stats();
    this.peaks.update('entries', s.entries, '', now);
    const evicted = s.evicted - this.reportedFull.evicted;
    const untracked = s.untracked - this.reportedFull.untracked;
    if ((evicted > 0 || untracked > 0) && now - this.reportedFull.at >= FULL_WARNING_INTERVAL_MS) {
      this.log.warn(
        { entries: s.entries, evicted, untracked },
        'counter table full (engine.max_entries): idle clients evicted, new clients answered untracked',
      );
      this.reportedFull = { evicted: s.evicted, untracked: s.untracked, at: now };
    }
  }

  logStatistics(): void {
    this.peaks.update('entries', this.store.stats().entries, '', this.clock.now());
    for (const line of this.peaks.report(this.opts.rateUnitMs)) this.log.info(line);
  }
}
