/**
 * The core's port to a counter store: the interface the engine needs,
 * declared here by the core that uses it and implemented below by
 * src/store/ (memory, Redis), which imports it — never the other way round.
 * A store only counts: it offers atomic primitives over (key → concurrent
 * count, rates) and knows which owner holds which connections. What the
 * counts mean — limits, refusals — is decided once, in src/core. The memory
 * store answers synchronously; a networked store (Redis) answers with
 * promises, hence Awaitable.
 */
import type { Awaitable } from './awaitable.js';
import type { KeySnapshot, RateMetric } from './metrics.js';

/**
 * Something that holds connections: one anvil client socket, one proxy
 * listener. When it goes away every connection it holds is released, so a
 * count never outlives the process that reported it.
 */
export interface Owner {
  readonly id: string;
  /** Connections held now, over all keys. */
  readonly held: number;
}

export interface AcquireResult {
  /** Concurrent connections of the key, this one included. */
  readonly count: number;
  /** Connection rate of the key, this one included. */
  readonly rate: number;
  /** False when the table was full and the key could not be stored. */
  readonly tracked: boolean;
}

export interface HitResult {
  readonly rate: number;
  readonly count: number;
  readonly tracked: boolean;
}

export interface StoreStats {
  readonly entries: number;
  /** Keys dropped to make room when the table was full (idle ones only). */
  readonly evicted: number;
  /** Requests for new keys answered without storing them: the table was full of live keys. */
  readonly untracked: number;
}

/** A fleet store's health, for status and metrics. */
export interface StoreStatus {
  /** Where counting happens now: Redis, or this host's memory while Redis is away. */
  readonly backend: 'redis' | 'memory';
  readonly up: boolean;
  /** Switches to the fallback since start. */
  readonly failovers: number;
  /** When the current backend took over, epoch ms. */
  readonly since: number;
}

export interface CounterStore {
  readonly kind: string;
  /** Fleet stores only. */
  status?(): StoreStatus;
  createOwner(label: string): Owner;
  /** One more connection of `key`, held by `owner`; counts a connection event. */
  acquire(key: string, owner: Owner, now: number): Awaitable<AcquireResult>;
  /** acquire() for each key, in one step where the store can (one round trip for Redis). */
  acquireMany(keys: readonly string[], owner: Owner, now: number): Awaitable<AcquireResult[]>;
  /** release() for each key, likewise. */
  releaseMany(keys: readonly string[], owner: Owner, now: number): Awaitable<number[]>;
  /** One connection of `key` fewer, if `owner` holds one (else nothing changes). Returns the count after. */
  release(key: string, owner: Owner, now: number): Awaitable<number>;
  /**
   * Counts one `metric` event of `key` and returns its rate. With `holder`, a
   * holder that holds no connection of `key` is first given one, as anvil does
   * for a session it did not see connect (after a restart of either side).
   */
  hit(key: string, metric: RateMetric, now: number, holder?: Owner): Awaitable<HitResult>;
  /** Counts and rates without changing anything; null for an unknown key. */
  read(key: string, now: number): Awaitable<KeySnapshot | null>;
  /**
   * Adds `member` to the set at `key`, forgetting members not touched for
   * `windowMs`; returns the set's size and whether `member` is new to it.
   * (One login's countries within a day, for max_countries_per_login.)
   */
  touchMember(key: string, member: string, now: number, windowMs: number): Awaitable<{ size: number; added: boolean }>;
  /**
   * Reads the set at `key` as touchMember keeps it, changing nothing: how
   * many members were touched within `windowMs`, and whether `member` is
   * one of them (null: no member asked about).
   */
  members(key: string, member: string | null, now: number, windowMs: number): Awaitable<{ size: number; has: boolean }>;
  /** Releases every connection `owner` holds; returns how many. The owner is done. */
  releaseOwner(owner: Owner, now: number): Awaitable<number>;
  /**
   * The `limit` keys starting with `prefix` with the highest `by` (the count,
   * or a rate), for the monitor; examines at most `maxScan` keys. Not on any
   * request path.
   */
  top(prefix: string, by: 'count' | RateMetric, limit: number, now: number, maxScan: number): Awaitable<{ items: Array<{ key: string; snapshot: KeySnapshot }>; scanned: number; complete: boolean }>;
  /** Drops keys whose count is zero and whose rates have decayed; bounded work per call. */
  sweep(now: number): void;
  stats(): StoreStats;
  close(): Awaitable<void>;
}
