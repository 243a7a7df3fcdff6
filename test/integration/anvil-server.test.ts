import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../src/config/load.js';
import { ListenError } from '../../src/errors.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { AnvilTestClient } from '../helpers/anvil-client.js';
import { memoryLogger } from '../helpers/log.js';
import { isolated } from '../helpers/state.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

async function daemon(t: TestContext, anvil: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-anvil-'));
  const socket = join(dir, 'anvil');
  const config = parseConfig({ log: { level: 'debug' }, anvil: { socket, ...anvil }, ...isolated(dir) }, 'test');
  const { log, lines } = memoryLogger();
  const d: Daemon = await startDaemon(config, log);
  t.after(async () => {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { d, socket, dir, lines };
}

function waitFor(pred: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (pred()) resolve();
      else if (Date.now() > until) reject(new Error('condition not met in time'));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

test('every connect on one connection counts, and closing it releases them all', async (t) => {
  const { socket } = await daemon(t);
  const smtpd = await AnvilTestClient.open(socket);
  const observer = await AnvilTestClient.open(socket);
  for (let i = 1; i <= 200; i++) {
    const r = await smtpd.request('connect', 'smtp:192.0.2.1');
    assert.equal(r.count, i);
  }
  await smtpd.request('connect', 'smtp:2001:db8::1');
  assert.equal((await observer.request('lookup', 'smtp:192.0.2.1')).count, 200);
  assert.equal((await smtpd.request('disconnect', 'smtp:192.0.2.1')).status, 0);
  assert.equal((await observer.request('lookup', 'smtp:192.0.2.1')).count, 199);
  smtpd.destroy();
  await waitFor(() => smtpd.isClosed);
  let after = await observer.request('lookup', 'smtp:192.0.2.1');
  for (let i = 0; i < 50 && after.count !== 0; i++) after = await observer.request('lookup', 'smtp:192.0.2.1');
  assert.equal(after.count, 0);
  assert.equal(after.rate, 200, 'the rate remembers them');
  assert.equal((await observer.request('lookup', 'smtp:2001:db8::1')).count, 0);
  await observer.close();
});

test('every request kind is answered with its fields', async (t) => {
  const { socket } = await daemon(t);
  const c = await AnvilTestClient.open(socket);
  const id = 'submission:203.0.113.5';
  assert.deepEqual(await c.request('connect', id), { status: 0, count: 1, rate: 1 });
  assert.deepEqual(await c.request('message', id), { status: 0, rate: 1 });
  assert.deepEqual(await c.request('recipient', id), { status: 0, rate: 1 });
  assert.deepEqual(await c.request('recipient', id), { status: 0, rate: 2 });
  assert.deepEqual(await c.request('newtls', id), { status: 0, rate: 1 });
  assert.deepEqual(await c.request('newtls_status', id), { status: 0, rate: 1 });
  assert.deepEqual(await c.request('auth', id), { status: 0, rate: 1 });
  assert.deepEqual(await c.request('lookup', id), { status: 0, count: 1, rate: 1, mail: 1, rcpt: 2, newtls: 1, auth: 1, tlstr: 0 });
  assert.deepEqual(await c.request('disconnect', id), { status: 0 });
  assert.deepEqual(await c.request('lookup', 'smtp:198.51.100.77'), { status: 0, count: 0, rate: 0, mail: 0, rcpt: 0, newtls: 0, auth: 0, tlstr: 0 });
  // Postfix 3.12: a daemon about to write a TLS trace file asks on a fresh connection, ident any:any.
  const tracer = await AnvilTestClient.open(socket);
  assert.deepEqual(await tracer.request('tlstr', 'any:any'), { status: 0, rate: 1 });
  assert.deepEqual(await tracer.request('tlstr', 'any:any'), { status: 0, rate: 2 });
  assert.equal((await c.request('lookup', 'any:any')).tlstr, 2);
  await tracer.close();
  let held = 1;
  for (let i = 0; i < 250 && held !== 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    held = (await c.request('lookup', 'any:any')).count;
  }
  assert.equal(held, 0, 'the tracer held any:any as anvil does, until its connection closed');
  // A session Doorman never saw connect (it restarted mid-session) is registered by its first event.
  assert.deepEqual(await c.request('message', 'smtp:198.51.100.8'), { status: 0, rate: 1 });
  assert.equal((await c.request('lookup', 'smtp:198.51.100.8')).count, 1);
  await c.request('disconnect', 'smtp:198.51.100.8');
  assert.equal((await c.request('lookup', 'smtp:198.51.100.8')).count, 0);
  await c.close();
});

test('a client stalled mid-request delays nobody and is dropped after request_timeout', async (t) => {
  const { socket, lines } = await daemon(t, { request_timeout: '1s' });
  const slow = await AnvilTestClient.open(socket);
  slow.writeRaw('request=connect\nident=smtp:19');
  const fast = await AnvilTestClient.open(socket);
  for (let i = 0; i < 100; i++) await fast.request('connect', 'smtp:192.0.2.50');
  assert.equal(slow.isClosed, false, 'all 100 answered while the slow client still held its half request');
  await waitFor(() => slow.isClosed, 5000);
  assert.ok(lines.some((l) => l.code === 'DOORMAN_ERR_REQUEST_STALLED'));
  assert.equal((await fast.request('lookup', 'smtp:192.0.2.50')).count, 100);
  await fast.close();
});

test('malformed input disconnects that client only, with a log line', async (t) => {
  const { socket, lines } = await daemon(t);
  const good = await AnvilTestClient.open(socket);
  await good.request('connect', 'smtp:192.0.2.60');
  const cases: Array<[string, string]> = [
    ['ident=x\nrequest=connect\n\n', 'DOORMAN_ERR_ANVIL_REQUEST'],
    ['request=connect\nident=x\nextra=1\n\n', 'DOORMAN_ERR_ATTR_TOO_MANY'],
    ['request=connect\n\n', 'DOORMAN_ERR_ANVIL_REQUEST'],
    ['garbage\n\n', 'DOORMAN_ERR_ATTR_NO_VALUE'],
    [`request=connect\nident=${'x'.repeat(5000)}\n\n`, 'DOORMAN_ERR_ATTR_TOO_LONG'],
    ['request=connect\nident=a\0b\n\n', 'DOORMAN_ERR_ATTR_NUL'],
  ];
  for (const [bytes, code] of cases) {
    const bad = await AnvilTestClient.open(socket);
    await bad.request('connect', 'smtp:192.0.2.61');
    bad.writeRaw(bytes);
    await waitFor(() => bad.isClosed);
    assert.ok(lines.some((l) => l.code === code && l.msg === 'anvil: client dropped'), `${JSON.stringify(bytes.slice(0, 40))} → ${code}`);
  }
  assert.equal((await good.request('lookup', 'smtp:192.0.2.61')).count, 0, 'dropped clients released their connections');
  assert.equal((await good.request('lookup', 'smtp:192.0.2.60')).count, 1);
  await good.close();
});

test('unknown request names get status=fail like anvil; too many and the client is dropped', async (t) => {
  const { socket } = await daemon(t, { max_bad_requests: 3 });
  const c = await AnvilTestClient.open(socket);
  for (let i = 0; i < 2; i++) {
    c.writeRaw('request=bogus\nident=x\n\n');
    assert.deepEqual(await c.next(), ['status', '4294967295']);
  }
  assert.deepEqual(await c.request('connect', 'smtp:192.0.2.70'), { status: 0, count: 1, rate: 1 });
  c.writeRaw('request=bogus\nident=x\n\n');
  assert.deepEqual(await c.next(), ['status', '4294967295']);
  await waitFor(() => c.isClosed);
});

test('an idle client holding no connections is closed; one holding connections is kept', async (t) => {
  const { socket } = await daemon(t, { idle_timeout: '300ms' });
  const idle = await AnvilTestClient.open(socket);
  const busy = await AnvilTestClient.open(socket);
  await busy.request('connect', 'smtp:192.0.2.80');
  await waitFor(() => idle.isClosed, 5000);
  await new Promise((r) => setTimeout(r, 700));
  assert.equal(busy.isClosed, false);
  assert.equal((await busy.request('lookup', 'smtp:192.0.2.80')).count, 1);
  await busy.close();
});

test('the socket: mode applied, stale file replaced, live one refused, removed at stop', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-sock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socket = join(dir, 'sub', 'anvil');
  // A stale socket: bound by a server that is gone.
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(dir, 'sub'));
  const stale = createServer();
  await new Promise<void>((r) => stale.listen(socket, r));
  stale.close();
  // net.Server.close() unlinks the path; recreate a dead socket file the hard way.
  const s2 = createServer();
  await new Promise<void>((r) => s2.listen(socket, r));
  const { unlinkSync, linkSync } = await import('node:fs');
  linkSync(socket, `${socket}.keep`);
  await new Promise<void>((r) => s2.close(() => r()));
  linkSync(`${socket}.keep`, socket);
  unlinkSync(`${socket}.keep`);
  assert.ok(lstatSync(socket).isSocket(), 'a stale socket file is in place');

  const { log, lines } = memoryLogger();
  const config = parseConfig({ anvil: { socket, socket_mode: '0600' }, ...isolated(dirname(socket)) }, 'test');
  const d = await startDaemon(config, log);
  assert.ok(lines.some((l) => l.msg === 'anvil: replaced a stale socket file'));
  assert.equal(statSync(socket).mode & 0o777, 0o600);
  await assert.rejects(startDaemon(config, memoryLogger().log), (e: unknown) => e instanceof ListenError && e.code === 'DOORMAN_ERR_SOCKET_IN_USE');
  await d.stop();
  assert.throws(() => lstatSync(socket), /ENOENT/);

  writeFileSync(socket, 'not a socket');
  await assert.rejects(startDaemon(config, memoryLogger().log), (e: unknown) => e instanceof ListenError && e.code === 'DOORMAN_ERR_SOCKET_PATH');
  assert.equal(statSync(socket).isFile(), true, 'a regular file is never deleted');
});

test('doorman config check exits 0 on a valid file and 2 naming the key on an invalid one', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cli = join(ROOT, 'dist/src/cli/main.js');
  const good = join(dir, 'good.yaml');
  const bad = join(dir, 'bad.yaml');
  // run_as as serve needs it when the test runs as root (config check makes serve's run_as checks).
  writeFileSync(good, 'engine:\n  rate_time_unit: 30s\nrun_as:\n  allow_root: true\n');
  writeFileSync(bad, 'engine:\n  rate_time_unit: 30 seconds\n');
  const ok = spawnSync(process.execPath, [cli, 'config', 'check', '--config', good], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /configuration is valid/);
  const no = spawnSync(process.execPath, [cli, 'config', 'check', '--config', bad], { encoding: 'utf8' });
  assert.equal(no.status, 2);
  assert.match(no.stderr, /bad\.yaml: engine\.rate_time_unit: got "30 seconds", expected a duration/);
});

test('max_clients: connections past the cap are closed at once and logged', async (t) => {
  const { socket, lines } = await daemon(t, { max_clients: 2 });
  const a = await AnvilTestClient.open(socket);
  const b = await AnvilTestClient.open(socket);
  await assert.rejects(AnvilTestClient.open(socket), 'the third is closed before any greeting');
  await waitFor(() => lines.some((l) => l.msg === 'anvil: connection refused, anvil.max_clients reached'));
  assert.deepEqual(await a.request('connect', 'smtp:192.0.2.90'), { status: 0, count: 1, rate: 1 });
  await a.close();
  await b.close();
});

test('socket owner and group are applied by name', { skip: process.getuid?.() !== 0 ? 'needs root to chown' : false }, async (t) => {
  const { socket } = await daemon(t, { owner: 'nobody', group: 'nogroup', socket_mode: '0660' });
  const st = statSync(socket);
  assert.equal(st.uid, 65534);
  assert.equal(st.gid, 65534);
  assert.equal(st.mode & 0o777, 0o660);
});
