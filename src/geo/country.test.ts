import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { buildCountryMmdb, buildMmdb } from '../../test/helpers/mmdb-writer.js';
import { clientAddress } from '../core/ip.js';
import { openCountryLookup, type CountryLookupEvent } from './country.js';
import { GeoDatabaseError } from './errors.js';

/** Collects a lookup's events and lets a test wait for the next one of a type. */
class Events {
  readonly all: CountryLookupEvent[] = [];
  private waiters: { type: CountryLookupEvent['type']; resolve: (e: CountryLookupEvent) => void }[] = [];
  readonly onEvent = (e: CountryLookupEvent): void => {
    this.all.push(e);
    const i = this.waiters.findIndex((w) => w.type === e.type);
    if (i !== -1) this.waiters.splice(i, 1)[0]?.resolve(e);
  };
  next(type: CountryLookupEvent['type'], timeoutMs = 5000): Promise<CountryLookupEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${type} event within ${timeoutMs} ms; got ${JSON.stringify(this.all.map((e) => e.type))}`)), timeoutMs);
      this.waiters.push({ type, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'doorman-geo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A country database where every listed network has one answer. */
function db(cc: string, shape: 'maxmind' | 'ip-location-db' = 'maxmind'): Buffer {
  return buildCountryMmdb(
    [
      ['8.8.8.0/24', cc],
      ['2001:4860::/32', cc],
      ['133.242.0.0/16', 'JP'],
    ],
    { shape },
  );
}

/** Replaces `file` the way geoipupdate does: write beside it, rename over it. */
async function replaceByRename(file: string, content: Buffer): Promise<void> {
  await writeFile(`${file}.tmp`, content);
  await rename(`${file}.tmp`, file);
}

test('the embedded CC0 database: real answers, and none for special-purpose addresses', async (t) => {
  const lookup = await openCountryLookup();
  t.after(() => lookup.close());
  assert.match(lookup.source, /@ip-location-db\/geo-whois-asn-country-mmdb@[\d.]+ \(embedded\)/);
  assert.match(lookup.path, /geo-whois-asn-country\.mmdb$/);
  assert.equal(lookup.databaseType, 'country ipvAll');
  for (const [ip, want] of [
    ['8.8.8.8', 'US'],
    ['133.242.0.1', 'JP'],
    ['77.88.8.8', 'RU'],
    ['::ffff:8.8.8.8', 'US'], // the database itself has nothing under ::ffff:0:0/96
    ['::FFFF:77.88.8.8', 'RU'],
    ['2001:4860:4860::8888', 'US'],
    // The database answers AU, AU and JP for the next three: the special-purpose check comes first.
    ['192.168.1.1', null],
    ['203.0.113.7', null],
    ['2001:db8::1', null],
    ['10.1.2.3', null],
    ['::1', null],
    ['::ffff:192.168.1.1', null],
    ['fe80::1%eth0', null],
    ['not an address', null],
    ['', null],
    ['8.8.8', null],
  ] as const) {
    assert.equal(lookup.country(ip), want, ip);
    // As the gatekeeper asks, with the address it parsed: the same answer.
    const c = clientAddress(ip);
    if (c !== null) assert.equal(lookup.country(c.text, c.ip), want, `${ip}, parsed`);
  }
});

test('an address the core parsed is answered as its text is (embedded database, random addresses of every family and form)', async (t) => {
  const lookup = await openCountryLookup();
  t.after(() => lookup.close());
  let seed = 7;
  const next = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  const hex = (): string => (next() & 0xffff).toString(16);
  let answered = 0;
  for (let i = 0; i < 20_000; i++) {
    const v4 = `${next() >>> 24}.${next() >>> 24}.${next() >>> 24}.${next() >>> 24}`;
    const v6 = `2${(next() % 0xfff).toString(16).padStart(3, '0')}:${hex()}:${hex()}:${hex()}::${hex()}`;
    for (const text of [v4, `::ffff:${v4}`, v6, `64:ff9b::${v4}`, `2002:${hex()}:${hex()}::1`]) {
      const c = clientAddress(text);
      assert.ok(c !== null, text);
      const want = lookup.country(text);
      assert.equal(lookup.country(c.text, c.ip), want, text);
      if (want !== null) answered++;
    }
  }
  assert.ok(answered > 50_000, `${answered} answered: the sample reaches the database`);
});

test('record shapes: country.iso_code and country_code, upper-cased; records without a country', async (t) => {
  const dir = await tempDir(t);
  const cases: [string, Buffer, string][] = [
    ['maxmind.mmdb', db('US'), 'US'],
    ['ipdb.mmdb', db('US', 'ip-location-db'), 'US'],
    ['lower.mmdb', buildCountryMmdb([['8.8.8.0/24', 'de'], ['9.9.9.0/24', 'CH']]), 'DE'],
  ];
  for (const [name, content, want] of cases) {
    await writeFile(join(dir, name), content);
    const lookup = await openCountryLookup(join(dir, name), { watch: false });
    assert.equal(lookup.country('8.8.8.8'), want, name);
    assert.equal(lookup.country('8.8.9.9'), null, `${name}: not in the database`);
    lookup.close();
  }
  // GeoLite2 has records with a continent but no country; and a code that is not two letters is no answer.
  await writeFile(
    join(dir, 'odd.mmdb'),
    buildMmdb([
      { cidr: '8.8.8.0/24', data: { country: { iso_code: 'US' } } },
      { cidr: '9.0.0.0/8', data: { continent: { code: 'EU' }, registered_country: { iso_code: 'FR' } } },
      { cidr: '10.0.0.0/8', data: { country: { iso_code: 'USA' } } },
      { cidr: '11.0.0.0/8', data: { country: { iso_code: '12' } } },
      { cidr: '12.0.0.0/8', data: { country_code: 42 } },
    ]),
  );
  const odd = await openCountryLookup(join(dir, 'odd.mmdb'), { watch: false });
  t.after(() => odd.close());
  for (const ip of ['9.1.1.1', '11.1.1.1', '12.1.1.1']) assert.equal(odd.country(ip), null, ip);
  assert.equal(odd.country('8.8.8.8'), 'US');
});

test('an IPv4-only database answers IPv4 (and mapped) addresses and nothing for IPv6', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'v4.mmdb');
  await writeFile(file, buildCountryMmdb([['8.8.8.0/24', 'US'], ['32.0.0.0/8', 'XX']], { ipVersion: 4, recordSize: 24 }));
  const lookup = await openCountryLookup(file, { watch: false });
  t.after(() => lookup.close());
  assert.equal(lookup.country('8.8.8.8'), 'US');
  assert.equal(lookup.country('::ffff:8.8.8.8'), 'US');
  // 2001:4860:: starts with the bits of 32.1.72.96: an IPv4 tree would say XX.
  assert.equal(lookup.country('2001:4860::1'), null);
  for (const [ip, want] of [['8.8.8.8', 'US'], ['::ffff:8.8.8.8', 'US'], ['2001:4860::1', null]] as const) {
    const c = clientAddress(ip);
    assert.equal(c === null ? undefined : lookup.country(c.text, c.ip), want, `${ip}, parsed`);
  }
});

test('a database that cannot be used is a coded error naming the file and the problem', async (t) => {
  const dir = await tempDir(t);
  const good = db('US');
  const md = good.lastIndexOf(Buffer.from('abcdef4d61784d696e642e636f6d', 'hex'));
  const outside = Buffer.from(good);
  // Node 0's left record (28 bits: three bytes and the high nibble of the fourth): far past the data section.
  outside.writeUIntBE(0xffffff, 0, 3);
  outside[3] = ((outside[3] as number) & 0x0f) | 0xf0;
  const cases: [string, Buffer | null, RegExp][] = [
    ['missing.mmdb', null, /cannot read: ENOENT/],
    ['empty.mmdb', Buffer.alloc(0), /not a MaxMind DB file, or cut short/],
    ['text.mmdb', Buffer.from('hello, this is not a database\n'.repeat(100)), /not a MaxMind DB file/],
    ['gzip.mmdb.gz', gzipSync(good), /gzip-compressed/],
    ['truncated.mmdb', good.subarray(0, Math.floor(good.length / 2)), /not a MaxMind DB file, or cut short/],
    ['no-tree.mmdb', good.subarray(md - 100), /does not fit|separator|metadata/],
    ['asn.mmdb', buildMmdb([{ cidr: '8.8.8.0/24', data: { autonomous_system_number: 15169 } }], { databaseType: 'GeoLite2-ASN' }), /database_type "GeoLite2-ASN" is not a country database/],
    ['nocountry.mmdb', buildMmdb([{ cidr: '8.8.8.0/24', data: { city: 'x' } }], { databaseType: 'Test-Country' }), /no record carries a country/],
    ['notmap.mmdb', buildMmdb([{ cidr: '8.8.8.0/24', data: 'US' }], { databaseType: 'Test-Country' }), /is not a map/],
    ['outside.mmdb', outside, /points outside the data section/],
    ['v3.mmdb', buildMmdb([{ cidr: '8.8.8.0/24', data: { country_code: 'US' } }], { databaseType: 'country', extraMetadata: { binary_format_major_version: 3 } }), /binary format 3/],
  ];
  for (const [name, content, problem] of cases) {
    const file = join(dir, name);
    if (content !== null) await writeFile(file, content);
    await assert.rejects(openCountryLookup(file), (err: unknown) => {
      assert.ok(err instanceof GeoDatabaseError, `${name}: ${String(err)}`);
      assert.equal(err.code, 'DOORMAN_ERR_GEO_DATABASE');
      assert.equal(err.path, file);
      assert.ok(err.message.startsWith(`country database ${file}: `), err.message);
      assert.match(err.message, problem, name);
      return true;
    });
  }
  await mkdir(join(dir, 'adir.mmdb'));
  await assert.rejects(openCountryLookup(join(dir, 'adir.mmdb')), /not a regular file/);
});

test('reload on change: swap by rename, a broken file written in place is refused, then a good one', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'country.mmdb');
  await writeFile(file, db('US'));
  const events = new Events();
  const lookup = await openCountryLookup(file, { debounceMs: 20, onEvent: events.onEvent });
  t.after(() => lookup.close());
  assert.equal(lookup.source, file);
  assert.equal(lookup.country('8.8.8.8'), 'US');

  let reloaded = events.next('reloaded');
  await replaceByRename(file, db('DE'));
  const e = await reloaded;
  assert.equal(e.path, file);
  assert.equal(lookup.country('8.8.8.8'), 'DE');
  assert.equal(lookup.country('2001:4860::1'), 'DE');

  // An updater that writes in place, caught half-way: refused, and the old answers stay.
  const failed = events.next('reload-failed');
  const half = db('FR');
  await writeFile(file, half.subarray(0, half.length - 40));
  const f = await failed;
  assert.ok(f.type === 'reload-failed' && f.error instanceof GeoDatabaseError, JSON.stringify(f));
  assert.match(f.error.message, /cut short/);
  assert.equal(lookup.country('8.8.8.8'), 'DE');

  reloaded = events.next('reloaded');
  await writeFile(file, db('FR'));
  await reloaded;
  assert.equal(lookup.country('8.8.8.8'), 'FR');

  // Other files in the directory are none of its business.
  const before = events.all.length;
  await writeFile(join(dir, 'unrelated.txt'), 'x');
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(events.all.length, before);
});

test('reload(): explicit, true when the new file is in service, false when refused', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'country.mmdb');
  await writeFile(file, db('US'));
  const events = new Events();
  const lookup = await openCountryLookup(file, { watch: false, onEvent: events.onEvent });
  await writeFile(file, db('DE'));
  assert.equal(await lookup.reload(), true);
  assert.equal(lookup.country('8.8.8.8'), 'DE');
  await writeFile(file, 'garbage');
  assert.equal(await lookup.reload(), false);
  assert.equal(lookup.country('8.8.8.8'), 'DE');
  await rm(file);
  assert.equal(await lookup.reload(), false);
  assert.deepEqual(
    events.all.map((e) => e.type),
    ['reloaded', 'reload-failed', 'reload-failed'],
  );
  // Concurrent calls: all settle, and the last one read the file after the first.
  await writeFile(file, db('CH'));
  const results = await Promise.all([lookup.reload(), lookup.reload(), lookup.reload()]);
  assert.deepEqual(results, [true, true, true]);
  assert.equal(lookup.country('8.8.8.8'), 'CH');
  lookup.close();
  assert.equal(lookup.country('8.8.8.8'), null);
  assert.equal(await lookup.reload(), false);
});

test('a symbolic link: updates to the file it points to are seen too', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'GeoIP'));
  const target = join(dir, 'GeoIP', 'GeoLite2-Country.mmdb');
  await writeFile(target, db('US'));
  const link = join(dir, 'country.mmdb');
  await symlink(target, link);
  const events = new Events();
  const lookup = await openCountryLookup(link, { debounceMs: 20, onEvent: events.onEvent });
  t.after(() => lookup.close());
  const reloaded = events.next('reloaded');
  await replaceByRename(target, db('DE'));
  await reloaded;
  assert.equal(lookup.country('8.8.8.8'), 'DE');
});

test('hammer: lookups in a tight loop through several swaps never fail and never answer null', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'country.mmdb');
  await writeFile(file, db('US'));
  const events = new Events();
  const lookup = await openCountryLookup(file, { debounceMs: 10, onEvent: events.onEvent });
  t.after(() => lookup.close());

  const known = ['8.8.8.8', '::ffff:8.8.8.8', '2001:4860:4860::8888', '8.8.8.200'];
  const seen = new Map<string, number>();
  let lookups = 0;
  let bad = 0;
  let stop = false;
  const loop = new Promise<void>((resolve, reject) => {
    const batch = (): void => {
      try {
        for (let i = 0; i < 2000; i++) {
          for (const ip of known) {
            const c = lookup.country(ip);
            lookups++;
            if (c === null) bad++;
            else seen.set(c, (seen.get(c) ?? 0) + 1);
          }
          if (lookup.country('133.242.0.1') !== 'JP') bad++;
        }
      } catch (err) {
        reject(err);
        return;
      }
      if (stop) resolve();
      else setImmediate(batch);
    };
    setImmediate(batch);
  });

  const order = ['DE', 'FR', 'US', 'DE', 'CH', 'US', 'SE'];
  for (const [i, cc] of order.entries()) {
    const reloaded = events.next('reloaded');
    if (i === 3) {
      // A broken file in between: refused, lookups go on from the old reader.
      const failed = events.next('reload-failed');
      await writeFile(file, Buffer.from('half a database'));
      await failed;
    }
    await replaceByRename(file, db(cc));
    await reloaded;
    assert.equal(lookup.country('8.8.8.8'), cc);
  }
  stop = true;
  await loop;
  assert.equal(bad, 0, `${bad} null answers in ${lookups} lookups`);
  assert.ok(lookups > 100_000, `only ${lookups} lookups`);
  for (const cc of new Set(order)) assert.ok((seen.get(cc) ?? 0) > 0 || cc === 'SE', `never saw ${cc}`);
});
