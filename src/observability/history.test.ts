import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../core/clock.js';
import { HistorySampler } from './history.js';

test('history: one point a step, every configured service present, the last 60 kept', () => {
  const clock = new FakeClock(Date.UTC(2026, 10, 22, 10, 0, 0));
  let live: Record<string, number> = {};
  const h = new HistorySampler(clock, () => live, ['imap', 'smtp']);
  assert.equal(h.stepMs, 60_000);
  h.sample();
  live = { imap: 3 };
  clock.advance(60_000);
  h.sample();
  assert.deepEqual(h.points(), [
    { at: Date.UTC(2026, 10, 22, 10, 0, 0), services: { imap: 0, smtp: 0 } },
    { at: Date.UTC(2026, 10, 22, 10, 1, 0), services: { imap: 3, smtp: 0 } },
  ]);
  for (let i = 0; i < 100; i++) {
    clock.advance(60_000);
    live = { imap: i };
    h.sample();
  }
  const p = h.points();
  assert.equal(p.length, 60);
  assert.equal(p[59]?.services.imap, 99);
  assert.equal(p[0]?.services.imap, 40);
  assert.equal((p[59]?.at ?? 0) - (p[0]?.at ?? 0), 59 * 60_000);
});

test('history: start samples at once; stop ends the timer', () => {
  const clock = new FakeClock();
  const h = new HistorySampler(clock, () => ({ pop3: 1 }), [], { stepMs: 10, points: 5 });
  h.start();
  h.start();
  assert.deepEqual(h.points().map((x) => x.services), [{ pop3: 1 }], 'started once, one point');
  h.stop();
});
