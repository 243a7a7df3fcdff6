/**
 * Redis connections from the `store.redis` settings: one server, Sentinel or
 * Cluster, all through ioredis's own support. Every call has the configured
 * deadline and nothing waits in an offline queue, so an unreachable or hung
 * Redis turns into a failed call at once or at the deadline, never a request
 * that hangs; the client reconnects by itself in the background.
 */
import { readFileSync } from 'node:fs';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../config/load.js';
import { ConfigError } from '../errors.js';
import { parseHostPort } from '../config/endpoint.js';

export type RedisClient = Redis | Cluster;

type RedisConfig = Config['store']['redis'];

const hostPort = parseHostPort;

function password(r: RedisConfig, file: string): string | undefined {
  if (r.password_file === null) return undefined;
  try {
    return readFileSync(r.password_file, 'utf8').split('\n')[0]?.trim() || undefined;
  } catch (err) {
    throw new ConfigError([{ file, key: 'store.redis.password_file', value: r.password_file, expected: `a readable file (${(err as NodeJS.ErrnoException).code ?? String(err)})` }]);
  }
}

/**
 * A client for commands, or (`subscriber`) one for pub/sub, which Redis
 * keeps on its own connection. Not yet connected: call connect().
 */
export function createRedisClient(config: Config, name: string): RedisClient {
  const r = config.store.redis;
  const options: RedisOptions = {
    connectionName: `doorman-${name}`,
    lazyConnect: true,
    enableOfflineQueue: false,
    commandTimeout: r.timeout,
    connectTimeout: Math.max(1000, r.timeout),
    maxRetriesPerRequest: 0,
    // Keeps trying in the background: 100 ms, 200 ms, … at most every 2 s.
    retryStrategy: (times) => Math.min(times * 100, 2000),
    password: password(r, config.source),
  };
  if (r.cluster.length > 0) {
    return new Cluster(r.cluster.map(hostPort), { redisOptions: options, enableOfflineQueue: false, lazyConnect: true, clusterRetryStrategy: (times) => Math.min(times * 100, 2000) });
  }
  if (r.sentinels.length > 0) {
    return new Redis({ ...options, sentinels: r.sentinels.map(hostPort), name: r.sentinel_name, sentinelPassword: options.password });
  }
  return new Redis(r.url as string, options);
}

/** Connects, or gives up after `timeoutMs` (the client keeps retrying in the background). */
export async function connectWithin(client: RedisClient, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      client.connect().then(
        () => true,
        () => false,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
