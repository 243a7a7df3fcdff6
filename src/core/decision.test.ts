import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serviceSchema } from '../config/rules-schema.js';
import { ConfigError } from '../errors.js';
import { BanList } from './bans.js';
import { evaluateAuth, evaluateConnect, evaluateEvent, type ClientFacts } from './decision.js';
import { parseIp } from './ip.js';
import { EMPTY_SNAPSHOT, type KeySnapshot } from './metrics.js';
import { Rules } from './rules.js';

const T0 = Date.UTC(2026, 10, 22, 10, 0, 0);

function rules(services: Record<string, unknown>, extra: { exceptions?: string[]; overrides?: unknown[] } = {}): Rules {
  const parsed = Object.fromEntries(Object.entries(services).map(([k, v]) => [k, serviceSchema.parse(v)]));
  return Rules.compile({ services: parsed, exceptions: extra.exceptions ?? [], overrides: (extra.overrides ?? []) as never }, 'test.yaml');
}

function facts(r: Rules, service: string, address: string, country: string | null, over: Partial<ClientFacts> = {}): ClientFacts {
  const ip = parseIp(address)!;
  const s = r.service(service);
  return {
    service: s,
    address,
    client: address,
    country,
    exception: r.exceptions.match(ip)?.text ?? null,
    ban: null,
    limits: r.limitsFor(s, ip),
    now: T0,
    rateUnitSec: 60,
    ...over,
  };
}

const snap = (count: number, rates: Partial<KeySnapshot['rates']> = {}): KeySnapshot => ({ count, rates: { ...EMPTY_SNAPSHOT.rates, ...rates } });

test('contradictions are refused at compile time, each naming its key', () => {
  try {
    rules({ smtp: { countries: { connect: { allow: ['DE'], deny: ['RU'] } } }, mx2: {} }, { exceptions: ['10.0.0.0/33'], overrides: [{ networks: ['nope'], services: ['imap'], limits: {} }] });
    assert.fail('expected ConfigError');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    const keys = e.issues.map((i) => i.key).sort();
    assert.deepEqual(keys, ['exceptions.0', 'overrides.0.networks.0', 'overrides.0.services.0', 'services.mx2.protocol', 'services.smtp.countries.connect']);
    assert.match(e.message, /services\.smtp\.countries\.connect: .*expected an allow list or a deny list for one phase, not both/);
    assert.match(e.message, /exceptions\.0: got "10\.0\.0\.0\/33", .*prefix \/33 is longer than an IPv4 address/);
    assert.match(e.message, /services\.mx2\.protocol: .*"mx2" is not a protocol name/);
  }
  assert.throws(() => serviceSchema.parse({ prefix: { ipv4: 33 } }), /an IPv4 address has 32 bits/);
  // Any case in, capitals kept; a code that is no assigned country is refused.
  assert.deepEqual(serviceSchema.parse({ countries: { connect: { deny: ['ru'] } } }).countries.connect?.deny, ['RU']);
  assert.throws(() => serviceSchema.parse({ countries: { connect: { deny: ['XX'] } } }), /an ISO 3166-1 alpha-2 country code/);
});

test('connect: exception, ban, country, concurrency, prefix, rate — in that order', () => {
  const r = rules(
    { smtp: { limits: { connections_per_address: 3, connections_per_prefix: 10, connection_rate: 30 }, countries: { connect: { deny: ['RU'] } } } },
    { exceptions: ['192.0.2.0/24'] },
  );
  const ok = evaluateConnect(facts(r, 'smtp', '8.8.8.8', 'US'), { address: snap(3, { conn: 30 }), prefix: snap(10), prefixText: '8.8.8.0/24' });
  assert.equal(ok.action, 'allow');
  const ex = evaluateConnect(facts(r, 'smtp', '192.0.2.9', 'RU'), { address: snap(99, { conn: 999 }), prefix: null, prefixText: null });
  assert.equal(ex.action, 'allow');
  assert.match(ex.exempt ?? '', /exception network 192\.0\.2\.0\/24/);
  const bans = new BanList();
  bans.add('77.88.8.8', 600_000, 'too many AUTH failures', T0);
  const ban = bans.find(parseIp('77.88.8.8')!, '77.88.8.8', T0);
  const banned = evaluateConnect(facts(r, 'smtp', '77.88.8.8', 'RU', { ban }), { address: snap(1), prefix: null, prefixText: null });
  // The ban itself travels with the refusal: `doorman why` names its layer, origin and strike.
  assert.deepEqual(banned.refusal, { temporary: true, cause: 'ban', rule: 'bans', reason: '77.88.8.8 is banned for 600 s more (too many AUTH failures)', retryAfterSec: 600, key: '77.88.8.8', ban });
  const ru = evaluateConnect(facts(r, 'smtp', '77.88.8.8', 'RU'), { address: snap(1), prefix: null, prefixText: null });
  assert.deepEqual(ru.refusal, { temporary: false, cause: 'country', rule: 'services.smtp.countries.connect', reason: 'country RU of 77.88.8.8 is in the deny list for smtp at connect', retryAfterSec: 0 });
  const many = evaluateConnect(facts(r, 'smtp', '8.8.8.8', 'US'), { address: snap(4), prefix: null, prefixText: null });
  assert.equal(many.refusal?.rule, 'services.smtp.limits.connections_per_address');
  assert.equal(many.refusal?.reason, '4 connections from 8.8.8.8, over the limit of 3');
  assert.deepEqual([many.refusal?.count, many.refusal?.limit, many.refusal?.key], [4, 3, '8.8.8.8'], 'the count that tripped it, its limit and what was counted');
  const net = evaluateConnect(facts(r, 'smtp', '8.8.8.8', 'US'), { address: snap(1), prefix: snap(11), prefixText: '8.8.8.0/24' });
  assert.equal(net.refusal?.reason, '11 connections from network 8.8.8.0/24, over the limit of 10');
  assert.deepEqual([net.refusal?.count, net.refusal?.limit, net.refusal?.key], [11, 10, '8.8.8.0/24'], 'a prefix refusal names the network counted');
  const fast = evaluateConnect(facts(r, 'smtp', '8.8.8.8', 'US'), { address: snap(1, { conn: 31 }), prefix: null, prefixText: null });
  assert.deepEqual(fast.refusal, { temporary: true, cause: 'connection_rate', rule: 'services.smtp.limits.connection_rate', reason: 'connection rate of 8.8.8.8 is 31/60s, over the limit of 30', retryAfterSec: 60, limit: 30, count: 31, key: '8.8.8.8' });
});

test('no country (special-purpose or unknown address) is never country-blocked, even by an allow list', () => {
  const r = rules({ imap: { countries: { connect: { allow: ['DE'] } } } });
  assert.equal(evaluateConnect(facts(r, 'imap', '10.1.2.3', null), { address: snap(1), prefix: null, prefixText: null }).action, 'allow');
  assert.equal(evaluateConnect(facts(r, 'imap', '8.8.8.8', 'US'), { address: snap(1), prefix: null, prefixText: null }).action, 'refuse');
});

test('dry-run refuses nothing but reports what it would have refused', () => {
  const r = rules({ imap: { mode: 'dry-run', limits: { connections_per_address: 1 }, countries: { connect: { deny: ['RU'] } } } });
  const d = evaluateConnect(facts(r, 'imap', '77.88.8.8', 'RU'), { address: snap(5), prefix: null, prefixText: null });
  assert.equal(d.action, 'allow');
  assert.deepEqual(d.dryRun.map((x) => x.rule), ['services.imap.countries.connect', 'services.imap.limits.connections_per_address']);
  const mixed = rules({ imap: { limits: { connections_per_address: 1 }, countries: { connect: { deny: ['RU'], mode: 'dry-run' } } } });
  const m = evaluateConnect(facts(mixed, 'imap', '77.88.8.8', 'RU'), { address: snap(5), prefix: null, prefixText: null });
  assert.equal(m.action, 'refuse', 'an enforced rule after a dry-run one still refuses');
  assert.equal(m.refusal?.rule, 'services.imap.limits.connections_per_address');
  assert.equal(m.dryRun.length, 1);
});

test('overrides raise limits for their networks and services, and say so', () => {
  const r = rules(
    { imap: { limits: { connections_per_address: 5 } }, pop3: { limits: { connections_per_address: 5 } } },
    { overrides: [{ networks: ['198.51.100.0/24'], services: ['imap'], limits: { connections_per_address: 200 }, reason: 'office NAT' }] },
  );
  const office = facts(r, 'imap', '198.51.100.7', 'DE');
  assert.equal(office.limits.limits.connections_per_address, 200);
  assert.equal(evaluateConnect(office, { address: snap(150), prefix: null, prefixText: null }).action, 'allow');
  const over = evaluateConnect(office, { address: snap(201), prefix: null, prefixText: null });
  assert.equal(over.refusal?.rule, 'overrides.0 (office NAT).limits.connections_per_address');
  assert.equal(facts(r, 'pop3', '198.51.100.7', 'DE').limits.limits.connections_per_address, 5, 'pop3 is not overridden');
});

test('auth: country at AUTH only, rates, and logins seen from too many countries', () => {
  const r = rules({
    submission: {
      countries: { auth: { allow: ['DE', 'AT'] } },
      limits: { auth_failure_rate: 5 },
      max_countries_per_login: { countries: 2, window: '24h', action: 'refuse', exempt_logins: ['traveller'] },
    },
  });
  assert.equal(evaluateConnect(facts(r, 'submission', '8.8.8.8', 'US'), { address: snap(1), prefix: null, prefixText: null }).action, 'allow', 'mail is still taken');
  assert.equal(evaluateAuth(facts(r, 'submission', '8.8.8.8', 'US'), { address: snap(1) }, null).refusal?.rule, 'services.submission.countries.auth');
  assert.equal(evaluateAuth(facts(r, 'submission', '5.1.1.1', 'DE'), { address: snap(1, { authfail: 6 }) }, null).refusal?.rule, 'services.submission.limits.auth_failure_rate');
  const third = { name: 'alice', countriesSeen: 3, newCountry: true };
  const travelled = evaluateAuth(facts(r, 'submission', '5.1.1.1', 'AT'), { address: snap(1) }, third).refusal;
  assert.equal(travelled?.rule, 'services.submission.max_countries_per_login');
  assert.deepEqual([travelled?.count, travelled?.limit, travelled?.key], [3, 2, 'alice'], 'the countries seen against the limit, and the login counted');
  assert.equal(evaluateAuth(facts(r, 'submission', '5.1.1.1', 'AT'), { address: snap(1) }, { ...third, name: 'traveller' }).action, 'allow');
  assert.equal(evaluateAuth(facts(r, 'submission', '5.1.1.1', 'AT'), { address: snap(1) }, { ...third, newCountry: false }).action, 'allow', 'a country already seen is fine');
});

test('events: message and recipient rates', () => {
  const r = rules({ smtp: { limits: { recipient_rate: 100, message_rate: 10 } } });
  assert.equal(evaluateEvent(facts(r, 'smtp', '8.8.8.8', 'US'), 'rcpt', 100).action, 'allow');
  assert.equal(evaluateEvent(facts(r, 'smtp', '8.8.8.8', 'US'), 'rcpt', 101).refusal?.reason, 'recipient rate of 8.8.8.8 is 101/60s, over the limit of 100');
  assert.equal(evaluateEvent(facts(r, 'smtp', '8.8.8.8', 'US'), 'mail', 11).refusal?.rule, 'services.smtp.limits.message_rate');
});

test('bans: exact and network, expiry, a shorter ban never shortens a longer one', () => {
  const b = new BanList();
  b.add('2001:DB8::7', 60_000, 'kick', T0);
  b.add('198.51.100.0/24', 30_000, 'abuse', T0);
  assert.equal(b.find(parseIp('2001:db8::7')!, '2001:db8::7', T0)?.reason, 'kick');
  assert.equal(b.find(parseIp('198.51.100.99')!, '198.51.100.99', T0)?.reason, 'abuse');
  assert.equal(b.find(parseIp('198.51.100.99')!, '198.51.100.99', T0 + 30_000), null);
  b.add('2001:db8::7', 1000, 'short', T0);
  assert.equal(b.find(parseIp('2001:db8::7')!, '2001:db8::7', T0 + 5000)?.reason, 'kick');
  assert.equal(b.list(T0 + 40_000).length, 1);
  assert.equal(b.remove('2001:db8::7'), true);
  assert.equal(b.list(T0).length, 0);
});
