import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { slidingWindow } from './rate.js';
import { MemoryStore } from './memory.js';

const UNIT = 60_000;
const T0 = Date.UTC(2026, 10, 22, 10, 0, 0);
const store = (maxEntries = 1000) => new MemoryStore({ rate: slidingWindow(UNIT), maxEntries });

test('one owner may hold many connections of many keys (anvil holds one)', () => {
  const s = store();
  const o = s.createOwner('anvil');
  for (let i = 1; i <= 200; i++) assert.equal(s.acquire('smtp:192.0.2.1', o, T0).count, i);
  s.acquire('smtp:192.0.2.2', o, T0);
  assert.equal(o.held, 201);
  assert.equal(s.read('smtp:192.0.2.1', T0)?.count, 200);
  assert.equal(s.releaseOwner(o, T0), 201);
  assert.equal(s.read('smtp:192.0.2.1', T0)?.count, 0);
  assert.equal(s.read('smtp:192.0.2.2', T0)?.count, 0);
  assert.equal(o.held, 0);
});

test('release only gives back what the owner holds; counts never go negative', () => {
  const s = store();
  const a = s.createOwner('a');
  const b = s.createOwner('b');
  s.acquire('k', a, T0);
  assert.equal(s.release('k', b, T0), 1, 'b holds nothing of k');
  assert.equal(s.release('k', a, T0), 0);
  assert.equal(s.release('k', a, T0), 0, 'a second release is a no-op');
  assert.equal(s.release('unknown', a, T0), 0);
  assert.equal(s.read('k', T0)?.count, 0);
});

test('an event from a holder that never connected registers its connection', () => {
  const s = store();
  const o = s.createOwner('smtpd');
  const r = s.hit('smtp:192.0.2.9', 'mail', T0, o);
  assert.deepEqual(r, { rate: 1, count: 1, tracked: true });
  assert.equal(s.hit('smtp:192.0.2.9', 'mail', T0, o).count, 1, 'only once');
  assert.equal(s.read('smtp:192.0.2.9', T0)?.rates.conn, 1);
  assert.equal(s.release('smtp:192.0.2.9', o, T0), 0);
  assert.equal(s.hit('x', 'rcpt', T0).count, 0, 'without a holder nothing is registered');
});

test('sweep drops only keys with no connections whose rates have decayed', () => {
  const s = store();
  const o = s.createOwner('o');
  s.acquire('live', o, T0);
  s.acquire('gone', o, T0);
  s.release('gone', o, T0);
  s.hit('events', 'rcpt', T0);
  s.sweep(T0 + UNIT);
  assert.equal(s.stats().entries, 3, 'rates still counting');
  s.sweep(T0 + 2 * UNIT);
  assert.equal(s.stats().entries, 1);
  assert.equal(s.read('gone', T0 + 2 * UNIT), null);
  assert.equal(s.read('live', T0 + 2 * UNIT)?.count, 1);
});

test('a full table evicts an idle key, never a live one, else answers untracked', () => {
  const s = store(3);
  const o = s.createOwner('o');
  s.acquire('a', o, T0);
  s.acquire('b', o, T0);
  s.hit('idle', 'mail', T0);
  const r = s.acquire('d', o, T0);
  assert.equal(r.tracked, true);
  assert.equal(s.read('idle', T0), null, 'the idle key made room');
  assert.deepEqual(s.stats(), { entries: 3, evicted: 1, untracked: 0 });
  const u = s.acquire('e', o, T0);
  assert.deepEqual(u, { count: 1, rate: 1, tracked: false });
  assert.equal(s.stats().untracked, 1);
  assert.equal(o.held, 3, 'an untracked connection is not held');
  assert.equal(s.read('a', T0)?.count, 1);
});

test('slots are reused after sweeping, and a reused slot starts clean', () => {
  const s = store(2);
  const o = s.createOwner('o');
  for (let i = 0; i < 5; i++) s.hit('old', 'rcpt', T0);
  s.sweep(T0 + 3 * UNIT);
  s.acquire('new', o, T0 + 3 * UNIT);
  const snap = s.read('new', T0 + 3 * UNIT);
  assert.equal(snap?.rates.rcpt, 0);
  assert.equal(snap?.rates.conn, 1);
});

test('property: after any interleaving, closing every owner leaves every count at zero', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.constantFrom('acquire', 'release', 'hit', 'close'), fc.nat(3), fc.nat(5)), { maxLength: 200 }),
      (ops) => {
        const s = store(4);
        const owners = [0, 1, 2, 3].map((i) => s.createOwner(`o${i}`));
        const keys = ['k0', 'k1', 'k2', 'k3', 'k4', 'k5'];
        let now = T0;
        for (const [op, oi, ki] of ops) {
          now += 1000;
          const o = owners[oi]!;
          const k = keys[ki]!;
          if (op === 'acquire') s.acquire(k, o, now);
          else if (op === 'release') s.release(k, o, now);
          else if (op === 'hit') s.hit(k, 'mail', now, o);
          else s.releaseOwner(o, now);
          for (const key of keys) assert.ok((s.read(key, now)?.count ?? 0) >= 0);
        }
        const held = owners.reduce((n, o) => n + o.held, 0);
        const counted = keys.reduce((n, k) => n + (s.read(k, now)?.count ?? 0), 0);
        assert.equal(counted, held, 'counts equal what owners hold');
        for (const o of owners) s.releaseOwner(o, now);
        for (const k of keys) assert.equal(s.read(k, now)?.count ?? 0, 0);
      },
    ),
  );
});

test('top: the busiest keys under a prefix, by count or a rate', () => {
  const s = new MemoryStore({ rate: slidingWindow(60_000), maxEntries: 100 });
  const o = s.createOwner('t');
  for (let i = 0; i < 3; i++) s.acquire('smtp:192.0.2.1', o, 0);
  s.acquire('smtp:192.0.2.2', o, 0);
  s.acquire('imap:192.0.2.3', o, 0);
  s.acquire('imap:192.0.2.3', o, 0);
  for (let i = 0; i < 5; i++) s.hit('smtp:192.0.2.2', 'rcpt', 0);
  const r = s.top('smtp:', 'count', 10, 1, 1000);
  assert.deepEqual(r.items.map((x) => [x.key, x.snapshot.count]), [['smtp:192.0.2.1', 3], ['smtp:192.0.2.2', 1]]);
  assert.deepEqual([r.scanned, r.complete], [3, true]);
  assert.deepEqual(s.top('', 'count', 1, 1, 1000).items.map((x) => x.key), ['smtp:192.0.2.1']);
  assert.deepEqual(s.top('', 'rcpt', 5, 1, 1000).items.map((x) => [x.key, x.snapshot.rates.rcpt]), [['smtp:192.0.2.2', 5]]);
  assert.equal(s.top('', 'count', 10, 1, 2).complete, false, 'a capped scan says so');
});
