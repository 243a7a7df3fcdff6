/**
 * The counter-store contract on a real three-master Redis Cluster, through
 * ioredis's Cluster client: a decision's keys live in different slots, so
 * the store must split its multi-key calls there, and top() must scan every
 * master. The fleet state's compare-and-set keeps its two keys in one slot.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Cluster } from 'ioredis';
import { slidingWindow } from '../../src/store/rate.js';
import { FleetState } from '../../src/fleet/state.js';
import { StateStore } from '../../src/state/runtime-state.js';
import { RedisStore } from '../../src/store/redis.js';
import { skipBanner } from '../helpers/guard.js';
import { memoryLogger } from '../helpers/log.js';
import { REDIS_SKIP, redisAvailable, TestRedisCluster } from '../helpers/redis.js';
import { storeContract } from './store-contract.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

if (!redisAvailable()) {
  skipBanner(REDIS_SKIP);
  test('redis cluster store contract', { skip: REDIS_SKIP }, () => {});
} else {
  let cluster: TestRedisCluster;
  const clients: Cluster[] = [];
  let seq = 0;
  const client = () => {
    const c = new Cluster(cluster.seeds, { redisOptions: { commandTimeout: 3000 } });
    clients.push(c);
    return c;
  };

  before(async () => {
    cluster = await TestRedisCluster.start();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await cluster?.stop();
  });

  storeContract({ name: 'redis cluster', make: async (rate) => new RedisStore(client(), { rate, node: 'n1', prefix: `c${++seq}:`, leaseMs: 365 * 86_400_000 }) });

  test('redis cluster: two nodes, renewals and a restart, over keys in many slots', async () => {
    const prefix = `cl${++seq}:`;
    const T0 = Date.UTC(2026, 10, 23, 12, 0, 0);
    const a = new RedisStore(client(), { rate: slidingWindow(60_000), node: 'mx1', prefix, leaseMs: 30_000 });
    const o = a.createOwner('proxy');
    const keys = Array.from({ length: 20 }, (_, i) => `imap:198.51.100.${i}`);
    for (const k of keys) await a.acquireMany([k, 'imap:198.51.100.0/24'], o, T0);
    assert.equal((await a.read('imap:198.51.100.0/24', T0))?.count, 20);
    await a.renew(T0 + 10_000);
    const again = new RedisStore(client(), { rate: slidingWindow(60_000), node: 'mx1', prefix, leaseMs: 30_000 });
    assert.equal(await again.start(T0 + 11_000), 21);
    assert.equal((await again.read('imap:198.51.100.0/24', T0 + 11_000))?.count, 0);
  });

  test('redis cluster: the fleet state changes by compare-and-set', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'doorman-cl-state-'));
    try {
      const { log } = memoryLogger();
      const prefix = `st${++seq}:`;
      const one = await FleetState.open({ client: client(), prefix, node: 'mx1', cache: await StateStore.open(join(dir, 'a.json')), log });
      const two = await FleetState.open({ client: client(), prefix, node: 'mx2', cache: await StateStore.open(join(dir, 'b.json')), log });
      await one.update((s) => ({ ...s, bans: [...s.bans, { target: '192.0.2.1', until: Date.now() + 60_000, reason: 'a', created_at: Date.now() }] }));
      await two.update((s) => ({ ...s, bans: [...s.bans, { target: '192.0.2.2', until: Date.now() + 60_000, reason: 'b', created_at: Date.now() }] }));
      await one.reload();
      assert.deepEqual(one.current.bans.map((b) => b.target), ['192.0.2.1', '192.0.2.2'], 'neither change lost');
      one.close();
      two.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
}
