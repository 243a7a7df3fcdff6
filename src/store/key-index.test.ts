import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { INLINE_KEY_BYTES, KeyIndex } from './key-index.js';

test('inline, multi-byte and long keys round-trip', () => {
  const k = new KeyIndex();
  const keys = ['smtp:203.0.113.9', '', 'smtp:2001:db8:1234:5678:9abc:def0:1234:5678', 'x'.repeat(INLINE_KEY_BYTES), 'y'.repeat(INLINE_KEY_BYTES + 1), 'smtp:ünïcødé', 'é'.repeat(30)];
  keys.forEach((key, slot) => k.insert(key, slot));
  keys.forEach((key, slot) => {
    assert.equal(k.get(key), slot, key);
    assert.equal(k.keyOf(slot), key);
    assert.equal(k.used(slot), true);
  });
  assert.equal(k.size, keys.length);
  assert.equal(k.get('smtp:203.0.113.90'), -1);
  k.removeSlot(0);
  k.removeSlot(4);
  assert.equal(k.get(keys[0] as string), -1);
  assert.equal(k.get(keys[4] as string), -1);
  assert.equal(k.used(0), false);
  assert.equal(k.size, keys.length - 2);
  assert.equal(k.get(keys[2] as string), 2);
});

test('property: behaves like a Map under any mix of inserts and removals', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.oneof(fc.string({ maxLength: 6 }), fc.string({ minLength: 45, maxLength: 60 }))), { maxLength: 3000 }),
      (ops) => {
        const k = new KeyIndex();
        const model = new Map<string, number>();
        const free: number[] = [];
        let next = 0;
        for (const [add, key] of ops) {
          if (add && !model.has(key)) {
            const slot = free.pop() ?? next++;
            k.insert(key, slot);
            model.set(key, slot);
          } else if (!add && model.has(key)) {
            const slot = model.get(key) as number;
            k.removeSlot(slot);
            model.delete(key);
            free.push(slot);
          }
        }
        assert.equal(k.size, model.size);
        for (const [key, slot] of model) assert.equal(k.get(key), slot);
        for (const [, key] of ops) if (!model.has(key)) assert.equal(k.get(key), -1);
      },
    ),
    { numRuns: 200 },
  );
});

test('a hundred thousand keys, half removed, all still found through rehashes', () => {
  const k = new KeyIndex();
  const N = 100_000;
  for (let i = 0; i < N; i++) k.insert(`smtp:10.${i >>> 16}.${(i >>> 8) & 255}.${i & 255}`, i);
  for (let i = 0; i < N; i += 2) k.removeSlot(i);
  for (let i = 0; i < N; i++) assert.equal(k.get(`smtp:10.${i >>> 16}.${(i >>> 8) & 255}.${i & 255}`), i % 2 === 0 ? -1 : i);
  assert.equal(k.size, N / 2);
});
