/**
 * A change made through the admin API survives `kill -9` of the daemon
 * right after the call returned: it was on disk before the answer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startDoorman, type DoormanProcess } from '../helpers/daemon.js';
import { stateIn } from '../helpers/state.js';

const TOKEN = 'crash-test-token-0123456789';

async function adminUrl(d: DoormanProcess): Promise<string> {
  const line = await d.waitForLog((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('admin API and dashboard on '));
  return String(line['msg']).slice('admin API and dashboard on '.length).replace(/\/$/, '');
}

async function call(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(url + path, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}

test('bans and country rules survive kill -9 right after the call returned', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-crash-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = {
    log: { level: 'info', format: 'json' },
    anvil: { enabled: false },
    state: stateIn(dir),
    admin: { listen: '127.0.0.1:0', token: TOKEN },
    services: { imap: { countries: { connect: { deny: ['KP'] } } } },
  };
  const first = await startDoorman(config);
  t.after(() => first.stop('SIGKILL'));
  const url = await adminUrl(first);
  for (let i = 0; i < 20; i++) assert.equal((await call(url, 'POST', '/api/bans', { target: `192.0.2.${i}`, ttl: '1h', reason: `n${i}` })).status, 200);
  assert.equal((await call(url, 'POST', '/api/countries/imap/connect/block', { country: 'RU' })).status, 200);
  first.proc.kill('SIGKILL');
  assert.equal(await first.exited, null);

  const second = await startDoorman(config);
  t.after(() => second.stop());
  const url2 = await adminUrl(second);
  const bans = await call(url2, 'GET', '/api/bans');
  assert.equal(bans.json.items.length, 20);
  assert.equal((await call(url2, 'GET', '/api/countries')).json.services.imap.connect.codes.join(','), 'KP,RU');
  assert.deepEqual(readdirSync(dir).sort(), ['audit.log', 'state.json'], 'no temporary file left');
});
