import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { formatGoDuration, parseGoDuration } from './go-duration.js';

test('go duration: what the Local API writes, to the millisecond (toward zero)', () => {
  const cases: Array<[string, number]> = [
    ['3h59m58.123456789s', 3 * 3_600_000 + 59 * 60_000 + 58_123],
    ['59m59.152065434s', 59 * 60_000 + 59_152],
    ['-10.530707ms', -10],
    ['-31.084936ms', -31],
    ['0s', 0],
    ['0', 0],
    ['1.5\u00b5s', 0],
    ['999\u03bcs', 0],
    ['1500us', 1],
    ['2000000ns', 2],
    ['168h0m0s', 168 * 3_600_000],
    ['+1m', 60_000],
    ['.5s', 500],
    ['5.s', 5000],
    ['1h1h', 2 * 3_600_000],
    ['-0.0004s', 0],
  ];
  for (const [text, ms] of cases) assert.equal(parseGoDuration(text), ms, text);
});

test('go duration: anything Go would refuse is null, never a guess', () => {
  for (const text of ['', '-', '+', 'h', '1', '10', '1.5', '.s', '1d', '1 h', ' 1h', '1h ', '1H', '1h30', 'ms', '1sec', '--1s', '1e3s', 'NaNs', '∞s', '1h-1m', 'x'.repeat(65), '1'.repeat(30) + 'h']) {
    assert.equal(parseGoDuration(text), null, JSON.stringify(text));
  }
});

test('go duration: format and parse are inverse over whole milliseconds (property)', () => {
  fc.assert(
    fc.property(fc.integer({ min: -400 * 86_400_000, max: 400 * 86_400_000 }), (ms) => parseGoDuration(formatGoDuration(ms)) === ms),
    { numRuns: 2000 },
  );
});

test('go duration: any string is parsed to null or a whole number of ms, never a throw or NaN (property)', () => {
  const alphabet = fc.constantFrom(...'0123456789.+-hmsunµμ'.split(''), 'ms', 'us', '\u00b5s');
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.array(alphabet, { maxLength: 20 }).map((a) => a.join(''))), (s) => {
      const v = parseGoDuration(s);
      return v === null || (Number.isInteger(v) && Math.abs(v) < 2 ** 63 / 1e6 + 1);
    }),
    { numRuns: 3000 },
  );
});

test('regression (found by fuzzing): nanoseconds past 2^53 are counted exactly, not rounded up a millisecond', () => {
  assert.equal(parseGoDuration('2501h59m59.263999999s'), 9_007_199_263);
  assert.equal(parseGoDuration('-2501h59m59.263999999s'), -9_007_199_263);
  assert.equal(parseGoDuration('2562047h47m16.854775807s'), 9_223_372_036_854, "Go's largest duration");
  assert.equal(parseGoDuration('2562047h47m16.854775808s'), null, 'one nanosecond over');
});
