/**
 * Fleet mode against a real redis-server: two Doorman processes share one
 * Redis. A per-address IMAP limit holds across both; a node killed with
 * SIGKILL loses its connections within the lease; stopping Redis gives each
 * service its on_store_failure (open: counting per host; closed: a temporary
 * refusal), no crash; starting Redis again restores shared counting.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDoorman, type DoormanProcess } from '../helpers/daemon.js';
import { startFakeBackend, type FakeBackend } from '../helpers/fake-backend.js';
import { skipBanner, waitUntil } from '../helpers/guard.js';
import { RawClient } from '../helpers/raw-client.js';
import { REDIS_SKIP, redisAvailable, TestRedis } from '../helpers/redis.js';
import { stateIn } from '../helpers/state.js';

const LEASE_MS = 3000;
const CLIENT = '127.0.0.30';
const FULL = /^\* BYE \[UNAVAILABLE\] Too many connections from your address \(at most 2 at once\)/;

export interface FleetNode {
  readonly d: DoormanProcess;
  readonly imap: number;
  readonly pop3: number;
  readonly admin: string;
}

export async function startNode(name: string, redis: TestRedis, backend: FakeBackend, dir: string, extra: Record<string, unknown> = {}): Promise<FleetNode> {
  const d = await startDoorman({
    anvil: { enabled: false },
    state: stateIn(join(dir, name)),
    store: { type: 'redis', node: name, lease: `${LEASE_MS}ms`, redis: { url: redis.url, timeout: '200ms', prefix: 'fleet:' } },
    services: {
      imap: {
        limits: { connections_per_address: 2 },
        proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${backend.port}`, proxy_protocol: 'v2', hostname: `${name}.test` },
      },
      pop3: {
        limits: { connections_per_address: 2 },
        on_store_failure: 'closed',
        proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${backend.port}`, proxy_protocol: 'v2', hostname: `${name}.test` },
      },
    },
    ...extra,
  });
  const ports = d.logs().filter((l) => l['msg'] === 'proxy listening').map((l) => l['port'] as number);
  const adminLine = d.logs().find((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('admin API'));
  const admin = /(http:\/\/\S+?)\/?$/.exec(String(adminLine?.['msg']))?.[1] ?? '';
  return { d, imap: ports[0] as number, pop3: ports[1] as number, admin };
}

/** Opens a session as CLIENT and returns its first line's client, or the refusal text. */
async function session(port: number, greeting: RegExp): Promise<{ c: RawClient; line: string }> {
  const c = await RawClient.open(port, { localAddress: CLIENT });
  const line = await c.waitFor(/^.*\r\n/);
  if (!greeting.test(line) && !/BYE|ERR/.test(line)) throw new Error(`unexpected: ${line}`);
  return { c, line };
}

if (!redisAvailable()) {
  skipBanner(REDIS_SKIP);
  test('fleet mode', { skip: REDIS_SKIP }, () => {});
} else {
  describe('two nodes, one Redis', () => {
    let redis: TestRedis;
    let backend: FakeBackend;
    let dir: string;
    let a: FleetNode;
    let b: FleetNode;
    const clients: RawClient[] = [];

    before(async () => {
      redis = await TestRedis.start();
      backend = await startFakeBackend({ proxy: true, greeting: '* OK backend ready\r\n' });
      dir = await mkdtemp(join(tmpdir(), 'doorman-fleet-'));
      [a, b] = await Promise.all([startNode('mx-a', redis, backend, dir), startNode('mx-b', redis, backend, dir)]);
    });
    after(async () => {
      for (const c of clients) c.destroy();
      await Promise.all([a?.d.stop(), b?.d.stop()]);
      await backend?.close();
      await redis?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    test('a per-address limit of 2 holds across both nodes', async () => {
      const first = await session(a.imap, /OK/);
      const second = await session(b.imap, /OK/);
      clients.push(first.c, second.c);
      assert.match(first.line, /^\* OK backend ready/);
      assert.match(second.line, /^\* OK backend ready/);
      const third = await session(a.imap, /OK/);
      const fourth = await session(b.imap, /OK/);
      assert.match(third.line, FULL);
      assert.match(fourth.line, FULL);
    });

    test('a ban made on one node refuses on the other within a second; the list and kick span the fleet', async () => {
      const banned = '127.0.0.31';
      const ok = await RawClient.open(b.imap, { localAddress: banned });
      assert.match(await ok.waitFor(/^.*\r\n/), /^\* OK backend ready/);
      clients.push(ok);
      // Every node lists every node's connections, each with its node's name.
      const list = (await (await fetch(`${b.admin}/api/connections?service=imap`)).json()) as { total: number; items: Array<{ node: string; client: { address: string }; id: string }>; missing_nodes: string[] };
      assert.equal(list.total, 3, JSON.stringify(list));
      assert.deepEqual(list.items.map((c) => c.node).sort(), ['mx-a', 'mx-b', 'mx-b']);
      assert.deepEqual(list.missing_nodes, []);
      // Ban on mx-a; the client held by mx-b is kicked there, and mx-b refuses it at once.
      const t = Date.now();
      const r = await fetch(`${a.admin}/api/kick`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: banned, ban: '10m', reason: 'fleet test' }) });
      const kick = (await r.json()) as { kicked: number; hits: Array<{ node: string }> };
      assert.equal(r.status, 200, JSON.stringify(kick));
      assert.equal(kick.kicked, 1);
      assert.deepEqual(kick.hits.map((h) => h.node), ['mx-b']);
      await ok.closed();
      await waitUntil('mx-b refuses the banned address', async () => {
        const c = await RawClient.open(b.imap, { localAddress: banned });
        const line = await c.waitFor(/^.*\r\n/);
        c.destroy();
        return /Your address is temporarily blocked/.test(line);
      }, 1000);
      assert.ok(Date.now() - t < 1500);
      // The fleet's audit log, read on the other node: the kick and the ban, made on mx-a.
      const audit = (await (await fetch(`${b.admin}/api/audit?limit=2`)).json()) as { items: Array<{ action: string; node: string; target: string }> };
      assert.deepEqual(audit.items.map((e) => [e.action, e.node, e.target]), [['kick', 'mx-a', banned], ['ban.add', 'mx-a', banned]]);
      const bans = (await (await fetch(`${b.admin}/api/bans`)).json()) as { items?: Array<{ target: string }> } | Array<{ target: string }>;
      assert.match(JSON.stringify(bans), /127\.0\.0\.31/);
      // A kick by id reaches the node that holds it.
      const onA = list.items.find((c) => c.node === 'mx-a');
      assert.ok(onA);
      const byId = (await (await fetch(`${b.admin}/api/kick`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: onA.id }) })).json()) as { kicked: number };
      assert.equal(byId.kicked, 1);
      await clients[0]?.closed();
      clients.splice(0, 1);
      await waitUntil('mx-a gave the count back', async () => {
        const s = await session(a.imap, /OK/);
        clients.push(s.c);
        return !FULL.test(s.line);
      });
    });

    test("a node killed with SIGKILL frees its slots within the lease", async () => {
      const killed = Date.now();
      await a.d.stop('SIGKILL');
      // mx-a's session is gone with it, but Redis still counts it until its lease ends.
      let freed = 0;
      await waitUntil('mx-b accepts a second session from the client', async () => {
        const s = await session(b.imap, /OK/);
        if (FULL.test(s.line)) return false;
        clients.push(s.c);
        freed = Date.now() - killed;
        return true;
      }, LEASE_MS + 4000);
      assert.ok(freed <= LEASE_MS + 3000, `freed after ${freed} ms`);
      assert.match((await session(b.imap, /OK/)).line, FULL, 'and the limit still holds');
    });

    test('Redis down: open keeps counting per host, closed refuses for now; Redis back: shared again', async () => {
      for (const c of clients.splice(0)) c.destroy();
      await waitUntil('mx-b counts nothing', async () => {
        const s = await session(b.imap, /OK/);
        s.c.destroy();
        return !FULL.test(s.line);
      });
      await redis.stop(false);
      await b.d.waitForLog((l) => String(l['msg']).startsWith('store: Redis unreachable'), 5000).catch(async () => {
        // No call reached it yet: the next session does.
        (await session(b.imap, /OK/)).c.destroy();
        await b.d.waitForLog((l) => String(l['msg']).startsWith('store: Redis unreachable'), 5000);
      });
      const open1 = await session(b.imap, /OK/);
      const open2 = await session(b.imap, /OK/);
      const open3 = await session(b.imap, /OK/);
      clients.push(open1.c, open2.c, open3.c);
      assert.match(open1.line, /^\* OK backend ready/);
      assert.match(open2.line, /^\* OK backend ready/);
      assert.match(open3.line, FULL, 'the limit applies per host');
      const closed = await session(b.pop3, /OK/);
      assert.match(closed.line, /^-ERR \[SYS\/TEMP\] Service temporarily unavailable/);
      assert.equal(b.d.proc.exitCode, null, 'no crash');
      const status = (await (await fetch(`${b.admin}/api/status`)).json()) as { store: { type: string; node: string; up: boolean; backend: string; failovers: number } };
      assert.deepEqual([status.store.type, status.store.node, status.store.up, status.store.backend], ['redis', 'mx-b', false, 'memory']);
      assert.ok(status.store.failovers >= 1);
      assert.match(await (await fetch(`${b.admin}/metrics`)).text(), /^doorman_store_up 0$/m);

      await redis.resume();
      await b.d.waitForLog((l) => l['msg'] === 'store: Redis answers again; shared counting resumed', 5000);
      for (const c of clients.splice(0)) c.destroy();
      // A node joining now shares the counts again.
      a = await startNode('mx-a', redis, backend, dir);
      const x = await session(a.imap, /OK/);
      const y = await session(b.imap, /OK/);
      clients.push(x.c, y.c);
      assert.match(x.line, /^\* OK backend ready/);
      assert.match(y.line, /^\* OK backend ready/);
      assert.match((await session(a.imap, /OK/)).line, FULL);
      const pop = await session(b.pop3, /OK/);
      clients.push(pop.c);
      assert.match(pop.line, /^\+OK|^\* OK backend ready/);
      assert.match(await (await fetch(`${b.admin}/metrics`)).text(), /^doorman_store_up 1$/m);
      // Redis restarted empty, and a node restarted: the fleet's ban is still in force there.
      const c = await RawClient.open(a.imap, { localAddress: '127.0.0.31' });
      assert.match(await c.waitFor(/^.*\r\n/), /Your address is temporarily blocked/);
      c.destroy();
    });
  });
}
