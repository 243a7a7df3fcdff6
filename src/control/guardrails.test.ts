import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIp } from '../core/ip.js';
import { parseNetwork } from '../core/networks.js';
import type { CountryRule } from '../core/rules.js';
import { banRefusal, countryBlocked, countryRuleRefusal, overlaps, sameTarget } from './guardrails.js';

const caller = (text: string) => ({ text, ip: parseIp(text) });
const exceptions = [parseNetwork('10.9.0.0/16'), parseNetwork('2001:db8:9::/48')];

test('a ban may not cover the caller, IPv4 or IPv6', () => {
  assert.equal(banRefusal(parseNetwork('192.0.2.0/24'), caller('192.0.2.7'), []), 'refused: 192.0.2.0/24 covers your own address 192.0.2.7');
  assert.equal(banRefusal(parseNetwork('2001:db8::/32'), caller('2001:db8::1'), []), 'refused: 2001:db8::/32 covers your own address 2001:db8::1');
  assert.equal(banRefusal(parseNetwork('192.0.2.8'), caller('192.0.2.7'), []), null);
  assert.equal(banRefusal(parseNetwork('192.0.2.0/24'), caller('not an address'), []), null, 'a caller without an address is not covered');
});

test('a ban may not overlap an exception network, whichever contains the other', () => {
  assert.match(banRefusal(parseNetwork('10.9.1.0/24'), caller('198.51.100.1'), exceptions) ?? '', /overlaps the exception network 10\.9\.0\.0\/16/);
  assert.match(banRefusal(parseNetwork('10.0.0.0/8'), caller('198.51.100.1'), exceptions) ?? '', /overlaps the exception network 10\.9\.0\.0\/16/);
  assert.match(banRefusal(parseNetwork('2001:db8:9:1::5'), caller('198.51.100.1'), exceptions) ?? '', /2001:db8:9::\/48/);
  assert.equal(banRefusal(parseNetwork('10.10.0.0/16'), caller('198.51.100.1'), exceptions), null);
  assert.equal(overlaps(parseNetwork('10.10.0.0/16'), parseNetwork('10.9.0.0/16')), false);
});

test('a country rule in force may not block the caller\'s own country; a dry-run rule blocks nobody', () => {
  const deny: CountryRule = { kind: 'deny', codes: new Set(['DE']), dryRun: false, key: 'k' };
  const allow: CountryRule = { kind: 'allow', codes: new Set(['FR']), dryRun: false, key: 'k' };
  assert.equal(countryRuleRefusal(deny, 'imap', '192.0.2.7', 'DE'), 'refused: this rule would block your own address 192.0.2.7 (country DE) from imap');
  assert.match(countryRuleRefusal(allow, 'imap', '192.0.2.7', 'DE') ?? '', /country DE/);
  assert.equal(countryRuleRefusal(allow, 'imap', '192.0.2.7', 'FR'), null);
  assert.equal(countryRuleRefusal({ ...deny, dryRun: true }, 'imap', '192.0.2.7', 'DE'), null);
  assert.equal(countryRuleRefusal(deny, 'imap', '127.0.0.1', null), null, 'no country: no rule refuses it');
  assert.equal(countryBlocked(null, 'DE'), false);
});

test('a stored ban target matches a network however either was written', () => {
  assert.equal(sameTarget('192.0.2.7', parseNetwork('192.0.2.7/32')), true);
  assert.equal(sameTarget('2001:DB8::/32', parseNetwork('2001:db8:0::/32')), true);
  assert.equal(sameTarget('192.0.2.0/24', parseNetwork('192.0.2.0/25')), false);
  assert.equal(sameTarget('garbage', parseNetwork('192.0.2.0/24')), false);
});
