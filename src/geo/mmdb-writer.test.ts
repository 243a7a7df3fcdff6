// Tests of the test helper test/helpers/mmdb-writer.ts: the databases it makes
// must read back through the `maxmind` package exactly as real ones do, or the
// country tests built on them would prove nothing.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import maxmind, { Reader, type Response } from 'maxmind';
import { buildCountryMmdb, buildMmdb, mmdbType } from '../../test/helpers/mmdb-writer.js';

const NETWORKS = [
  ['8.8.8.0/24', 'US'],
  ['77.88.0.0/18', 'RU'],
  ['133.242.0.0/16', 'JP'],
  ['2001:4860::/32', 'US'],
  ['2a02:6b8::/29', 'RU'],
] as const;

function iso(r: Reader<Response>, ip: string): unknown {
  const rec = r.get(ip) as { country?: { iso_code?: string }; country_code?: string } | null;
  return rec === null ? null : (rec.country?.iso_code ?? rec.country_code);
}

for (const recordSize of [24, 28, 32] as const) {
  test(`record size ${recordSize}: metadata and lookups read back through maxmind's Reader`, () => {
    const buf = buildCountryMmdb(NETWORKS, { recordSize, buildEpoch: 1_700_000_000, description: { en: 'test', de: 'Test' } });
    const r = new Reader<Response>(buf);
    const md = r.metadata;
    assert.equal(md.binaryFormatMajorVersion, 2);
    assert.equal(md.binaryFormatMinorVersion, 0);
    assert.equal(md.ipVersion, 6);
    assert.equal(md.recordSize, recordSize);
    assert.equal(md.databaseType, 'GeoLite2-Country');
    assert.deepEqual(md.languages, ['en']);
    assert.deepEqual(md.description, { en: 'test', de: 'Test' });
    assert.equal(md.buildEpoch.getTime(), 1_700_000_000_000);
    assert.equal(md.searchTreeSize, (md.nodeCount * recordSize) / 4);
    // The separator after the tree is 16 zero bytes.
    assert.ok(buf.subarray(md.searchTreeSize, md.searchTreeSize + 16).equals(Buffer.alloc(16)));

    for (const [ip, want] of [
      ['8.8.8.8', 'US'], ['8.8.8.0', 'US'], ['8.8.8.255', 'US'], ['8.8.9.0', null], ['8.8.7.255', null],
      ['77.88.8.8', 'RU'], ['77.88.63.255', 'RU'], ['77.88.64.0', null],
      ['133.242.0.1', 'JP'], ['133.243.0.0', null],
      ['2001:4860:4860::8888', 'US'], ['2001:4861::', null], ['2a02:6b8::1', 'RU'], ['2a02:6c0::', null],
      ['1.1.1.1', null], ['::1', null],
      // IPv4 networks live under ::/96, as in MaxMind's own IPv6 databases.
      ['::8.8.8.8', 'US'], ['::808:808', 'US'],
    ] as const) {
      assert.equal(iso(r, ip), want, ip);
    }
    const [, prefix] = r.getWithPrefixLength('2001:4860:4860::8888');
    assert.equal(prefix, 32);
  });
}

test('overlapping networks: the later one wins over the part it covers', () => {
  const r = new Reader<Response>(buildCountryMmdb([['8.0.0.0/8', 'AA'], ['8.8.8.0/24', 'BB'], ['8.8.8.8/32', 'CC'], ['8.8.0.0/16', 'DD'], ['8.8.8.8', 'EE']]));
  assert.equal(iso(r, '8.1.1.1'), 'AA');
  assert.equal(iso(r, '8.8.1.1'), 'DD');
  assert.equal(iso(r, '8.8.8.9'), 'DD'); // 8.8.8.0/24 was covered by the later /16
  assert.equal(iso(r, '8.8.8.8'), 'EE');
});

test('the ip-location-db shape and an IPv4-only tree', () => {
  const r = new Reader<Response>(buildCountryMmdb([['8.8.8.0/24', 'US']], { shape: 'ip-location-db', ipVersion: 4, recordSize: 24 }));
  assert.equal(r.metadata.ipVersion, 4);
  assert.equal(r.metadata.databaseType, 'country ipvAll');
  assert.deepEqual(r.get('8.8.8.8'), { country_code: 'US' });
  assert.equal(r.get('8.8.9.8'), null);
  assert.throws(() => buildCountryMmdb([['2001:db8::/32', 'XX']], { ipVersion: 4 }), /IPv6 network/);
});

test('identical records are stored once', () => {
  const one = buildCountryMmdb([['8.8.8.0/24', 'US']]);
  const many = buildCountryMmdb([['8.8.8.0/24', 'US'], ['9.9.9.0/24', 'US'], ['1.1.1.0/24', 'US']]);
  const dataSize = (buf: Buffer): number => {
    const md = new Reader<Response>(buf).metadata;
    return buf.indexOf(Buffer.from('abcdef4d61784d696e642e636f6d', 'hex')) - md.searchTreeSize - 16;
  };
  assert.equal(dataSize(many), dataSize(one));
});

test('every data type round-trips, and sizes across every size encoding', () => {
  const value = {
    str: 'héllo',
    s28: 'a'.repeat(28),
    s29: 'b'.repeat(29),
    s284: 'c'.repeat(284),
    s285: 'd'.repeat(285),
    s65820: 'e'.repeat(65_820),
    s65821: 'f'.repeat(65_821),
    u16: mmdbType.uint16(65_535),
    u32: 4_294_967_295,
    zero: 0,
    u64: 2n ** 63n + 5n,
    u128: 2n ** 100n,
    i32: -123_456,
    dbl: 1.5,
    flt: mmdbType.float(0.25),
    yes: true,
    no: false,
    bytes: new Uint8Array([0, 1, 255]),
    arr: [1, 'two', [3], { four: 4 }],
    map: { nested: { deeper: 'x' } },
  };
  const r = new Reader<Response>(buildMmdb([{ cidr: '1.0.0.0/8', data: value }]));
  const got = r.get('1.2.3.4') as unknown as Record<string, unknown>;
  for (const k of ['str', 's28', 's29', 's284', 's285', 's65820', 's65821', 'arr', 'map', 'yes', 'no', 'dbl', 'i32', 'zero'] as const) {
    assert.deepEqual(got[k], value[k], k);
  }
  assert.equal(got.u16, 65_535);
  assert.equal(got.u32, 4_294_967_295);
  assert.equal(BigInt(got.u64 as string | number | bigint), value.u64);
  assert.equal(BigInt(got.u128 as string | number | bigint), value.u128);
  assert.equal(got.flt, 0.25);
  assert.deepEqual([...(got.bytes as Uint8Array)], [0, 1, 255]);
});

test('a written file opens with maxmind.open()', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'doorman-mmdb-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'test.mmdb');
  await writeFile(file, buildCountryMmdb(NETWORKS));
  const r = await maxmind.open<Response>(file);
  assert.equal(iso(r, '133.242.0.1'), 'JP');
});

test('refuses what it cannot write', () => {
  assert.throws(() => buildCountryMmdb([['8.8.8.1/24', 'US']]), /host bits/);
  assert.throws(() => buildCountryMmdb([['not-an-ip/8', 'US']]), /not an address/);
  assert.throws(() => buildCountryMmdb([['8.8.8.0/33', 'US']]), /prefix length/);
  assert.throws(() => buildCountryMmdb([['::/0', 'US']]), /whole address space/);
});
