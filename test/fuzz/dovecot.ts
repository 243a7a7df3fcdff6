/**
 * Fuzzing Dovecot's auth policy protocol as the codec reads and writes it
 * (src/protocols/dovecot-policy.ts): request targets and JSON bodies into
 * decodeDovecotRequest, fields through the encoder and back, replies
 * through the encoder and Dovecot's reading of them. The endpoint over
 * HTTP, fastify in front of this codec, is ./dovecot-http.ts.
 *
 * Bodies start as bytes (Dovecot's encodings, mutated, random, near the
 * caps) and reach the codec as JSON.parse makes them, which is what the
 * endpoint's JSON parser hands over; bytes that are no JSON never get that
 * far and are counted as "not-json". A decoded request must be within every
 * cap and type, its command what URLSearchParams finds in the target, its
 * client the parse of its remote; a refusal must be a DovecotPolicyError
 * with a DOORMAN_ERR code.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { clientAddress } from '../../src/core/ip.js';
import {
  DOVECOT_FIELDS,
  DovecotPolicyError,
  decodeDovecotReply,
  decodeDovecotRequest,
  encodeDovecotBody,
  encodeDovecotReply,
  encodeDovecotTarget,
  type DovecotPolicyFields,
  type DovecotPolicyRequest,
} from '../../src/protocols/dovecot-policy.js';
import { codeOf, mutated, randomBytes, unicodeString, type FuzzCodec } from './harness.js';

const REMOTES = ['203.0.113.7', '2001:db8::7', '::ffff:203.0.113.7', '::1', '', ' 1.2.3.4', '01.2.3.4', 'fe80::1%lo', '[::1]', 'localhost'];
/** Text up to a cap, often right at it or one past it, in ASCII or any Unicode (surrogate pairs count one). */
const capped = (max: number) =>
  fc.oneof(
    { weight: 5, arbitrary: fc.string({ maxLength: Math.min(max, 24) }) },
    { weight: 2, arbitrary: unicodeString(Math.min(max, 16)) },
    { weight: 1, arbitrary: fc.tuple(fc.integer({ min: max - 1, max: max + 1 }), fc.constantFrom('x', '\u00e9', '\u{1F600}', '\ud800')).map(([n, c]) => c.repeat(n)) },
  );

const fieldsArb: fc.Arbitrary<DovecotPolicyFields> = fc.record(
  {
    deviceId: capped(DOVECOT_FIELDS.deviceId.maxChars),
    failType: fc.oneof(fc.constantFrom('', 'credentials', 'account', 'internal', 'expired', 'disabled', 'policy'), capped(DOVECOT_FIELDS.failType.maxChars)),
    login: capped(DOVECOT_FIELDS.login.maxChars),
    protocol: fc.oneof(fc.constantFrom('imap', 'pop3', 'submission', ''), capped(DOVECOT_FIELDS.protocol.maxChars)),
    pwhash: fc.oneof(fc.stringMatching(/^[0-9a-f]{4}$/), capped(DOVECOT_FIELDS.pwhash.maxChars)),
    remote: fc.oneof(fc.constantFrom(...REMOTES), fc.ipV4(), fc.ipV6(), capped(DOVECOT_FIELDS.remote.maxChars)),
    sessionId: fc.oneof(fc.constantFrom('s1', 's2'), capped(DOVECOT_FIELDS.sessionId.maxChars)),
    success: fc.boolean(),
    policyReject: fc.boolean(),
    tls: fc.boolean(),
  },
  { requiredKeys: ['remote'] },
);

/** Whether the fields are ones Dovecot could send: each within its cap. */
function withinCaps(f: DovecotPolicyFields): boolean {
  return Object.entries(DOVECOT_FIELDS).every(([k, spec]) => {
    const v = f[k as keyof DovecotPolicyFields];
    return spec.kind !== 'text' || typeof v !== 'string' || [...v].length <= spec.maxChars;
  });
}

/** Bodies of fields within their caps, as Dovecot would write them. */
const encodedArb = fieldsArb.filter(withinCaps).map((f) => Buffer.from(encodeDovecotBody(f)));
const WIRE = [...Object.values(DOVECOT_FIELDS).map((s) => s.wire), '__proto__', 'constructor', 'extra', 'a/b'];
/** Dovecot's keys with values of any JSON type, and keys that are no field. */
const confusedArb = fc
  .tuple(encodedArb, fc.array(fc.tuple(fc.constantFrom(...WIRE), fc.jsonValue({ maxDepth: 2 })), { maxLength: 4 }))
  .map(([body, extra]) => {
    const inner = body.toString().slice(1, -1);
    const more = extra.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v) ?? 'null'}`);
    return Buffer.from(`{${[inner, ...more].filter((s) => s !== '').join(',')}}`);
  });
const TOKENS = ['"', '{', '}', '[', ']', ',', ':', '\\', '\\u0000', '\\ud800', 'null', 'true', '0', '"remote":', '1e999', '-0', '\u00e9'].map((t) => Buffer.from(t));

const bodyArb: fc.Arbitrary<{ kind: string; bytes: Buffer }> = fc.oneof(
  { weight: 4, arbitrary: encodedArb.map((bytes) => ({ kind: 'valid', bytes })) },
  { weight: 3, arbitrary: confusedArb.map((bytes) => ({ kind: 'confused', bytes })) },
  { weight: 3, arbitrary: mutated(encodedArb, TOKENS).map((bytes) => ({ kind: 'mutated', bytes })) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => ({ kind: 'json', bytes: Buffer.from(JSON.stringify(v) ?? 'null') })) },
  { weight: 1, arbitrary: randomBytes(200).map((bytes) => ({ kind: 'random', bytes })) },
);

/** A query parameter: `command` and other names, values of the two commands and anything else, escaped or not. */
const paramArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('command=allow', 'command=report') },
  { weight: 2, arbitrary: fc.constantFrom('command=', 'command', 'COMMAND=allow', 'command[]=allow', 'command=%61llow', 'co%6dmand=report', 'command=allow+', 'command=%ff', 'command=al%', 'command=allow=1', 'k=v', '=allow', '', '%ff=1', 'x=command') },
  { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 })).map(([k, v]) => `${k}=${v}`.replace(/[&#?]/g, '')) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }).map((v) => `command=${encodeURIComponent(v)}`) },
);
const targetArb = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.constantFrom('/policy', '/p'), fc.array(paramArb, { minLength: 0, maxLength: 4 })).map(([path, ps]) => (ps.length === 0 ? path : `${path}?${ps.join('&')}`)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map((s) => `/policy${s}`) },
  { weight: 1, arbitrary: fc.constantFrom('/policy#command=allow', '/policy#x?command=allow', '/policy?command=allow#x', '/policy?k=v?command=allow') },
);

/**
 * The command a target holds, by URLSearchParams: what any form decoder
 * finds, or null when there is not exactly one allow or report. The query
 * is what follows the first "?" or "#", to the end, as a router splits it.
 */
function modelCommand(target: string): 'allow' | 'report' | null {
  let q = target.indexOf('?');
  const hash = target.indexOf('#');
  if (hash !== -1 && (q === -1 || hash < q)) q = hash;
  if (q === -1) return null;
  const all = new URLSearchParams(target.slice(q + 1)).getAll('command');
  return all.length === 1 && (all[0] === 'allow' || all[0] === 'report') ? all[0] : null;
}

function checkDecoded(r: DovecotPolicyRequest, target: string): void {
  assert.equal(r.command, modelCommand(target), `command of ${JSON.stringify(target)}`);
  for (const [key, spec] of Object.entries(DOVECOT_FIELDS)) {
    const v = r[key as keyof DovecotPolicyFields];
    if (v === undefined) {
      assert.ok(!('required' in spec), `${spec.wire} missing`);
      continue;
    }
    if (spec.kind === 'flag') assert.equal(typeof v, 'boolean', spec.wire);
    else {
      assert.equal(typeof v, 'string', spec.wire);
      assert.ok([...(v as string)].length <= spec.maxChars, `${spec.wire} over its cap`);
    }
  }
  assert.deepEqual(r.client, clientAddress(r.remote));
}

const statusArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) },
  { weight: 1, arbitrary: fc.oneof(fc.double(), fc.constantFrom(2 ** 31, -(2 ** 31) - 1, Number.MAX_SAFE_INTEGER, NaN, -0)) },
);
const msgArb = fc.option(fc.oneof(fc.string({ maxLength: 40 }), unicodeString(20), fc.constantFrom('', '\ud800', '"\\\n\u0000')), { nil: undefined });

export const dovecotCodec: FuzzCodec = {
  name: 'dovecot-policy',
  open(tally) {
    return {
      properties: [
        {
          name: 'any target and body: a request within its caps and types, or a DovecotPolicyError',
          property: fc.property(targetArb, bodyArb, (target, { kind, bytes }) => {
            let body: unknown;
            try {
              body = JSON.parse(bytes.toString());
            } catch {
              tally.add(kind, 'not-json');
              return;
            }
            try {
              checkDecoded(decodeDovecotRequest(target, body), target);
              tally.add(kind, 'ok');
            } catch (err) {
              const code = codeOf(err, DovecotPolicyError);
              if (modelCommand(target) === null) assert.equal(code, 'DOORMAN_ERR_DOVECOT_COMMAND', `${code} for ${JSON.stringify(target)}`);
              tally.add(kind, code);
            }
          }),
        },
        {
          name: 'fields Dovecot could send encode and decode back the same, for either command and either URL form',
          property: fc.property(fieldsArb.filter(withinCaps), fc.constantFrom('allow', 'report') as fc.Arbitrary<'allow' | 'report'>, fc.constantFrom('/policy', '/p?k=v&'), (fields, command, url) => {
            const r = decodeDovecotRequest(encodeDovecotTarget(url, command), JSON.parse(encodeDovecotBody(fields)));
            assert.equal(r.command, command);
            for (const k of Object.keys(DOVECOT_FIELDS) as Array<keyof DovecotPolicyFields>) assert.equal(r[k], fields[k], k);
            tally.add('round-trip', 'ok');
          }),
        },
        {
          name: 'fields past a cap: refused by the encoder; when written anyway, the decoder cuts those the client types (login, device_id) and refuses the rest',
          property: fc.property(fieldsArb.filter((f) => !withinCaps(f)), (fields) => {
            assert.throws(() => encodeDovecotBody(fields), (e: unknown) => e instanceof DovecotPolicyError && e.code === 'DOORMAN_ERR_DOVECOT_ENCODE');
            const json: Record<string, unknown> = {};
            let refusedField = false;
            for (const [k, spec] of Object.entries(DOVECOT_FIELDS)) {
              const v = fields[k as keyof DovecotPolicyFields];
              if (v === undefined) continue;
              json[spec.wire] = v;
              if (spec.kind === 'text' && !('cut' in spec) && [...(v as string)].length > spec.maxChars) refusedField = true;
            }
            if (refusedField) {
              assert.throws(() => decodeDovecotRequest('/p?command=allow', json), (e: unknown) => e instanceof DovecotPolicyError && e.code === 'DOORMAN_ERR_DOVECOT_TOO_LONG');
              tally.add('over-cap', 'DOORMAN_ERR_DOVECOT_TOO_LONG');
            } else {
              const r = decodeDovecotRequest('/p?command=allow', json);
              checkDecoded(r, '/p?command=allow');
              assert.equal(r.loginCut, typeof fields.login === 'string' && [...fields.login].length > DOVECOT_FIELDS.login.maxChars);
              tally.add('over-cap', 'cut');
            }
          }),
        },
        {
          name: 'replies: a status Dovecot can read and any msg encode as JSON.stringify would and read back; any other status is refused',
          property: fc.property(statusArb, msgArb, (status, msg) => {
            const reply = msg === undefined ? { status } : { status, msg };
            let text: string;
            try {
              text = encodeDovecotReply(reply);
            } catch (err) {
              const code = codeOf(err, DovecotPolicyError);
              assert.ok(!Number.isInteger(status) || status < -(2 ** 31) || status > 2 ** 31 - 1, `${status} refused`);
              tally.add('reply', code);
              return;
            }
            assert.equal(text, JSON.stringify(reply));
            // -0 is written as 0, and read back so.
            const read = status + 0;
            assert.deepEqual(decodeDovecotReply(text), msg === undefined || msg === '' ? { status: read } : { status: read, msg });
            tally.add('reply', 'ok');
          }),
        },
        {
          name: 'the reply reader: any bytes give a reply Dovecot would act on, or a DovecotPolicyError',
          property: fc.property(
            fc.oneof(
              mutated(fc.tuple(statusArb.filter(Number.isInteger), msgArb).map(([status, msg]) => Buffer.from(JSON.stringify(msg === undefined ? { status } : { status, msg }))), TOKENS),
              randomBytes(64),
            ),
            (bytes) => {
              try {
                const r = decodeDovecotReply(bytes.toString());
                assert.ok(Number.isInteger(r.status) && (r.msg === undefined || (typeof r.msg === 'string' && r.msg !== '')));
                tally.add('reply-text', 'ok');
              } catch (err) {
                tally.add('reply-text', codeOf(err, DovecotPolicyError));
              }
            },
          ),
        },
      ],
    };
  },
};
