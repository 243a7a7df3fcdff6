/**
 * The guard proxy over real sockets, in front of a stand-in server
 * (../helpers/fake-backend.ts): relaying, PROXY headers both ways, refusals
 * in each protocol's words, the backend down, kicks, idle and listener caps,
 * half-close, backpressure, and counts given back on every way a connection
 * can end. Real Dovecot and Postfix behind the proxy: guard-dovecot and
 * guard-postfix.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import type { Daemon } from '../../src/main.js';
import { encodeProxyV1, encodeProxyV2 } from '../../src/protocols/proxy-protocol.js';
import { startFakeBackend, type FakeBackend } from '../helpers/fake-backend.js';
import { countOf, startGuard, waitUntil } from '../helpers/guard.js';
import { RawClient } from '../helpers/raw-client.js';

const backends: FakeBackend[] = [];
after(async () => {
  for (const b of backends) await b.close();
});

async function backend(proxy: boolean, greeting?: string, endOnEnd = true): Promise<FakeBackend> {
  const b = await startFakeBackend({ proxy, greeting, endOnEnd });
  backends.push(b);
  return b;
}

const COUNTRIES: Record<string, string> = { '127.0.0.66': 'RU' };

async function guard(t: TestContext, services: Record<string, unknown>): Promise<{ d: Daemon; lines: Array<Record<string, unknown>> }> {
  const { daemon, lines } = await startGuard(t, services, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
  return { d: daemon, lines };
}

function proxyConf(b: FakeBackend | number, extra: Record<string, unknown> = {}) {
  const port = typeof b === 'number' ? b : b.port;
  return { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${port}`, proxy_protocol: 'v2', hostname: 'mx.test', ...extra };
}

const until = waitUntil;
const count = countOf;

test('relays both ways, passing the client address on in a PROXY v2 or v1 header', async (t) => {
  for (const version of ['v2', 'v1'] as const) {
    const b = await backend(true);
    const { d } = await guard(t, { smtp: { proxy: proxyConf(b, { proxy_protocol: version }) } });
    const port = d.proxies[0]?.port ?? 0;
    const c = await RawClient.open(port, { localAddress: '127.0.0.5' });
    await c.waitFor(/^220 backend\.test ESMTP\r\n/);
    const s = await b.nextSession();
    assert.equal(s.header?.version, version === 'v2' ? 2 : 1);
    assert.deepEqual(s.header?.source, { address: '127.0.0.5', port: c.socket.localPort });
    assert.deepEqual(s.header?.destination, { address: '127.0.0.1', port });
    const [live] = d.registry.list();
    assert.equal(live?.client.address, '127.0.0.5');
    assert.equal(live?.service, 'smtp');
    assert.equal(await count(d, 'smtp:127.0.0.5'), 1);
    c.write('EHLO x\r\nQUIT\r\n');
    await c.waitFor(/221 2\.0\.0 Bye\r\n$/);
    await c.closed();
    assert.equal(s.data.toString(), 'EHLO x\r\nQUIT\r\n');
    await until('the count given back', async () => (await count(d, 'smtp:127.0.0.5')) === 0 && d.registry.size === 0);
  }
});

test('a wildcard listener names, per connection, the address the client connected to', async (t) => {
  const b = await backend(true);
  const { d } = await guard(t, { smtp: { proxy: proxyConf(b, { listen: ['0.0.0.0:0'] }) } });
  const port = d.proxies[0]?.port ?? 0;
  // The whole of 127/8 is loopback here: two destinations on one listener.
  for (const to of ['127.0.0.1', '127.0.0.2']) {
    const c = await RawClient.open(port, { host: to, localAddress: '127.0.0.7' });
    await c.waitFor(/^220 /);
    const s = await b.nextSession();
    assert.deepEqual(s.header?.destination, { address: to, port });
    assert.deepEqual(s.header?.source, { address: '127.0.0.7', port: c.socket.localPort });
    c.destroy();
  }
});

test('a backend on a UNIX socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'guard-unix-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const b = await startFakeBackend({ proxy: true, path: join(dir, 'imap.sock') });
  backends.push(b);
  const { d } = await guard(t, { imap: { proxy: { ...proxyConf(0), backend: join(dir, 'imap.sock') } } });
  const c = await RawClient.open(d.proxies[0]?.port ?? 0, { localAddress: '127.0.0.11' });
  await c.waitFor(/^220 /);
  assert.equal((await b.nextSession()).header?.source?.address, '127.0.0.11');
  c.write('QUIT\r\n');
  await c.closed();
});

test('proxy_protocol none sends the client bytes only', async (t) => {
  const b = await backend(false);
  const { d } = await guard(t, { pop3: { proxy: proxyConf(b, { proxy_protocol: 'none' }) } });
  const c = await RawClient.open(d.proxies[0]?.port ?? 0);
  await c.waitFor(/^220 /);
  c.write('QUIT\r\n');
  await c.closed();
  assert.equal(b.sessions[0]?.data.toString(), 'QUIT\r\n');
});

test('refuses over the limit in each protocol\'s words, before the backend is touched', async (t) => {
  const b = await backend(true, '* OK ready\r\n');
  const limits = { connections_per_address: 1 };
  const { d, lines } = await guard(t, {
    smtp: { limits, proxy: proxyConf(b) },
    submission: { limits, proxy: proxyConf(b) },
    pop3: { limits, proxy: proxyConf(b) },
    imap: { limits, proxy: proxyConf(b) },
    imaps: { limits, proxy: proxyConf(b) },
  });
  const expected = [
    /^421 4\.7\.0 mx\.test Too many connections from your address, try again later\r\n$/,
    /^421 4\.7\.0 mx\.test Too many connections from your address, try again later\r\n$/,
    /^-ERR \[SYS\/TEMP\] Too many connections from your address \(at most 1 at once\), try again later\r\n$/,
    /^\* BYE \[UNAVAILABLE\] Too many connections from your address \(at most 1 at once\), try again later\r\n$/,
    /^$/,
  ];
  const held: RawClient[] = [];
  for (const [i, g] of d.proxies.entries()) {
    const first = await RawClient.open(g.port);
    held.push(first);
    await first.waitFor(/^\* OK ready\r\n/);
    const before = b.sessions.length;
    const over = await RawClient.open(g.port);
    await over.closed();
    assert.match(over.received, expected[i] as RegExp, g.opts.service);
    assert.equal(b.sessions.length, before, `${g.opts.service}: the backend never saw the refused client`);
  }
  assert.equal(lines.filter((l) => l.msg === 'proxy: refused').length, 5);
  for (const c of held) c.destroy();
  await until('all counts back', () => d.registry.size === 0);
});

test('bans and country rules refuse in their own words; permanent refusals use permanent codes', async (t) => {
  const b = await backend(true);
  const { d } = await guard(t, {
    smtp: { countries: { connect: { deny: ['RU'] } }, proxy: proxyConf(b) },
    imap: { countries: { connect: { deny: ['RU'] } }, proxy: proxyConf(b) },
  });
  const smtp = d.proxies[0]?.port ?? 0;
  const imap = d.proxies[1]?.port ?? 0;
  const ru = await RawClient.open(smtp, { localAddress: '127.0.0.66' });
  await ru.closed();
  assert.equal(ru.received, '521 5.7.1 mx.test Access from your country is not allowed\r\n');
  const ruImap = await RawClient.open(imap, { localAddress: '127.0.0.66' });
  await ruImap.closed();
  assert.equal(ruImap.received, '* BYE [CONTACTADMIN] Access from your country is not allowed\r\n');
  d.gate.bans.add('127.0.0.7', 60_000, 'test', Date.now());
  const banned = await RawClient.open(imap, { localAddress: '127.0.0.7' });
  await banned.closed();
  assert.equal(banned.received, '* BYE [UNAVAILABLE] Your address is temporarily blocked, try again later\r\n');
  assert.equal(b.sessions.length, 0);
  assert.equal(d.gate.stats().entries, 0, 'refused before counting');
});

test('a backend that is down gets the client a temporary failure at once, and no count', async (t) => {
  const closedPort = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const { d, lines } = await guard(t, {
    smtp: { proxy: proxyConf(closedPort) },
    imap: { proxy: proxyConf(closedPort) },
    pop3s: { proxy: proxyConf(closedPort) },
  });
  const expected = ['421 4.7.0 mx.test Service temporarily unavailable, try again later\r\n', '* BYE [UNAVAILABLE] Service temporarily unavailable, try again later\r\n', ''];
  for (const [i, g] of d.proxies.entries()) {
    const c = await RawClient.open(g.port);
    await c.closed(2000);
    assert.equal(c.received, expected[i]);
  }
  assert.ok(lines.some((l) => l.msg === 'proxy: backend unreachable; client told to try later' && String(l.why).includes('ECONNREFUSED')));
  await until('counts back', async () => d.registry.size === 0 && (await count(d, 'smtp:127.0.0.1')) === 0);
});

test('a trusted load balancer\'s PROXY header names the client; others may not send one', async (t) => {
  const b = await backend(true);
  const { d } = await guard(t, {
    imap: { limits: { connections_per_address: 1 }, proxy: proxyConf(b, { accept_proxy_from: ['127.0.0.0/8'], header_timeout: '300ms' }) },
    pop3: { proxy: proxyConf(b, { accept_proxy_from: ['10.0.0.0/8'] }) },
  });
  const imap = d.proxies[0]?.port ?? 0;
  const lb = await RawClient.open(imap);
  lb.write(Buffer.concat([encodeProxyV1('198.51.100.7', 5555, '192.0.2.1', 143), Buffer.from('a1 NOOP\r\n')]));
  await lb.waitFor(/^220 /);
  const s = await b.nextSession();
  assert.deepEqual(s.header?.source, { address: '198.51.100.7', port: 5555 });
  assert.deepEqual(s.header?.destination, { address: '192.0.2.1', port: 143 });
  await until('the early command relayed', () => s.data.toString() === 'a1 NOOP\r\n');
  assert.equal(d.registry.list()[0]?.client.address, '198.51.100.7');
  // The limit applies to the address in the header, not to the balancer.
  const second = await RawClient.open(imap);
  second.write(encodeProxyV2('198.51.100.7', 5556, '192.0.2.1', 143));
  await second.closed();
  assert.match(second.received, /^\* BYE \[UNAVAILABLE\] Too many connections/);
  const other = await RawClient.open(imap);
  other.write(encodeProxyV2('2001:db8::8', 5557, '2001:db8::1', 143));
  await other.waitFor(/^220 /);
  assert.equal(d.registry.list({ address: '2001:db8::8' }).length, 1);
  // A trusted peer that sends no header is dropped after header_timeout; garbage at once.
  const silent = await RawClient.open(imap);
  await silent.closed(2000);
  const garbage = await RawClient.open(imap);
  garbage.write('a1 LOGIN x y\r\n');
  await garbage.closed(1000);
  assert.equal(silent.received + garbage.received, '');
  // Not a trusted peer: a PROXY header as its first words is refused, and never reaches the backend.
  const pop3 = d.proxies[1]?.port ?? 0;
  const spoof = await RawClient.open(pop3);
  await spoof.waitFor(/^220 /);
  const ss = b.sessions[b.sessions.length - 1];
  spoof.write(encodeProxyV1('203.0.113.1', 1, '192.0.2.1', 110));
  await spoof.closed();
  assert.equal(ss?.data.length, 0);
  lb.destroy();
  other.destroy();
});

test('half-close passes through: the client ends its side and still reads the reply', async (t) => {
  const b = await backend(true, '', false);
  const { d } = await guard(t, { smtp: { proxy: proxyConf(b) } });
  const c = await RawClient.open(d.proxies[0]?.port ?? 0, { allowHalfOpen: true });
  c.socket.end('last words\r\n');
  const s = await b.nextSession();
  await until('the backend sees the end', () => s.ended);
  assert.equal(s.data.toString(), 'last words\r\n');
  s.socket.end('reply after your end\r\n');
  await c.closed();
  assert.equal(c.received, 'reply after your end\r\n');
  await until('count back', () => d.registry.size === 0);
});

test('kick: a goodbye between lines, a close inside TLS, counts released, and a ban', async (t) => {
  const b = await backend(true, '* OK ready\r\n');
  const { d, lines } = await guard(t, { imap: { limits: { connections_per_address: 2 }, proxy: proxyConf(b) } });
  const port = d.proxies[0]?.port ?? 0;
  const a = await RawClient.open(port, { localAddress: '127.0.0.8' });
  await a.waitFor(/ready\r\n/);
  const id = d.registry.list()[0]?.id ?? '';
  assert.equal((await d.kick(id)).kicked.length, 1);
  await a.closed();
  assert.equal(a.received, '* OK ready\r\n* BYE [UNAVAILABLE] Connection closed by the administrator\r\n');
  // Mid-line: the goodbye starts on a line of its own.
  const m = await RawClient.open(port, { localAddress: '127.0.0.8' });
  await m.waitFor(/ready\r\n/);
  const ms = b.sessions[b.sessions.length - 1];
  ms?.socket.write('* 1 FETCH (BODY {5}');
  await m.waitFor(/\{5\}$/);
  await d.kick('127.0.0.8');
  await m.closed();
  assert.match(m.received, /\{5\}\r\n\* BYE \[UNAVAILABLE\] Connection closed by the administrator\r\n$/);
  // After STARTTLS the stream is TLS: no plain-text goodbye, only a close.
  const tls = await RawClient.open(port, { localAddress: '127.0.0.8' });
  await tls.waitFor(/ready\r\n/);
  tls.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5]));
  await until('TLS seen', () => d.registry.list()[0]?.encrypted === true);
  await d.kick('127.0.0.0/24', { banMs: 60_000, reason: 'abuse' });
  await tls.closed();
  assert.equal(tls.received, '* OK ready\r\n');
  await until('counts back', async () => d.registry.size === 0 && (await count(d, 'imap:127.0.0.8')) === 0);
  const again = await RawClient.open(port, { localAddress: '127.0.0.9' });
  await again.closed();
  assert.equal(again.received, '* BYE [UNAVAILABLE] Your address is temporarily blocked, try again later\r\n');
  assert.ok(lines.some((l) => l.msg === 'kick' && l.ban === '127.0.0.0/24'));
});

test('every way a connection ends gives its count back', async (t) => {
  const b = await backend(true);
  const { d } = await guard(t, { smtp: { limits: { connections_per_address: 50 }, proxy: proxyConf(b) } });
  const port = d.proxies[0]?.port ?? 0;
  const ends: Record<string, (c: RawClient, s: Awaited<ReturnType<FakeBackend['nextSession']>>) => void> = {
    'client closes': (c) => c.socket.end(),
    'client resets': (c) => c.socket.resetAndDestroy(),
    'backend closes': (_c, s) => s.socket.end(),
    'backend resets': (_c, s) => s.socket.resetAndDestroy(),
  };
  for (const [name, end] of Object.entries(ends)) {
    const c = await RawClient.open(port, { localAddress: '127.0.0.10' });
    await c.waitFor(/^220 /);
    const s = b.sessions[b.sessions.length - 1];
    assert.ok(s);
    assert.equal(await count(d, 'smtp:127.0.0.10'), 1, name);
    end(c, s);
    await until(`${name}: count back`, async () => (await count(d, 'smtp:127.0.0.10')) === 0 && d.registry.size === 0);
    c.destroy();
  }
});

test('idle connections are closed with a goodbye; the listener cap tells the rest to try later', async (t) => {
  const b = await backend(true);
  const { d } = await guard(t, { pop3: { proxy: proxyConf(b, { idle_timeout: '1s', max_connections: 1 }) } });
  const port = d.proxies[0]?.port ?? 0;
  const idle = await RawClient.open(port);
  await idle.waitFor(/^220 /);
  const full = await RawClient.open(port);
  await full.closed();
  assert.equal(full.received, '-ERR [SYS/TEMP] Service temporarily unavailable, try again later\r\n');
  const t0 = Date.now();
  await idle.closed(4000);
  assert.ok(Date.now() - t0 >= 500, 'not closed before it was idle');
  assert.match(idle.received, /-ERR \[SYS\/TEMP\] Idle for too long, closing the connection\r\n$/);
});

test('backpressure: a slow reader holds the backend back, and every byte arrives', async (t) => {
  const b = await backend(true, '');
  const { d } = await guard(t, { imap: { proxy: proxyConf(b) } });
  const c = await RawClient.open(d.proxies[0]?.port ?? 0);
  c.socket.pause();
  c.socket.setEncoding('latin1');
  const s = await b.nextSession();
  const total = 64 * 1024 * 1024;
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) & 0xff;
  let written = 0;
  const expect = createHash('sha256');
  let stalled = false;
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (written < total) {
        written += chunk.length;
        expect.update(chunk);
        if (!s.socket.write(chunk)) {
          s.socket.once('drain', pump);
          return;
        }
      }
      s.socket.end();
      resolve();
    };
    pump();
    // While the client reads nothing, the backend is held well short of the total.
    setTimeout(() => {
      stalled = written < total / 2;
      c.socket.resume();
    }, 300);
  });
  await c.closed(20_000);
  assert.ok(stalled, `the proxy buffered ${written} bytes for a client that read none`);
  const got = createHash('sha256').update(Buffer.from(c.received, 'latin1')).digest('hex');
  assert.equal(c.received.length, total);
  assert.equal(got, expect.digest('hex'));
});

test('stopping the daemon says goodbye to live sessions', async (t) => {
  const b = await backend(true, '* OK ready\r\n');
  const { d } = await guard(t, { imap: { proxy: proxyConf(b) } });
  const c = await RawClient.open(d.proxies[0]?.port ?? 0);
  await c.waitFor(/ready\r\n/);
  await d.stop();
  await c.closed();
  assert.match(c.received, /\* BYE \[UNAVAILABLE\] Service shutting down, try again later\r\n$/);
});

test('IPv6: a client on ::1 is judged and passed on as ::1', async (t) => {
  const probe = createServer();
  const v6 = await new Promise<boolean>((resolve) => {
    probe.once('error', () => resolve(false));
    probe.listen(0, '::1', () => probe.close(() => resolve(true)));
  });
  if (!v6) {
    t.diagnostic('SKIPPED: this machine has no IPv6 loopback (::1); the IPv6 path is not tested here');
    t.skip('no IPv6 loopback');
    return;
  }
  const b = await backend(true);
  const { d } = await guard(t, { imap: { limits: { connections_per_address: 1 }, proxy: proxyConf(b, { listen: ['[::1]:0'] }) } });
  const port = d.proxies[0]?.port ?? 0;
  const c = await RawClient.open(port, { host: '::1' });
  await c.waitFor(/^220 /);
  const s = await b.nextSession();
  assert.deepEqual(s.header?.source, { address: '::1', port: c.socket.localPort });
  assert.deepEqual(s.header?.destination, { address: '::1', port });
  const over = await RawClient.open(port, { host: '::1' });
  await over.closed();
  assert.match(over.received, /^\* BYE \[UNAVAILABLE\] Too many connections from your address \(at most 1 at once\)/);
  assert.equal(await count(d, 'imap:::1'), 1);
  c.destroy();
});

test('early_leavers: an address whose sessions end with nothing sent is banned past the count; one that speaks is not counted', async (t) => {
  const b = await backend(true, '* OK ready');
  const { d, lines } = await guard(t, { imap: { proxy: proxyConf(b), early_leavers: { sessions: 2, window: '10m', ban: '1h' } } });
  const port = d.proxies[0]?.port ?? 0;
  const leave = async (address: string, say?: string) => {
    const c = await RawClient.open(port, { localAddress: address });
    await c.waitFor(/^\* OK ready/);
    if (say !== undefined) c.write(say);
    c.destroy();
  };
  // One that speaks each time is never counted.
  for (let i = 0; i < 4; i++) await leave('127.0.0.41', 'a1 NOOP\r\n');
  for (let i = 0; i < 3; i++) await leave('127.0.0.40');
  await until('the ban on 127.0.0.40', () => d.control.bans().some((x) => x.target === '127.0.0.40'));
  const ban = d.control.bans().find((x) => x.target === '127.0.0.40');
  assert.deepEqual([ban?.origin, ban?.reason], ['auto', '3 sessions that sent nothing within 10 min, over the limit of 2 (early leavers)']);
  assert.ok(lines.some((l) => l['msg'] === 'banned' && l['client'] === '127.0.0.40'));
  const refused = await RawClient.open(port, { localAddress: '127.0.0.40' });
  await refused.closed();
  assert.equal(refused.received, '* BYE [UNAVAILABLE] Your address is temporarily blocked, try again later\r\n');
  assert.equal(d.control.bans().some((x) => x.target === '127.0.0.41'), false);
  const speaker = await RawClient.open(port, { localAddress: '127.0.0.41' });
  await speaker.waitFor(/^\* OK ready/);
  speaker.destroy();
});
