import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { RefusalTracker } from './refusal-tracker.js';

const MIN = 60_000;

test('refusal tracker: counts per address over the last hour, most first', () => {
  const clock = new FakeClock();
  const t = new RefusalTracker(clock);
  for (let i = 0; i < 3; i++) t.record('192.0.2.1', 'RU');
  t.record('192.0.2.2', null);
  t.record('192.0.2.3', 'DE');
  assert.deepEqual(t.top(10), [
    { address: '192.0.2.1', country: 'RU', count: 3 },
    { address: '192.0.2.2', country: null, count: 1 },
    { address: '192.0.2.3', country: 'DE', count: 1 },
  ]);
  assert.deepEqual(t.top(1).map((x) => x.address), ['192.0.2.1']);
  clock.advance(59 * MIN);
  t.record('192.0.2.1', 'RU');
  assert.equal(t.top(1)[0]?.count, 4, 'the first three are still inside the hour');
  clock.advance(2 * MIN);
  assert.deepEqual(t.top(10), [{ address: '192.0.2.1', country: 'RU', count: 1 }], 'the window slid past the first minute');
  assert.equal(t.size, 1, 'addresses quiet for an hour are forgotten');
  clock.advance(60 * MIN);
  assert.deepEqual(t.top(10), []);
  assert.equal(t.size, 0);
});

test('refusal tracker: bounded; the addresses refused longest ago go first', () => {
  const clock = new FakeClock();
  const t = new RefusalTracker(clock, { maxAddresses: 10 });
  for (let i = 1; i <= 10; i++) {
    t.record(`10.0.0.${i}`, null);
    clock.advance(1000);
  }
  t.record('10.0.0.1', null); // refused again: now the freshest
  t.record('10.0.0.11', null); // one too many: down to nine tenths, the stalest first
  assert.equal(t.size, 9);
  const kept = t.top(20).map((x) => x.address);
  assert.ok(!kept.includes('10.0.0.2') && !kept.includes('10.0.0.3'), 'the stalest are dropped');
  assert.deepEqual(kept.slice(0, 1), ['10.0.0.1']);
  assert.ok(kept.includes('10.0.0.11'));
});

test('refusal tracker: a flood of distinct addresses keeps memory bounded', () => {
  const clock = new FakeClock();
  const t = new RefusalTracker(clock);
  for (let i = 0; i < 50_000; i++) {
    t.record(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, null);
    if (i % 1000 === 0) clock.advance(1000);
  }
  assert.ok(t.size <= 10_000 && t.size >= 9_000, `kept ${t.size}`);
  assert.equal(t.top(100).length, 100);
});
