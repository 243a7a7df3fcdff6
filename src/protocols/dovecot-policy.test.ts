import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { clientAddress } from '../core/ip.js';
import { ProtocolError } from '../errors.js';
import {
  CONTINUE_REPLY,
  DOVECOT_FIELDS,
  DovecotPolicyError,
  REFUSE_STATUS,
  countsAsGuess,
  decodeDovecotCommand,
  decodeDovecotReply,
  decodeDovecotRequest,
  encodeDovecotBody,
  encodeDovecotReply,
  encodeDovecotTarget,
  reportsFailedGuess,
  type DovecotPolicyFields,
  type DovecotPolicyRequest,
} from './dovecot-policy.js';

/** One good login by alice through a PROXY v1 header, as Debian 12's Dovecot 2.3.19.1 sent it (/work/shared/notes/dovecot-2.3.md). */
const ALLOW_23 = '{"device_id":"","login":"alice","protocol":"imap","pwhash":"0dcd","remote":"203.0.113.7","session_id":"Bo5C5upgMdTLAHEH","tls":false}';
const REPORT_23 = '{"device_id":"","login":"alice","protocol":"imap","pwhash":"0dcd","remote":"203.0.113.7","session_id":"Bo5C5upgMdTLAHEH","success":true,"policy_reject":false,"tls":false}';
/**
 * Dovecot 2.4's, built by hand from 2.4.1's auth_policy_create_json and its
 * default attributes (fail_type sorts after device_id): a wrong password
 * for bob from an IPv6 client.
 */
const ALLOW_24 = '{"device_id":"","fail_type":"","login":"bob","protocol":"pop3","pwhash":"0690","remote":"2001:db8::7","session_id":"eAWO5OpgMdQgAQ24AAAAAAAAAAAAAAAH","tls":false}';
const REPORT_24 = '{"device_id":"","fail_type":"credentials","login":"bob","protocol":"pop3","pwhash":"0690","remote":"2001:db8::7","session_id":"eAWO5OpgMdQgAQ24AAAAAAAAAAAAAAAH","success":false,"policy_reject":false,"tls":false}';

/** The fields of a decoded request, those Dovecot did not send left out: what the encoder takes. */
function fieldsOf(r: DovecotPolicyRequest): DovecotPolicyFields {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(DOVECOT_FIELDS) as Array<keyof DovecotPolicyFields>) if (r[k] !== undefined) out[k] = r[k];
  return out as unknown as DovecotPolicyFields;
}

/** Decodes `body` (JSON text) sent to /policy?command=…, then checks it encodes back byte for byte. */
function roundTrip(command: 'allow' | 'report', body: string): DovecotPolicyRequest {
  const r = decodeDovecotRequest(encodeDovecotTarget('/policy', command), JSON.parse(body));
  assert.equal(r.command, command);
  assert.equal(encodeDovecotBody(fieldsOf(r)), body);
  return r;
}

function refused(f: () => unknown, code: string, field: string | null = null): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof DovecotPolicyError && e instanceof ProtocolError, String(e));
    assert.equal(e.code, code, e.message);
    assert.equal(e.field, field, e.message);
    return true;
  });
}

test('Dovecot 2.3\'s allow and report decode, and encode back byte for byte; remote is parsed once', () => {
  const allow = roundTrip('allow', ALLOW_23);
  assert.deepEqual(fieldsOf(allow), { deviceId: '', login: 'alice', protocol: 'imap', pwhash: '0dcd', remote: '203.0.113.7', sessionId: 'Bo5C5upgMdTLAHEH', tls: false });
  assert.equal(allow.failType, undefined, '2.3 sends no fail_type');
  assert.deepEqual(allow.client, { ip: { words: [0, 0, 0xffff, 0xcb007107], family: 4 }, text: '203.0.113.7' });
  const report = roundTrip('report', REPORT_23);
  assert.deepEqual([report.success, report.policyReject, reportsFailedGuess(report)], [true, false, false]);
});

test('Dovecot 2.4\'s, with fail_type, decode and encode back; an IPv6 client keeps its canonical text', () => {
  const allow = roundTrip('allow', ALLOW_24);
  assert.equal(allow.failType, '');
  assert.equal(allow.client?.text, '2001:db8::7');
  const report = roundTrip('report', REPORT_24);
  assert.deepEqual([report.failType, report.success, report.policyReject, reportsFailedGuess(report)], ['credentials', false, false, true]);
});

test('remote: an IPv4-mapped or upper-case address travels canonical; anything else has no client and is kept as sent', () => {
  const client = (remote: string) => decodeDovecotRequest('/p?command=allow', { remote }).client;
  assert.equal(client('::ffff:203.0.113.7')?.text, '203.0.113.7');
  assert.equal(client('::ffff:203.0.113.7')?.ip.family, 4);
  assert.equal(client('2001:DB8:0:0::7')?.text, '2001:db8::7');
  for (const remote of ['', 'localhost', '01.2.3.4', '[::1]', 'fe80::1%lo', '1.2.3.4 ']) {
    const r = decodeDovecotRequest('/p?command=allow', { remote });
    assert.deepEqual([r.client, r.remote], [null, remote]);
  }
});

test('the command: the one `command` parameter of the URL, decoded as a form field, allow or report', () => {
  const good: Array<[string, string]> = [
    ['/policy?command=allow', 'allow'],
    ['/policy?command=report', 'report'],
    ['/policy?k=v&command=allow', 'allow'],
    ['/policy?command=report&k=v', 'report'],
    ['/policy?&command=allow&', 'allow'],
    ['/policy?a=b&&command=allow', 'allow'],
    ['/policy?command=%61llow', 'allow'],
    ['/policy?co%6dmand=report', 'report'],
    ['/policy?command=allow&%ff=1', 'allow'],
    ['/policy?x=command&command=allow', 'allow'],
  ];
  for (const [target, command] of good) assert.equal(decodeDovecotCommand(target), command, target);
  const bad = [
    '/policy',
    '/policy?',
    '/policy?COMMAND=allow',
    '/policy?command[]=allow',
    '/policy?k=v?command=allow',
    '/policy#?command=allow',
    '/policy?command=',
    '/policy?command',
    '/policy?command=ALLOW',
    '/policy?command=allow+',
    '/policy?command=allow%00',
    '/policy?command=%ff',
    '/policy?command=allow;x=1',
    '/policy?command=allow#x',
    '/policy?command=allow&command=report',
    '/policy?command=allow&command=allow',
    '/policy?command=report&command',
  ];
  for (const target of bad) refused(() => decodeDovecotCommand(target), 'DOORMAN_ERR_DOVECOT_COMMAND');
  assert.throws(() => decodeDovecotCommand('/p?command=x&command=allow'), { message: 'unknown command "x"' });
  // What Dovecot builds from auth_policy_server_url, both ways it does.
  for (const url of ['/policy', '/policy?k=v&']) for (const c of ['allow', 'report'] as const) assert.equal(decodeDovecotCommand(encodeDovecotTarget(url, c)), c, url);
  assert.equal(encodeDovecotTarget('/policy?k=v&', 'allow'), '/policy?k=v&command=allow');
});

test('a body that is not a JSON object, or without remote, is refused', () => {
  for (const body of [[], null, 'str', 1, true, [{ remote: '192.0.2.1' }], undefined]) refused(() => decodeDovecotRequest('/p?command=allow', body), 'DOORMAN_ERR_DOVECOT_BODY');
  refused(() => decodeDovecotRequest('/p?command=allow', {}), 'DOORMAN_ERR_DOVECOT_MISSING', 'remote');
  refused(() => decodeDovecotRequest('/p?command=allow', { login: 'alice' }), 'DOORMAN_ERR_DOVECOT_MISSING', 'remote');
  // The command is looked at first.
  refused(() => decodeDovecotRequest('/p', {}), 'DOORMAN_ERR_DOVECOT_COMMAND');
});

test('each field must be of the JSON type Dovecot writes: no coercion of numbers, null, arrays or "true"', () => {
  const base = { remote: '192.0.2.1' };
  for (const [key, spec] of Object.entries(DOVECOT_FIELDS)) {
    const wrong = spec.kind === 'text' ? [1, 0, true, null, ['a'], { a: 1 }] : ['true', 'false', 1, 0, null, [true], {}];
    for (const v of wrong) {
      refused(() => decodeDovecotRequest('/p?command=report', { ...base, [spec.wire]: v }), 'DOORMAN_ERR_DOVECOT_TYPE', spec.wire);
    }
    assert.ok(key in decodeDovecotRequest('/p?command=report', base), `${key} is a key of every request`);
  }
  assert.throws(() => decodeDovecotRequest('/p?command=allow', { remote: 5 }), { message: 'remote: expected a string, got a number' });
  assert.throws(() => decodeDovecotRequest('/p?command=allow', { remote: '192.0.2.1', tls: null }), { message: 'tls: expected a boolean, got null' });
});

test('caps: each text field up to its cap in characters (a surrogate pair is one, as JSON Schema counted), one more is refused, or cut for the fields the client types', () => {
  for (const spec of Object.values(DOVECOT_FIELDS)) {
    if (spec.kind !== 'text') continue;
    const at = (s: string) => decodeDovecotRequest('/p?command=allow', { remote: '192.0.2.1', [spec.wire]: s });
    const n = spec.maxChars;
    assert.equal((at('x'.repeat(n)) as unknown as Record<string, unknown>)[keyOf(spec.wire)], 'x'.repeat(n));
    at('\u00e9'.repeat(n));
    at('\u{1F600}'.repeat(n));
    at('\ud800'.repeat(n));
    for (const over of ['x'.repeat(n + 1), '\u00e9'.repeat(n + 1), '\u{1F600}'.repeat(n + 1), `${'\u{1F600}'.repeat(n)}x`, '\udc00'.repeat(n + 1)]) {
      if ('cut' in spec) {
        const r = at(over);
        const kept = (r as unknown as Record<string, string>)[keyOf(spec.wire)] as string;
        assert.equal([...kept].length, n, `${spec.wire} is cut to ${n} characters`);
        assert.ok(over.startsWith(kept));
        assert.equal(r.loginCut, spec.wire === 'login');
      } else refused(() => at(over), 'DOORMAN_ERR_DOVECOT_TOO_LONG', spec.wire);
    }
  }
  assert.throws(() => decodeDovecotRequest('/p?command=allow', { remote: '1'.repeat(65) }), { message: 'remote: longer than 64 characters' });
});

function keyOf(wire: string): string {
  return Object.entries(DOVECOT_FIELDS).find(([, s]) => s.wire === wire)?.[0] as string;
}

test('keys Doorman does not read are left alone, whatever they hold', () => {
  const r = decodeDovecotRequest('/p?command=allow', { remote: '192.0.2.1', extra: { nested: [1, null] }, 'a/b': null, device: 5, constructor: {} });
  assert.equal(r.remote, '192.0.2.1');
  assert.equal(Object.keys(r).length, Object.keys(DOVECOT_FIELDS).length + 3, 'command, the fields, client and loginCut: nothing else');
});

test('countsAsGuess: no fail_type (2.3), a wrong password or an unknown user count; any other kind does not', () => {
  for (const t of [undefined, 'credentials', 'account']) assert.equal(countsAsGuess(t), true, String(t));
  for (const t of ['', 'internal', 'expired', 'disabled', 'policy', 'Credentials', 'a-kind-from-a-later-release']) assert.equal(countsAsGuess(t), false, t);
});

test('reportsFailedGuess: a failure not refused by the policy server, of a kind that is a guess', () => {
  const remote = '192.0.2.1';
  assert.equal(reportsFailedGuess({ remote, success: false, policyReject: false }), true, '2.3');
  assert.equal(reportsFailedGuess({ remote, success: false }), true, 'policy_reject left out');
  assert.equal(reportsFailedGuess({ remote, success: false, policyReject: false, failType: 'account' }), true);
  assert.equal(reportsFailedGuess({ remote, success: false, policyReject: true, failType: 'policy' }), false, 'counted where it was refused');
  assert.equal(reportsFailedGuess({ remote, success: false, policyReject: true }), false);
  assert.equal(reportsFailedGuess({ remote, success: false, policyReject: false, failType: 'internal' }), false);
  assert.equal(reportsFailedGuess({ remote, success: true, policyReject: false }), false);
  assert.equal(reportsFailedGuess({ remote }), false, 'an allow, or a report without success');
});

test('replies: the same JSON fastify wrote for {status, msg}, status first; read back as Dovecot 2.4 reads them', () => {
  assert.equal(CONTINUE_REPLY, JSON.stringify({ status: 0 }));
  assert.equal(encodeDovecotReply({ status: 0 }), CONTINUE_REPLY);
  assert.equal(encodeDovecotReply({ status: -0 }), CONTINUE_REPLY);
  assert.equal(encodeDovecotReply({ status: 3 }), '{"status":3}');
  const msg = 'country JP of 133.242.0.1 is not in the allow list for imap at auth';
  assert.equal(encodeDovecotReply({ status: REFUSE_STATUS, msg }), JSON.stringify({ status: -1, msg }));
  for (const m of ['"quoted" \\ back', 'line\nbreak\u0000nul', 'j\u00fcrgen \u{1F600}', 'lone \ud800 surrogate', '']) {
    assert.equal(encodeDovecotReply({ status: -1, msg: m }), JSON.stringify({ status: -1, msg: m }), m);
  }
  assert.deepEqual(decodeDovecotReply(encodeDovecotReply({ status: -1, msg })), { status: -1, msg });
  assert.deepEqual(decodeDovecotReply('{"status":-1,"msg":""}'), { status: -1 }, 'an empty msg is none');
  assert.deepEqual(decodeDovecotReply('{"x":[1],"status":2,"y":{}}'), { status: 2 }, 'other keys are skipped');
  for (const status of [0.5, NaN, Infinity, 2 ** 31, -(2 ** 31) - 1]) refused(() => encodeDovecotReply({ status }), 'DOORMAN_ERR_DOVECOT_ENCODE', 'status');
  refused(() => encodeDovecotReply({ status: -1, msg: 5 as unknown as string }), 'DOORMAN_ERR_DOVECOT_ENCODE', 'msg');
});

test('a reply Dovecot would not take is refused by the reader, naming what is wrong', () => {
  refused(() => decodeDovecotReply(''), 'DOORMAN_ERR_DOVECOT_REPLY');
  refused(() => decodeDovecotReply('{"status":0'), 'DOORMAN_ERR_DOVECOT_REPLY');
  refused(() => decodeDovecotReply('[{"status":0}]'), 'DOORMAN_ERR_DOVECOT_REPLY');
  refused(() => decodeDovecotReply('{}'), 'DOORMAN_ERR_DOVECOT_REPLY', 'status');
  for (const s of ['"0"', 'true', 'null', '1.5', '2147483648']) refused(() => decodeDovecotReply(`{"status":${s}}`), 'DOORMAN_ERR_DOVECOT_REPLY', 'status');
  refused(() => decodeDovecotReply('{"status":-1,"msg":5}'), 'DOORMAN_ERR_DOVECOT_REPLY', 'msg');
});

test('the encoder refuses what the decoder would: a missing remote, a wrong type, a value over its cap', () => {
  refused(() => encodeDovecotBody({} as DovecotPolicyFields), 'DOORMAN_ERR_DOVECOT_ENCODE', 'remote');
  refused(() => encodeDovecotBody({ remote: '192.0.2.1', tls: 'no' as unknown as boolean }), 'DOORMAN_ERR_DOVECOT_ENCODE', 'tls');
  refused(() => encodeDovecotBody({ remote: '192.0.2.1', login: 7 as unknown as string }), 'DOORMAN_ERR_DOVECOT_ENCODE', 'login');
  refused(() => encodeDovecotBody({ remote: '192.0.2.1', login: 'x'.repeat(513) }), 'DOORMAN_ERR_DOVECOT_ENCODE', 'login');
  assert.equal(encodeDovecotBody({ remote: '192.0.2.1' }), '{"remote":"192.0.2.1"}');
});

const textArb = (max: number) => fc.oneof(fc.string({ maxLength: Math.min(max, 40) }), fc.string({ unit: 'grapheme', maxLength: Math.min(max, 20) }), fc.constant('x'.repeat(max)));
const fieldsArb: fc.Arbitrary<DovecotPolicyFields> = fc.record(
  {
    deviceId: textArb(DOVECOT_FIELDS.deviceId.maxChars),
    failType: fc.oneof(fc.constantFrom('', 'credentials', 'account', 'internal', 'expired', 'disabled', 'policy'), textArb(32)),
    login: textArb(DOVECOT_FIELDS.login.maxChars),
    protocol: fc.oneof(fc.constantFrom('imap', 'pop3', 'submission', ''), textArb(32)),
    pwhash: fc.oneof(fc.stringMatching(/^[0-9a-f]{4}$/), textArb(128)),
    remote: fc.oneof(fc.ipV4(), fc.ipV6(), textArb(64)),
    sessionId: textArb(128),
    success: fc.boolean(),
    policyReject: fc.boolean(),
    tls: fc.boolean(),
  },
  { requiredKeys: ['remote'] },
);

test('property: fields encode as Dovecot writes them and decode back the same, with any URL and command', () => {
  fc.assert(
    fc.property(fieldsArb, fc.constantFrom('allow', 'report') as fc.Arbitrary<'allow' | 'report'>, fc.constantFrom('/policy', '/p?k=v&', '/a?command_x=1&'), (fields, command, url) => {
      const r = decodeDovecotRequest(encodeDovecotTarget(url, command), JSON.parse(encodeDovecotBody(fields)));
      assert.equal(r.command, command);
      assert.deepEqual(fieldsOf(r), { ...fields });
      assert.deepEqual(r.client, clientAddress(fields.remote));
    }),
    { numRuns: 500 },
  );
});

test('property: any status Dovecot can read and any msg round-trip through the reply', () => {
  fc.assert(
    fc.property(fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), fc.option(fc.string({ unit: 'grapheme', maxLength: 80 }), { nil: undefined }), (status, msg) => {
      const text = encodeDovecotReply(msg === undefined ? { status } : { status, msg });
      assert.equal(text, JSON.stringify(msg === undefined ? { status } : { status, msg }));
      assert.deepEqual(decodeDovecotReply(text), msg === undefined || msg === '' ? { status } : { status, msg });
    }),
    { numRuns: 500 },
  );
});
