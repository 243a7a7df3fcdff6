import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { clientAddress, formatIp, parseClientRange, parseIPv4, parseIp, prefixOf, rangeText } from './ip.js';
import { NetworkSet, parseNetwork } from './networks.js';

test('IPv4 parsing is strict', () => {
  assert.equal(parseIPv4('203.0.113.9'), 0xcb007109);
  assert.equal(parseIPv4('0.0.0.0'), 0);
  assert.equal(parseIPv4('255.255.255.255'), 0xffffffff);
  for (const bad of ['1.2.3', '1.2.3.4.5', '01.2.3.4', '256.1.1.1', '1..2.3', '', 'a.b.c.d', '1.2.3.4 ', '1.2.3.1234']) {
    assert.equal(parseIPv4(bad), -1, bad);
  }
});

test('IPv6 parsing and formatting, IPv4-mapped as IPv4', () => {
  assert.equal(formatIp(parseIp('2001:DB8:0:0:0:0:0:1')!), '2001:db8::1');
  assert.equal(formatIp(parseIp('::')!), '::');
  assert.equal(formatIp(parseIp('::1')!), '::1');
  assert.equal(formatIp(parseIp('fe80::1:0:0:0')!), 'fe80::1:0:0:0', 'equal runs: the first is compressed');
  assert.equal(formatIp(parseIp('fe80:0:0:1:0:0:0:0')!), 'fe80:0:0:1::', 'the longest run is compressed');
  assert.equal(parseIp('::ffff:192.0.2.1')?.family, 4);
  assert.equal(formatIp(parseIp('::ffff:192.0.2.1')!), '192.0.2.1');
  assert.equal(parseIp('::ffff:c000:201')?.family, 4);
  for (const bad of ['1::2::3', ':1', '1:', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '1:2:3:4:5:6:7', '::1.2.3', '[::1]', 'fe80::1%eth0']) {
    assert.equal(parseIp(bad), null, bad);
  }
});

test('property: agrees with node:net isIP and round-trips', () => {
  const v6 = fc.ipV6();
  const v4 = fc.ipV4();
  fc.assert(
    fc.property(fc.oneof(v4, v6), (s) => {
      const p = parseIp(s);
      assert.ok(p !== null, s);
      assert.deepEqual(parseIp(formatIp(p))?.words, p.words);
    }),
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 40 }), (s) => {
      assert.equal(parseIp(s) !== null, isIP(s) !== 0, s);
    }),
  );
});

test('a client address parsed once carries its canonical text', () => {
  const v4 = '203.0.113.9';
  assert.equal(clientAddress(v4)?.text, v4, 'plain IPv4 is its own canonical text');
  assert.deepEqual(clientAddress(v4)?.ip, parseIp(v4));
  assert.equal(clientAddress('::ffff:203.0.113.9')?.text, '203.0.113.9');
  assert.equal(clientAddress('2001:DB8:0::7')?.text, '2001:db8::7');
  for (const bad of ['', 'localhost', '01.2.3.4', '[::1]', 'fe80::1%lo', ' 1.2.3.4']) assert.equal(clientAddress(bad), null, bad);
});

test('prefixes for per-network counting', () => {
  assert.equal(prefixOf(parseIp('203.0.113.9')!, 24, 64), '203.0.113.0/24');
  assert.equal(prefixOf(parseIp('2001:db8:1:2:3:4:5:6')!, 24, 64), '2001:db8:1:2::/64');
  assert.equal(prefixOf(parseIp('::ffff:198.51.100.7')!, 16, 64), '198.51.0.0/16');
});

test('networks: match, normalise host bits, refuse impossible prefixes', () => {
  const set = NetworkSet.parse(['10.0.0.0/8', '192.0.2.77/24', '2001:db8::/32', '198.51.100.7']);
  assert.equal(set.match(parseIp('10.200.1.1')!)?.text, '10.0.0.0/8');
  assert.equal(set.match(parseIp('192.0.2.1')!)?.text, '192.0.2.77/24');
  assert.equal(set.match(parseIp('::ffff:10.1.1.1')!)?.text, '10.0.0.0/8');
  assert.equal(set.match(parseIp('2001:db8:ffff::1')!)?.text, '2001:db8::/32');
  assert.equal(set.match(parseIp('198.51.100.7')!)?.text, '198.51.100.7');
  assert.equal(set.match(parseIp('198.51.100.8')!), null);
  assert.equal(set.match(parseIp('2001:db9::1')!), null);
  assert.equal(set.match(parseIp('11.0.0.1')!), null);
  assert.throws(() => parseNetwork('10.0.0.0/33'), /prefix \/33 is longer than an IPv4 address \(32 bits\)/);
  assert.throws(() => parseNetwork('2001:db8::/129'), /longer than an IPv6 address/);
  assert.throws(() => parseNetwork('10.0.0.0/x'), /not a number/);
  assert.throws(() => parseNetwork('example.com/24'), /not an IP address/);
  assert.equal(NetworkSet.parse(['0.0.0.0/0']).match(parseIp('8.8.8.8')!)?.text, '0.0.0.0/0');
  assert.equal(NetworkSet.parse(['0.0.0.0/0']).match(parseIp('2001:db8::1')!), null, 'IPv4 /0 holds no IPv6');
});

test('client ranges as Postfix 3.8+ smtpd writes them: parsed strictly, written back the same', () => {
  const ok: Array<[string, number]> = [['::/84', 84], ['2001:db8:1234:5600::/84', 84], ['127.0.0.0/24', 24], ['203.0.113.9', 32], ['2001:db8::7', 128], ['0.0.0.0/0', 0], ['10.0.0.1/32', 32]];
  for (const [text, bits] of ok) {
    const r = parseClientRange(text);
    assert.equal(r?.bits, bits, text);
    assert.equal(rangeText(r!.ip, r!.bits), text.replace(/\/(32|128)$/, ''), `${text} written back`);
  }
  for (const bad of ['::1/84', '127.0.0.1/24', '2001:db8::/129', '10.0.0.0/33', '10.0.0.0/024', '10.0.0.0/', '10.0.0.0/x', '/24', 'smtp', '::/84/1']) {
    assert.equal(parseClientRange(bad), null, `${bad}: host bits set, a bad length or no address`);
  }
  assert.equal(rangeText(parseIp('::1')!, 84), '::/84');
  assert.equal(rangeText(parseIp('2001:db8:1:2:3fff:ffff::1')!, 84), '2001:db8:1:2:3fff:f000::/84', '84 bits: five groups and four bits of the sixth');
  assert.equal(rangeText(parseIp('192.0.2.77')!, 24), '192.0.2.0/24');
  assert.equal(rangeText(parseIp('::ffff:192.0.2.77')!, 24), '192.0.2.0/24', 'a mapped address is its IPv4 address');
});

test('property: the range of an address parses back to the same network, which holds the address', () => {
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.nat(128), (addr, n) => {
      const ip = parseIp(addr);
      if (ip === null) return true; // fast-check's IPv6 also writes forms such as ::ffff:… that are mapped IPv4
      const bits = n % ((ip.family === 4 ? 32 : 128) + 1);
      const r = parseClientRange(rangeText(ip, bits));
      assert.ok(r !== null);
      assert.equal(r.bits, bits);
      assert.equal(rangeText(r.ip, bits), rangeText(ip, bits));
      assert.equal(prefixOf(ip, bits, bits).replace(/\/(32|128)$/, ''), rangeText(ip, bits).replace(/\/(32|128)$/, ''));
      return true;
    }),
    { numRuns: 2000 },
  );
});
