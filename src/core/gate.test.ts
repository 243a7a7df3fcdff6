import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryLogger } from '../../test/helpers/log.js';
import { serviceSchema } from '../config/rules-schema.js';
import { MemoryStore } from '../store/memory.js';
import { BanList } from './bans.js';
import { FakeClock } from './clock.js';
import { Engine } from './engine.js';
import { Gatekeeper } from './gate.js';
import { clientAddress, type ClientAddress, type ParsedIp } from './ip.js';
import type { Owner } from './ports.js';
import { slidingWindow } from '../store/rate.js';
import { Rules } from './rules.js';
import { StoreUnavailableError } from '../errors.js';

function gate(services: Record<string, unknown>) {
  const clock = new FakeClock();
  const rate = slidingWindow(60_000);
  const engine = new Engine(new MemoryStore({ rate, maxEntries: 1000 }), clock, memoryLogger().log, { rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  const rules = Rules.compile({ services: Object.fromEntries(Object.entries(services).map(([k, v]) => [k, serviceSchema.parse(v)])), exceptions: [], overrides: [] }, 't');
  const countries: Record<string, string> = { '8.8.8.8': 'US', '77.88.8.8': 'RU' };
  return { clock, engine, g: new Gatekeeper(engine, rules, new BanList(), { country: (ip) => countries[ip] ?? null }, clock, 60_000) };
}

const sync = <T>(v: T | Promise<T>): T => {
  assert.ok(!(v instanceof Promise), 'the memory store answers synchronously');
  return v as T;
};

test('an AUTH-failure ban lasts auth_failure_ban, then lifts', () => {
  const { clock, g } = gate({ imap: { limits: { auth_failure_rate: 2 }, auth_failure_ban: '5m' } });
  for (const h of ['a1', 'a2']) assert.equal(sync(g.authFailed('imap', '8.8.8.8', 'alice', h)), null);
  const ban = sync(g.authFailed('imap', '8.8.8.8', 'alice', 'a3'));
  assert.equal(ban?.reason, '3 AUTH failures in 60s, over the limit of 2');
  assert.equal(sync(g.authAttempt('imap', '8.8.8.8')).refusal?.rule, 'bans');
  clock.advance(4 * 60_000);
  assert.equal(sync(g.authAttempt('imap', '8.8.8.8')).refusal?.retryAfterSec, 60);
  clock.advance(60_001);
  assert.equal(sync(g.authAttempt('imap', '8.8.8.8')).action, 'allow', 'ban over, and the failure rate has decayed');
});

test('the same wrong password counts once per window, again after it', () => {
  const { clock, g } = gate({ imap: { limits: { auth_failure_rate: 1 } } });
  for (let i = 0; i < 5; i++) assert.equal(sync(g.authFailed('imap', '8.8.8.8', 'bob', 'same')), null);
  clock.advance(3 * 60_000);
  assert.equal(sync(g.authFailed('imap', '8.8.8.8', 'bob', 'same')), null, 'once more after the window: 1 failure, not over 1');
  assert.notEqual(sync(g.authFailed('imap', '8.8.8.8', 'bob', 'other')), null, 'a second distinct password within the window is');
});

test('the AUTH-failure peak names the client, never the login and password-hash bookkeeping keys', () => {
  const { engine, g } = gate({ imap: { limits: { auth_failure_rate: 100 } } });
  // The same wrong password five times: the dedupe key's rate (5) is higher than the client's (1).
  for (let i = 0; i < 5; i++) sync(g.authFailed('imap', '8.8.8.8', 'bob', 'hash-of-secret'));
  const peak = engine.peaks.get('authfail');
  assert.equal(peak?.key, 'imap:8.8.8.8');
  assert.equal(peak?.value, 1);
  assert.doesNotMatch(JSON.stringify(engine.peaks.snapshot()), /authfail:|login:|hash-of-secret/);
});

test('the busiest clients by AUTH failures are clients, never the bookkeeping keys (/api/clients)', async () => {
  const { engine, g } = gate({ imap: { limits: { auth_failure_rate: 100 } } });
  for (let i = 0; i < 5; i++) sync(g.authFailed('imap', '8.8.8.8', 'bob', 'hash-of-secret'));
  sync(g.authFailed('imap', '8.8.4.4', 'ann', 'h1'));
  for (const prefix of ['', 'imap:']) {
    const top = await engine.top(prefix, 'authfail', 10);
    assert.deepEqual(top.items.map((x) => x.key).sort(), ['imap:8.8.4.4', 'imap:8.8.8.8'], `top under "${prefix}"`);
  }
});

test('recipient rate slides: refused at the limit, allowed again as the window passes', () => {
  const { clock, g } = gate({ smtp: { limits: { recipient_rate: 3 } } });
  for (let i = 0; i < 3; i++) assert.equal(sync(g.event('smtp', '8.8.8.8', 'rcpt')).action, 'allow');
  assert.equal(sync(g.event('smtp', '8.8.8.8', 'rcpt')).action, 'refuse');
  clock.advance(60_000 + 45_000);
  assert.equal(sync(g.event('smtp', '8.8.8.8', 'rcpt')).action, 'allow', 'a quarter of the old window still counts: floor(4 * 0.25) + 1 = 2');
});

test('countries per login are remembered for the window only', () => {
  const { clock, g } = gate({ imap: { max_countries_per_login: { countries: 1, window: '1h', action: 'refuse' } } });
  assert.equal(sync(g.authSucceeded('imap', '8.8.8.8', 'carol')).action, 'allow');
  assert.equal(sync(g.authSucceeded('imap', '77.88.8.8', 'carol')).action, 'refuse');
  clock.advance(3_600_000);
  assert.equal(sync(g.authSucceeded('imap', '77.88.8.8', 'carol')).action, 'allow', 'the US login is an hour old');
});

test('admit: counts the connection, refuses the one over the limit and gives its count back', () => {
  const { g } = gate({ imap: { limits: { connections_per_address: 2, connections_per_prefix: 3 }, prefix: { ipv4: 24, ipv6: 64 } } });
  const owner = g.createOwner('proxy');
  const a1 = sync(g.admit('imap', '8.8.8.8', owner));
  const a2 = sync(g.admit('imap', '::ffff:8.8.8.8', owner));
  assert.deepEqual([a1.decision.action, a2.decision.action, a2.address], ['allow', 'allow', '8.8.8.8'], 'a mapped address counts as its IPv4');
  assert.deepEqual(a1.keys, ['imap:8.8.8.8', 'imap:8.8.8.0/24']);
  const a3 = sync(g.admit('imap', '8.8.8.8', owner));
  assert.equal(a3.decision.refusal?.rule, 'services.imap.limits.connections_per_address');
  assert.equal(a3.decision.refusal?.limit, 2);
  assert.deepEqual(a3.keys, []);
  const snap = sync(g.lookup('imap:8.8.8.8'));
  assert.equal(snap.count, 2, 'the refused connection holds nothing');
  assert.equal(snap.rates.conn, 3, 'but it stays in the connection rate');
  assert.equal(sync(g.admit('imap', '8.8.8.9', owner)).decision.action, 'allow');
  assert.equal(sync(g.admit('imap', '8.8.8.10', owner)).decision.refusal?.rule, 'services.imap.limits.connections_per_prefix');
  sync(g.leave(a1.keys, owner));
  assert.equal(sync(g.lookup('imap:8.8.8.8')).count, 1);
  assert.equal(sync(g.lookup('imap:8.8.8.0/24')).count, 2);
});

test('admit: a ban or a country refusal counts nothing', () => {
  const { clock, g } = gate({ smtp: { limits: { connections_per_address: 5 }, countries: { connect: { deny: ['RU'] } } } });
  const owner = g.createOwner('proxy');
  g.bans.add('8.8.8.8', 60_000, 'test', clock.now());
  const banned = sync(g.admit('smtp', '8.8.8.8', owner));
  assert.equal(banned.decision.refusal?.rule, 'bans');
  assert.equal(sync(g.admit('smtp', '77.88.8.8', owner)).decision.refusal?.rule, 'services.smtp.countries.connect');
  assert.equal(g.stats().entries, 0);
  const odd = sync(g.admit('smtp', 'not-an-ip', owner));
  assert.deepEqual([odd.decision.action, odd.keys], ['allow', []]);
});

test('checkConnect(next): judges the next connection, itself counted', () => {
  const { g } = gate({ imap: { limits: { connections_per_address: 2 } } });
  const owner = g.createOwner('proxy');
  sync(g.admit('imap', '8.8.8.8', owner));
  sync(g.admit('imap', '8.8.8.8', owner));
  assert.equal(sync(g.checkConnect('imap', '8.8.8.8')).action, 'allow', 'the counts as they are: at the limit');
  assert.equal(sync(g.checkConnect('imap', '8.8.8.8', true)).refusal?.rule, 'services.imap.limits.connections_per_address');
});

/** What the anvil service does for one connect from smtpd: count the ident, report its client. */
function anvilConnect(g: Gatekeeper, owner: Owner, service: string, client: string): void {
  sync(g.anvilConnect(`${service}:${client}`, owner));
}

test('Postfix 3.8+ ranges: the policy check finds the counts smtpd wrote under ::/84 for ::1', () => {
  const { g } = gate({ smtp: { limits: { connections_per_address: 2, connection_rate: 10 } } });
  const smtpd = g.createOwner('anvil');
  for (let i = 0; i < 3; i++) anvilConnect(g, smtpd, 'smtp', '::/84');
  const d = sync(g.checkConnect('smtp', '::1'));
  assert.equal(d.refusal?.rule, 'services.smtp.limits.connections_per_address');
  assert.equal(d.refusal?.reason, '3 connections from ::/84, over the limit of 2', 'the refusal names the range smtpd counts');
  assert.equal(sync(g.checkConnect('smtp', '::2')).action, 'refuse', 'another address of the same /84 is the same client to smtpd');
  assert.equal(sync(g.checkConnect('smtp', '2001:db8::1')).action, 'allow');
  assert.equal(sync(g.checkConnect('smtp', '127.0.0.1')).action, 'allow');
});

test('Postfix 3.7 (whole IPv6 addresses) is learned from its first connect, so the default /84 does not hide its counts', () => {
  const { g } = gate({ smtp: { limits: { connections_per_address: 2 } } });
  const smtpd = g.createOwner('anvil');
  for (let i = 0; i < 3; i++) anvilConnect(g, smtpd, 'smtp', '2001:db8::7');
  assert.equal(sync(g.checkConnect('smtp', '2001:db8::7')).refusal?.reason, '3 connections from 2001:db8::7, over the limit of 2');
  assert.equal(sync(g.checkConnect('smtp', '2001:db8::8')).action, 'allow');
});

test('ranges apply to what smtpd counts only: a proxied SMTP service and Dovecot services count whole addresses', () => {
  const { g } = gate({
    smtp: { limits: { connections_per_address: 1 }, proxy: { listen: ['127.0.0.1:0'], backend: '127.0.0.1:1', proxy_protocol: 'v1' } },
    imap: { limits: { auth_rate: 1 } },
  });
  const owner = g.createOwner('proxy');
  assert.deepEqual(sync(g.admit('smtp', '::1', owner)).keys, ['smtp:::1']);
  assert.equal(sync(g.checkConnect('smtp', '::1', true)).refusal?.reason, '2 connections from ::1, over the limit of 1');
  sync(g.authAttempt('imap', '::1'));
  assert.equal(sync(g.lookup('imap:::1')).rates.auth, 1);
  assert.equal(sync(g.checkAuth('imap', '::1')).action, 'allow');
  assert.equal(sync(g.authAttempt('imap', '::1')).refusal?.reason, 'AUTH rate of ::1 is 2/60s, over the limit of 1');
});

test('per-prefix counting with ranges: a /64 prefix holds /84 ranges; a prefix longer than the range is the range itself', () => {
  const wide = gate({ smtp: { limits: { connections_per_prefix: 2 }, prefix: { ipv4: 24, ipv6: 64 } } }).g;
  const smtpd = wide.createOwner('anvil');
  assert.equal(wide.anvilClient('smtp', '2001:db8::/84', true), 'smtp:2001:db8::/64');
  anvilConnect(wide, smtpd, 'smtp', '2001:db8::/84');
  anvilConnect(wide, smtpd, 'smtp', '2001:db8:0:0:1000::/84');
  anvilConnect(wide, smtpd, 'smtp', '2001:db8:0:0:2000::/84');
  const d = sync(wide.checkConnect('smtp', '2001:db8::9'));
  assert.equal(d.refusal?.reason, '3 connections from network 2001:db8::/64, over the limit of 2');

  const narrow = gate({ smtp: { limits: { connections_per_prefix: 2 }, prefix: { ipv4: 24, ipv6: 96 } } }).g;
  const smtpd2 = narrow.createOwner('anvil');
  assert.equal(narrow.anvilClient('smtp', '2001:db8::/84', true), null, 'nothing to count beside the ident: it is the network');
  for (let i = 0; i < 3; i++) anvilConnect(narrow, smtpd2, 'smtp', '2001:db8::/84');
  assert.equal(sync(narrow.checkConnect('smtp', '2001:db8::9')).refusal?.reason, '3 connections from network 2001:db8::/84, over the limit of 2');
  assert.equal(narrow.stats().entries, 1, 'one key: the range');
});

test('anvilClient: an ident that names no address teaches nothing and counts no network', () => {
  const { g } = gate({ smtp: { limits: { connections_per_prefix: 2 } } });
  assert.equal(g.anvilClient('smtp', 'unknown', true), null);
  assert.equal(g.anvilClient('smtp', '::1/84', true), null, 'host bits set');
  assert.deepEqual(g.ranges.snapshot(), {});
  assert.equal(g.anvilClient('smtp', '192.0.2.0/24', true), null, 'a /24 range under a /24 prefix is its own network');
  assert.deepEqual(g.ranges.snapshot(), { smtp: { ipv4: 24, ipv6: null } }, 'an IPv4 range is learned');
  assert.equal(g.anvilClient('smtp', '198.51.100.0/24', false), null);
  assert.equal(g.anvilClient('smtp', '198.51.100.7', false), 'smtp:198.51.100.0/24', 'a disconnect teaches nothing');
  assert.deepEqual(g.ranges.snapshot(), { smtp: { ipv4: 24, ipv6: null } });
});

test('a ban on smtpd\'s range (as /api/clients lists it) refuses every address in it', () => {
  const { clock, g } = gate({ smtp: { limits: { connections_per_address: 5 } } });
  g.bans.add('2001:db8:1234:5600::/84', 60_000, 'flood from this range', clock.now());
  assert.equal(sync(g.checkConnect('smtp', '2001:db8:1234:5600::9')).refusal?.rule, 'bans');
  assert.equal(sync(g.checkConnect('smtp', '2001:db8:1234:5600:0:fff::1')).refusal?.rule, 'bans');
  assert.equal(sync(g.checkConnect('smtp', '2001:db8:1234:5600:0:1000::1')).action, 'allow', 'the next /84');
});

test('an address parsed where it came in is judged as its text is: the auth calls take a ClientAddress as it is', () => {
  const rules = { imap: { limits: { auth_rate: 1, auth_failure_rate: 1 }, auth_failure_ban: '5m', max_countries_per_login: { countries: 1, action: 'refuse' } } };
  const text = gate(rules).g;
  const parsed = gate(rules).g;
  const parse = (s: string): ClientAddress => clientAddress(s) as ClientAddress;
  for (const a of ['8.8.8.8', '::ffff:77.88.8.8', '2001:DB8::7']) {
    for (let i = 0; i < 2; i++) assert.deepEqual(sync(parsed.authAttempt('imap', parse(a))), sync(text.authAttempt('imap', a)), a);
    assert.deepEqual(sync(parsed.authSucceeded('imap', parse(a), 'dave')), sync(text.authSucceeded('imap', a, 'dave')), a);
    for (const h of ['h1', 'h2']) assert.deepEqual(sync(parsed.authFailed('imap', parse(a), 'dave', h)), sync(text.authFailed('imap', a, 'dave', h)), a);
  }
  assert.equal(sync(parsed.authAttempt('imap', parse('::ffff:77.88.8.8'))).refusal?.rule, 'bans', 'banned under its canonical text');
  assert.equal(sync(text.authAttempt('imap', 'not-an-ip')).exempt, '"not-an-ip" is not an IP address');
});

test('admit: a ClientAddress parsed at accept is judged and counted as its text is', () => {
  const rules = { imap: { limits: { connections_per_address: 1 }, countries: { connect: { deny: ['RU'] } } } };
  const text = gate(rules).g;
  const parsed = gate(rules).g;
  const [ot, op] = [text.createOwner('proxy'), parsed.createOwner('proxy')];
  for (const a of ['8.8.8.8', '::ffff:8.8.8.8', '77.88.8.8', '2001:DB8::7']) {
    assert.deepEqual(sync(parsed.admit('imap', clientAddress(a) as ClientAddress, op)), sync(text.admit('imap', a, ot)), a);
  }
});

test('the country source is given the canonical text and the address as the gatekeeper parsed it', () => {
  const { engine } = gate({});
  const asked: [string, ParsedIp | undefined][] = [];
  const rules = Rules.compile({ services: { smtp: serviceSchema.parse({ countries: { connect: { deny: ['RU'] } } }) }, exceptions: [], overrides: [] }, 't');
  const g = new Gatekeeper(engine, rules, new BanList(), { country: (text, ip) => (asked.push([text, ip]), null) }, new FakeClock(), 60_000);
  sync(g.checkConnect('smtp', '::FFFF:77.88.8.8'));
  sync(g.authAttempt('smtp', clientAddress('2001:DB8::7') as ClientAddress));
  assert.equal(g.countryOf('2001:db8:0:0::8'), null);
  assert.deepEqual(asked, [
    ['77.88.8.8', { words: [0, 0, 0xffff, 0x4d580808], family: 4 }],
    ['2001:db8::7', { words: [0x20010db8, 0, 0, 7], family: 6 }],
    ['2001:db8::8', { words: [0x20010db8, 0, 0, 8], family: 6 }],
  ]);
});

// screen(): a session HAProxy holds, asked about through SPOE, never reported closed.

test('screen: a ban or a country refusal counts nothing', () => {
  const { clock, g } = gate({ smtp: { limits: { connection_rate: 5 }, countries: { connect: { deny: ['RU'] } } } });
  g.bans.add('8.8.8.8', 60_000, 'test', clock.now());
  const banned = sync(g.screen('smtp', '8.8.8.8'));
  assert.equal(banned.decision.refusal?.rule, 'bans');
  assert.equal(banned.address, '8.8.8.8');
  assert.equal(sync(g.screen('smtp', '77.88.8.8')).decision.refusal?.rule, 'services.smtp.countries.connect');
  assert.equal(g.stats().entries, 0, 'no key was made');
});

test('screen: each connection counts in the connection rate under service:address, and holds nothing', () => {
  const { clock, g } = gate({ imap: { limits: { connection_rate: 3, connections_per_address: 1 } } });
  for (let i = 0; i < 3; i++) {
    const s = sync(g.screen('imap', '::ffff:8.8.8.8'));
    assert.deepEqual([s.decision.action, s.address], ['allow', '8.8.8.8'], `connection ${i + 1}: concurrency is the other proxy's, so 1 per address does not refuse`);
  }
  const over = sync(g.screen('imap', '8.8.8.8'));
  assert.equal(over.decision.refusal?.rule, 'services.imap.limits.connection_rate');
  assert.equal(over.decision.refusal?.reason, 'connection rate of 8.8.8.8 is 4/60s, over the limit of 3');
  assert.equal(over.decision.refusal?.retryAfterSec, 60);
  const snap = sync(g.lookup('imap:8.8.8.8'));
  assert.deepEqual([snap.count, snap.rates.conn], [0, 4], 'nothing held; the refused connection stays in the rate, as at the guard proxy');
  clock.advance(120_000);
  assert.equal(sync(g.screen('imap', '8.8.8.8')).decision.action, 'allow', 'the rate has decayed');
});

test('screen: shares the connection rate with the guard proxy, which counts under the same key', () => {
  const { g } = gate({ imap: { limits: { connection_rate: 2 } } });
  const owner = g.createOwner('proxy');
  sync(g.admit('imap', '8.8.8.8', owner));
  sync(g.screen('imap', '8.8.8.8'));
  assert.equal(sync(g.screen('imap', '8.8.8.8')).decision.refusal?.rule, 'services.imap.limits.connection_rate');
});

test('screen: hands back the per-address limit in force, for the other proxy to count', () => {
  const clock = new FakeClock();
  const engine = new Engine(new MemoryStore({ rate: slidingWindow(60_000), maxEntries: 1000 }), clock, memoryLogger().log, { rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  const rules = Rules.compile(
    {
      services: {
        imap: serviceSchema.parse({ limits: { connections_per_address: 5 } }),
        pop3: serviceSchema.parse({ limits: { connections_per_address: 5 }, mode: 'dry-run' }),
        smtp: serviceSchema.parse({}),
      },
      exceptions: ['192.0.2.0/24'],
      overrides: [{ networks: ['198.51.100.0/24'], services: ['imap'], limits: { connections_per_address: 50 }, reason: 'office' }],
    },
    't',
  );
  const g = new Gatekeeper(engine, rules, new BanList(), { country: () => null }, clock, 60_000);
  assert.equal(sync(g.screen('imap', '8.8.8.8')).connLimit, 5);
  assert.equal(sync(g.screen('imap', '198.51.100.7')).connLimit, 50, "the override's");
  assert.equal(sync(g.screen('imap', '192.0.2.1')).connLimit, null, 'an exception network is never limited');
  assert.equal(sync(g.screen('pop3', '8.8.8.8')).connLimit, null, 'dry-run refuses nothing');
  assert.equal(sync(g.screen('smtp', '8.8.8.8')).connLimit, null, 'no limit');
  assert.equal(sync(g.screen('nosuch', '8.8.8.8')).decision.action, 'allow', 'an unknown service has no rules but bans');
});

test('screen: an address that is no IP is allowed unjudged and counts nothing', () => {
  const { g } = gate({ smtp: { limits: { connection_rate: 1 } } });
  const s = sync(g.screen('smtp', 'not-an-ip'));
  assert.deepEqual([s.decision.action, s.address, s.connLimit], ['allow', null, null]);
  assert.match(s.decision.exempt ?? '', /not an IP address/);
  assert.equal(g.stats().entries, 0);
});

test("screen: a store failure is the service's on_store_failure decision, never a throw", async () => {
  const clock = new FakeClock();
  const memory = new MemoryStore({ rate: slidingWindow(60_000), maxEntries: 1000 });
  const failing = new Proxy(memory, {
    get(target, prop, receiver) {
      if (prop === 'hit') return () => Promise.reject(new StoreUnavailableError('redis timed out'));
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const engine = new Engine(failing, clock, memoryLogger().log, { rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  const rules = Rules.compile({ services: { imap: serviceSchema.parse({ limits: { connection_rate: 10 } }) }, exceptions: [], overrides: [] }, 't');
  const g = new Gatekeeper(engine, rules, new BanList(), { country: () => null }, clock, 60_000);
  const s = await g.screen('imap', '8.8.8.8');
  assert.equal(s.decision.refusal?.rule, 'services.imap.on_store_failure');
  assert.equal(s.decision.refusal?.temporary, true);
  assert.equal(s.address, '8.8.8.8');
});

/** Fails `login` from `address` with distinct passwords until a ban is made; returns it. */
function banned(g: Gatekeeper, address: string, login = 'alice') {
  for (let i = 0; i < 10; i++) {
    const b = sync(g.authFailed('imap', address, login, `${address}-${i}-${Math.random()}`));
    if (b !== null) return b;
  }
  assert.fail(`${address} was never banned`);
}

test('repeat offenders: a ban again within the window lasts multiplier times the last, up to max_ban; the history is what the state keeps', () => {
  const { clock, g } = gate({ imap: { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m', repeat_offenders: { window: '1d', multiplier: 4, max_ban: '2h' } } });
  const kept: Array<[string, number, number]> = [];
  g.onAutoBan = (b) => kept.push([b.target, b.strike, b.until - b.createdAt]);
  const first = banned(g, '8.8.8.8');
  assert.deepEqual([first.strike, first.until - first.createdAt, first.origin], [1, 600_000, 'auto']);
  clock.advance(600_001 + 60_000);
  const second = banned(g, '8.8.8.8');
  assert.deepEqual([second.strike, second.until - second.createdAt], [2, 2_400_000]);
  assert.match(second.reason, /banned 2 times within 24 h \(repeat offender\)$/);
  clock.advance(2_400_001 + 60_000);
  const third = banned(g, '8.8.8.8');
  assert.deepEqual([third.strike, third.until - third.createdAt], [3, 7_200_000], '160 min capped at max_ban');
  assert.deepEqual(g.bans.offence('8.8.8.8'), { target: '8.8.8.8', strike: 3, at: third.createdAt });
  assert.equal(kept.length, 3, 'every automatic ban is told, for the state file');
  // Past the window, a ban is a first ban again; other addresses never had a history.
  clock.advance(86_400_000);
  assert.equal(banned(g, '8.8.8.8').strike, 1);
  assert.equal(banned(g, '77.88.8.8').strike, 1);
});

test('repeat offenders: a history loaded from the state (a restart, another node) counts', () => {
  const { clock, g } = gate({ imap: { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m', repeat_offenders: { window: '7d', multiplier: 2, max_ban: '7d' } } });
  g.bans.loadOffences([{ target: '8.8.8.8', strike: 5, at: clock.now() - 3_600_000 }]);
  const b = banned(g, '8.8.8.8');
  assert.deepEqual([b.strike, b.until - b.createdAt], [6, 600_000 * 2 ** 5]);
});

test('without repeat_offenders every ban lasts auth_failure_ban, and the strike stays 1', () => {
  const { clock, g } = gate({ imap: { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m' } });
  banned(g, '8.8.8.8');
  clock.advance(700_000);
  const again = banned(g, '8.8.8.8');
  assert.deepEqual([again.strike, again.until - again.createdAt], [1, 600_000]);
});

test('good_login: after a good login from an address, its AUTH failures ban nobody until good_login passes', () => {
  const { clock, g } = gate({ imap: { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m', good_login: '1h' } });
  assert.equal(sync(g.authSucceeded('imap', '8.8.8.8', 'ann')).action, 'allow');
  for (let i = 0; i < 6; i++) assert.equal(sync(g.authFailed('imap', '8.8.8.8', 'bob', `typo${i}`)), null, 'the office of a good login is not banned');
  assert.notEqual(banned(g, '77.88.8.8'), null, 'another address is');
  clock.advance(3_600_000);
  assert.notEqual(banned(g, '8.8.8.8', 'bob'), null, 'once good_login has passed, it is too');
});

test('good_login off: a good login exempts nothing', () => {
  const { g } = gate({ imap: { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m' } });
  sync(g.authSucceeded('imap', '8.8.8.8', 'ann'));
  assert.notEqual(banned(g, '8.8.8.8', 'bob'), null);
});

test('login_failures: a login failing from too many addresses is refused AUTH, but where it logged in well', () => {
  const { clock, g } = gate({ imap: { login_failures: { addresses: 2, window: '30m' }, good_login: '1d' } });
  sync(g.authSucceeded('imap', '8.8.4.4', 'carol'));
  for (const a of ['192.0.2.1', '192.0.2.2']) sync(g.authFailed('imap', a, 'carol', 'x'));
  assert.equal(sync(g.authAttempt('imap', '192.0.2.9', 'carol')).action, 'allow', '2 addresses: not over 2');
  sync(g.authFailed('imap', '192.0.2.3', 'carol', 'x'));
  const d = sync(g.authAttempt('imap', '192.0.2.9', 'carol'));
  assert.equal(d.refusal?.rule, 'services.imap.login_failures');
  assert.equal(d.refusal?.reason, 'login carol failed from 3 addresses within 30 min, over the limit of 2');
  assert.equal(d.refusal?.retryAfterSec, 1800);
  assert.equal(d.refusal?.temporary, true);
  assert.deepEqual([d.refusal?.count, d.refusal?.limit, d.refusal?.key], [3, 2, 'carol'], 'for `doorman why`: the addresses it failed from, the limit, the login');
  assert.equal(sync(g.authAttempt('imap', '8.8.4.4', 'carol')).action, 'allow', 'carol at her own good address is not locked out');
  assert.equal(sync(g.authAttempt('imap', '192.0.2.9', 'dave')).action, 'allow', 'other logins are not limited');
  clock.advance(1_800_000);
  assert.equal(sync(g.authAttempt('imap', '192.0.2.9', 'carol')).action, 'allow', 'the window has passed');
});

test('recipient_probing: an unauthenticated client naming too many distinct recipients is banned, longer when it repeats', () => {
  const { clock, g } = gate({ smtp: { recipient_probing: { recipients: 3, window: '1h', ban: '30m' }, repeat_offenders: { window: '1d', multiplier: 2, max_ban: '1d' } } });
  for (const r of ['a@example.org', 'A@example.org', 'b@example.org', 'c@example.org']) {
    assert.equal(sync(g.event('smtp', '8.8.8.8', 'rcpt', r)).action, 'allow', `${r}: the same recipient in other case counts once`);
  }
  const d = sync(g.event('smtp', '8.8.8.8', 'rcpt', 'd@example.org'));
  assert.equal(d.refusal?.rule, 'bans');
  assert.match(d.refusal?.reason ?? '', /4 distinct recipients within 60 min, over the limit of 3 \(recipient probing\)/);
  assert.equal(sync(g.checkConnect('smtp', '8.8.8.8')).refusal?.rule, 'bans', 'the ban holds for the next session');
  assert.equal(sync(g.event('smtp', '77.88.8.8', 'rcpt', 'a@example.org')).action, 'allow');
  clock.advance(1_800_001);
  for (const r of ['e', 'f', 'g']) sync(g.event('smtp', '8.8.8.8', 'rcpt', `${r}@example.org`));
  const again = g.bans.list(clock.now()).find((b) => b.target === '8.8.8.8');
  assert.deepEqual([again?.strike, again && again.until - again.createdAt], [2, 3_600_000]);
});

test('early_leavers: sessions that sent nothing, over the count within the window, ban the address; each session counts once', () => {
  const { clock, g } = gate({ imap: { early_leavers: { sessions: 3, window: '10m', ban: '1h' } } });
  for (const s of ['s1', 's2', 's2', 's3']) assert.equal(sync(g.leftEarly('imap', '8.8.8.8', s)), null, s);
  const ban = sync(g.leftEarly('imap', '8.8.8.8', 's4'));
  assert.match(ban?.reason ?? '', /^4 sessions that sent nothing within 10 min, over the limit of 3 \(early leavers\)$/);
  assert.deepEqual([ban?.origin, ban && ban.until - ban.createdAt], ['auto', 3_600_000]);
  clock.advance(600_000);
  assert.equal(sync(g.leftEarly('imap', '77.88.8.8', 's1')), null, 'another address has its own count');
  const off = gate({ imap: {} }).g;
  for (let i = 0; i < 10; i++) assert.equal(sync(off.leftEarly('imap', '8.8.8.8', `s${i}`)), null, 'off unless set');
});
