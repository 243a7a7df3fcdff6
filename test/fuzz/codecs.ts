/** Every fuzzed codec, in the order `npm run fuzz` runs them. */
import { anvilCodec } from './anvil.js';
import { attrPlainCodec } from './attr.js';
import { configCodec } from './config.js';
import { crowdsecCodec } from './crowdsec.js';
import { dovecotHttpCodec } from './dovecot-http.js';
import { dovecotCodec } from './dovecot.js';
import type { FuzzCodec } from './harness.js';
import { nginxAuthCodec } from './nginx-auth.js';
import { policyCodec } from './policy.js';
import { proxyCodec } from './proxy.js';
import { spopCodec } from './spop.js';

export const CODECS: readonly FuzzCodec[] = [attrPlainCodec, anvilCodec, policyCodec, proxyCodec, spopCodec, nginxAuthCodec, dovecotCodec, dovecotHttpCodec, configCodec, crowdsecCodec];
