import { test } from 'node:test';
import { attrPlainCodec } from '../../test/fuzz/attr.js';
import { runCodec } from '../../test/fuzz/harness.js';

// The same properties `npm run fuzz` runs a million times (test/fuzz/attr.ts).
test('fuzz: the attribute reader agrees with the grammar model at every cut and never holds more than its caps', async () => {
  await runCodec(attrPlainCodec, { numRuns: 1000 });
});
