import { test } from 'node:test';
import { runCodec } from '../../test/fuzz/harness.js';
import { spopCodec } from '../../test/fuzz/spop.js';

// The same properties `npm run fuzz` runs a million times (test/fuzz/spop.ts).
test('fuzz: SPOP sessions give the same events whole or in pieces, never throw, frame as the spec says, and round-trip', async () => {
  await runCodec(spopCodec, { numRuns: 1000 });
});
