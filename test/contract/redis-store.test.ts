/**
 * The counter-store contract, run against the Redis store on a real
 * redis-server, plus what only a shared store has: leases that end with
 * their node, a restarted node dropping its old connections, renewals that
 * mend counts, and failures reported as StoreUnavailableError.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import { slidingWindow } from '../../src/store/rate.js';
import { StoreUnavailableError } from '../../src/errors.js';
import { RedisStore } from '../../src/store/redis.js';
import { skipBanner } from '../helpers/guard.js';
import { REDIS_SKIP, redisAvailable, TestRedis } from '../helpers/redis.js';
import { storeContract } from './store-contract.js';

const UNIT = 60_000;
const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);
const LEASE = 30_000;

if (!redisAvailable()) {
  skipBanner(REDIS_SKIP);
  test('redis store contract', { skip: REDIS_SKIP }, () => {});
} else {
  let server: TestRedis;
  const clients: Redis[] = [];
  let seq = 0;
  const client = () => {
    const c = new Redis(server.url, { enableOfflineQueue: true, commandTimeout: 2000, maxRetriesPerRequest: 1 });
    clients.push(c);
    return c;
  };
  const storeOn = (c: Redis, node: string, prefix: string, rate = slidingWindow(UNIT), leaseMs = LEASE) => new RedisStore(c, { rate, node, prefix, leaseMs });

  before(async () => {
    server = await TestRedis.start();
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    await server.stop();
  });

  // The contract's clock jumps hours without renewals: a lease of a year keeps connections alive through it.
  storeContract({ name: 'redis', make: async (rate) => storeOn(client(), 'n1', `t${++seq}:`, rate, 365 * 86_400_000) });

  test('redis: two nodes count one client together; a node that stops renewing loses its share after the lease', async () => {
    const prefix = `lease${++seq}:`;
    const a = storeOn(client(), 'mx1', prefix);
    const b = storeOn(client(), 'mx2', prefix);
    const oa = a.createOwner('proxy');
    const ob = b.createOwner('proxy');
    await a.acquire('imap:192.0.2.5', oa, T0);
    await a.acquire('imap:192.0.2.5', oa, T0);
    assert.equal((await b.acquire('imap:192.0.2.5', ob, T0)).count, 3);
    await a.renew(T0 + 20_000);
    // mx2 died at T0 (no renewal): its connection ends with its lease.
    assert.equal((await a.read('imap:192.0.2.5', T0 + LEASE - 1))?.count, 3);
    assert.equal((await a.read('imap:192.0.2.5', T0 + LEASE))?.count, 2);
    assert.equal((await a.acquire('imap:192.0.2.5', oa, T0 + LEASE + 1)).count, 3, 'mx1 renewed at +20 s: its two live on');
  });

  test('redis: a restarted node drops the connections of its earlier life at start', async () => {
    const prefix = `restart${++seq}:`;
    const before = storeOn(client(), 'mx1', prefix);
    const o = before.createOwner('proxy');
    await before.acquire('pop3:192.0.2.6', o, T0);
    await before.acquire('pop3:192.0.2.7', o, T0);
    const other = storeOn(client(), 'mx2', prefix);
    await other.acquire('pop3:192.0.2.6', other.createOwner('proxy'), T0);
    // kill -9: no release. The same node name starts again.
    const again = storeOn(client(), 'mx1', prefix);
    assert.equal(await again.start(T0 + 1000), 2);
    assert.equal((await again.read('pop3:192.0.2.6', T0 + 1000))?.count, 1, "mx2's connection stays");
    assert.equal((await again.read('pop3:192.0.2.7', T0 + 1000))?.count, 0);
  });

  test('redis: a renewal writes the node\'s absolute counts, mending a release that was lost', async () => {
    const prefix = `mend${++seq}:`;
    const c = client();
    const s = storeOn(c, 'mx1', prefix);
    const o = s.createOwner('proxy');
    await s.acquire('smtp:192.0.2.8', o, T0);
    await s.acquire('smtp:192.0.2.8', o, T0);
    // A release whose reply was lost after the server had applied nothing:
    await c.hset(`${prefix}k:smtp:192.0.2.8`, 'n|mx1', 7);
    assert.equal((await s.read('smtp:192.0.2.8', T0))?.count, 7);
    await s.renew(T0 + 1);
    assert.equal((await s.read('smtp:192.0.2.8', T0 + 1))?.count, 2);
    assert.deepEqual(await c.smembers(`${prefix}node:mx1:keys`), [`${prefix}k:smtp:192.0.2.8`]);
  });

  test('redis: an unreachable server is a StoreUnavailableError, and local counts are undone', async () => {
    const dead = new Redis({ port: 1, host: '127.0.0.1', lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null });
    const s = new RedisStore(dead, { rate: slidingWindow(UNIT), node: 'mx1', prefix: 'x:', leaseMs: LEASE });
    const o = s.createOwner('proxy');
    await assert.rejects(s.acquire('imap:192.0.2.1', o, T0), StoreUnavailableError);
    assert.equal(o.held, 0);
    assert.equal(s.heldTotal, 0);
    await assert.rejects(s.read('imap:192.0.2.1', T0), (err: StoreUnavailableError) => err.code === 'DOORMAN_ERR_STORE_UNAVAILABLE');
    dead.disconnect();
  });

  test('redis: a hung server is a StoreUnavailableError within the command deadline', async () => {
    const own = await TestRedis.start();
    const c = new Redis(own.url, { commandTimeout: 200, enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: true });
    try {
      await c.connect();
      const s = new RedisStore(c, { rate: slidingWindow(UNIT), node: 'mx1', prefix: 'h:', leaseMs: LEASE });
      own.freeze();
      const t = Date.now();
      await assert.rejects(s.acquire('imap:192.0.2.1', s.createOwner('p'), T0), StoreUnavailableError);
      assert.ok(Date.now() - t < 2000, 'rejected by the deadline, not left hanging');
    } finally {
      own.thaw();
      c.disconnect();
      await own.stop();
    }
  });
}
