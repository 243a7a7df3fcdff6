import { test } from 'node:test';
import { dovecotHttpCodec as dovecotCodec } from '../../test/fuzz/dovecot-http.js';
import { runCodec } from '../../test/fuzz/harness.js';

// The same property `npm run fuzz` runs a million times (test/fuzz/dovecot-http.ts), over HTTP to a daemon on port 0.
test('fuzz: any request to the Dovecot policy endpoint gets a policy reply or a coded 4xx, never a 5xx', async () => {
  await runCodec(dovecotCodec, { numRuns: 200 });
});
