import { test } from 'node:test';
import { runCodec } from '../../test/fuzz/harness.js';
import { proxyCodec } from '../../test/fuzz/proxy.js';

// The same properties `npm run fuzz` runs a million times (test/fuzz/proxy.ts).
test('fuzz: PROXY v1/v2 headers parse alike whole or in pieces, within the cap, or are refused with a ProtocolError', async () => {
  await runCodec(proxyCodec, { numRuns: 1000 });
});
