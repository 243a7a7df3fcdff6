import { test } from 'node:test';
import { crowdsecCodec } from '../../test/fuzz/crowdsec.js';
import { runCodec } from '../../test/fuzz/harness.js';

// The same properties `npm run fuzz` runs a million times (test/fuzz/crowdsec.ts).
test('fuzz: any bytes from the Local API are refused whole or read into decisions Doorman can hold', async () => {
  await runCodec(crowdsecCodec, { numRuns: 1200 });
});
