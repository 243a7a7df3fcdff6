import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCodec } from '../../test/fuzz/harness.js';
import { policyCodec } from '../../test/fuzz/policy.js';
import { ProtocolError } from '../errors.js';
import { encodePolicyRequest } from './policy.js';

// The same properties `npm run fuzz` runs a million times (test/fuzz/policy.ts).
test('fuzz: policy requests decode or are refused with a ProtocolError; encoded ones decode back', async () => {
  await runCodec(policyCodec, { numRuns: 1000 });
});

test('regression (found by fuzzing): an empty attribute name is refused by the encoder, not sent as "=value"', () => {
  assert.throws(
    () => encodePolicyRequest({ '': 'x' }),
    (e: unknown) => e instanceof ProtocolError && e.code === 'DOORMAN_ERR_ATTR_ENCODE',
  );
});
