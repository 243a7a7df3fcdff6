import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryLogger } from '../../test/helpers/log.js';
import { MemoryStore } from '../store/memory.js';
import { FakeClock } from './clock.js';
import { Engine } from './engine.js';
import { ctimeShort } from './peaks.js';
import { fixedWindow, slidingWindow } from '../store/rate.js';

function setup(maxEntries = 100, alg = slidingWindow(60_000)) {
  const clock = new FakeClock();
  const { log, lines } = memoryLogger();
  const engine = new Engine(new MemoryStore({ rate: alg, maxEntries }), clock, log, { rateUnitMs: alg.unitMs, statusUpdateMs: 600_000 });
  return { clock, engine, lines };
}

test('peak statistics are logged in anvil wording, then reset', async () => {
  const { clock, engine, lines } = setup();
  const o = engine.createOwner('t');
  engine.connect('smtp:203.0.113.9', o);
  engine.connect('smtp:203.0.113.9', o);
  clock.advance(1000);
  engine.connect('smtp:198.51.100.1', o);
  engine.event('smtp:198.51.100.1', 'mail');
  engine.event('smtp:198.51.100.1', 'rcpt');
  engine.event('smtp:198.51.100.1', 'rcpt');
  engine.event('smtp:198.51.100.1', 'auth');
  engine.event('any:any', 'tlstr');
  const t0 = ctimeShort(clock.now() - 1000);
  const t1 = ctimeShort(clock.now());
  engine.logStatistics();
  const msgs = lines.map((l) => l.msg);
  assert.deepEqual(msgs, [
    `statistics: max connection rate 2/60s for (smtp:203.0.113.9) at ${t0}`,
    `statistics: max connection count 2 for (smtp:203.0.113.9) at ${t0}`,
    `statistics: max message rate 1/60s for (smtp:198.51.100.1) at ${t1}`,
    `statistics: max recipient rate 2/60s for (smtp:198.51.100.1) at ${t1}`,
    `statistics: max auth rate 1/60s for (smtp:198.51.100.1) at ${t1}`,
    `statistics: max tlstrace rate 1/60s for (any:any) at ${t1}`,
    `statistics: max cache size 3 at ${t1}`,
  ]);
  lines.length = 0;
  engine.logStatistics();
  assert.deepEqual(
    lines.map((l) => l.msg),
    [`statistics: max cache size 3 at ${t1}`],
    'peaks reset after a report; the table still holds three keys',
  );
  await engine.stop();
});

test('ctime format pads the day with a space, as ctime(3) does', () => {
  const d = new Date(2026, 10, 2, 9, 5, 7).getTime();
  assert.equal(ctimeShort(d), 'Nov  2 09:05:07');
});

test('closing an owner releases its connections; a lookup of an unknown key is all zero', () => {
  const { engine } = setup();
  const a = engine.createOwner('a');
  engine.connect('k', a);
  engine.connect('k', a);
  assert.equal(engine.closeOwner(a), 2);
  assert.equal((engine.lookup('k') as { count: number }).count, 0);
  assert.deepEqual(engine.lookup('nothing'), { count: 0, rates: { conn: 0, mail: 0, rcpt: 0, newtls: 0, auth: 0, authfail: 0, tlstr: 0 } });
});

test('a full table is reported once per interval with what was evicted or untracked', () => {
  const { clock, engine, lines } = setup(2);
  const o = engine.createOwner('o');
  engine.connect('a', o);
  engine.connect('b', o);
  engine.connect('c', o);
  engine.connect('d', o);
  engine.maintain();
  engine.connect('e', o);
  engine.maintain();
  const warnings = lines.filter((l) => l.level === 40);
  assert.equal(warnings.length, 1);
  assert.equal(warnings[0]?.untracked, 2);
  clock.advance(60_000);
  engine.maintain();
  const again = lines.filter((l) => l.level === 40);
  assert.equal(again.length, 2);
  assert.equal(again[1]?.untracked, 1);
});

test('fixed-window mode gives anvil parity through the engine', () => {
  const { clock, engine } = setup(100, fixedWindow(60_000));
  const o = engine.createOwner('o');
  for (let i = 0; i < 5; i++) engine.connect('k', o);
  clock.advance(61_000);
  assert.equal((engine.connect('k', o) as { rate: number }).rate, 1);
});
