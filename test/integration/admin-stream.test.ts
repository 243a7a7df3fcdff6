/**
 * The admin API's event stream and metrics with real proxied connections,
 * refusals from the Postfix and Dovecot policy front-ends, and its failures:
 * a port in use, a change that cannot be written.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ListenError } from '../../src/errors.js';
import { startDaemon } from '../../src/main.js';
import { AdminClient } from '../helpers/admin-client.js';
import { COUNTRIES, GREETING, TOKEN, metricValue, proxiedClient, refusedClient, startAdminDaemon } from '../helpers/admin-daemon.js';
import { waitUntil } from '../helpers/guard.js';
import { memoryLogger } from '../helpers/log.js';
import { PolicyTestClient } from '../helpers/policy-client.js';
import { isolated } from '../helpers/state.js';

test('events: connect, refusal, kick and disconnect of real proxied connections; a keep-alive-ready stream; a cap', async (t) => {
  const { d, api, port } = await startAdminDaemon(t, {}, { limits: { connections_per_address: 1 } });
  assert.equal(d.events.listenerCount('disconnect'), 0, 'no stream, no listener');
  const es = await api.events();
  t.after(() => es.close());
  assert.equal(es.status, 200);
  assert.match(es.contentType ?? '', /^text\/event-stream/);
  await waitUntil('the stream is attached', () => d.events.listenerCount('disconnect') === 1);
  const c = await proxiedClient(t, port, '127.0.0.66');
  const connect = await es.waitFor((e) => e.event === 'connect');
  assert.deepEqual([connect.data.client.address, connect.data.country, connect.data.service, typeof connect.data.id], ['127.0.0.66', 'RU', 'imap', 'string']);
  await refusedClient(port, '127.0.0.66');
  const refusal = await es.waitFor((e) => e.event === 'refusal');
  assert.deepEqual(refusal.data, {
    service: 'imap',
    address: '127.0.0.66',
    country: 'RU',
    rule: 'services.imap.limits.connections_per_address',
    reason: '2 connections from 127.0.0.66, over the limit of 1',
    by: 'proxy',
  });
  await api.call('POST', '/api/kick', { target: connect.data.id, reason: 'test' });
  const kick = await es.waitFor((e) => e.event === 'kick');
  assert.deepEqual(kick.data, { target: connect.data.id, kicked: 1, ban: null, reason: 'test' });
  await c.closed();
  const gone = await es.waitFor((e) => e.event === 'disconnect');
  assert.equal(gone.data.id, connect.data.id);
  assert.equal(gone.data.address, '127.0.0.66');
  assert.equal(gone.data.bytes_out >= GREETING.length, true);
  assert.deepEqual(Object.keys(gone.data).sort(), ['address', 'bytes_in', 'bytes_out', 'id', 'service', 'why']);
  assert.ok(es.comments.includes(': connected'));
  es.close();
  await waitUntil('the listeners go with the client', () => d.events.listenerCount('disconnect') === 0 && d.admin?.stream.size === 0);

  // The cap: 64 streams, the 65th is refused with the error shape.
  const many = await Promise.all(Array.from({ length: 64 }, () => api.events()));
  t.after(() => many.forEach((m) => m.close()));
  assert.ok(many.every((m) => m.status === 200));
  const extra = await api.get('/api/events');
  assert.deepEqual([extra.status, extra.json.error.code], [503, 'DOORMAN_ERR_TOO_MANY_STREAMS']);
  many.forEach((m) => m.close());
});

test('metrics: the contract names with values that follow the traffic', async (t) => {
  const { d, api, port } = await startAdminDaemon(t);
  const c = await proxiedClient(t, port, '127.0.0.49');
  await api.call('PUT', '/api/countries/imap/connect', { deny: ['RU'] });
  await refusedClient(port, '127.0.0.66');
  await refusedClient(port, '127.0.0.66');
  const m = await api.get('/metrics');
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = m.json as string;
  assert.equal(metricValue(text, 'doorman_connections{service="imap"}'), 1);
  assert.equal(metricValue(text, 'doorman_connections_total{service="imap"}'), 1);
  assert.equal(metricValue(text, 'doorman_decisions_total{service="imap",action="allow",rule="none"}'), 1);
  assert.equal(metricValue(text, 'doorman_decisions_total{service="imap",action="refuse",rule="services.imap.countries.connect"}'), 2);
  assert.equal(metricValue(text, 'doorman_refusals_by_country_total{service="imap",country="RU"}'), 2);
  assert.ok((metricValue(text, 'doorman_engine_entries') ?? 0) >= 1);
  assert.equal(metricValue(text, 'doorman_bans{origin="operator"}'), 0);
  assert.equal(metricValue(text, 'doorman_store_up'), 1, 'the memory store is always up (issue 17: it read 0, so the alert fired forever)');
  assert.equal(metricValue(text, 'doorman_kicks_total'), 0);
  assert.match(text, /^doorman_process_resident_memory_bytes \d+/m);
  assert.match(text, /^doorman_nodejs_eventloop_lag_seconds /m);
  await api.call('POST', '/api/kick', { target: '127.0.0.49' });
  await c.closed();
  await waitUntil('the registry empties', () => d.registry.size === 0);
  const after = (await api.get('/metrics')).json as string;
  assert.equal(metricValue(after, 'doorman_connections{service="imap"}'), 0);
  assert.equal(metricValue(after, 'doorman_kicks_total'), 1);
});

test('refusals from the Postfix policy service and the Dovecot endpoint reach the stream, the metrics and the top list', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-admin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const key = 'dovecot-test-key';
  const config = parseConfig(
    {
      anvil: { enabled: false },
      ...isolated(dir),
      postfix_policy: { listen: ['127.0.0.1:0'] },
      dovecot_policy: { listen: '127.0.0.1:0', api_key: key },
      services: { smtp: { countries: { connect: { deny: ['RU'] } } }, imap: { countries: { auth: { deny: ['RU'] } } } },
    },
    'admin-fronts',
  );
  const d = await startDaemon(config, memoryLogger().log, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
  t.after(() => d.stop());
  const api = new AdminClient(d.adminPort, null);
  const es = await api.events();
  t.after(() => es.close());
  const policy = await PolicyTestClient.open({ port: d.policy?.ports[0] as number });
  t.after(() => policy.close());
  assert.match((await policy.ask({ request: 'smtpd_access_policy', protocol_state: 'CONNECT', protocol_name: 'SMTP', client_address: '77.88.8.8' })) ?? '', /^554 5\.7\.1/);
  const dovecot = await fetch(`http://127.0.0.1:${d.dovecotPort}/policy?command=allow`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify({ login: 'alice', remote: '77.88.8.8', protocol: 'imap', session_id: 's1' }),
  });
  assert.equal(((await dovecot.json()) as { status: number }).status, -1);
  const byPolicy = await es.waitFor((e) => e.event === 'refusal' && e.data.by === 'policy');
  assert.deepEqual(byPolicy.data, { service: 'smtp', address: '77.88.8.8', country: 'RU', rule: 'services.smtp.countries.connect', reason: byPolicy.data.reason, by: 'policy' });
  const byDovecot = await es.waitFor((e) => e.event === 'refusal' && e.data.by === 'dovecot');
  assert.deepEqual([byDovecot.data.service, byDovecot.data.address, byDovecot.data.rule], ['imap', '77.88.8.8', 'services.imap.countries.auth']);
  const text = (await api.get('/metrics')).json as string;
  assert.equal(metricValue(text, 'doorman_refusals_by_country_total{service="smtp",country="RU"}'), 1);
  assert.equal(metricValue(text, 'doorman_refusals_by_country_total{service="imap",country="RU"}'), 1);
  assert.deepEqual((await api.get('/api/top?by=refusals')).json.items, [{ address: '77.88.8.8', country: 'RU', count: 2 }]);
});

test('a second admin server on the same port: a ListenError naming it, and nothing left listening', async (t) => {
  const { d } = await startAdminDaemon(t);
  const dir = mkdtempSync(join(tmpdir(), 'doorman-admin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = parseConfig({ anvil: { enabled: false }, ...isolated(dir), admin: { listen: `127.0.0.1:${d.adminPort}` } }, 'second');
  await assert.rejects(
    startDaemon(config, memoryLogger().log),
    (e: unknown) => e instanceof ListenError && e.code === 'DOORMAN_ERR_LISTEN' && new RegExp(`admin API on 127\\.0\\.0\\.1:${d.adminPort}: .*EADDRINUSE`).test(e.message),
  );
  assert.equal((await new AdminClient(d.adminPort, TOKEN).get('/health')).status, 200, 'the first is untouched');
});

test('a change that cannot be written: 500 with the error shape, and the change not made', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-admin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const stateDir = join(dir, 'state');
  mkdirSync(stateDir);
  const config = parseConfig(
    { anvil: { enabled: false }, state: { file: join(stateDir, 'state.json'), audit_log: join(dir, 'audit.log') }, admin: { listen: '127.0.0.1:0', token: TOKEN } },
    'unwritable',
  );
  const d = await startDaemon(config, memoryLogger().log);
  t.after(() => d.stop());
  // Root ignores permissions: a directory that is gone cannot be written by anyone.
  rmSync(stateDir, { recursive: true });
  const api = new AdminClient(d.adminPort, TOKEN);
  const r = await api.call('POST', '/api/bans', { target: '192.0.2.1', ttl: '1h', reason: 'x' });
  assert.equal(r.status, 500);
  assert.equal(r.json.error.code, 'DOORMAN_ERR_STATE_WRITE');
  assert.match(r.json.error.message, /^the change could not be written: ENOENT/);
  assert.deepEqual((await api.get('/api/bans')).json, { items: [] }, 'refused, so not in force');
});
