/**
 * The operator's controls on a running daemon with the guard proxy: bans
 * and country rules changed at run time take effect, are written before the
 * call returns and survive a restart; guardrails refuse a lock-out; dry runs
 * report who would be hit and change nothing; every change is audited.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { GuardrailError, ControlInputError } from '../../src/errors.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { startFakeBackend, type FakeBackend } from '../helpers/fake-backend.js';
import { waitUntil } from '../helpers/guard.js';
import { memoryLogger } from '../helpers/log.js';
import { RawClient } from '../helpers/raw-client.js';
import { isolated } from '../helpers/state.js';

const COUNTRIES: Record<string, string> = { '127.0.0.66': 'RU', '127.0.0.49': 'DE' };
const backends: FakeBackend[] = [];
after(async () => {
  for (const b of backends) await b.close();
});

async function start(dir: string, port: number, imap: Record<string, unknown> = {}, others: Record<string, unknown> = {}): Promise<Daemon> {
  const config = parseConfig(
    {
      anvil: { enabled: false },
      ...isolated(dir),
      exceptions: ['127.0.9.0/24'],
      services: { ...others, imap: { ...imap, proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${port}`, proxy_protocol: 'v2', hostname: 'mx.test' } } },
    },
    'control-test',
  );
  return startDaemon(config, memoryLogger().log, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
}

const OPERATOR = { address: '127.0.0.2' };

test('bans: in force at once, written before the call returns, restored after a restart, lifted by unban', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const b = await startFakeBackend({ proxy: true });
  backends.push(b);
  let d = await start(dir, b.port);
  const victim = await RawClient.open(d.proxies[0]?.port ?? 0, { localAddress: '127.0.0.20' });
  await victim.waitFor(/^220 /);
  const kickDry = await d.control.kick('127.0.0.0/30', { banMs: 60_000, reason: 'x', dryRun: true }, { address: '10.0.0.1' });
  assert.deepEqual([kickDry.dryRun, kickDry.hits.length, kickDry.result.kicked], [true, 0, 0]);
  const kickDry2 = await d.control.kick('127.0.0.20', { dryRun: true }, OPERATOR);
  assert.deepEqual([kickDry2.hits.map((h) => h.client.address), d.registry.size], [['127.0.0.20'], 1], 'a dry kick lists, closes nothing');
  const dry = await d.control.ban('127.0.0.20', 600_000, 'flood', OPERATOR, true);
  assert.deepEqual([dry.dryRun, dry.hits.map((h) => h.client.address), d.control.bans().length], [true, ['127.0.0.20'], 0], 'a dry run changes nothing');
  const made = await d.control.ban('127.0.0.20', 600_000, 'flood', OPERATOR);
  assert.equal(made.result?.target, '127.0.0.20');
  assert.match(readFileSync(join(dir, 'state.json'), 'utf8'), /"target": "127\.0\.0\.20"/, 'on disk when the call returns');
  const refused = await RawClient.open(d.proxies[0]?.port ?? 0, { localAddress: '127.0.0.20' });
  await refused.closed();
  assert.equal(refused.received, '* BYE [UNAVAILABLE] Your address is temporarily blocked, try again later\r\n');
  victim.destroy();
  await d.stop();

  d = await start(dir, b.port);
  t.after(() => d.stop());
  assert.deepEqual(d.control.bans().map((x) => [x.target, x.reason]), [['127.0.0.20', 'flood']], 'restored at start');
  assert.equal(await d.control.unban('127.0.0.20', OPERATOR), true);
  assert.equal(await d.control.unban('127.0.0.20', OPERATOR), false);
  const back = await RawClient.open(d.proxies[0]?.port ?? 0, { localAddress: '127.0.0.20' });
  await back.waitFor(/^220 /);
  back.destroy();
  const audit = readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(audit.map((a) => [a.action, a.target, a.by, a.reason]), [
    ['ban.add', '127.0.0.20', '127.0.0.2', 'flood'],
    ['ban.remove', '127.0.0.20', '127.0.0.2', null],
  ]);
});

test('guardrails: no ban over the caller or an exception network, no country rule over the caller', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const d = await start(dir, 1);
  t.after(() => d.stop());
  await assert.rejects(d.control.ban('127.0.0.0/24', 60_000, 'x', OPERATOR), (e: unknown) => e instanceof GuardrailError && /covers your own address 127\.0\.0\.2/.test(e.message));
  await assert.rejects(d.control.ban('127.0.0.0/16', 60_000, 'x', { address: '10.0.0.1' }), (e: unknown) => e instanceof GuardrailError && /exception network 127\.0\.9\.0\/24/.test(e.message));
  await assert.rejects(d.control.kick('127.0.0.2', { banMs: 60_000, reason: 'x' }, OPERATOR), GuardrailError);
  await assert.rejects(d.control.kick('127.0.0.20', { banMs: 60_000 }, OPERATOR), (e: unknown) => e instanceof ControlInputError && e.code === 'DOORMAN_ERR_REASON');
  await assert.rejects(d.control.setCountries('imap', 'connect', { allow: ['RU'] }, { address: '127.0.0.49' }), (e: unknown) => e instanceof GuardrailError && /country DE/.test(e.message));
  await assert.rejects(d.control.setCountries('nosuch', 'connect', { deny: ['RU'] }, OPERATOR), ControlInputError);
  await assert.rejects(d.control.setCountries('imap', 'connect', { allow: ['RU'], deny: ['DE'] }, OPERATOR), ControlInputError);
  await assert.rejects(d.control.ban('not-an-address', 60_000, 'x', OPERATOR), ControlInputError);
  assert.deepEqual(d.control.bans(), []);
});

test('country rules set at run time: dry run counts who is hit, then the next connection is refused, and it survives a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const b = await startFakeBackend({ proxy: true });
  backends.push(b);
  let d = await start(dir, b.port);
  const ru = await RawClient.open(d.proxies[0]?.port ?? 0, { localAddress: '127.0.0.66' });
  await ru.waitFor(/^220 /);
  const dry = await d.control.setCountries('imap', 'connect', { deny: ['RU'] }, OPERATOR, true);
  assert.deepEqual(dry.hits.map((h) => h.client.address), ['127.0.0.66']);
  assert.equal(d.control.countries().imap?.connect, null, 'the dry run changed nothing');
  await d.control.setCountries('imap', 'connect', { deny: ['RU'] }, OPERATOR);
  assert.deepEqual(d.control.countries().imap?.connect, { kind: 'deny', codes: ['RU'], mode: 'enforce', source: 'runtime' });
  const next = await RawClient.open(d.proxies[0]?.port ?? 0, { localAddress: '127.0.0.66' });
  await next.closed();
  assert.equal(next.received, '* BYE [CONTACTADMIN] Access from your country is not allowed\r\n');
  ru.destroy();
  await waitUntil('the session gone', () => d.registry.size === 0);
  await d.stop();
  d = await start(dir, b.port);
  t.after(() => d.stop());
  assert.equal(d.control.countries().imap?.connect?.source, 'runtime');
  await d.control.blockCountry('imap', 'connect', 'kp', OPERATOR);
  assert.deepEqual(d.control.countries().imap?.connect?.codes, ['KP', 'RU']);
  await d.control.unblockCountry('imap', 'connect', 'KP', OPERATOR);
  await d.control.unblockCountry('imap', 'connect', 'RU', OPERATOR);
  assert.equal(d.control.countries().imap?.connect, null, 'the last code unblocked lifts the rule');
  await d.control.setCountries('imap', 'auth', { allow: ['DE', 'RU'] }, OPERATOR);
  await d.control.blockCountry('imap', 'auth', 'RU', OPERATOR);
  assert.deepEqual(d.control.countries().imap?.auth, { kind: 'allow', codes: ['DE'], mode: 'enforce', source: 'runtime' });
  await assert.rejects(d.control.blockCountry('imap', 'auth', 'DE', OPERATOR), /would block every country/);
  await d.control.setCountries('imap', 'auth', null, OPERATOR);
  // Changes at the same moment are applied one after the other: none is lost.
  await Promise.all([
    d.control.blockCountry('imap', 'auth', 'RU', OPERATOR),
    d.control.blockCountry('imap', 'connect', 'CN', OPERATOR),
    d.control.blockCountry('imap', 'connect', 'KP', OPERATOR),
    d.control.ban('192.0.2.1', 60_000, 'x', OPERATOR),
  ]);
  assert.deepEqual([d.control.countries().imap?.auth?.codes, d.control.countries().imap?.connect?.codes], [['RU'], ['CN', 'KP']]);
  const saved = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { countries: { imap: { connect: { deny: string[] } } }; bans: unknown[] };
  assert.deepEqual([saved.countries.imap.connect.deny, saved.bans.length], [['CN', 'KP'], 1]);
  await d.control.setCountries('imap', 'auth', null, OPERATOR);
  await d.control.setCountries('imap', 'connect', null, OPERATOR);
  const ok = await RawClient.open(d.proxies[0]?.port ?? 0, { localAddress: '127.0.0.66' });
  await ok.waitFor(/^220 /);
  ok.destroy();
});

test('a ban made for AUTH failures is written like the operator\'s and restored after a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  let d = await start(dir, 1, { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m' });
  const first = d;
  t.after(() => first.stop());
  assert.equal(await d.gate.authFailed('imap', '192.0.2.50', 'alice', 'h1'), null);
  const ban = await d.gate.authFailed('imap', '192.0.2.50', 'alice', 'h2');
  assert.equal(ban?.target, '192.0.2.50');
  const statePath = join(dir, 'state.json');
  await waitUntil('the ban on disk', () => existsSync(statePath) && readFileSync(statePath, 'utf8').includes('192.0.2.50'));
  await d.stop();
  d = await start(dir, 1, { limits: { auth_failure_rate: 1 } });
  t.after(() => d.stop());
  assert.deepEqual(d.control.bans().map((b) => [b.target, b.reason]), [['192.0.2.50', '2 AUTH failures in 60s, over the limit of 1']]);
  const audit = readFileSync(join(dir, 'audit.log'), 'utf8');
  assert.match(audit, /"action":"ban\.auto","target":"192\.0\.2\.50","by":"internal"/);
});

test('kick by id honours --service: a connection to another service is not kicked', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const b = await startFakeBackend({ proxy: true });
  backends.push(b);
  // pop3 is configured (without a proxy), so the kick is refused for being to another service, not for naming none.
  const d = await start(dir, b.port, {}, { pop3: {} });
  t.after(() => d.stop());
  const c = await RawClient.open(d.proxies[0]?.port ?? 0, { localAddress: '127.0.0.21' });
  await c.waitFor(/^220 /);
  const [conn] = d.registry.list();
  assert.equal(conn?.service, 'imap');
  await assert.rejects(d.control.kick(conn.id, { service: 'pop3' }, OPERATOR), (err: unknown) => err instanceof ControlInputError && /is to imap, not pop3: nothing kicked/.test(err.message));
  await assert.rejects(d.control.kick(conn.id, { service: 'nosuch' }, OPERATOR), (err: unknown) => err instanceof ControlInputError && /^no service "nosuch" in the configuration$/.test(err.message));
  assert.equal(d.registry.size, 1, 'still connected');
  const r = await d.control.kick(conn.id, { service: 'imap' }, OPERATOR);
  assert.equal(r.result.kicked, 1);
  await c.closed();
});

test('repeat offenders: the history outlives a restart, so the next ban after it is longer', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const imap = { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m', repeat_offenders: { window: '1d', multiplier: 3, max_ban: '1d' } };
  let d = await start(dir, 1, imap);
  const first = d;
  t.after(() => first.stop());
  await d.gate.authFailed('imap', '192.0.2.51', 'alice', 'h1');
  const ban = await d.gate.authFailed('imap', '192.0.2.51', 'alice', 'h2');
  assert.deepEqual([ban?.strike, ban?.origin], [1, 'auto']);
  const statePath = join(dir, 'state.json');
  await waitUntil('the offence on disk', () => existsSync(statePath) && /"offenders": \[\s*\{\s*"target": "192\.0\.2\.51",\s*"strike": 1/.test(readFileSync(statePath, 'utf8')));
  await d.stop();
  d = await start(dir, 1, imap);
  t.after(() => d.stop());
  const kept = d.control.bans().find((b) => b.target === '192.0.2.51');
  assert.deepEqual([kept?.origin, kept?.strike], ['auto', 1], 'the ban comes back with its origin');
  // The operator lifts it; the address fails again: the second ban in a day is three times as long.
  assert.equal(await d.control.unban('192.0.2.51', OPERATOR), true);
  await d.gate.authFailed('imap', '192.0.2.51', 'alice', 'h3');
  await d.gate.authFailed('imap', '192.0.2.51', 'alice', 'h4');
  const again = d.control.bans().find((b) => b.target === '192.0.2.51');
  assert.deepEqual([again?.strike, again && again.until - again.createdAt], [2, 1_800_000]);
});

test('unban lifts the operator\'s ban on a network however it is written, and refuses CrowdSec\'s, naming the cscli command', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const d = await start(dir, 1);
  t.after(() => d.stop());
  await d.control.ban('198.51.100.0/24', 600_000, 'scanner', OPERATOR);
  d.gate.bans.add('198.51.100.0/24', 600_000, 'crowdsecurity/ssh-bf', Date.now(), { origin: 'crowdsec' });
  d.gate.bans.add('203.0.113.9', 600_000, 'crowdsecurity/postfix-spam', Date.now(), { origin: 'crowdsec' });
  assert.equal(await d.control.unban('198.51.100.7/24', OPERATOR), true, 'the same network, written from another address in it');
  assert.deepEqual(d.control.bans().map((b) => [b.target, b.origin]).sort(), [['198.51.100.0/24', 'crowdsec'], ['203.0.113.9', 'crowdsec']]);
  await assert.rejects(d.control.unban('203.0.113.9', OPERATOR), (e: unknown) => {
    assert.ok(e instanceof ControlInputError);
    assert.equal(e.code, 'DOORMAN_ERR_CROWDSEC_BAN');
    assert.match(e.message, /lift it there with `cscli decisions delete --ip 203\.0\.113\.9`/);
    return true;
  });
  assert.equal(await d.control.unban('192.0.2.1', OPERATOR), false, 'nothing held there');
});
