import assert from 'node:assert/strict';
import { test } from 'node:test';
import { serviceSchema } from '../config/rules-schema.js';
import { BanList, type Ban } from '../core/bans.js';
import type { Refusal } from '../core/decision.js';
import { Rules } from '../core/rules.js';
import { banLift, countryRuleOf, shellWord, standing, type LiftContext } from './lift.js';

const T0 = Date.UTC(2026, 5, 20, 12, 0, 0);

function rules(services: Record<string, unknown>): Rules {
  return Rules.compile({ services: Object.fromEntries(Object.entries(services).map(([k, v]) => [k, serviceSchema.parse(v)])), exceptions: [], overrides: [] }, 't.yaml');
}

function ctx(r: Rules, bans = new BanList(), exception: string | null = null): LiftContext {
  return { rules: r, exception, banOf: (t, l) => bans.get(t, l), now: T0 };
}

const seen = (refusal: Refusal, over: { country?: string | null; service?: string; last?: number } = {}) => ({
  refusal,
  address: '192.0.2.9',
  service: over.service ?? 'imap',
  country: over.country ?? null,
  last: over.last ?? T0 - 10_000,
});

test('lift: a local ban is `doorman unban`, CrowdSec\'s is `cscli decisions delete` with --ip or --range', () => {
  const bans = new BanList();
  const op = bans.add('192.0.2.9', 600_000, 'by hand', T0);
  const auto = bans.add('192.0.2.0/24', 600_000, 'AUTH failures', T0, { origin: 'auto', strike: 3 });
  const cs = bans.add('192.0.2.9', 600_000, 'crowdsecurity/ssh-bf', T0, { origin: 'crowdsec' });
  const csNet = bans.add('2001:db8::/64', 600_000, 'crowdsecurity/postfix-spam', T0, { origin: 'crowdsec' });
  assert.deepEqual(banLift(op), { command: 'doorman unban 192.0.2.9', how: "an operator's ban; it ends by itself at 2026-06-20T12:10:00Z" });
  assert.equal(banLift(auto).command, 'doorman unban 192.0.2.0/24');
  assert.match(banLift(auto).how, /^Doorman's automatic ban, strike 3 \(a repeat offender's longer ban\)/);
  assert.equal(banLift(cs).command, 'cscli decisions delete --ip 192.0.2.9');
  assert.equal(banLift(csNet).command, 'cscli decisions delete --range 2001:db8::/64');
  assert.match(banLift(cs).how, /Doorman follows CrowdSec.*`doorman unban` does not lift it/);

  // A ban refusal is in force while its ban is held in its layer; lifting it in one layer leaves the other's.
  const refusal = (b: Ban): Refusal => ({ temporary: true, cause: 'ban', rule: 'bans', reason: 'banned', retryAfterSec: 600, key: b.target, ban: b });
  const r = rules({ imap: {} });
  assert.deepEqual(standing(seen(refusal(op)), ctx(r, bans)), { inForce: true, until: T0 + 600_000, lift: banLift(op) });
  bans.remove('192.0.2.9', 'local');
  const gone = standing(seen(refusal(op)), ctx(r, bans));
  assert.equal(gone.inForce, false);
  assert.equal(gone.lift.command, null);
  assert.match(gone.lift.how, /no longer in force/);
  assert.equal(standing(seen(refusal(cs)), ctx(r, bans)).lift.command, 'cscli decisions delete --ip 192.0.2.9', "CrowdSec's ban on the same address stays");
});

test('lift: a country rule is `doorman unblock CC --service S --phase P` while it still refuses the country', () => {
  const country: Refusal = { temporary: false, cause: 'country', rule: 'services.imap.countries.auth', reason: 'r', retryAfterSec: 0 };
  const deny = rules({ imap: { countries: { auth: { deny: ['RU'] } } } });
  const s = standing(seen(country, { country: 'RU' }), ctx(deny));
  assert.deepEqual([s.inForce, s.until, s.lift.command], [true, null, 'doorman unblock RU --service imap --phase auth']);
  const allow = rules({ imap: { countries: { auth: { allow: ['DE'] } } } });
  assert.match(standing(seen(country, { country: 'RU' }), ctx(allow)).lift.how, /^RU is not in the allow list of services\.imap\.countries\.auth/);
  const lifted = standing(seen(country, { country: 'RU' }), ctx(rules({ imap: {} })));
  assert.deepEqual([lifted.inForce, lifted.lift.command], [false, null]);
  assert.equal(lifted.lift.how, 'RU is no longer refused for imap at auth');
  const dry = rules({ imap: { countries: { auth: { deny: ['RU'], mode: 'dry-run' } } } });
  assert.equal(standing(seen(country, { country: 'RU' }), ctx(dry)).inForce, false, 'a rule in dry-run refuses nobody');
  // A service name the shell would read otherwise is quoted.
  assert.deepEqual(countryRuleOf('services.mx[1].countries.connect'), { service: 'mx[1]', phase: 'connect' });
  assert.equal(shellWord('mx[1]'), "'mx[1]'");
  assert.equal(shellWord("it's"), `'it'\\''s'`);
  assert.equal(shellWord('2001:db8::/64'), '2001:db8::/64');
});

test('lift: a limit lifts by itself after its retry-after; no command is made up, the exception is said', () => {
  const limit: Refusal = { temporary: true, cause: 'connections_per_prefix', rule: 'services.imap.limits.connections_per_prefix', reason: 'r', retryAfterSec: 60, limit: 10, count: 11, key: '192.0.2.0/24' };
  const r = rules({ imap: {} });
  const s = standing(seen(limit, { last: T0 - 10_000 }), ctx(r));
  assert.deepEqual([s.inForce, s.until, s.lift.command], [true, T0 + 50_000, null]);
  assert.match(s.lift.how, /retry after 60 s \(at 2026-06-20T12:00:50Z\)/);
  assert.match(s.lift.how, /to exempt 192\.0\.2\.0\/24, add it to exceptions: in the configuration .* run `doorman reload`/, 'a prefix limit names the network');
  assert.equal(standing(seen(limit, { last: T0 - 61_000 }), ctx(r)).inForce, false, 'past the retry-after');
  const rate: Refusal = { ...limit, cause: 'connection_rate', key: '192.0.2.9' };
  assert.match(standing(seen(rate), ctx(r)).lift.how, /to exempt 192\.0\.2\.9,/);
  // In an exception network now: nothing refuses it, whatever refused it before.
  const ex = standing(seen(rate), ctx(r, new BanList(), '192.0.2.0/24'));
  assert.deepEqual([ex.inForce, ex.lift.how], [false, '192.0.2.9 is now in the exception network 192.0.2.0/24: nothing refuses it']);
});

test('lift: countries per login names exempt_logins; the store names on_store_failure', () => {
  const travel: Refusal = { temporary: false, cause: 'countries_per_login', rule: 'services.imap.max_countries_per_login', reason: 'r', retryAfterSec: 0, limit: 2, count: 3, key: 'alice' };
  const on = rules({ imap: { max_countries_per_login: { countries: 2, action: 'refuse' } } });
  const s = standing(seen(travel), ctx(on));
  assert.deepEqual([s.inForce, s.lift.command], [true, null]);
  assert.match(s.lift.how, /add "alice" to services\.imap\.max_countries_per_login\.exempt_logins/);
  const exempt = rules({ imap: { max_countries_per_login: { countries: 2, action: 'refuse', exempt_logins: ['alice'] } } });
  assert.equal(standing(seen(travel), ctx(exempt)).inForce, false);
  const guessed: Refusal = { temporary: true, cause: 'login_failures', rule: 'services.imap.login_failures', reason: 'r', retryAfterSec: 1800, limit: 20, count: 21, key: 'carol' };
  const g = standing(seen(guessed, { last: T0 - 60_000 }), ctx(on));
  assert.deepEqual([g.inForce, g.until, g.lift.command], [true, T0 + 1_740_000, null]);
  assert.match(g.lift.how, /^the login "carol" failed from more than 20 addresses: .* lifts by itself .*retry after 1800 s/);
  const store: Refusal = { temporary: true, cause: 'store', rule: 'services.imap.on_store_failure', reason: 'r', retryAfterSec: 60 };
  assert.match(standing(seen(store), ctx(on)).lift.how, /Redis.*on_store_failure: open/);
});
