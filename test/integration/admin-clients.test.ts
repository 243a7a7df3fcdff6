/**
 * The monitor shows what only reports to Doorman: clients Postfix counts
 * through the anvil service (no proxied connection at all) appear in
 * GET /api/clients with their counts and rates, busiest first.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { AnvilTestClient } from '../helpers/anvil-client.js';
import { startAdminDaemon } from '../helpers/admin-daemon.js';

test('clients reported through the anvil service are listed with their counts and rates', async (t) => {
  const sockDir = mkdtempSync(join(tmpdir(), 'doorman-clients-'));
  t.after(() => rmSync(sockDir, { recursive: true, force: true }));
  const socket = join(sockDir, 'anvil');
  const { api } = await startAdminDaemon(t, { anvil: { socket } });
  const smtpd = await AnvilTestClient.open(socket);
  t.after(() => smtpd.close());
  for (let i = 0; i < 3; i++) await smtpd.request('connect', 'smtp:192.0.2.7');
  await smtpd.request('connect', 'smtp:192.0.2.8');
  await smtpd.request('recipient', 'smtp:192.0.2.8');
  await smtpd.request('recipient', 'smtp:192.0.2.8');
  // Postfix 3.8+ names IPv6 clients by their /84; anvil also takes idents that name no address.
  for (let i = 0; i < 2; i++) await smtpd.request('connect', 'smtp:2001:db8::/84');
  await smtpd.request('connect', 'submission:unknown');
  const byCount = await api.get('/api/clients?service=smtp');
  assert.equal(byCount.status, 200);
  assert.deepEqual(
    byCount.json.items.map((c: { client: string; count: number; rates: { conn: number } }) => [c.client, c.count, c.rates.conn]),
    [
      ['192.0.2.7', 3, 3],
      ['2001:db8::/84', 2, 2],
      ['192.0.2.8', 1, 1],
    ],
  );
  assert.equal(byCount.json.complete, true);
  const byRcpt = await api.get('/api/clients?by=rcpt&limit=1');
  assert.deepEqual(byRcpt.json.items.map((c: { key: string; rates: { rcpt: number } }) => [c.key, c.rates.rcpt]), [['smtp:192.0.2.8', 2]]);
  assert.deepEqual(byCount.json.items.map((c: { kind: string }) => c.kind), ['address', 'network', 'address']);
  assert.deepEqual((await api.get('/api/clients?service=submission')).json.items.map((c: { client: string; kind: string }) => [c.client, c.kind]), [['unknown', 'name']]);
  assert.deepEqual((await api.get('/api/clients?service=imap')).json.items, []);
  assert.equal((await api.get('/api/clients?by=bogus')).status, 400);
});

test('check: an IPv6 client of Postfix 3.8+ is judged on the /84 range smtpd counts it in', async (t) => {
  const sockDir = mkdtempSync(join(tmpdir(), 'doorman-clients-'));
  t.after(() => rmSync(sockDir, { recursive: true, force: true }));
  const socket = join(sockDir, 'anvil');
  const { api } = await startAdminDaemon(t, { anvil: { socket }, services: { smtp: { limits: { connections_per_address: 2 } } } });
  const smtpd = await AnvilTestClient.open(socket);
  t.after(() => smtpd.close());
  await smtpd.request('connect', 'smtp:2001:db8::/84');
  const one = await api.get('/api/check?address=2001:db8::7&service=smtp');
  assert.deepEqual([one.json.counted_as, one.json.connect.action], ['2001:db8::/84', 'allow']);
  await smtpd.request('connect', 'smtp:2001:db8::/84');
  const two = await api.get('/api/check?address=2001:db8::7&service=smtp');
  assert.deepEqual([two.json.connect.action, two.json.connect.reason], ['refuse', '3 connections from 2001:db8::/84, over the limit of 2']);
  assert.equal((await api.get('/api/check?address=192.0.2.1&service=smtp')).json.counted_as, '192.0.2.1');
});
