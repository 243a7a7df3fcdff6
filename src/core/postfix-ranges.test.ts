import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIp, rangeText } from './ip.js';
import { PostfixRanges, type RangeChange } from './postfix-ranges.js';

/** The client part of the ident smtpd sends for `address` under what `r` knows: the address, or its range. */
function clientText(r: PostfixRanges, service: string, address: string): string {
  const ip = parseIp(address)!;
  return rangeText(ip, r.bits(service, ip.family));
}

test('before anything is seen, the configured lengths (Postfix 3.8+ defaults) name the client', () => {
  const r = new PostfixRanges();
  assert.equal(clientText(r, 'smtp', '::1'), '::/84');
  assert.equal(clientText(r, 'smtp', '2001:db8:1234:5600:0:fff::9'), '2001:db8:1234:5600::/84');
  assert.equal(clientText(r, 'smtp', '203.0.113.9'), '203.0.113.9', 'IPv4 stays whole under 32');
  const narrow = new PostfixRanges({ ipv4: 24, ipv6: 128 });
  assert.equal(clientText(narrow, 'smtp', '203.0.113.9'), '203.0.113.0/24');
  assert.equal(clientText(narrow, 'smtp', '::1'), '::1');
  assert.equal(narrow.assumesIPv4Ranges, true);
  assert.equal(r.assumesIPv4Ranges, false);
});

test('what a service sends wins over what was configured, per service and family, and each change is told once', () => {
  const r = new PostfixRanges();
  const told: RangeChange[] = [];
  r.onChange = (c) => told.push(c);
  r.learn('smtp', 6, 128); // Postfix 3.7: whole IPv6 addresses
  r.learn('smtp', 6, 128);
  assert.equal(clientText(r, 'smtp', '2001:db8::7'), '2001:db8::7');
  assert.equal(clientText(r, 'submission', '2001:db8::7'), '2001:db8::/84', 'another service still assumes the default');
  r.learn('submission', 6, 84);
  r.learn('smtp', 6, 64); // main.cf edited, postfix reload
  assert.equal(clientText(r, 'smtp', '2001:db8::7'), '2001:db8::/64');
  assert.deepEqual(told, [
    { service: 'smtp', family: 6, bits: 128, previous: 84, first: true },
    { service: 'submission', family: 6, bits: 84, previous: 84, first: true },
    { service: 'smtp', family: 6, bits: 64, previous: 128, first: false },
  ]);
  assert.deepEqual(r.snapshot(), { smtp: { ipv4: null, ipv6: 64 }, submission: { ipv4: null, ipv6: 84 } });
});

test('an IPv4 range learned for one service applies to it alone', () => {
  const r = new PostfixRanges();
  assert.equal(clientText(r, 'smtp', '203.0.113.9'), '203.0.113.9');
  r.learn('smtp', 4, 24);
  assert.equal(clientText(r, 'smtp', '203.0.113.9'), '203.0.113.0/24');
  assert.equal(clientText(r, 'submission', '203.0.113.9'), '203.0.113.9');
});

test('a flood of made-up service names does not grow the table past its cap', () => {
  const r = new PostfixRanges();
  for (let i = 0; i < 5000; i++) r.learn(`svc${i}`, 4, 24);
  assert.equal(Object.keys(r.snapshot()).length, 1024);
  assert.equal(clientText(r, 'svc4999', '192.0.2.7'), '192.0.2.7', 'an unremembered service keeps the configured length');
});
