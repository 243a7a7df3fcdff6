/**
 * The counter store the configuration asks for: the memory store for one
 * host, or for a fleet the Redis store behind the failover of
 * ./failover.ts, with this host's memory store as its fallback.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.js';
import type { RateAlgorithm } from './rate.js';
import type { Config } from '../config/load.js';
import { FailoverStore } from './failover.js';
import { MemoryStore } from './memory.js';
import type { RedisClient } from './redis-client.js';
import type { CounterStore } from '../core/ports.js';

export interface OpenedStore {
  readonly store: CounterStore;
  /** Set in fleet mode. */
  readonly fleet: { readonly node: string; readonly client: RedisClient; readonly failover: FailoverStore } | null;
}

/** How long start waits for Redis before starting in fallback (the client keeps trying). */
const START_CONNECT_MS = 3000;

/** `policyOf` answers from the configuration in force, which a reload may replace. */
export async function openStore(config: Config, rate: RateAlgorithm, clock: Clock, log: Logger, policyOf: (service: string) => 'open' | 'closed' = (service) => config.services[service]?.on_store_failure ?? 'open'): Promise<OpenedStore> {
  const memory = new MemoryStore({ rate, maxEntries: config.engine.max_entries });
  if (config.store.type === 'memory') return { store: memory, fleet: null };
  // Loaded only here: ioredis alone took ~120 ms of every start, a tenth of it.
  const [{ connectWithin, createRedisClient }, { RedisStore }] = await Promise.all([import('./redis-client.js'), import('./redis.js')]);
  const node = nodeName(config);
  const client = createRedisClient(config, 'store');
  // ioredis reports every failed reconnect; the failover logs the switches that matter.
  client.on('error', () => {});
  const connected = await connectWithin(client, START_CONNECT_MS);
  const redis = new RedisStore(client, { rate, node, prefix: config.store.redis.prefix, leaseMs: config.store.lease });
  const failover = new FailoverStore(redis, memory, {
    policyOf,
    log,
    clock,
    renewMs: Math.max(1000, Math.floor(config.store.lease / 3)),
  });
  log.info({ node, redis: describe(config), connected }, connected ? 'store: counting in Redis for the fleet' : 'store: Redis not reachable at start; following on_store_failure until it is');
  await failover.start();
  return { store: failover, fleet: { node, client, failover } };
}

/** This host's name: `store.node`, else the host name's first label. */
export function nodeName(config: Config): string {
  return config.store.node ?? (hostname().split('.')[0] || 'doorman');
}

/** Where Redis is, without credentials. */
function describe(config: Config): string {
  const r = config.store.redis;
  if (r.cluster.length > 0) return `cluster ${r.cluster.join(',')}`;
  if (r.sentinels.length > 0) return `sentinel ${r.sentinel_name} via ${r.sentinels.join(',')}`;
  try {
    const u = new URL(r.url as string);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return 'redis';
  }
}
