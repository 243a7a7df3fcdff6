/**
 * Doorman's Dovecot auth policy endpoint, in-process, fed the requests a
 * Dovecot of each generation sends for a login: allow, allow again when the
 * password was right, report. The bodies are shaped as each generation
 * shapes them (DOVECOT_GENERATION: 2.4 adds fail_type); no Dovecot runs here
 * (dovecot-doorman.test.ts drives real ones).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon } from '../../src/main.js';
import { DOVECOT_GENERATION, DOVECOT_GENERATIONS, type DovecotGenerationFacts } from '../helpers/dovecot.js';
import { memoryLogger } from '../helpers/log.js';
import { isolated } from '../helpers/state.js';

const COUNTRIES: Record<string, string> = { '8.8.8.8': 'US', '77.88.8.8': 'RU', '133.242.0.1': 'JP', '2a00:1450::1': 'DE', '5.1.1.1': 'AT' };
const KEY = 'doorman-test-key';

/** `host` is where Doorman listens, and so where the requests come from (a Dovecot on that loopback). */
async function daemon(t: TestContext, facts: DovecotGenerationFacts, rules: Record<string, unknown>, host = '127.0.0.1') {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-dovecot-'));
  const listen = host.includes(':') ? `[${host}]:0` : `${host}:0`;
  const config = parseConfig(
    { anvil: { socket: join(dir, 'anvil') }, ...isolated(dir), dovecot_policy: { listen, api_key: KEY, basic: { user: 'dov', password: 'pw-12345678' } }, ...rules },
    'test',
  );
  const { log, lines } = memoryLogger();
  const d = await startDaemon(config, log, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
  t.after(async () => {
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  let n = 0;
  const post = async (command: string, body: Record<string, unknown>, headers: Record<string, string> = { 'x-api-key': KEY }) => {
    const res = await fetch(`http://${host.includes(':') ? `[${host}]` : host}:${d.dovecotPort}/policy?command=${command}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    return { code: res.status, json: (await res.json()) as { status?: number; msg?: string } };
  };
  /** One login as Dovecot runs it: allow, (allow again if the password was right), report. */
  const login = async (remote: string, user: string, ok: boolean, pwhash = ok ? '0dcd' : '0690'): Promise<{ status?: number; msg?: string; failed?: boolean }> => {
    const session = `s${++n}`;
    const body = { ...facts.policyFields(''), device_id: '', login: user, protocol: 'imap', pwhash, remote, session_id: session, tls: false };
    const first = await post('allow', body);
    if (first.json.status !== 0) {
      await post('report', { ...body, ...facts.policyFields('policy'), success: false, policy_reject: true });
      return first.json;
    }
    if (!ok) {
      await post('report', { ...body, ...facts.policyFields('credentials'), success: false, policy_reject: false });
      return { status: 0, failed: true };
    }
    const second = await post('allow', body);
    const refused = second.json.status !== 0;
    await post('report', { ...body, ...facts.policyFields(refused ? 'policy' : ''), success: !refused, policy_reject: refused });
    return second.json;
  };
  return { d, post, login, lines };
}

for (const generation of DOVECOT_GENERATIONS) {
  const facts = DOVECOT_GENERATION[generation];
  const title = (what: string): string => `${facts.label} requests: ${what}`;

  test(title('credentials: API key, bearer, basic; anything else is 401'), async (t) => {
    const { post } = await daemon(t, facts, {});
    const body = { login: 'alice', remote: '8.8.8.8', protocol: 'imap', session_id: 'x' };
    assert.equal((await post('allow', body, {})).code, 401);
    assert.equal((await post('allow', body, { 'x-api-key': 'wrong-key-123' })).code, 401);
    assert.equal((await post('allow', body, { authorization: `Bearer ${KEY}` })).code, 200);
    assert.equal((await post('allow', body, { authorization: `Basic ${Buffer.from('dov:pw-12345678').toString('base64')}` })).code, 200);
    assert.equal((await post('allow', body, { authorization: `Basic ${Buffer.from('dov:nope').toString('base64')}` })).code, 401);
    assert.equal((await post('bogus', body)).code, 400);
    assert.equal((await post('allow', { login: 'alice' })).code, 400, 'remote is required');
  });

  test(title('country rule at AUTH refuses with a message Dovecot shows; others go on'), async (t) => {
    const { login } = await daemon(t, facts, { services: { imap: { countries: { auth: { allow: ['DE', 'AT'] } } } } });
    assert.deepEqual(await login('133.242.0.1', 'alice', true), { status: -1, msg: 'country JP of 133.242.0.1 is not in the allow list for imap at auth' });
    assert.deepEqual(await login('2a00:1450::1', 'alice', true), { status: 0 });
    assert.deepEqual(await login('10.0.0.5', 'alice', true), { status: 0 }, 'no country, never blocked');
  });

  test(title('distinct failures get the address banned; the same wrong password again does not'), async (t) => {
    const { login, lines } = await daemon(t, facts, { services: { imap: { limits: { auth_failure_rate: 3 }, auth_failure_ban: '10m' } } });
    // The office phone with an old password: the same pwhash ten times.
    for (let i = 0; i < 10; i++) await login('8.8.8.8', 'bob', false, '0abc');
    assert.deepEqual(await login('8.8.8.8', 'bob', true), { status: 0 }, 'not banned');
    // A guesser: four different passwords.
    for (const h of ['1111', '2222', '3333', '4444']) await login('77.88.8.8', 'alice', false, h);
    const r = await login('77.88.8.8', 'alice', true);
    assert.equal(r.status, -1);
    assert.match(String(r.msg), /^77\.88\.8\.8 is banned for 600 s more \(4 AUTH failures in 60s, over the limit of 3\)$/);
    assert.ok(lines.some((l) => l.msg === 'banned' && l.remote === '77.88.8.8'));
    assert.deepEqual(await login('8.8.8.8', 'bob', true), { status: 0 }, 'the ban is for that address only');
  });

  test(title('a login used from too many countries is refused at the after-auth check'), async (t) => {
    const { login } = await daemon(t, facts, { services: { imap: { max_countries_per_login: { countries: 2, window: '24h', action: 'refuse', exempt_logins: ['roamer'] } } } });
    assert.equal((await login('8.8.8.8', 'carol', true)).status, 0);
    assert.equal((await login('2a00:1450::1', 'carol', true)).status, 0);
    const third = await login('133.242.0.1', 'carol', true);
    assert.equal(third.status, -1);
    assert.match(String(third.msg), /login carol used from 3 countries within 24 h \(now JP\), over 2/);
    assert.equal((await login('8.8.8.8', 'carol', true)).status, 0, 'a country already seen is fine');
    for (const ip of ['8.8.8.8', '2a00:1450::1', '133.242.0.1']) assert.equal((await login(ip, 'roamer', true)).status, 0);
  });

  test(title('requests from a Dovecot on ::1 about a client on ::1: distinct failures ban ::1, and only ::1'), async (t) => {
    const { login, lines } = await daemon(t, facts, { services: { imap: { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m' } } }, '::1');
    for (const h of ['1111', '2222']) assert.deepEqual(await login('::1', 'alice', false, h), { status: 0, failed: true });
    const r = await login('::1', 'alice', true);
    assert.equal(r.status, -1);
    assert.match(String(r.msg), /^::1 is banned for 600 s more \(2 AUTH failures in 60s, over the limit of 1\)$/);
    assert.ok(lines.some((l) => l.msg === 'banned' && l.remote === '::1'));
    assert.deepEqual(await login('127.0.0.1', 'alice', true), { status: 0 }, 'another address is not banned');
  });
}

test('Dovecot 2.4: only a wrong password or an unknown user counts toward the AUTH-failure ban; every reply carries status', async (t) => {
  const { post, lines } = await daemon(t, DOVECOT_GENERATION['2.4'], { services: { imap: { limits: { auth_failure_rate: 2 }, auth_failure_ban: '10m' } } });
  let n = 0;
  /** A failed login as Dovecot 2.4 reports it: allow, then report with fail_type. */
  const fail = async (remote: string, failType: string | undefined) => {
    const body = { device_id: '', ...(failType === undefined ? {} : { fail_type: '' }), login: 'alice', protocol: 'imap', pwhash: `h${++n}`, remote, session_id: `s${n}`, tls: false };
    const allow = await post('allow', body);
    assert.equal(typeof allow.json.status, 'number', 'Dovecot 2.4 takes a reply without status for an error');
    // A refused allow is reported as a policy refusal, whatever the password was.
    const why = allow.json.status !== 0 ? 'policy' : failType;
    const report = await post('report', { ...body, ...(why === undefined ? {} : { fail_type: why }), success: false, policy_reject: why === 'policy' || allow.json.status !== 0 });
    assert.deepEqual(report.json, { status: 0 });
    return allow.json;
  };
  for (const kind of ['internal', 'expired', 'disabled', 'policy', '', 'a-kind-from-a-later-release']) {
    for (let i = 0; i < 3; i++) assert.deepEqual(await fail('77.88.8.8', kind), { status: 0 }, `${kind || '(empty)'} is no guess`);
  }
  await fail('77.88.8.8', 'account');
  for (let i = 0; i < 2; i++) await fail('77.88.8.8', 'credentials');
  const banned = await fail('77.88.8.8', 'credentials');
  assert.equal(banned.status, -1);
  assert.match(String(banned.msg), /^77\.88\.8\.8 is banned for 600 s more \(3 AUTH failures in 60s, over the limit of 2\)$/);
  // Dovecot 2.3 sends no fail_type: every failure counts, as it always did.
  for (let i = 0; i < 3; i++) await fail('8.8.8.8', undefined);
  assert.equal((await fail('8.8.8.8', undefined)).status, -1);
  assert.equal(lines.filter((l) => l.msg === 'banned').length, 2);
});
