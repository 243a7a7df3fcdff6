import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { canonicalText, parseIp } from '../core/ip.js';
import { NOT_AN_ADDRESS, SPECIAL_BLOCKS, embeddedIPv4, isIPAddress, lookupAddress, lookupParsed, specialPurpose, type SpecialBlock } from './special.js';

// ---- a slow reference: BigInt values, most specific block of the table --------

function v4Value(text: string): bigint {
  return text.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
}

function v6Value(text: string): bigint {
  let t = text;
  if (t.includes('.')) {
    const colon = t.lastIndexOf(':');
    const v = v4Value(t.slice(colon + 1));
    t = `${t.slice(0, colon + 1)}${(v >> 16n).toString(16)}:${(v & 0xffffn).toString(16)}`;
  }
  const [head = '', tail] = t.split('::');
  const h = head === '' ? [] : head.split(':');
  const rest = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - rest.length).fill('0'), ...rest];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

interface RefBlock {
  readonly block: SpecialBlock;
  readonly family: 4 | 6;
  readonly base: bigint;
  readonly length: number;
}

const REF: readonly RefBlock[] = SPECIAL_BLOCKS.map((block) => {
  const [addr = '', len = ''] = block.cidr.split('/');
  const family = addr.includes(':') ? 6 : 4;
  return { block, family, base: family === 4 ? v4Value(addr) : v6Value(addr), length: Number(len) };
});

const width = (family: 4 | 6): number => (family === 4 ? 32 : 128);

function refJudge(family: 4 | 6, value: bigint): string | null {
  let best: RefBlock | null = null;
  for (const r of REF) {
    if (r.family !== family) continue;
    const shift = BigInt(width(family) - r.length);
    if (value >> shift === r.base >> shift && (best === null || r.length > best.length)) best = r;
  }
  if (best === null) return null;
  const mask32 = 0xffffffffn;
  switch (best.block.embeds) {
    case 'none':
      return best.block.name;
    case 'low-32-bits':
      return refJudge(4, value & mask32);
    case '6to4':
      return refJudge(4, (value >> 80n) & mask32);
    case 'teredo':
      return refJudge(4, ~value & mask32);
  }
}

function format(family: 4 | 6, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 255n)).join('.');
  const groups: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((value >> s) & 0xffffn).toString(16));
  return groups.join(':');
}

// ---- the table against hand-written expectations --------------------------------

/** First, middle and last addresses of every block, and the addresses just outside. */
const EXPECTED: readonly (readonly [string, string | null])[] = [
  ['0.0.0.0', 'this-host'], ['0.0.0.1', 'this-network'], ['0.128.0.0', 'this-network'], ['0.255.255.255', 'this-network'], ['1.0.0.0', null],
  ['9.255.255.255', null], ['10.0.0.0', 'private-use'], ['10.128.0.0', 'private-use'], ['10.255.255.255', 'private-use'], ['11.0.0.0', null],
  ['100.63.255.255', null], ['100.64.0.0', 'shared-address-space'], ['100.96.0.0', 'shared-address-space'], ['100.127.255.255', 'shared-address-space'], ['100.128.0.0', null],
  ['126.255.255.255', null], ['127.0.0.0', 'loopback'], ['127.0.0.1', 'loopback'], ['127.255.255.255', 'loopback'], ['128.0.0.0', null],
  ['169.253.255.255', null], ['169.254.0.0', 'link-local'], ['169.254.128.0', 'link-local'], ['169.254.255.255', 'link-local'], ['169.255.0.0', null],
  ['172.15.255.255', null], ['172.16.0.0', 'private-use'], ['172.24.0.0', 'private-use'], ['172.31.255.255', 'private-use'], ['172.32.0.0', null],
  ['191.255.255.255', null], ['192.0.0.0', 'ipv4-service-continuity'], ['192.0.0.4', 'ipv4-service-continuity'], ['192.0.0.7', 'ipv4-service-continuity'],
  ['192.0.0.8', 'ipv4-dummy'], ['192.0.0.9', 'pcp-anycast'], ['192.0.0.10', 'turn-anycast'], ['192.0.0.11', 'ietf-protocol-assignments'],
  ['192.0.0.128', 'ietf-protocol-assignments'], ['192.0.0.169', 'ietf-protocol-assignments'], ['192.0.0.170', 'nat64-discovery'], ['192.0.0.171', 'nat64-discovery'],
  ['192.0.0.172', 'ietf-protocol-assignments'], ['192.0.0.255', 'ietf-protocol-assignments'], ['192.0.1.0', null],
  ['192.0.1.255', null], ['192.0.2.0', 'documentation'], ['192.0.2.128', 'documentation'], ['192.0.2.255', 'documentation'], ['192.0.3.0', null],
  ['192.31.195.255', null], ['192.31.196.0', 'as112'], ['192.31.196.128', 'as112'], ['192.31.196.255', 'as112'], ['192.31.197.0', null],
  ['192.52.192.255', null], ['192.52.193.0', 'amt'], ['192.52.193.128', 'amt'], ['192.52.193.255', 'amt'], ['192.52.194.0', null],
  ['192.88.98.255', null], ['192.88.99.0', '6to4-relay-anycast'], ['192.88.99.1', '6to4-relay-anycast'], ['192.88.99.2', '6a44-relay-anycast'],
  ['192.88.99.3', '6to4-relay-anycast'], ['192.88.99.255', '6to4-relay-anycast'], ['192.88.100.0', null],
  ['192.167.255.255', null], ['192.168.0.0', 'private-use'], ['192.168.128.0', 'private-use'], ['192.168.255.255', 'private-use'], ['192.169.0.0', null],
  ['192.175.47.255', null], ['192.175.48.0', 'as112-direct-delegation'], ['192.175.48.128', 'as112-direct-delegation'], ['192.175.48.255', 'as112-direct-delegation'], ['192.175.49.0', null],
  ['198.17.255.255', null], ['198.18.0.0', 'benchmarking'], ['198.19.0.0', 'benchmarking'], ['198.19.255.255', 'benchmarking'], ['198.20.0.0', null],
  ['198.51.99.255', null], ['198.51.100.0', 'documentation'], ['198.51.100.128', 'documentation'], ['198.51.100.255', 'documentation'], ['198.51.101.0', null],
  ['203.0.112.255', null], ['203.0.113.0', 'documentation'], ['203.0.113.7', 'documentation'], ['203.0.113.255', 'documentation'], ['203.0.114.0', null],
  ['223.255.255.255', null], ['224.0.0.0', 'multicast'], ['232.0.0.1', 'multicast'], ['239.255.255.255', 'multicast'],
  ['240.0.0.0', 'reserved'], ['248.0.0.0', 'reserved'], ['255.255.255.254', 'reserved'], ['255.255.255.255', 'limited-broadcast'],
  ['8.8.8.8', null], ['1.1.1.1', null], ['133.242.0.1', null], ['77.88.8.8', null],

  ['::', 'unspecified'], ['::1', 'loopback'],
  ['::2', 'this-network'], ['::8.8.8.8', null], ['::10.0.0.1', 'private-use'], ['::ffff:ffff', 'limited-broadcast'], ['::1:0:0', 'reserved'],
  ['::fffe:ffff:ffff', 'reserved'], ['::ffff:0:0', 'this-host'], ['::ffff:8.8.8.8', null], ['::ffff:10.0.0.1', 'private-use'],
  ['::ffff:127.0.0.1', 'loopback'], ['::ffff:ffff:ffff', 'limited-broadcast'], ['::1:0:0:0', 'reserved'], ['::ffff:0:0:0', 'reserved'],
  ['63:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'], ['64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['64:ff9b::', 'this-host'], ['64:ff9b::8.8.8.8', null], ['64:ff9b::808:808', null], ['64:ff9b::10.1.2.3', 'private-use'],
  ['64:ff9b::ffff:ffff', 'limited-broadcast'], ['64:ff9b::1:0:0', 'reserved'], ['64:ff9b:0:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['64:ff9b:1::', 'nat64-local-use'], ['64:ff9b:1:8000::', 'nat64-local-use'], ['64:ff9b:1:ffff:ffff:ffff:ffff:ffff', 'nat64-local-use'], ['64:ff9b:2::', 'reserved'],
  ['ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'], ['100::', 'discard-only'], ['100::8000:0:0:0', 'discard-only'], ['100::ffff:ffff:ffff:ffff', 'discard-only'],
  ['100:0:0:1::', 'dummy-prefix'], ['100:0:0:1:8000::', 'dummy-prefix'], ['100:0:0:1:ffff:ffff:ffff:ffff', 'dummy-prefix'], ['100:0:0:2::', 'reserved'],
  ['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'], ['2000::', null], ['2000:ffff::1', null],
  // Teredo: the client's IPv4 address is the last 32 bits, inverted (RFC 4380's example: 192.0.2.45).
  ['2001::', 'limited-broadcast'], ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'documentation'], ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', null],
  ['2001:0:ffff:ffff:ffff:ffff:ffff:ffff', 'this-host'],
  ['2001:1::', 'ietf-protocol-assignments'], ['2001:1::1', 'pcp-anycast'], ['2001:1::2', 'turn-anycast'], ['2001:1::3', 'dns-sd-srp-anycast'], ['2001:1::4', 'ietf-protocol-assignments'],
  ['2001:1:ffff:ffff:ffff:ffff:ffff:ffff', 'ietf-protocol-assignments'],
  ['2001:2::', 'benchmarking'], ['2001:2:0:8000::', 'benchmarking'], ['2001:2:0:ffff:ffff:ffff:ffff:ffff', 'benchmarking'], ['2001:2:1::', 'ietf-protocol-assignments'],
  ['2001:3::', 'amt'], ['2001:3:8000::', 'amt'], ['2001:3:ffff:ffff:ffff:ffff:ffff:ffff', 'amt'],
  ['2001:4::', 'ietf-protocol-assignments'], ['2001:4:111:ffff:ffff:ffff:ffff:ffff', 'ietf-protocol-assignments'],
  ['2001:4:112::', 'as112'], ['2001:4:112:8000::', 'as112'], ['2001:4:112:ffff:ffff:ffff:ffff:ffff', 'as112'], ['2001:4:113::', 'ietf-protocol-assignments'],
  ['2001:f:ffff:ffff:ffff:ffff:ffff:ffff', 'ietf-protocol-assignments'],
  ['2001:10::', 'orchid'], ['2001:18::', 'orchid'], ['2001:1f:ffff:ffff:ffff:ffff:ffff:ffff', 'orchid'],
  ['2001:20::', 'orchid-v2'], ['2001:28::', 'orchid-v2'], ['2001:2f:ffff:ffff:ffff:ffff:ffff:ffff', 'orchid-v2'],
  ['2001:30::', 'drone-remote-id'], ['2001:38::', 'drone-remote-id'], ['2001:3f:ffff:ffff:ffff:ffff:ffff:ffff', 'drone-remote-id'],
  ['2001:40::', 'ietf-protocol-assignments'], ['2001:100::', 'ietf-protocol-assignments'], ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', 'ietf-protocol-assignments'],
  ['2001:200::', null], ['2001:4860:4860::8888', null],
  ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', null], ['2001:db8::', 'documentation'], ['2001:db8::1', 'documentation'], ['2001:db8:8000::', 'documentation'],
  ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'], ['2001:db9::', null],
  ['2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null],
  ['2002::', 'this-host'], ['2002:808:808::1', null], ['2002:c0a8:101::1', 'private-use'], ['2002:8000::', null],
  ['2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'limited-broadcast'], ['2003::', null],
  ['2620:4f:7fff:ffff:ffff:ffff:ffff:ffff', null], ['2620:4f:8000::', 'as112-direct-delegation'], ['2620:4f:8000:8000::', 'as112-direct-delegation'],
  ['2620:4f:8000:ffff:ffff:ffff:ffff:ffff', 'as112-direct-delegation'], ['2620:4f:8001::', null],
  ['3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null], ['3fff::', 'documentation'], ['3fff:800::', 'documentation'], ['3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'],
  ['3fff:1000::', null], ['3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', null],
  ['4000::', 'reserved'], ['5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['5f00::', 'srv6-sids'], ['5f00:8000::', 'srv6-sids'], ['5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'srv6-sids'], ['5f01::', 'reserved'],
  ['8000::', 'reserved'], ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['fc00::', 'unique-local'], ['fd12:3456::1', 'unique-local'], ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'unique-local'],
  ['fe00::', 'reserved'], ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['fe80::', 'link-local'], ['fe80::1', 'link-local'], ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'link-local'],
  ['fec0::', 'site-local'], ['fed0::1', 'site-local'], ['feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'site-local'],
  ['ff00::', 'multicast'], ['ff02::1', 'multicast'], ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'multicast'],
];

test('every block: first, middle, last and just outside (hand-written expectations)', () => {
  for (const [ip, want] of EXPECTED) assert.equal(specialPurpose(ip), want, ip);
  // Every block is exercised by the list above.
  const named = new Set(EXPECTED.map(([, n]) => n));
  for (const b of SPECIAL_BLOCKS) {
    if (b.embeds === 'none') assert.ok(named.has(b.name), `${b.cidr} ${b.name} has no expectation`);
  }
});

test('the hand-written expectations agree with the slow reference over the table', () => {
  for (const [ip, want] of EXPECTED) {
    const family = ip.includes(':') ? 6 : 4;
    assert.equal(refJudge(family, family === 4 ? v4Value(ip) : v6Value(ip)), want, ip);
  }
});

test('every block: first, middle, last and neighbours match the reference', () => {
  for (const r of REF) {
    const w = width(r.family);
    const size = 1n << BigInt(w - r.length);
    const max = (1n << BigInt(w)) - 1n;
    const points = [r.base, r.base + size / 2n, r.base + size - 1n, r.base - 1n, r.base + size];
    for (const v of points) {
      if (v < 0n || v > max) continue;
      const text = format(r.family, v);
      assert.equal(specialPurpose(text), refJudge(r.family, v), `${r.block.cidr}: ${text}`);
    }
  }
});

/** Addresses near the reference blocks' edges, and anywhere in either family. */
function anyAddress() {
  const nearBlock = fc
    .tuple(fc.constantFrom(...REF), fc.bigInt({ min: -300n, max: 300n }), fc.boolean())
    .map(([r, delta, fromEnd]) => {
      const w = width(r.family);
      const size = 1n << BigInt(w - r.length);
      const v = (fromEnd ? r.base + size - 1n : r.base) + delta;
      const max = (1n << BigInt(w)) - 1n;
      return { family: r.family, value: v < 0n ? 0n : v > max ? max : v };
    });
  const anyV4 = fc.bigInt({ min: 0n, max: 0xffffffffn }).map((value) => ({ family: 4 as const, value }));
  const anyV6 = fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map((value) => ({ family: 6 as const, value }));
  return fc.oneof(nearBlock, anyV4, anyV6);
}

test('property: random addresses in every text form match the reference', () => {
  fc.assert(
    fc.property(anyAddress(), ({ family, value }) => {
      const want = refJudge(family, value);
      for (const text of textForms(family, value)) assert.equal(specialPurpose(text), want, text);
    }),
    { numRuns: 20_000 },
  );
});

/** The text forms of one address: full, compressed (as URL serialises it), upper case, with zeros, with a dotted tail. */
function textForms(family: 4 | 6, value: bigint): string[] {
  if (family === 4) return [format(4, value)];
  const full = format(6, value);
  const compressed = new URL(`http://[${full}]/`).hostname.slice(1, -1);
  const padded = full.split(':').map((g) => g.padStart(4, '0')).join(':');
  const dotted = `${full.split(':').slice(0, 6).join(':')}:${format(4, value & 0xffffffffn)}`;
  return [full, compressed, compressed.toUpperCase(), padded, dotted];
}

test('IPv4-mapped and other embedded forms are judged by their IPv4 address', () => {
  const cases: [string, string | null, string | null][] = [
    ['::ffff:8.8.8.8', null, '8.8.8.8'],
    ['::FFFF:8.8.8.8', null, '8.8.8.8'],
    ['0:0:0:0:0:ffff:8.8.8.8', null, '8.8.8.8'],
    ['0000:0000:0000:0000:0000:FFFF:0808:0808', null, '8.8.8.8'],
    ['::ffff:808:808', null, '8.8.8.8'],
    ['::ffff:10.0.0.1', 'private-use', '10.0.0.1'],
    ['::ffff:a00:1', 'private-use', '10.0.0.1'],
    ['::ffff:192.168.1.1', 'private-use', '192.168.1.1'],
    ['::ffff:127.0.0.1', 'loopback', '127.0.0.1'],
    ['::ffff:203.0.113.7', 'documentation', '203.0.113.7'],
    ['::ffff:100.64.1.1', 'shared-address-space', '100.64.1.1'],
    ['::ffff:169.254.1.1', 'link-local', '169.254.1.1'],
    ['::ffff:224.0.0.1', 'multicast', '224.0.0.1'],
    ['::8.8.8.8', null, '8.8.8.8'],
    ['::172.16.0.1', 'private-use', '172.16.0.1'],
    ['64:ff9b::8.8.8.8', null, '8.8.8.8'],
    ['64:FF9B::C0A8:101', 'private-use', '192.168.1.1'],
    ['2002:808:808::1', null, '8.8.8.8'],
    ['2002:c0a8:101:1::1', 'private-use', '192.168.1.1'],
    ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', null, '8.8.8.8'],
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'documentation', '192.0.2.45'],
  ];
  for (const [ip, special, v4] of cases) {
    assert.equal(specialPurpose(ip), special, ip);
    assert.equal(embeddedIPv4(ip), v4, ip);
  }
  // Not embedding forms: ::1 and :: are more specific than ::/96.
  for (const ip of ['::1', '::', '8.8.8.8', '2001:4860::1', '64:ff9b:1::808:808', 'fe80::1', 'nonsense']) assert.equal(embeddedIPv4(ip), null, ip);
});

test('lookupAddress: the address to ask a country database about', () => {
  const same = '8.8.8.8';
  assert.equal(lookupAddress(same), same);
  assert.equal(lookupAddress('2001:4860:4860::8888'), '2001:4860:4860::8888');
  assert.equal(lookupAddress('2001:4860:4860::8888%eth0'), '2001:4860:4860::8888');
  assert.equal(lookupAddress('::ffff:8.8.8.8'), '8.8.8.8');
  assert.equal(lookupAddress('::ffff:8.8.8.8%1'), '8.8.8.8');
  assert.equal(lookupAddress('::FFFF:77.88.8.8'), '77.88.8.8');
  assert.equal(lookupAddress('::ffff:4d58:808'), '77.88.8.8');
  assert.equal(lookupAddress('::8.8.8.8'), '8.8.8.8');
  assert.equal(lookupAddress('64:ff9b::8.8.8.8'), '8.8.8.8');
  assert.equal(lookupAddress('2002:808:808::8.8.4.4'), '8.8.8.8'); // 6to4 takes bits 16-47, not the tail
  assert.equal(lookupAddress('2001:0:4136:e378:8000:63bf:f7f7:f7f7'), '8.8.8.8');
  for (const ip of ['10.1.2.3', '::1', '::ffff:10.0.0.1', '2001:db8::1', '2002:a00:1::', 'fe80::1%eth0', 'ff02::1', '', 'x', '8.8.8']) {
    assert.equal(lookupAddress(ip), null, ip);
  }
});

/** lookupParsed() of `s` as the core parses it, given its canonical text; undefined when the core does not take `s` (a zone, say). */
function lookupAsParsed(s: string): string | null | undefined {
  const ip = parseIp(s);
  return ip === null ? undefined : lookupParsed(ip, canonicalText(s, ip));
}

test('lookupParsed: an address the core parsed is looked up as its text is, without reading the text', () => {
  const cases = ['8.8.8.8', '2001:4860:4860::8888', '::ffff:8.8.8.8', '::FFFF:77.88.8.8', '::ffff:4d58:808', '::8.8.8.8', '64:ff9b::8.8.8.8', '2002:808:808::8.8.4.4', '2001:0:4136:e378:8000:63bf:f7f7:f7f7'];
  for (const ip of cases) assert.equal(lookupAsParsed(ip), lookupAddress(ip), ip);
  for (const ip of ['10.1.2.3', '::1', '::', '::ffff:10.0.0.1', '2001:db8::1', '2002:a00:1::', 'fe80::1', 'ff02::1', '64:ff9b::a00:1']) assert.equal(lookupAsParsed(ip), null, ip);
  // A global IPv6 address is looked up by the canonical text it is given; the embedded IPv4 forms by their IPv4 address.
  assert.equal(lookupAsParsed('2001:4860:4860:0:0:0:0:8888'), '2001:4860:4860::8888');
  assert.equal(lookupAsParsed('::ffff:4d58:808'), '77.88.8.8');
});

test('property: lookupParsed agrees with lookupAddress on every form the core parses', () => {
  fc.assert(
    fc.property(anyAddress(), ({ family, value }) => {
      for (const text of textForms(family, value)) {
        const ip = parseIp(text);
        assert.ok(ip !== null, text);
        const key = lookupAddress(text);
        // lookupAddress answers a global IPv6 address with the text it was given; lookupParsed with the canonical text it is given.
        assert.equal(lookupParsed(ip, canonicalText(text, ip)), key !== null && key.includes(':') ? canonicalText(text, ip) : key, text);
      }
    }),
    { numRuns: 20_000 },
  );
});

test('strings that are not addresses', () => {
  const bad = [
    '', ' ', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.256', '01.2.3.4', '1.2.3.04', '1.2.03.4', '00.1.2.3', '1..2.3', '.1.2.3', '1.2.3.4.',
    '1.2.3.4 ', ' 1.2.3.4', '1.2.3.-1', '0x1.2.3.4', '1.2.3.4/24', '1.2.3.4%eth0', '١.٢.٣.٤', 'localhost',
    ':', ':::', '::::', '1::2::3', '12345::', '::12345', '::g', 'fe80::1%', 'fe80::1%a_b', 'fe80::1%a b',
    '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '1::2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8::', ':1::', '1:::2', '1:', ':1', '1:2:3:4:5:6:7:',
    '::ffff:1.2.3', '::ffff:256.1.1.1', '::ffff:01.2.3.4', '::1.2.3.4:5', '1:2:3:4:5:6:7:1.2.3.4', '::1.2.3.4.5', '::ffff:1.2.3.4x',
    '[::1]', '::ffff:8.8.8.8/96', 'x'.repeat(100), `fe80::1%${'a'.repeat(80)}`,
  ];
  for (const s of bad) {
    assert.equal(specialPurpose(s), NOT_AN_ADDRESS, JSON.stringify(s));
    assert.equal(isIPAddress(s), false, JSON.stringify(s));
    assert.equal(lookupAddress(s), null, JSON.stringify(s));
  }
});

test('property: accepts exactly what node:net isIP accepts', () => {
  const alphabet = fc.constantFrom(...'0123456789abcdefABCDEF:.%xg- '.split(''));
  const noise = fc.string({ unit: alphabet, maxLength: 48 });
  const valid = fc.oneof(
    fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).chain((v) => fc.constantFrom(...textForms(6, v))),
    fc.bigInt({ min: 0n, max: 0xffffffffn }).map((v) => format(4, v)),
  );
  // A valid address with one character inserted, removed or replaced.
  const mutated = fc.tuple(valid, fc.nat(), fc.nat({ max: 2 }), alphabet).map(([s, at, op, c]) => {
    const i = at % (s.length + 1);
    if (op === 0) return s.slice(0, i) + c + s.slice(i);
    if (op === 1) return s.slice(0, i) + s.slice(i + 1);
    return s.slice(0, i) + c + s.slice(i + 1);
  });
  const zoned = fc.tuple(valid, fc.string({ unit: alphabet, maxLength: 8 })).map(([s, z]) => `${s}%${z}`);
  fc.assert(
    fc.property(fc.oneof(noise, valid, mutated, zoned), (s) => {
      if (s.length > 64) return;
      assert.equal(isIPAddress(s), isIP(s) !== 0, JSON.stringify(s));
    }),
    { numRuns: 50_000 },
  );
});

test('the table: names are short kebab-case, every block parses, no duplicate block', () => {
  const seen = new Set<string>();
  for (const b of SPECIAL_BLOCKS) {
    assert.match(b.name, /^[a-z0-9]+(-[a-z0-9]+)*$/, b.name);
    assert.match(b.rfc, /RFC \d+/, b.cidr);
    assert.ok(!seen.has(b.cidr), `duplicate ${b.cidr}`);
    seen.add(b.cidr);
  }
  assert.ok(Object.isFrozen(SPECIAL_BLOCKS));
});
