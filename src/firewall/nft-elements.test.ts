import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNetwork } from '../core/networks.js';
import { elementText, envelope, familyOf, networkSpan, timeoutText, type Piece } from './nft-elements.js';

const span = (t: string) => networkSpan(parseNetwork(t));
const piece = (t: string, until: number): Piece => ({ ...span(t), until });
const show = (ps: readonly Piece[]) => ps.map((p) => `${elementText(p, familyOf(p) ?? 6)}@${p.until}`);

test('IPv4 and IPv4-mapped IPv6 forms are one address in the IPv4 set', () => {
  for (const t of ['192.0.2.7', '::ffff:192.0.2.7', '::FFFF:c000:207', '0:0:0:0:0:ffff:192.0.2.7', '192.0.2.7/32']) {
    const s = span(t);
    assert.equal(familyOf(s), 4, t);
    assert.equal(elementText(s, 4), '192.0.2.7', t);
  }
  const net = span('::ffff:198.51.100.0/24');
  assert.equal(familyOf(net), 4);
  assert.equal(elementText(net, 4), '198.51.100.0/24');
});

test('IPv6 bans go to the IPv6 set; a range holding the whole IPv4 block goes to neither', () => {
  assert.equal(familyOf(span('2001:db8::1')), 6);
  assert.equal(elementText(span('2001:db8::1'), 6), '2001:db8::1');
  assert.equal(elementText(span('2001:db8:0:1::/64'), 6), '2001:db8:0:1::/64');
  assert.equal(familyOf(span('::/64')), null);
  assert.equal(familyOf(span('0.0.0.0/0')), 4);
  assert.equal(elementText(span('0.0.0.0/0'), 4), '0.0.0.0/0');
  assert.equal(familyOf(span('::/80')), null);
  assert.equal(familyOf(span('::/95')), 6, 'below the IPv4 block');
});

test('a range that is no prefix is written lo-hi', () => {
  assert.equal(elementText({ lo: span('10.0.0.0').lo, hi: span('10.1.2.2').lo }, 4), '10.0.0.0-10.1.2.2');
  assert.equal(elementText({ lo: span('2001:db8::').lo, hi: span('2001:db8::ff').lo }, 6), '2001:db8::/120');
  assert.equal(elementText({ lo: span('2001:db8::1').lo, hi: span('2001:db8::ff').lo }, 6), '2001:db8::1-2001:db8::ff');
});

test('timeouts are written in units nft takes, never 0', () => {
  assert.equal(timeoutText(1), '1ms');
  assert.equal(timeoutText(0), '1ms');
  assert.equal(timeoutText(1500), '1s500ms');
  assert.equal(timeoutText(60_000), '1m');
  // 366 days: nft 1.0.6 refuses "31622400000ms" as too large, takes "366d".
  assert.equal(timeoutText(366 * 86_400_000), '366d');
  assert.equal(timeoutText(86_400_000 + 2 * 3_600_000 + 3 * 60_000 + 4000 + 5), '1d2h3m4s5ms');
});

test('the envelope of apart bans is the bans', () => {
  assert.deepEqual(show(envelope([piece('192.0.2.9', 5), piece('192.0.2.1', 7)])), ['192.0.2.1@7', '192.0.2.9@5']);
});

test('an address banned longer inside a network is cut out of it', () => {
  const out = envelope([piece('10.0.0.0/8', 100), piece('10.1.2.3', 200)]);
  assert.deepEqual(show(out), ['10.0.0.0-10.1.2.2@100', '10.1.2.3@200', '10.1.2.4-10.255.255.255@100']);
});

test('an address banned shorter inside a network adds nothing', () => {
  assert.deepEqual(show(envelope([piece('10.1.2.3', 50), piece('10.0.0.0/8', 100)])), ['10.0.0.0/8@100']);
});

test('the same target in both layers is one element, the later end', () => {
  assert.deepEqual(show(envelope([piece('192.0.2.1', 5), piece('192.0.2.1', 9)])), ['192.0.2.1@9']);
});

test('deep nesting: each point gets the latest end covering it', () => {
  const out = envelope([piece('10.0.0.0/8', 10), piece('10.1.0.0/16', 30), piece('10.1.2.0/24', 20), piece('10.1.2.3', 40)]);
  assert.deepEqual(show(out), ['10.0.0.0/16@10', '10.1.0.0-10.1.2.2@30', '10.1.2.3@40', '10.1.2.4-10.1.255.255@30', '10.2.0.0-10.255.255.255@10']);
  // Disjoint, in order, covering exactly the union.
  for (let i = 1; i < out.length; i++) assert.ok((out[i - 1] as Piece).hi < (out[i] as Piece).lo);
});

test('neighbours with the same end merge, but not across the IPv4 block edge', () => {
  assert.deepEqual(show(envelope([piece('192.0.2.0/25', 5), piece('192.0.2.128/25', 5)])), ['192.0.2.0/24@5']);
  const out = envelope([piece('255.255.255.255', 5), piece('::1:0:0:0', 5)]);
  assert.equal(out.length, 2);
  assert.deepEqual(out.map(familyOf), [4, 6]);
});
