import assert from 'node:assert/strict';
import { test } from 'node:test';
import { METRIC_COUNT } from '../core/metrics.js';
import { fixedWindow, slidingWindow, RATE_MAX, type RateAlgorithm, type RateTable } from './rate.js';

const UNIT = 60_000;
const T0 = Date.UTC(2026, 10, 22, 10, 0, 0);

function table(): RateTable {
  return { start: new Float64Array(1), counts: new Int32Array(METRIC_COUNT * 2) };
}

/** Sends `n` events at `at`, returns the rate the last one saw. */
function burst(alg: RateAlgorithm, t: RateTable, at: number, n: number): number {
  let r = 0;
  for (let i = 0; i < n; i++) r = alg.hit(t, 0, 0, at);
  return r;
}

test('fixed-window lets a client double its allowance at the boundary (anvil does)', () => {
  const alg = fixedWindow(UNIT);
  const t = table();
  alg.init(t, 0, T0);
  const limit = 10;
  // 10 at the very end of the first window (anvil: start + unit < now resets; 60 s later is not yet past).
  assert.equal(burst(alg, t, T0 + 60_000, limit), limit);
  // one second later the window has reset: another 10 pass as 1..10.
  assert.equal(alg.hit(t, 0, 0, T0 + 61_000), 1);
  assert.equal(burst(alg, t, T0 + 61_000, limit - 1), limit);
});

test('sliding-window does not: right after the boundary the earlier burst still counts', () => {
  const alg = slidingWindow(UNIT);
  const t = table();
  alg.init(t, 0, T0);
  const limit = 10;
  assert.equal(burst(alg, t, T0 + 59_999, limit), limit);
  // 2 ms later, in the next window: previous 10 weighted by ~1.0 → floor(9.99..) = 9, plus this one.
  assert.equal(alg.hit(t, 0, 0, T0 + 60_001), 10);
  assert.ok(alg.hit(t, 0, 0, T0 + 60_002) > limit, 'the 12th event within 3 ms is over the limit');
});

test('sliding-window never refuses a client that keeps exactly to its limit', () => {
  const alg = slidingWindow(UNIT);
  const t = table();
  alg.init(t, 0, T0);
  const limit = 10;
  const spacing = UNIT / limit;
  let max = 0;
  for (let i = 0; i < 200; i++) max = Math.max(max, alg.hit(t, 0, 0, T0 + i * spacing));
  assert.equal(max, limit);
});

test('sliding-window decays: half a unit into the next window, half the old count remains', () => {
  const alg = slidingWindow(UNIT);
  const t = table();
  alg.init(t, 0, T0);
  burst(alg, t, T0 + 1000, 20);
  assert.equal(alg.read(t, 0, 0, T0 + 1000), 20);
  // 20 in the first window; half a unit into the next, floor(20 * 29999 / 60000) = 9 remain
  assert.equal(alg.read(t, 0, 0, T0 + UNIT + UNIT / 2), 9, 'read without rolling');
  assert.equal(alg.hit(t, 0, 0, T0 + UNIT + UNIT / 2), 10, 'hit rolls and agrees with read');
  // that window held one event; half a unit after it ends, floor(1 * 0.5) = 0 remains
  assert.equal(alg.read(t, 0, 0, T0 + 2 * UNIT + UNIT / 2), 0);
  assert.equal(alg.read(t, 0, 0, T0 + 2 * UNIT), 0);
  assert.equal(alg.idle(t, 0, T0 + 2 * UNIT), false);
  assert.equal(alg.idle(t, 0, T0 + 3 * UNIT), true);
  assert.equal(alg.read(t, 0, 0, T0 + 3 * UNIT), 0);
});

test('sliding-window: a long silence starts a fresh window', () => {
  const alg = slidingWindow(UNIT);
  const t = table();
  alg.init(t, 0, T0);
  burst(alg, t, T0, 50);
  assert.equal(alg.hit(t, 0, 0, T0 + 10 * UNIT), 1);
});

test('metrics are counted apart', () => {
  for (const alg of [slidingWindow(UNIT), fixedWindow(UNIT)]) {
    const t = table();
    alg.init(t, 0, T0);
    alg.hit(t, 0, 0, T0);
    alg.hit(t, 0, 2, T0);
    alg.hit(t, 0, 2, T0);
    assert.equal(alg.read(t, 0, 0, T0), 1, alg.name);
    assert.equal(alg.read(t, 0, 1, T0), 0, alg.name);
    assert.equal(alg.read(t, 0, 2, T0), 2, alg.name);
  }
});

test('fixed-window: stale rates read as zero, as anvil lookup reports them', () => {
  const alg = fixedWindow(UNIT);
  const t = table();
  alg.init(t, 0, T0);
  burst(alg, t, T0, 5);
  assert.equal(alg.read(t, 0, 0, T0 + 60_999), 5);
  assert.equal(alg.read(t, 0, 0, T0 + 61_000), 0);
  assert.equal(alg.idle(t, 0, T0 + 61_000), true);
});

test('counters clamp instead of wrapping', () => {
  for (const alg of [slidingWindow(UNIT), fixedWindow(UNIT)]) {
    const t = table();
    alg.init(t, 0, T0);
    t.counts[0] = RATE_MAX - 1;
    assert.equal(alg.hit(t, 0, 0, T0), RATE_MAX);
    assert.equal(alg.hit(t, 0, 0, T0), RATE_MAX);
  }
});

test('property: read() is what the next hit() sees, minus that hit', async () => {
  const fc = (await import('fast-check')).default;
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 3 * UNIT }), { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 4 * UNIT }), (gaps, probe) => {
      for (const alg of [slidingWindow(UNIT), fixedWindow(UNIT)]) {
        const t = table();
        alg.init(t, 0, T0);
        let now = T0;
        for (const g of gaps) alg.hit(t, 0, 0, (now += g));
        const at = now + probe;
        const seen = alg.read(t, 0, 0, at);
        assert.equal(alg.hit(t, 0, 0, at), seen + 1, `${alg.name} at +${probe}`);
      }
    }),
  );
});
