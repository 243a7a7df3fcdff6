import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test, type TestContext } from 'node:test';
import { memoryLogger } from '../../test/helpers/log.js';
import { parseConfig } from '../config/load.js';
import { systemClock } from '../core/clock.js';
import { Gatekeeper } from '../core/gate.js';
import { MemoryStore } from '../store/memory.js';
import { slidingWindow } from '../store/rate.js';
import { NginxAuthServer } from './nginx-auth.js';

const KEY = 'nginx-unit-key';

async function server(t: TestContext, backends: Record<string, string | null> = { imap: '127.0.0.1:10143' }) {
  const config = parseConfig({ nginx_auth: { listen: '127.0.0.1:0', api_key: KEY, backends }, services: { imap: { countries: { connect: { deny: ['RU'] } } } } }, 't');
  const { log, lines } = memoryLogger('info');
  const gate = Gatekeeper.open({ store: new MemoryStore({ rate: slidingWindow(60_000), maxEntries: 100 }), rules: config.rules, countries: { country: (ip) => (ip === '192.0.2.9' ? 'RU' : null) }, clock: systemClock, log, rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  const s = new NginxAuthServer(gate, log, config.nginx_auth);
  const port = await s.listen();
  t.after(async () => {
    await s.close();
    await gate.stop();
  });
  return { port, lines };
}

function ask(port: number, headers: Record<string, string>, path = '/auth'): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; raw: string[] }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', headers }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: res.rawHeaders }));
    });
    req.on('error', reject);
    req.end();
  });
}

const login = (ip: string, extra: Record<string, string> = {}) => ({
  'Auth-Method': 'plain',
  'Auth-User': 'alice',
  'Auth-Pass': 'secret',
  'Auth-Protocol': 'imap',
  'Auth-Login-Attempt': '1',
  'Client-IP': ip,
  'X-Doorman-Key': KEY,
  ...extra,
});

test('an admitted login is sent to the protocol\'s backend; the answer is only the headers nginx reads', async (t) => {
  const { port } = await server(t);
  const r = await ask(port, login('192.0.2.1'));
  assert.equal(r.status, 200);
  assert.deepEqual([r.headers['auth-status'], r.headers['auth-server'], r.headers['auth-port']], ['OK', '127.0.0.1', '10143']);
  assert.equal(r.headers['date'], undefined, 'no Date: nginx reads at most 1,024 bytes');
});

test('refusals come back in the protocol\'s words; a missing key, an unreadable request or a protocol with no backend get a temporary failure', async (t) => {
  const { port, lines } = await server(t);
  const country = await ask(port, login('192.0.2.9'));
  assert.equal(country.headers['auth-status'], '[CONTACTADMIN] country RU of 192.0.2.9 is in the deny list for imap at connect');
  assert.ok(lines.some((l) => l['msg'] === 'refused' && l['rule'] === 'services.imap.countries.connect' && l['login'] === 'alice'));
  assert.equal(JSON.stringify(lines).includes('secret'), false, 'the password is never logged');
  const noKey = await ask(port, { ...login('192.0.2.1'), 'X-Doorman-Key': 'wrong-key-!' });
  assert.deepEqual([noKey.status, noKey.headers['auth-status']], [403, 'Temporary authentication failure, try again later']);
  const { 'Client-IP': _, ...noIp } = login('192.0.2.1');
  const unreadable = await ask(port, noIp);
  assert.deepEqual([unreadable.status, unreadable.headers['auth-status']], [400, 'Temporary authentication failure, try again later']);
  const pop3 = await ask(port, login('192.0.2.1', { 'Auth-Protocol': 'pop3' }));
  assert.deepEqual([pop3.status, pop3.headers['auth-status']], [200, 'Temporary authentication failure, try again later']);
  assert.equal((await ask(port, login('192.0.2.1'), '/other')).status, 404);
});
