import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BanList, type BanChange } from './bans.js';
import { formatIp, parseIp } from './ip.js';
import { networkContains, parseNetwork } from './networks.js';

const T0 = Date.UTC(2026, 11, 7, 10, 0, 0);

function at(b: BanList, address: string, now = T0) {
  const ip = parseIp(address);
  assert.ok(ip !== null, address);
  return b.find(ip, formatIp(ip), now);
}

test('bans: a ban in either layer refuses, and lifting one leaves the other in force', () => {
  const b = new BanList();
  b.add('203.0.113.9', 60_000, 'flood', T0);
  b.add('203.0.113.9', 3_600_000, 'crowdsecurity/postfix-spam', T0, { origin: 'crowdsec' });
  assert.equal(at(b, '203.0.113.9')?.origin, 'operator');
  assert.equal(b.remove('203.0.113.9', 'crowdsec'), true);
  assert.equal(at(b, '203.0.113.9')?.reason, 'flood');
  b.add('203.0.113.9', 3_600_000, 'crowdsecurity/postfix-spam', T0, { origin: 'crowdsec' });
  assert.equal(b.remove('203.0.113.9'), true);
  assert.equal(at(b, '203.0.113.9')?.origin, 'crowdsec');
  assert.deepEqual(b.sizes(), { local: 0, crowdsec: 1 });
  b.clear('crowdsec');
  assert.equal(at(b, '203.0.113.9'), null);
});

test('bans: automatic bans keep their origin and strike; the default is an operator\'s first', () => {
  const b = new BanList();
  const auto = b.add('2001:db8::1', 600_000, '6 AUTH failures', T0, { origin: 'auto', strike: 3 });
  assert.deepEqual({ origin: auto.origin, strike: auto.strike }, { origin: 'auto', strike: 3 });
  const op = b.add('192.0.2.0/24', 600_000, 'scanner', T0);
  assert.deepEqual({ target: op.target, origin: op.origin, strike: op.strike }, { target: '192.0.2.0/24', origin: 'operator', strike: 1 });
  assert.equal(b.get('192.0.2.0/24')?.reason, 'scanner');
  assert.equal(b.get('192.0.2.0/25'), null);
});

test('bans: an expired ban is replaced by a shorter new one; a longer one in force is kept', () => {
  const b = new BanList();
  b.add('198.51.100.7', 10_000, 'first', T0);
  assert.equal(b.add('198.51.100.7', 5_000, 'shorter', T0).reason, 'first');
  assert.equal(b.add('198.51.100.7', 5_000, 'after expiry', T0 + 20_000).reason, 'after expiry');
  assert.equal(at(b, '198.51.100.7', T0 + 21_000)?.reason, 'after expiry');
});

test('bans: networks of many lengths, IPv4 as mapped, IPv6; expiry drops them', () => {
  const b = new BanList();
  b.add('10.0.0.0/8', 1000, 'eight', T0, { origin: 'crowdsec' });
  b.add('192.0.2.128/25', 60_000, 'twenty-five', T0, { origin: 'crowdsec' });
  b.add('2001:db8:aa00::/40', 60_000, 'forty', T0);
  assert.equal(at(b, '10.200.3.4')?.reason, 'eight');
  assert.equal(at(b, '::ffff:10.200.3.4')?.reason, 'eight');
  assert.equal(at(b, '192.0.2.200')?.reason, 'twenty-five');
  assert.equal(at(b, '192.0.2.100'), null);
  assert.equal(at(b, '2001:db8:aaff::1')?.reason, 'forty');
  assert.equal(at(b, '2001:db8:ab00::1'), null);
  assert.equal(at(b, '10.200.3.4', T0 + 1000), null);
  assert.equal(b.list(T0 + 1000).length, 2);
});

test('bans: every add, remove and clear is told, in order; an expiry is not', () => {
  const b = new BanList();
  const seen: string[] = [];
  const stop = b.onChange((c: BanChange) => seen.push(c.kind === 'clear' ? `clear ${c.layer}` : `${c.kind} ${c.ban.target} ${c.ban.origin}`));
  b.add('192.0.2.1', 1000, 'a', T0);
  b.add('192.0.2.1', 500, 'shorter: kept the first, nothing told', T0);
  b.add('192.0.2.0/24', 1000, 'c', T0, { origin: 'crowdsec' });
  b.remove('192.0.2.0/24', 'crowdsec');
  b.remove('192.0.2.0/24');
  b.list(T0 + 5000);
  b.clear('local');
  stop();
  b.add('192.0.2.2', 1000, 'after stop', T0);
  assert.deepEqual(seen, ['add 192.0.2.1 operator', 'add 192.0.2.0/24 crowdsec', 'remove 192.0.2.0/24 crowdsec', 'clear local']);
});

test('bans: find agrees with a plain scan of every network for any addresses and prefixes', () => {
  const v4 = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 })).map((p) => p.join('.'));
  fc.assert(
    fc.property(fc.array(fc.tuple(v4, fc.integer({ min: 0, max: 32 })), { maxLength: 20 }), fc.array(v4, { maxLength: 20 }), (nets, probes) => {
      const b = new BanList();
      const parsed = nets.map(([a, len]) => parseNetwork(`${a}/${len}`));
      for (const [i, [a, len]] of nets.entries()) b.add(`${a}/${len}`, 60_000, String(i), T0, { origin: i % 2 === 0 ? 'crowdsec' : 'auto' });
      for (const p of probes) {
        const ip = parseIp(p)!;
        assert.equal(at(b, p) !== null, parsed.some((n) => networkContains(n, ip)), p);
      }
    }),
  );
});

test('bans: covering lists every ban in force holding an address, in both layers, as a plain scan finds them', () => {
  const v4 = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 })).map((p) => p.join('.'));
  fc.assert(
    fc.property(fc.array(fc.tuple(v4, fc.integer({ min: 0, max: 32 }), fc.boolean(), fc.boolean()), { maxLength: 20 }), fc.array(v4, { maxLength: 20 }), (nets, probes) => {
      const b = new BanList();
      // Some already expired: covering leaves them out.
      for (const [a, len, cs, expired] of nets) b.add(`${a}/${len}`, expired ? 1 : 60_000, 'r', T0 - (expired ? 10 : 0), { origin: cs ? 'crowdsec' : 'auto' });
      const inForce = b.list(T0);
      for (const p of probes) {
        const ip = parseIp(p)!;
        const want = inForce.filter((x) => networkContains(parseNetwork(x.target), ip));
        const got = b.covering(ip, formatIp(ip), T0);
        assert.deepEqual(new Set(got), new Set(want), p);
        const firstCrowdsec = got.findIndex((x) => x.origin === 'crowdsec');
        assert.ok(firstCrowdsec === -1 || got.slice(firstCrowdsec).every((x) => x.origin === 'crowdsec'), 'local first');
      }
    }),
  );
});
