/**
 * Sentinel, from the configuration down: `store.redis.sentinels` makes an
 * ioredis client that asks a real redis-sentinel for the master, and the
 * store counts there.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../src/config/load.js';
import { slidingWindow } from '../../src/store/rate.js';
import { connectWithin, createRedisClient } from '../../src/store/redis-client.js';
import { RedisStore } from '../../src/store/redis.js';
import { skipBanner } from '../helpers/guard.js';
import { freePort, REDIS_SERVER, REDIS_SKIP, redisAvailable, TestRedis } from '../helpers/redis.js';

if (!redisAvailable()) {
  skipBanner(REDIS_SKIP);
  test('redis sentinel', { skip: REDIS_SKIP }, () => {});
} else {
  test('store.redis.sentinels: the store finds the master through a real sentinel and counts there', async (t) => {
    const master = await TestRedis.start();
    t.after(() => master.stop());
    const dir = await mkdtemp(join(tmpdir(), 'doorman-sentinel-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const port = await freePort();
    const conf = join(dir, 'sentinel.conf');
    await writeFile(conf, [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `sentinel monitor doorman-test 127.0.0.1 ${master.port} 1`, 'sentinel down-after-milliseconds doorman-test 5000', ''].join('\n'));
    const sentinel: ChildProcess = spawn(REDIS_SERVER, [conf, '--sentinel'], { stdio: 'ignore' });
    t.after(() => {
      sentinel.kill('SIGKILL');
    });
    const config = parseConfig({ store: { type: 'redis', node: 'mx1', redis: { sentinels: [`127.0.0.1:${port}`], sentinel_name: 'doorman-test', timeout: '1s' } } }, 'test');
    const client = createRedisClient(config, 'store');
    client.on('error', () => {});
    t.after(() => client.disconnect());
    let connected = false;
    for (let i = 0; i < 50 && !connected; i++) {
      connected = await connectWithin(client, 1000);
      if (!connected) await sleep(100);
    }
    assert.ok(connected, 'connected through the sentinel');
    const store = new RedisStore(client, { rate: slidingWindow(60_000), node: 'mx1', prefix: 'sn:', leaseMs: 30_000 });
    const o = store.createOwner('proxy');
    await store.acquire('imap:192.0.2.9', o, Date.now());
    assert.equal((await store.acquire('imap:192.0.2.9', o, Date.now())).count, 2);
    // It is the master's count: read it there directly.
    const direct = createRedisClient(parseConfig({ store: { type: 'redis', redis: { url: master.url } } }, 'test'), 'check');
    t.after(() => direct.disconnect());
    await direct.connect();
    assert.equal(await direct.hget('sn:k:imap:192.0.2.9', 'n|mx1'), '2');
  });
}
