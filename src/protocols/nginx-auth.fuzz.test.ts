import { test } from 'node:test';
import { runCodec } from '../../test/fuzz/harness.js';
import { nginxAuthCodec } from '../../test/fuzz/nginx-auth.js';

// The same properties `npm run fuzz` runs a million times (test/fuzz/nginx-auth.ts).
test('fuzz: nginx auth_http requests decode within their caps or are refused with a ProtocolError; encoded ones decode back; refusals reach the client as one line in its words', async () => {
  await runCodec(nginxAuthCodec, { numRuns: 2000 });
});
