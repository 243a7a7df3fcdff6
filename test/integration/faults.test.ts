/**
 * Faults a daemon in front of production mail must ride out, each made real:
 * a backend that accepts and never says a word, one that resets at once, a
 * Redis that hangs (SIGSTOP, not just refuses), a full disk when the state
 * file is written (a 64 KiB tmpfs, so the ENOSPC is the kernel's), and
 * kill -9 at random moments during a burst of changes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon } from '../../src/main.js';
import { parseState } from '../../src/state/runtime-state.js';
import { startDoorman } from '../helpers/daemon.js';
import { countOf, skipBanner, startGuard, waitUntil } from '../helpers/guard.js';
import { memoryLogger } from '../helpers/log.js';
import { RawClient } from '../helpers/raw-client.js';
import { REDIS_SKIP, redisAvailable, TestRedis } from '../helpers/redis.js';
import { isolated, stateIn } from '../helpers/state.js';

const root = typeof process.getuid === 'function' && process.getuid() === 0;

/** A TCP server that runs `onConnection` for each socket. */
async function server(onConnection: (s: Socket) => void): Promise<{ port: number; close(): Promise<void>; sockets: Socket[] }> {
  const sockets: Socket[] = [];
  const srv: Server = createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    onConnection(s);
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as { port: number }).port,
    sockets,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => srv.close(() => resolve()));
    },
  };
}

test('a backend that accepts and never answers: the idle timeout closes both sides and the count comes back', async (t) => {
  // Reads (and drops) whatever comes, so its side sees the proxy's close; writes nothing.
  const silent = await server((s) => s.resume());
  t.after(() => silent.close());
  const { daemon } = await startGuard(t, {
    imap: { limits: { connections_per_address: 5 }, proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${silent.port}`, proxy_protocol: 'v2', idle_timeout: '1s' } },
  });
  const port = daemon.proxies[0]?.port ?? 0;
  const c = await RawClient.open(port, { localAddress: '127.0.0.50' });
  await waitUntil('counted', async () => (await countOf(daemon, 'imap:127.0.0.50')) === 1);
  await c.closed(5000);
  assert.match(c.received, /^\* BYE \[UNAVAILABLE\] Idle for too long/);
  await waitUntil('count back', async () => (await countOf(daemon, 'imap:127.0.0.50')) === 0 && daemon.registry.size === 0);
  await waitUntil('backend side closed too', () => silent.sockets.length === 1 && silent.sockets.every((s) => s.readableEnded));
});

test('a backend that resets every connection at once: each client is closed, counts come back, the daemon lives', async (t) => {
  const reset = await server((s) => s.resetAndDestroy());
  t.after(() => reset.close());
  const { daemon } = await startGuard(t, { smtp: { limits: { connections_per_address: 50 }, proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${reset.port}`, proxy_protocol: 'v1' } } });
  const port = daemon.proxies[0]?.port ?? 0;
  const clients = await Promise.all(Array.from({ length: 30 }, () => RawClient.open(port, { localAddress: '127.0.0.51' })));
  await Promise.all(clients.map((c) => c.closed(5000)));
  await waitUntil('count back', async () => (await countOf(daemon, 'smtp:127.0.0.51')) === 0 && daemon.registry.size === 0);
  // Still serving: the same happens again, rather than a hang or a crash.
  const again = await RawClient.open(port, { localAddress: '127.0.0.51' });
  await again.closed(5000);
});

test('the disk full when the state file is written: the change is refused, the old state kept intact', { skip: root ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const mnt = mkdtempSync(join(tmpdir(), 'doorman-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
  t.after(() => {
    execFileSync('umount', ['-l', mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });
  const cfg = parseConfig({ anvil: { enabled: false }, admin: { listen: null }, metrics: { listen: '127.0.0.1:0' }, state: stateIn(mnt), services: { imap: {} } }, 'test');
  const { log } = memoryLogger();
  const d = await startDaemon(cfg, log);
  t.after(() => d.stop());
  const me = { address: '127.0.0.1' };
  await d.control.ban('192.0.2.1', 3_600_000, 'before the disk filled', me);
  const before = readFileSync(join(mnt, 'state.json'), 'utf8');
  // Fill the disk: one block at a time until the kernel says ENOSPC.
  mkdirSync(join(mnt, 'filler'));
  for (let i = 0; ; i++) {
    try {
      writeFileSync(join(mnt, 'filler', String(i)), Buffer.alloc(4096));
    } catch (err) {
      assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      break;
    }
  }
  await assert.rejects(d.control.ban('192.0.2.2', 3_600_000, 'with the disk full', me), (err: NodeJS.ErrnoException) => err.code === 'ENOSPC');
  assert.equal(readFileSync(join(mnt, 'state.json'), 'utf8'), before, 'the state file is as it was');
  assert.deepEqual(parseState(before, 'state.json').bans.map((b) => b.target), ['192.0.2.1']);
  assert.deepEqual(d.control.bans().map((b) => b.target), ['192.0.2.1'], 'the refused ban is not in force either');
  rmSync(join(mnt, 'filler'), { recursive: true });
  await d.control.ban('192.0.2.2', 3_600_000, 'after space came back', me);
  assert.deepEqual(parseState(readFileSync(join(mnt, 'state.json'), 'utf8'), 'state.json').bans.map((b) => b.target).sort(), ['192.0.2.1', '192.0.2.2']);
});

test('kill -9 at random moments during a burst of changes never leaves a state file that does not load', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-kill-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = { anvil: { enabled: false }, state: stateIn(dir), services: { imap: {} } };
  let last = 0;
  for (let round = 0; round < 5; round++) {
    const d = await startDoorman(config);
    const line = await d.waitForLog((l) => String(l['msg']).startsWith('admin API'));
    const url = /(http:\/\/\S+?)\/?$/.exec(String(line['msg']))?.[1] ?? '';
    // A request to a daemon killed under it may be left with nothing to settle it (undici's
    // sockets and queue hold no reference on the event loop): the abort is on a referenced
    // timer, so the test ends rather than being cancelled with the loop empty.
    const abort = new AbortController();
    const deadline = setTimeout(() => abort.abort(), 10_000);
    const burst = Array.from({ length: 40 }, (_, i) =>
      fetch(`${url}/api/bans`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: `198.51.${round}.${i}`, ttl: '1h', reason: 'burst' }), signal: abort.signal }).catch(() => null),
    );
    await sleep(5 + Math.floor(Math.random() * 40));
    d.proc.kill('SIGKILL');
    await d.exited;
    await Promise.all(burst);
    clearTimeout(deadline);
    await d.stop();
    // The next start loads it (a damaged file would stop it), with every ban of earlier rounds;
    // killed before the first write, there is no file yet, which is an empty state.
    const file = join(dir, 'state.json');
    const state = existsSync(file) ? parseState(readFileSync(file, 'utf8'), 'state.json') : { bans: [] };
    assert.ok(state.bans.length >= last, `round ${round}: ${state.bans.length} bans, had ${last}`);
    last = state.bans.length;
  }
  const d = await startDoorman(config);
  t.after(() => d.stop());
});

test('a Redis that hangs: decisions follow on_store_failure after the deadline, never hang; it thaws, shared counting resumes', { skip: redisAvailable() ? false : REDIS_SKIP }, async (t) => {
  const redis = await TestRedis.start();
  t.after(() => redis.stop());
  const backend = await server((s) => s.write('* OK hello\r\n'));
  t.after(() => backend.close());
  const dir = mkdtempSync(join(tmpdir(), 'doorman-hang-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const proxy = (extra: object) => ({ listen: ['127.0.0.1:0'], backend: `127.0.0.1:${backend.port}`, proxy_protocol: 'none', ...extra });
  const cfg = parseConfig(
    {
      anvil: { enabled: false },
      ...isolated(dir),
      store: { type: 'redis', node: 'hang-test', redis: { url: redis.url, timeout: '200ms' } },
      services: { imap: { limits: { connections_per_address: 3 }, proxy: proxy({}) }, pop3: { on_store_failure: 'closed', proxy: proxy({}) } },
    },
    'test',
  );
  const { log, lines } = memoryLogger();
  const d = await startDaemon(cfg, log);
  t.after(() => d.stop());
  const [imap, pop3] = [d.proxies[0]?.port ?? 0, d.proxies[1]?.port ?? 0];
  redis.freeze();
  const t0 = Date.now();
  const open = await RawClient.open(imap, { localAddress: '127.0.0.52' });
  await open.waitFor(/^\* OK hello/, 3000);
  assert.ok(Date.now() - t0 < 2000, `answered in ${Date.now() - t0} ms`);
  const closed = await RawClient.open(pop3, { localAddress: '127.0.0.52' });
  await closed.closed(3000);
  assert.match(closed.received, /^-ERR \[SYS\/TEMP\] Service temporarily unavailable/);
  assert.ok(lines.some((l) => String(l['msg']).startsWith('store: Redis unreachable')));
  redis.thaw();
  await waitUntil('back on Redis', () => lines.some((l) => l['msg'] === 'store: Redis answers again; shared counting resumed'), 5000);
  open.destroy();
});
