import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COUNTRY_CODES, ISO_3166_ALPHA2, normaliseCountry } from './country-codes.js';

test('the table: 249 officially assigned codes, sorted, unique, two capitals each; XK accepted besides', () => {
  assert.equal(ISO_3166_ALPHA2.length, 249);
  assert.equal(new Set(ISO_3166_ALPHA2).size, 249);
  assert.deepEqual([...ISO_3166_ALPHA2].sort(), ISO_3166_ALPHA2);
  for (const c of ISO_3166_ALPHA2) assert.match(c, /^[A-Z]{2}$/);
  assert.ok(!ISO_3166_ALPHA2.includes('XK'));
  assert.equal(COUNTRY_CODES.length, 250);
  // Reserved, transitional, exceptional and user-assigned codes are not countries here.
  for (const c of ['EU', 'UK', 'SU', 'AN', 'YU', 'AA', 'QM', 'XA', 'ZZ', 'XX']) assert.equal(normaliseCountry(c), null, c);
  for (const [input, code] of [['de', 'DE'], [' kp ', 'KP'], ['xk', 'XK'], ['Ss', 'SS'], ['bq', 'BQ']]) assert.equal(normaliseCountry(input as string), code);
});
