import { test } from 'node:test';
import { dovecotCodec } from '../../test/fuzz/dovecot.js';
import { runCodec } from '../../test/fuzz/harness.js';

// The same properties `npm run fuzz` runs a million times (test/fuzz/dovecot.ts).
test('fuzz: Dovecot policy requests decode within their caps and types or are refused with a DovecotPolicyError; fields and replies round-trip', async () => {
  await runCodec(dovecotCodec, { numRuns: 2000 });
});
