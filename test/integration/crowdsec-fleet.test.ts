/**
 * The CrowdSec bouncer in a fleet: Doorman processes sharing one Redis
 * (redis-server) and one bouncer key of a real CrowdSec (Debian's 1.4.6).
 * One node polls (it holds the lease), every node refuses what CrowdSec
 * decided; the polling node killed with SIGKILL, another takes the polling
 * over once the lease lapses; a node started while the Local API is down
 * enforces the fleet's list at once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CROWDSEC_SKIP, crowdsecMissing, TestCrowdsec } from '../helpers/crowdsec.js';
import { startDoorman, type DoormanProcess } from '../helpers/daemon.js';
import { startFakeBackend, type FakeBackend } from '../helpers/fake-backend.js';
import { skipBanner, waitUntil } from '../helpers/guard.js';
import { RawClient } from '../helpers/raw-client.js';
import { REDIS_SKIP, redisAvailable, TestRedis } from '../helpers/redis.js';
import { stateIn } from '../helpers/state.js';

const LEASE_MS = 3000;
const WAIT_MS = 15_000;

interface Node {
  readonly d: DoormanProcess;
  readonly imap: number;
  readonly admin: string;
}

async function startNode(name: string, redis: TestRedis, cs: TestCrowdsec, key: string, backend: FakeBackend, dir: string): Promise<Node> {
  const d = await startDoorman({
    anvil: { enabled: false },
    state: stateIn(join(dir, name)),
    store: { type: 'redis', node: name, lease: `${LEASE_MS}ms`, redis: { url: redis.url, timeout: '500ms', prefix: 'csfleet:' } },
    crowdsec: { lapi_url: cs.url, api_key: key, poll_interval: '1s', request_timeout: '2s' },
    services: { imap: { proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${backend.port}`, proxy_protocol: 'v2', hostname: `${name}.test` } } },
  });
  const imap = d.logs().find((l) => l['msg'] === 'proxy listening')?.['port'] as number;
  const adminLine = d.logs().find((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('admin API'));
  const admin = /(http:\/\/\S+?)\/?$/.exec(String(adminLine?.['msg']))?.[1] ?? '';
  return { d, imap, admin };
}

async function admitted(port: number, from: string): Promise<boolean> {
  const c = await RawClient.open(port, { localAddress: from });
  try {
    return /ready/.test(await c.waitFor(/^.*\r\n/));
  } catch {
    return false;
  } finally {
    c.destroy();
  }
}

async function crowdsecStatus(n: Node): Promise<Record<string, unknown>> {
  const r = await fetch(`${n.admin}/api/status`, { signal: AbortSignal.timeout(5000) });
  return ((await r.json()) as { crowdsec: Record<string, unknown> }).crowdsec;
}

const missing = crowdsecMissing() !== undefined ? CROWDSEC_SKIP : !redisAvailable() ? REDIS_SKIP : undefined;
if (missing !== undefined) {
  skipBanner(missing);
  test('crowdsec in a fleet', { skip: missing }, () => {});
} else {
  describe('CrowdSec in a fleet: one node polls, every node enforces', () => {
    let redis: TestRedis;
    let cs: TestCrowdsec;
    let backend: FakeBackend;
    let dir: string;
    const nodes: Node[] = [];

    before(async () => {
      [redis, cs, backend] = await Promise.all([TestRedis.start(), TestCrowdsec.start(), startFakeBackend({ proxy: true, greeting: '* OK backend ready\r\n' })]);
      dir = await mkdtemp(join(tmpdir(), 'doorman-csfleet-'));
    });
    after(async () => {
      await Promise.all(nodes.map((n) => n.d.stop('SIGKILL')));
      await Promise.all([redis?.stop(), cs?.close(), backend?.close()]);
      await rm(dir, { recursive: true, force: true });
    });

    test('a decision is enforced by every node; the poller killed, another takes over; a new node starts with the list', async () => {
      const key = await cs.addBouncer('doorman-fleet');
      const a = await startNode('mx-a', redis, cs, key, backend, dir);
      nodes.push(a);
      await waitUntil('mx-a polls', async () => (await crowdsecStatus(a))['role'] === 'poller', WAIT_MS);
      const b = await startNode('mx-b', redis, cs, key, backend, dir);
      nodes.push(b);
      const sb = await crowdsecStatus(b);
      assert.equal(sb['role'], 'follower');
      assert.equal(sb['poller'], 'mx-a');

      await cs.cscliOk('decisions', 'add', '--ip', '127.0.0.3', '--duration', '1h', '--reason', 'fleet-test');
      await waitUntil('mx-a refuses 127.0.0.3', async () => !(await admitted(a.imap, '127.0.0.3')), WAIT_MS);
      await waitUntil('mx-b refuses 127.0.0.3, from the fleet store', async () => !(await admitted(b.imap, '127.0.0.3')), WAIT_MS);
      assert.equal(await admitted(b.imap, '127.0.0.1'), true);
      assert.ok(b.d.logs().some((l) => typeof l['msg'] === 'string' && l['msg'].startsWith("crowdsec: the fleet's list")), 'mx-b loaded the list from Redis');
      assert.equal(b.d.logs().some((l) => l['msg'] === 'crowdsec: ban list changed' || l['msg'] === 'crowdsec: ban list loaded'), false, 'mx-b never polled');

      // The polling node dies without a word: the lease lapses and mx-b polls.
      await a.d.stop('SIGKILL');
      await waitUntil('mx-b takes the polling over', async () => (await crowdsecStatus(b))['role'] === 'poller', LEASE_MS + WAIT_MS);
      await cs.cscliOk('decisions', 'add', '--ip', '127.0.0.4', '--duration', '1h', '--reason', 'fleet-test-2');
      await waitUntil('mx-b refuses 127.0.0.4', async () => !(await admitted(b.imap, '127.0.0.4')), WAIT_MS);
      assert.equal(await admitted(b.imap, '127.0.0.3'), false, 'the first ban is still in force');

      // CrowdSec away, a node starts: it enforces what the fleet knows at once.
      await cs.stop();
      const c = await startNode('mx-c', redis, cs, key, backend, dir);
      nodes.push(c);
      assert.equal(await admitted(c.imap, '127.0.0.3'), false);
      assert.equal(await admitted(c.imap, '127.0.0.4'), false);
      assert.equal(await admitted(c.imap, '127.0.0.1'), true);
      await waitUntil("mx-c shows the poller's failure", async () => (await crowdsecStatus(c))['up'] === false, WAIT_MS);
      await cs.resume();
      await waitUntil('the poller sees the Local API again', async () => (await crowdsecStatus(c))['up'] === true, WAIT_MS);
    });
  });
}
