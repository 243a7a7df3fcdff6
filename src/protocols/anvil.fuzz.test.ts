import assert from 'node:assert/strict';
import { test } from 'node:test';
import { anvilCodec } from '../../test/fuzz/anvil.js';
import { runCodec } from '../../test/fuzz/harness.js';
import { ANVIL_LIMITS, parseAnvilIdent } from './anvil.js';

// The same properties `npm run fuzz` runs a million times (test/fuzz/anvil.ts).
test('fuzz: anvil requests and replies decode or are refused with a ProtocolError', async () => {
  await runCodec(anvilCodec, { numRuns: 1000 });
});

test('bounded work: the costliest idents the line cap lets through split in well under a millisecond', () => {
  // parseAnvilIdent tries every colon; these make it try the most (an ident line is "ident=" and at most maxLine - 6 bytes).
  const n = ANVIL_LIMITS.maxLine - 'ident='.length;
  const worst = [':'.repeat(n), '1:'.repeat(n / 2), 'a:'.repeat(n / 2 - 4) + '1.2.3.4', '1::'.repeat(n / 3), '[::1]:'.repeat(n / 6)];
  const started = performance.now();
  for (let i = 0; i < 10; i++) for (const ident of worst) parseAnvilIdent(ident);
  const each = (performance.now() - started) / (10 * worst.length);
  assert.ok(each < 5, `${each.toFixed(3)} ms per ident`);
});
