import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { spopValueArb } from '../../test/helpers/spop-values.js';
import type { Decision, RefusalCause } from '../core/decision.js';
import { LIMIT_KEYS } from '../core/rules.js';
import type { Screening } from '../core/gate.js';
import { decodeFrame } from './spop.js';
import { decodeAck, encodeAck, type SpopMessage } from './spop-messages.js';
import { SpoeVerdicts, readSpoeRequest, type SpoeAnswer } from './spoe-verdict.js';

const msg = (args: SpopMessage['args']): SpopMessage => ({ name: 'doorman-client', args });
const ALLOW: Decision = { action: 'allow', refusal: null, dryRun: [], exempt: null, country: null };

/** The cause a rule of that shape has (core/decision.ts sets it beside the rule). */
function causeOf(rule: string): RefusalCause {
  if (rule === 'bans') return 'ban';
  if (rule.includes('.countries.')) return 'country';
  const key = LIMIT_KEYS.find((k) => rule.endsWith(`.${k}`));
  return key ?? 'store';
}

function refuse(rule: string, temporary: boolean, retryAfterSec: number, limit?: number, country: string | null = null): Decision {
  return { action: 'refuse', refusal: { temporary, cause: causeOf(rule), rule, reason: 'why', retryAfterSec, ...(limit === undefined ? {} : { limit }) }, dryRun: [], exempt: null, country };
}

const screening = (decision: Decision, connLimit: number | null = null): Screening => ({ decision, address: '192.0.2.7', connLimit });

/** The variables an ACK carrying `a` sets, as HAProxy reads it back. */
function vars(a: SpoeAnswer): Record<string, unknown> {
  const ack = decodeAck(decodeFrame(encodeAck(7, 1, a.payload, 16380).subarray(4)));
  return Object.fromEntries(
    ack.actions.map((a) => {
      assert.equal(a.scope, 'sess');
      assert.equal(a.action, 'set-var');
      return [a.name, a.action === 'set-var' && 'value' in a.value ? a.value.value : null];
    }),
  );
}

test('the request: src as IPV4, IPV6 or STRING, the service, an optional dst_port of any integer type', () => {
  const ok = readSpoeRequest(msg([{ name: 'src', value: { type: 'ipv4', value: '192.0.2.7' } }, { name: 'service', value: { type: 'string', value: 'imap' } }, { name: 'dst_port', value: { type: 'int64', value: 143n } }]));
  assert.deepEqual(ok, { ok: true, request: { address: '192.0.2.7', service: 'imap', dstPort: 143 } });
  const v6 = readSpoeRequest(msg([{ name: 'service', value: { type: 'string', value: 'smtp' } }, { name: 'src', value: { type: 'ipv6', value: '2001:db8::1' } }]));
  assert.deepEqual(v6, { ok: true, request: { address: '2001:db8::1', service: 'smtp', dstPort: null } });
  const odd = readSpoeRequest(msg([{ name: 'src', value: { type: 'string', value: '192.0.2.9' } }, { name: 'service', value: { type: 'string', value: 'pop3' } }, { name: 'dst_port', value: { type: 'int64', value: 70000n } }]));
  assert.deepEqual(odd, { ok: true, request: { address: '192.0.2.9', service: 'pop3', dstPort: null } }, 'a port out of range is no port');
});

test('a message without a usable src or service says why, never throws', () => {
  const cases: Array<[SpopMessage['args'], RegExp]> = [
    [[{ name: 'service', value: { type: 'string', value: 'imap' } }], /argument src is missing, not an address/],
    [[{ name: 'src', value: { type: 'null' } }, { name: 'service', value: { type: 'string', value: 'imap' } }], /argument src is of type null/],
    [[{ name: 'src', value: { type: 'ipv4', value: '192.0.2.7' } }], /argument service is missing/],
    [[{ name: 'src', value: { type: 'ipv4', value: '192.0.2.7' } }, { name: 'service', value: { type: 'string', value: 'two words' } }], /argument service is "two words", not a service name/],
    [[{ name: 'src', value: { type: 'ipv4', value: '192.0.2.7' } }, { name: 'service', value: { type: 'int32', value: 3 } }], /argument service is of type int32/],
  ];
  for (const [args, why] of cases) {
    const r = readSpoeRequest(msg(args));
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.why, why);
  }
  fc.assert(
    fc.property(fc.array(fc.record({ name: fc.constantFrom('src', 'service', 'dst_port', ''), value: spopValueArb }), { maxLength: 5 }), (args) => {
      readSpoeRequest(msg(args));
    }),
  );
});

test('an allowed client: the verdict, and the country when known', () => {
  assert.deepEqual(vars(new SpoeVerdicts('mx.test').answer(screening(ALLOW), 'imap')), { verdict: 'allow' });
  assert.deepEqual(vars(new SpoeVerdicts('mx.test').answer(screening({ ...ALLOW, country: 'DE' }), 'imap')), { verdict: 'allow', country: 'DE' });
});

test('an allowed client under a per-address limit: the limit and the line for a client over it, for HAProxy to count', () => {
  const v = new SpoeVerdicts('mx.test');
  assert.deepEqual(vars(v.answer(screening(ALLOW, 5), 'imap')), {
    verdict: 'allow',
    conn_limit: 5,
    conn_text: '* BYE [UNAVAILABLE] Too many connections from your address (at most 5 at once), try again later',
  });
  assert.deepEqual(vars(v.answer(screening(ALLOW, 5), 'smtp')).conn_text, '421 4.7.0 mx.test Too many connections from your address, try again later');
  assert.deepEqual(vars(v.answer(screening(ALLOW, 5), 'imaps')), { verdict: 'allow', conn_limit: 5 }, 'implicit TLS: a close, no line');
});

test('a refusal: the verdict, the line in the protocol\'s words, the rule, the retry-after and the country', () => {
  const v = new SpoeVerdicts('mx.test');
  assert.deepEqual(vars(v.answer(screening(refuse('bans', true, 3600, undefined, 'US')), 'smtp')), {
    verdict: 'refuse',
    text: '421 4.7.0 mx.test Your address is temporarily blocked, try again later',
    rule: 'bans',
    retry_after: 3600,
    country: 'US',
  });
  assert.equal(vars(v.answer(screening(refuse('services.imap.countries.connect', false, 0, undefined, 'KP')), 'imap')).text, '* BYE [CONTACTADMIN] Access from your country is not allowed');
  assert.equal(vars(v.answer(screening(refuse('services.smtp.countries.connect', false, 0)), 'smtp')).text, '521 5.7.1 mx.test Access from your country is not allowed');
  assert.equal(
    vars(v.answer(screening(refuse('services.pop3.limits.connection_rate', true, 60, 30)), 'pop3')).text,
    '-ERR [SYS/TEMP] Too many connections from your address in a short time (at most 30 a minute), try again later',
  );
  assert.equal(vars(v.answer(screening(refuse('services.imap.on_store_failure', true, 60)), 'imap')).text, '* BYE [UNAVAILABLE] Service temporarily unavailable, try again later');
  const tls = vars(v.answer(screening(refuse('bans', true, 10)), 'pop3s'));
  assert.deepEqual([tls.verdict, tls.text, tls.rule], ['refuse', undefined, 'bans'], 'implicit TLS: only a close');
});

test('an allowed client\'s payload is encoded once per country, protocol and limit; a refusal\'s reuses its action objects', () => {
  const v = new SpoeVerdicts('mx.test');
  assert.equal(v.answer(screening(ALLOW), 'smtp'), SpoeVerdicts.ALLOW);
  const de = v.answer(screening({ ...ALLOW, country: 'DE' }, 5), 'imap');
  assert.equal(v.answer(screening({ ...ALLOW, country: 'DE' }, 5), 'imap'), de, 'the same bytes');
  assert.notEqual(v.answer(screening({ ...ALLOW, country: 'DE' }, 5), 'pop3'), de);
  assert.notEqual(v.answer(screening({ ...ALLOW, country: 'FR' }, 5), 'imap'), de);
  assert.equal(de.refuse, false);
  const a = v.refusal('US', { temporary: true, cause: 'ban', rule: 'bans', reason: 'x', retryAfterSec: 60 }, 'smtp');
  const b = v.refusal('US', { temporary: true, cause: 'ban', rule: 'bans', reason: 'x', retryAfterSec: 59 }, 'smtp');
  assert.equal(a[1], b[1], 'the line');
  assert.equal(a[2], b[2], 'the rule');
  assert.equal(a[4], b[4], 'the country');
  assert.equal(v.answer(screening(refuse('bans', true, 60)), 'smtp').refuse, true);
  assert.deepEqual(vars(SpoeVerdicts.REFUSE_ONLY), { verdict: 'refuse' });
});

test('a service with refusal texts of its own (its guard proxy\'s proxy.texts) gets them through SPOE too; the others keep the built-in words', () => {
  const own = { too_many: 'No more than {limit} at once here', too_many_network: null, rate: null, banned: 'Blocked here, write to postmaster@example.org', country: null, unavailable: null };
  const v = new SpoeVerdicts('mx.test', new Map([['imap', own]]));
  // The built-in words first, for a service of the same protocol: what is cached for one must not leak to the other.
  assert.equal(vars(v.answer(screening(refuse('bans', true, 60)), 'imap', 'imap-other')).text, '* BYE [UNAVAILABLE] Your address is temporarily blocked, try again later');
  assert.equal(vars(v.answer(screening(refuse('bans', true, 60)), 'imap', 'imap')).text, '* BYE [UNAVAILABLE] Blocked here, write to postmaster@example.org');
  assert.equal(vars(v.answer(screening(refuse('bans', true, 60)), 'imap', 'imap-other')).text, '* BYE [UNAVAILABLE] Your address is temporarily blocked, try again later');
  // A kind the service left at null keeps the built-in words.
  assert.equal(vars(v.answer(screening(refuse('services.imap.countries.connect', false, 0)), 'imap', 'imap')).text, '* BYE [CONTACTADMIN] Access from your country is not allowed');
  // The line handed over with a per-address limit, {limit} filled in.
  assert.equal(vars(v.answer(screening(ALLOW, 3), 'imap', 'imap-other')).conn_text, '* BYE [UNAVAILABLE] Too many connections from your address (at most 3 at once), try again later');
  assert.equal(vars(v.answer(screening(ALLOW, 3), 'imap', 'imap')).conn_text, '* BYE [UNAVAILABLE] No more than 3 at once here');
  assert.equal(vars(v.answer(screening(ALLOW, 3), 'imap', 'imap-other')).conn_text, '* BYE [UNAVAILABLE] Too many connections from your address (at most 3 at once), try again later');
  // An allowed client without a limit has no line, so its answer is shared.
  assert.equal(v.answer(screening({ ...ALLOW, country: 'DE' }), 'imap', 'imap'), v.answer(screening({ ...ALLOW, country: 'DE' }), 'imap', 'imap-other'));
});
