/**
 * The admin API's routes (docs/admin-api.md) on an in-process daemon with
 * the guard proxy in front of a fake IMAP server, with real proxied
 * connections from distinct loopback addresses: auth, status, connections,
 * kick, bans, countries, counts, peaks, check, top, history.
 * The event stream, metrics and failures are in ./admin-stream.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon } from '../../src/main.js';
import { AdminClient } from '../helpers/admin-client.js';
import { GREETING, TOKEN, proxiedClient, refusedClient, startAdminDaemon } from '../helpers/admin-daemon.js';
import { waitUntil } from '../helpers/guard.js';
import { memoryLogger } from '../helpers/log.js';
import { isolated } from '../helpers/state.js';

test('auth: 401 without or with a wrong token, /health open, /?token= sets the cookie, the cookie works', async (t) => {
  const { d, api, lines } = await startAdminDaemon(t);
  assert.ok(lines.some((l) => l['msg'] === `admin API and dashboard on http://127.0.0.1:${d.adminPort}/`), 'the address is logged');
  const none = new AdminClient(d.adminPort, null);
  const wrong = new AdminClient(d.adminPort, 'x'.repeat(TOKEN.length));
  assert.deepEqual(await none.get('/health').then((r) => [r.status, r.json]), [200, { status: 'ok' }]);
  for (const c of [none, wrong]) {
    for (const path of ['/api/status', '/metrics', '/', '/api/events', '/no/such/route']) {
      const r = await c.get(path);
      assert.equal(r.status, 401, path);
      assert.equal(r.json.error.code, 'DOORMAN_ERR_UNAUTHORIZED');
      assert.match(r.json.error.message, /token/);
    }
  }
  assert.equal((await none.call('POST', '/api/bans', { target: '10.0.0.1', ttl: '1h', reason: 'x' })).status, 401);
  const hint = await fetch(`http://127.0.0.1:${d.adminPort}/`, { headers: { accept: 'text/html' } });
  assert.equal(hint.status, 401);
  assert.match(await hint.text(), /Open <code>\/\?token=YOUR_TOKEN<\/code> once/, 'a browser is told how to sign in');
  assert.equal((await api.get('/api/status')).status, 200);
  assert.equal((await none.get('/?token=wrong-token-0123456789')).status, 401);
  const login = await none.get(`/?token=${TOKEN}`);
  assert.equal(login.status, 302);
  assert.equal(login.headers.get('location'), '/');
  const cookie = login.headers.get('set-cookie') ?? '';
  assert.match(cookie, /^doorman_token=[^;]+; Path=\/; HttpOnly; SameSite=Strict$/);
  const withCookie = await none.call('GET', '/api/status', undefined, { cookie: cookie.split(';')[0] as string });
  assert.equal(withCookie.status, 200);
  assert.equal(withCookie.json.services.imap.protocol, 'imap');
  assert.equal((await none.call('GET', '/api/status', undefined, { cookie: 'doorman_token=nope' })).status, 401);
  const page = await none.call('GET', '/', undefined, { cookie: cookie.split(';')[0] as string });
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
});

test('without a token: loopback callers only, by their Host header too', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-admin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const d = await startDaemon(parseConfig({ anvil: { enabled: false }, ...isolated(dir) }, 'no-token'), memoryLogger().log);
  t.after(() => d.stop());
  assert.equal((await new AdminClient(d.adminPort, null).get('/api/status')).status, 200);
  // fetch sets Host itself: ask with node:http to send another.
  const withHost = (host: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpGet({ host: '127.0.0.1', port: d.adminPort, path: '/api/status', headers: { host } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
    });
  assert.equal((await withHost(`localhost:${d.adminPort}`)).status, 200);
  assert.equal((await withHost(`[::1]:${d.adminPort}`)).status, 200);
  const rebound = await withHost(`attacker.example:${d.adminPort}`);
  assert.equal(rebound.status, 401, 'a page whose name was made to resolve to 127.0.0.1 gets nothing');
  assert.match(rebound.body, /not a loopback address/);
});

test('token_file: the first line is the token', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-admin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'token'), `${TOKEN}\nsecond line ignored\n`);
  const base = isolated(dir);
  const d = await startDaemon(parseConfig({ anvil: { enabled: false }, ...base, admin: { ...base.admin, token_file: join(dir, 'token') } }, 'token-file'), memoryLogger().log);
  t.after(() => d.stop());
  assert.equal((await new AdminClient(d.adminPort, TOKEN).get('/api/status')).status, 200);
  assert.equal((await new AdminClient(d.adminPort, null).get('/api/status')).status, 401);
});

test('status and connections: filters, paging, one by id, 404, 400 on bad input', async (t) => {
  const { d, api, port } = await startAdminDaemon(t);
  await proxiedClient(t, port, '127.0.0.20');
  await proxiedClient(t, port, '127.0.0.21');
  await proxiedClient(t, port, '127.0.0.66');
  const status = await api.get('/api/status');
  assert.equal(status.status, 200);
  assert.equal(status.json.connections, 3);
  assert.deepEqual(status.json.services.imap, { protocol: 'imap', connections: 3, listen: [`127.0.0.1:${port}`], fronts: ['guard proxy'] });
  assert.deepEqual(status.json.countries, { none: 2, RU: 1 });
  assert.equal(typeof status.json.version, 'string');
  assert.ok(Number.isFinite(Date.parse(status.json.started_at)));
  assert.equal(status.json.bans, 0);
  assert.ok(status.json.engine.entries >= 3);

  const all = await api.get('/api/connections');
  assert.equal(all.json.total, 3);
  assert.deepEqual(all.json.items.map((c: any) => c.client.address), ['127.0.0.20', '127.0.0.21', '127.0.0.66'], 'oldest first');
  const c0 = all.json.items[0];
  assert.deepEqual(Object.keys(c0).sort(), ['age_s', 'backend', 'bytes_in', 'bytes_out', 'client', 'country', 'encrypted', 'id', 'listen', 'node', 'protocol', 'service', 'started_at']);
  assert.equal(c0.node, hostname().split('.')[0], 'one host: its own name');
  assert.deepEqual(all.json.missing_nodes, []);
  assert.equal(c0.service, 'imap');
  assert.equal(c0.bytes_out, GREETING.length);
  assert.equal(c0.encrypted, false);
  const page = await api.get('/api/connections?offset=1&limit=1');
  assert.deepEqual([page.json.total, page.json.items.map((c: any) => c.client.address)], [3, ['127.0.0.21']]);
  assert.deepEqual((await api.get('/api/connections?address=127.0.0.20/31')).json.items.map((c: any) => c.client.address), ['127.0.0.20', '127.0.0.21']);
  assert.deepEqual((await api.get('/api/connections?country=ru')).json.items.map((c: any) => c.country), ['RU']);
  // A service that is not configured is an error, as for kick, block and check: not a filter that matches nothing.
  const unknown = await api.get('/api/connections?service=smtp');
  assert.deepEqual([unknown.status, unknown.json.error.code, unknown.json.error.message], [400, 'DOORMAN_ERR_SERVICE', 'no service "smtp" in the configuration']);
  const kickUnknown = await api.call('POST', '/api/kick', { target: '127.0.0.99', service: 'smtp', ban: '1m' });
  assert.deepEqual([kickUnknown.status, kickUnknown.json.error.code], [400, 'DOORMAN_ERR_SERVICE']);
  assert.equal((await api.get('/api/bans')).json.items.length, 0, 'the ban asked with it was not made');
  const notCountry = await api.get('/api/connections?country=xx');
  assert.deepEqual([notCountry.status, notCountry.json.error.message], [400, '"xx" is not a country code: expected an ISO 3166-1 alpha-2 country code (officially assigned, or XK for Kosovo) such as DE']);
  const one = await api.get(`/api/connections/${c0.id}`);
  assert.deepEqual([one.status, one.json.id], [200, c0.id]);
  const missing = await api.get('/api/connections/nosuch');
  assert.deepEqual([missing.status, missing.json.error.code], [404, 'DOORMAN_ERR_NOT_FOUND']);
  for (const [q, re] of [
    ['limit=1001', /querystring\.limit: got 1001, expected an integer from 1 to 1000/],
    ['limit=0', /querystring\.limit/],
    ['offset=-1', /querystring\.offset/],
    ['country=RUS', /querystring\.country: got "RUS", expected a two-letter country code/],
    ['address=not-an-address', /not-an-address/],
    ['colour=red', /unknown field "colour"/],
  ] as const) {
    const r = await api.get(`/api/connections?${q}`);
    assert.equal(r.status, 400, q);
    assert.match(r.json.error.message, re);
    assert.match(r.json.error.code, /^DOORMAN_ERR_/);
  }
  assert.equal(d.registry.size, 3);
});

test('kick: a dry run lists and closes nothing; then the client gets the goodbye and the registry empties', async (t) => {
  const { d, api, port, dir } = await startAdminDaemon(t);
  const victim = await proxiedClient(t, port, '127.0.0.30');
  const id = d.registry.list()[0]?.id as string;
  const dry = await api.call('POST', '/api/kick', { target: id, dry_run: true });
  assert.equal(dry.status, 200);
  assert.deepEqual([dry.json.dry_run, dry.json.kicked, dry.json.ban, dry.json.hits.map((h: any) => h.id)], [true, 0, null, [id]]);
  assert.equal(d.registry.size, 1);
  const real = await api.call('POST', '/api/kick', { target: '127.0.0.30', ban: '10m', reason: 'abuse' });
  assert.equal(real.status, 200);
  assert.deepEqual([real.json.dry_run, real.json.kicked, real.json.ban.target, real.json.ban.reason], [false, 1, '127.0.0.30', 'abuse']);
  assert.ok(real.json.ban.left_s > 590 && real.json.ban.left_s <= 600);
  await victim.closed();
  assert.equal(victim.received, `${GREETING}* BYE [UNAVAILABLE] Connection closed by the administrator\r\n`);
  await waitUntil('the registry empties', () => d.registry.size === 0);
  assert.match(await refusedClient(port, '127.0.0.30'), /temporarily blocked/, 'the ban came first');
  const audit = readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(audit.map((a: any) => [a.action, a.by]), [['ban.add', '127.0.0.1'], ['kick', '127.0.0.1']], 'the caller is the TCP peer');
  const recent = await api.get('/api/audit?limit=1');
  assert.deepEqual(recent.json.items, [audit[1]], `the API reads the same log, newest first: ${JSON.stringify(recent.json)}`);
  const bad = await api.call('POST', '/api/kick', { target: 'nosuch' });
  assert.deepEqual([bad.status, bad.json.error.code], [400, 'DOORMAN_ERR_TARGET']);
  const noTarget = await api.call('POST', '/api/kick', {});
  assert.deepEqual([noTarget.status, noTarget.json.error.message], [400, 'body.target is required: an address, a CIDR network or a connection id']);
  const self = await api.call('POST', '/api/kick', { target: '127.0.0.1', ban: '1h', reason: 'x' });
  assert.deepEqual([self.status, self.json.error.code], [409, 'DOORMAN_ERR_GUARDRAIL']);
  // A ban says why, made by POST /api/bans or by a kick.
  const noReason = await api.call('POST', '/api/kick', { target: '127.0.0.99', ban: '1h' });
  assert.deepEqual([noReason.status, noReason.json.error.code, noReason.json.error.message], [400, 'DOORMAN_ERR_REASON', 'a kick that bans needs a reason, as every ban does']);
});

test('bans: add after a dry run, list, delete; 409 over the caller; 400 on a bad target or ttl; 404 on none', async (t) => {
  const { d, api, port } = await startAdminDaemon(t);
  await proxiedClient(t, port, '127.0.0.40');
  const dry = await api.call('POST', '/api/bans', { target: '127.0.0.40', ttl: '1h', reason: 'flood', dry_run: true });
  assert.deepEqual([dry.status, dry.json.dry_run, dry.json.ban, dry.json.hits.length], [200, true, null, 1]);
  assert.deepEqual((await api.get('/api/bans')).json, { items: [] });
  const made = await api.call('POST', '/api/bans', { target: '192.0.2.0/24', ttl: 90, reason: 'scanner' });
  assert.equal(made.status, 200);
  assert.deepEqual([made.json.dry_run, made.json.ban.target, made.json.ban.left_s, made.json.ban.reason], [false, '192.0.2.0/24', 90, 'scanner']);
  assert.equal(Date.parse(made.json.ban.until) - Date.parse(made.json.ban.created_at), 90_000);
  const list = await api.get('/api/bans');
  assert.deepEqual(list.json.items.map((b: any) => b.target), ['192.0.2.0/24']);
  assert.equal((await api.get('/api/status')).json.bans, 1);
  for (const [body, status, code, re] of [
    [{ target: '127.0.0.0/8', ttl: '1h', reason: 'x' }, 409, 'DOORMAN_ERR_GUARDRAIL', /covers your own address 127\.0\.0\.1/],
    [{ target: '127.0.9.5', ttl: '1h', reason: 'x' }, 409, 'DOORMAN_ERR_GUARDRAIL', /exception network/],
    [{ target: 'example.com', ttl: '1h', reason: 'x' }, 400, 'DOORMAN_ERR_TARGET', /example\.com/],
    [{ target: '192.0.2.9', ttl: 'soon', reason: 'x' }, 400, 'DOORMAN_ERR_BAD_REQUEST', /body\.ttl: got "soon", expected a duration/],
    [{ target: '192.0.2.9', ttl: true, reason: 'x' }, 400, 'DOORMAN_ERR_BAD_REQUEST', /body\.ttl/],
    [{ target: '192.0.2.9', ttl: '500ms', reason: 'x' }, 400, 'DOORMAN_ERR_BAN_TTL', /1 s to 366 days/],
    [{ target: '192.0.2.9', ttl: '1h' }, 400, 'DOORMAN_ERR_BAD_REQUEST', /body\.reason is required/],
    [{ target: '192.0.2.9', ttl: '1h', reason: 'x', until: 'never' }, 400, 'DOORMAN_ERR_BAD_REQUEST', /unknown field "until"/],
  ] as const) {
    const r = await api.call('POST', '/api/bans', body);
    assert.deepEqual([r.status, r.json.error.code], [status, code], JSON.stringify(body));
    assert.match(r.json.error.message, re);
  }
  const bad = await api.call('POST', '/api/bans', 'not json' as unknown);
  assert.equal(bad.status, 400, 'a JSON string is not an object');
  const del = await api.call('DELETE', '/api/bans?target=192.0.2.0/24');
  assert.deepEqual([del.status, del.json], [200, { removed: true }]);
  const again = await api.call('DELETE', '/api/bans?target=192.0.2.0/24');
  assert.deepEqual([again.status, again.json.error.code], [404, 'DOORMAN_ERR_NOT_FOUND']);
  assert.equal((await api.call('DELETE', '/api/bans')).status, 400, 'target is required');
  assert.equal(d.control.bans().length, 0);
});

test('countries: PUT, block, unblock and DELETE, each with a dry run that reports hits', async (t) => {
  const { d, api, port } = await startAdminDaemon(t);
  await proxiedClient(t, port, '127.0.0.66');
  await proxiedClient(t, port, '127.0.0.49');
  assert.deepEqual((await api.get('/api/countries')).json, { services: { imap: { connect: null, auth: null } } });
  const dry = await api.call('PUT', '/api/countries/imap/connect', { deny: ['ru'], dry_run: true });
  assert.deepEqual([dry.status, dry.json.dry_run, dry.json.hits.map((h: any) => h.client.address)], [200, true, ['127.0.0.66']]);
  assert.equal((await api.get('/api/countries')).json.services.imap.connect, null, 'a dry run changes nothing');
  const put = await api.call('PUT', '/api/countries/imap/connect', { deny: ['ru'] });
  assert.deepEqual([put.status, put.json.dry_run, put.json.hits.length], [200, false, 1]);
  assert.deepEqual((await api.get('/api/countries')).json.services.imap.connect, { kind: 'deny', codes: ['RU'], mode: 'enforce', source: 'runtime' });
  assert.equal(await refusedClient(port, '127.0.0.66'), '* BYE [CONTACTADMIN] Access from your country is not allowed\r\n');
  const blockDry = await api.call('POST', '/api/countries/imap/connect/block', { country: 'de', dry_run: true });
  assert.deepEqual([blockDry.json.dry_run, blockDry.json.hits.map((h: any) => h.country).sort()], [true, ['DE', 'RU']]);
  await api.call('POST', '/api/countries/imap/connect/block', { country: 'de' });
  assert.deepEqual((await api.get('/api/countries')).json.services.imap.connect.codes, ['DE', 'RU']);
  const unblock = await api.call('POST', '/api/countries/imap/connect/unblock', { country: 'RU' });
  assert.deepEqual([unblock.status, unblock.json], [200, { dry_run: false, hits: [] }]);
  assert.deepEqual((await api.get('/api/countries')).json.services.imap.connect.codes, ['DE']);
  const liftDry = await api.call('DELETE', '/api/countries/imap/connect?dry_run=true');
  assert.deepEqual([liftDry.status, liftDry.json], [200, { dry_run: true, hits: [] }]);
  assert.notEqual((await api.get('/api/countries')).json.services.imap.connect, null);
  const lift = await api.call('DELETE', '/api/countries/imap/connect');
  assert.deepEqual(lift.json, { dry_run: false, hits: [] });
  assert.equal((await api.get('/api/countries')).json.services.imap.connect, null);
  const auth = await api.call('PUT', '/api/countries/imap/auth', { allow: ['DE'], mode: 'dry-run' });
  assert.equal(auth.status, 200);
  assert.deepEqual((await api.get('/api/countries')).json.services.imap.auth, { kind: 'allow', codes: ['DE'], mode: 'dry-run', source: 'runtime' });
  for (const [method, path, body, status, re] of [
    ['PUT', '/api/countries/imap/connect', { allow: ['DE'], deny: ['RU'] }, 400, /either "allow" or "deny"/],
    ['PUT', '/api/countries/imap/connect', {}, 400, /either "allow" or "deny"/],
    ['PUT', '/api/countries/imap/connect', { deny: [] }, 400, /body\.deny/],
    ['PUT', '/api/countries/imap/connect', { deny: ['Russia'] }, 400, /two-letter country code/],
    ['PUT', '/api/countries/imap/connect', { deny: ['RU', 'xx'] }, 400, /^"xx" is not a country code: expected an ISO 3166-1 alpha-2 country code \(officially assigned, or XK for Kosovo\) such as DE$/],
    ['POST', '/api/countries/imap/connect/block', { country: 'XX' }, 400, /^"XX" is not a country code: expected an ISO 3166-1 alpha-2/],
    ['PUT', '/api/countries/imap/login', { deny: ['RU'] }, 400, /params\.phase: got "login", expected connect or auth/],
    ['PUT', '/api/countries/nosuch/connect', { deny: ['RU'] }, 400, /no service "nosuch"/],
    ['POST', '/api/countries/imap/auth/block', { country: 'DE' }, 400, /would block every country/],
    ['POST', '/api/countries/imap/auth/block', {}, 400, /body\.country is required/],
  ] as const) {
    const r = await api.call(method, path, body);
    assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)}`);
    assert.match(r.json.error.message, re);
  }
  void d;
});

test('counts, peaks and check', async (t) => {
  const { api, port } = await startAdminDaemon(t, {}, { limits: { connections_per_address: 1 } });
  await proxiedClient(t, port, '127.0.0.50');
  const byKey = await api.get('/api/counts?key=imap:127.0.0.50');
  assert.deepEqual([byKey.status, byKey.json.key, byKey.json.count], [200, 'imap:127.0.0.50', 1]);
  assert.deepEqual(Object.keys(byKey.json.rates), ['conn', 'mail', 'rcpt', 'newtls', 'auth', 'authfail', 'tlstr']);
  assert.equal(byKey.json.rates.conn, 1);
  const byParts = await api.get('/api/counts?service=imap&address=127.0.0.50');
  assert.deepEqual(byParts.json, byKey.json);
  assert.equal((await api.get('/api/counts')).status, 400);
  assert.equal((await api.get('/api/counts?service=imap')).status, 400);
  assert.equal((await api.get('/api/counts?service=imap&address=bad')).status, 400);
  const peaks = await api.get('/api/peaks');
  assert.deepEqual(peaks.json.peaks.count, { value: 1, key: 'imap:127.0.0.50', at: peaks.json.peaks.count.at });
  assert.ok(Number.isFinite(Date.parse(peaks.json.peaks.count.at)));
  await api.call('POST', '/api/bans', { target: '127.0.0.51', ttl: '10m', reason: 'test' });
  const check = await api.get('/api/check?address=127.0.0.51&service=imap');
  assert.equal(check.status, 200);
  assert.deepEqual([check.json.address, check.json.service, check.json.country], ['127.0.0.51', 'imap', null]);
  assert.deepEqual(check.json.connect, {
    action: 'refuse',
    rule: 'bans',
    reason: '127.0.0.51 is banned for 600 s more (test)',
    retry_after_s: 600,
    dry_run: [],
    exempt: null,
    country: null,
  });
  assert.equal(check.json.auth.rule, 'bans');
  // At its limit of 1: the next connection, itself counted, would be refused.
  const live = await api.get('/api/check?address=127.0.0.50&service=imap');
  assert.deepEqual([live.json.connect.action, live.json.connect.reason], ['refuse', '2 connections from 127.0.0.50, over the limit of 1']);
  const ru = await api.get('/api/check?address=77.88.8.8&service=imap');
  assert.deepEqual([ru.json.country, ru.json.connect.action, ru.json.connect.rule, ru.json.connect.reason], ['RU', 'allow', null, 'no rule refuses']);
  const exempt = await api.get('/api/check?address=127.0.9.1&service=imap');
  assert.match(exempt.json.connect.exempt, /exception network 127\.0\.9\.0\/24/);
  assert.equal((await api.get('/api/check?address=nope&service=imap')).json.error.code, 'DOORMAN_ERR_ADDRESS');
  assert.equal((await api.get('/api/check?address=8.8.8.8&service=nosuch')).json.error.code, 'DOORMAN_ERR_SERVICE');
  assert.equal((await api.get('/api/check?address=8.8.8.8')).status, 400);
});

test('top (connections and refusals) and history', async (t) => {
  const { api, port } = await startAdminDaemon(t, {}, { limits: { connections_per_address: 2 } });
  await proxiedClient(t, port, '127.0.0.60');
  await proxiedClient(t, port, '127.0.0.60');
  await proxiedClient(t, port, '127.0.0.66');
  assert.match(await refusedClient(port, '127.0.0.60'), /Too many connections/);
  await refusedClient(port, '127.0.0.60');
  const top = await api.get('/api/top?by=connections');
  assert.deepEqual(top.json, { items: [{ address: '127.0.0.60', country: null, count: 2 }, { address: '127.0.0.66', country: 'RU', count: 1 }] });
  assert.deepEqual((await api.get('/api/top?by=connections&limit=1')).json.items.length, 1);
  const refusals = await api.get('/api/top?by=refusals');
  assert.deepEqual(refusals.json, { items: [{ address: '127.0.0.60', country: null, count: 2 }] });
  assert.equal((await api.get('/api/top')).status, 400);
  assert.equal((await api.get('/api/top?by=bytes')).status, 400);
  assert.equal((await api.get('/api/top?by=refusals&limit=101')).status, 400);
  const history = await api.get('/api/history');
  assert.equal(history.json.step_s, 60);
  assert.ok(history.json.points.length >= 1);
  assert.deepEqual(Object.keys(history.json.points[0]), ['at', 'services']);
  assert.ok(Number.isFinite(Date.parse(history.json.points[0].at)));
  assert.equal(history.json.points[0].services.imap, 0, 'sampled at start, before any connection');
});
