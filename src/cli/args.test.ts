import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { parseAddress, parseAddressOrNetwork, parseBanDuration, parseCountry, parseLimit, parsePhase, parseReason, parseTimeout, parseUrl } from './args.js';

const bad = (f: () => unknown, re?: RegExp) => assert.throws(f, (e: unknown) => e instanceof InvalidArgumentError && (re === undefined || re.test(e.message)));

test('parseLimit: whole numbers from 1 to 1000', () => {
  assert.deepEqual(['1', '100', '1000'].map(parseLimit), [1, 100, 1000]);
  for (const v of ['0', '1001', '-1', '1.5', 'ten', '', ' 5']) bad(() => parseLimit(v), /1 to 1000/);
});

test('parseCountry and parsePhase', () => {
  assert.deepEqual(['de', 'RU', 'kP'].map(parseCountry), ['DE', 'RU', 'KP']);
  for (const v of ['D', 'DEU', '1A', '', 'D-']) bad(() => parseCountry(v), /is not a country code: expected an ISO 3166-1 alpha-2 country code/);
  // Two letters, but no assigned country: refused, naming the code.
  for (const v of ['XX', 'zz', 'EU', 'UK', 'AA', 'QZ']) bad(() => parseCountry(v), new RegExp(`^"${v}" is not a country code: expected an ISO 3166-1 alpha-2 country code \\(officially assigned, or XK for Kosovo\\) such as DE\\.$`));
  assert.equal(parseCountry('xk'), 'XK', 'Kosovo, user-assigned but in every country database');
  assert.deepEqual(['connect', 'auth'].map(parsePhase), ['connect', 'auth']);
  for (const v of ['Connect', 'login', '']) bad(() => parsePhase(v), /connect or auth/);
});

test('parseAddress and parseAddressOrNetwork', () => {
  assert.equal(parseAddress('192.0.2.7'), '192.0.2.7');
  assert.equal(parseAddress('2001:db8::7'), '2001:db8::7');
  bad(() => parseAddress('192.0.2.0/24'), /is not an IP address/);
  bad(() => parseAddress('mx.example'), /"mx\.example" is not an IP address/);
  for (const v of ['192.0.2.7', '192.0.2.0/24', '2001:db8::/32']) assert.equal(parseAddressOrNetwork(v), v);
  for (const v of ['192.0.2.0/33', 'abc', '', '1']) bad(() => parseAddressOrNetwork(v), /CIDR/);
});

test('parseBanDuration: units passed on as written, bare numbers as seconds, 1 s to 366 days', () => {
  assert.deepEqual(['90s', '10m', '1h', '1d', '366d', ' 2h '].map(parseBanDuration), ['90s', '10m', '1h', '1d', '366d', '2h']);
  assert.deepEqual(['600', '1', '1.5'].map(parseBanDuration), [600, 1, 1.5]);
  for (const v of ['0', '500ms', '367d', '10 minutes', '', '-5', '1w']) bad(() => parseBanDuration(v), /1s to 366d/);
});

test('parseTimeout: milliseconds, 100 ms to 10 min', () => {
  assert.deepEqual(['500ms', '30s', '2', '10m'].map(parseTimeout), [500, 30_000, 2000, 600_000]);
  for (const v of ['50ms', '11m', 'soon', '0']) bad(() => parseTimeout(v), /100ms to 10m/);
});

test('parseUrl: http or https only', () => {
  assert.equal(parseUrl('http://127.0.0.1:8025'), 'http://127.0.0.1:8025');
  assert.equal(parseUrl('https://mx.example/doorman/'), 'https://mx.example/doorman/');
  bad(() => parseUrl('127.0.0.1:8025'), /http/);
  bad(() => parseUrl('ftp://mx.example'), /http/);
});

test('parseReason: one trimmed line, not empty, capped', () => {
  assert.equal(parseReason('  flood from here '), 'flood from here');
  for (const v of ['', '   ', 'two\nlines', 'x'.repeat(501)]) bad(() => parseReason(v), /one line/);
});
