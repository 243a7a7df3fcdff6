import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ruleInput, withBlocked, withUnblocked } from './overlay.js';

test('blocking a country: a new deny list, added to a deny list, taken from an allow list, never an empty allow list', () => {
  assert.deepEqual(withBlocked(null, 'KP'), { deny: ['KP'] });
  assert.deepEqual(withBlocked({ deny: ['KP'], mode: 'enforce' }, 'RU'), { deny: ['KP', 'RU'], mode: 'enforce' });
  assert.deepEqual(withBlocked({ deny: ['KP'] }, 'KP'), { deny: ['KP'] }, 'once');
  assert.deepEqual(withBlocked({ allow: ['DE', 'FR'] }, 'FR'), { allow: ['DE'] });
  assert.equal(withBlocked({ allow: ['DE'] }, 'DE'), 'every-country');
});

test('unblocking a country: taken from a deny list (no rule once empty), added to an allow list', () => {
  assert.equal(withUnblocked(null, 'KP'), null);
  assert.deepEqual(withUnblocked({ deny: ['KP', 'RU'] }, 'KP'), { deny: ['RU'] });
  assert.equal(withUnblocked({ deny: ['KP'] }, 'KP'), null);
  assert.deepEqual(withUnblocked({ allow: ['DE'], mode: 'dry-run' }, 'FR'), { allow: ['DE', 'FR'], mode: 'dry-run' });
});

test('a compiled rule reads back as its input, codes sorted', () => {
  assert.equal(ruleInput(null), null);
  assert.deepEqual(ruleInput({ kind: 'deny', codes: new Set(['RU', 'KP']), dryRun: true, key: 'k' }), { deny: ['KP', 'RU'], mode: 'dry-run' });
  assert.deepEqual(ruleInput({ kind: 'allow', codes: new Set(['DE']), dryRun: false, key: 'k' }), { allow: ['DE'], mode: 'enforce' });
});
