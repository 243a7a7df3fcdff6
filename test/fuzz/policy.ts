/**
 * Fuzzing the policy delegation protocol as the policy service reads it:
 * bytes framed by an AttrReader under POLICY_LIMITS, each block through
 * decodePolicyRequest (src/protocols/policy.ts); and the reply encoder,
 * whose action text carries client-supplied strings and must never break
 * the framing.
 */
import fc from 'fast-check';
import { ProtocolError } from '../../src/errors.js';
import { AttrReader } from '../../src/protocols/attr-plain.js';
import { POLICY_LIMITS, POLICY_STATES, decodePolicyRequest, encodePolicyAction, encodePolicyRequest } from '../../src/protocols/policy.js';
import { ATTR_TOKENS, feedAttr, outcomeWord, type AttrOutcome } from './attr.js';
import { codeOf, cutsArb, mutated, randomBytes, unicodeString, wireString, type FuzzCodec } from './harness.js';

/** Attribute names smtpd sends (SMTPD_POLICY_README), and then some it may send one day. */
const KNOWN = ['protocol_state', 'protocol_name', 'helo_name', 'queue_id', 'sender', 'recipient', 'recipient_count', 'client_address', 'client_name', 'reverse_client_name', 'instance', 'sasl_method', 'sasl_username', 'sasl_sender', 'size', 'ccert_subject', 'ccert_issuer', 'ccert_fingerprint', 'encryption_protocol', 'encryption_cipher', 'encryption_keysize', 'etrn_domain', 'stress', 'server_address', 'server_port', 'policy_context', 'client_port', 'compatibility_level', 'mail_version'];
const nameArb = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...KNOWN) }, { weight: 1, arbitrary: wireString(16, /[=\n\0]/g).filter((s) => s.length > 0 && s !== 'request') });
const valueArb = fc.oneof(fc.constantFrom(...POLICY_STATES), fc.ipV4(), fc.ipV6(), fc.emailAddress(), wireString(40, /[\n\0]/g));
/** Requests as attribute records, without `request` (the encoder puts it first). */
const requestArb = fc.dictionary(nameArb, valueArb, { maxKeys: 12 });
/** Records the encoder should refuse now and then: empty names, "=" in a name, LF or NUL anywhere. */
const anyRequestArb = fc.dictionary(
  fc.oneof({ weight: 40, arbitrary: nameArb }, { weight: 1, arbitrary: fc.constantFrom('', '=', 'a=b', 'a\nb', 'a\0') }),
  fc.oneof({ weight: 40, arbitrary: valueArb }, { weight: 1, arbitrary: fc.constantFrom('\n', 'a\0b', '=') }),
  { maxKeys: 12 },
);

/** Requests with lines, attribute counts and sizes around POLICY_LIMITS' caps. */
const nearCapArb = fc.oneof(
  fc.integer({ min: POLICY_LIMITS.maxLine - 4, max: POLICY_LIMITS.maxLine + 2 }).map((n) => Buffer.from(`request=smtpd_access_policy\nsender=${'s'.repeat(n - 7)}\n\n`)),
  fc.integer({ min: POLICY_LIMITS.maxAttrs - 2, max: POLICY_LIMITS.maxAttrs + 1 }).map((n) => Buffer.from(`request=smtpd_access_policy\n${Array.from({ length: n - 1 }, (_, i) => `a${i}=x\n`).join('')}\n`)),
  fc.integer({ min: -64, max: 64 }).map((d) => {
    // Lines of 1000 bytes up to a block of maxBlock + d bytes.
    const total = POLICY_LIMITS.maxBlock + d;
    const lines = ['request=smtpd_access_policy\n'];
    let size = lines[0]!.length + 1;
    for (let i = 0; size < total; i++) {
      const n = Math.min(1000, total - size);
      const line = `v${i}=${'x'.repeat(Math.max(0, n - 3 - String(i).length))}\n`;
      lines.push(line);
      size += line.length;
    }
    return Buffer.from(lines.join('') + '\n');
  }),
);

function decodeRequests(o: AttrOutcome): string | null {
  for (const attrs of o.blocks) {
    try {
      const m = decodePolicyRequest(attrs);
      if (m.get('request') !== 'smtpd_access_policy' || m.size * 2 !== attrs.length) throw new Error('a request decoded without its request or with attributes lost');
    } catch (err) {
      return codeOf(err, ProtocolError);
    }
  }
  return null;
}

function fitsCaps(attrs: Record<string, string>): boolean {
  const lines = Object.entries(attrs).map(([k, v]) => Buffer.byteLength(`${k}=${v}`) + 1);
  return lines.length + 1 <= POLICY_LIMITS.maxAttrs && lines.every((n) => n <= POLICY_LIMITS.maxLine) && lines.reduce((a, b) => a + b, 30) <= POLICY_LIMITS.maxBlock;
}

export const policyCodec: FuzzCodec = {
  name: 'policy',
  open(tally) {
    const stream = fc.array(requestArb, { minLength: 1, maxLength: 3 }).map((rs) => Buffer.from(rs.map(encodePolicyRequest).join('')));
    return {
      properties: [
        {
          name: 'random bytes, any cuts',
          property: fc.property(fc.oneof(randomBytes(600), randomBytes(40).map((b) => Buffer.concat([Buffer.from('request=smtpd_access_policy\n'), b]))), cutsArb, (b, cuts) => {
            const o = feedAttr(b, cuts, POLICY_LIMITS);
            tally.add('random', outcomeWord(o, decodeRequests(o)));
          }),
        },
        {
          name: 'mutated request streams and requests near the caps, any cuts',
          property: fc.property(fc.oneof({ weight: 9, arbitrary: mutated(stream, ATTR_TOKENS) }, { weight: 1, arbitrary: fc.oneof(nearCapArb, mutated(nearCapArb)) }), cutsArb, (b, cuts) => {
            const o = feedAttr(b, cuts, POLICY_LIMITS);
            tally.add('mutated', outcomeWord(o, decodeRequests(o)));
          }),
        },
        {
          name: 'requests the encoder takes decode back; any action is one attribute on one line',
          property: fc.property(anyRequestArb, cutsArb, unicodeString(80), (attrs, cuts, action) => {
            const replies: string[][] = [];
            new AttrReader({ maxLine: 1024, maxAttrs: 1, maxBlock: 1100 }, (a) => void replies.push(a)).write(Buffer.from(encodePolicyAction(action)));
            const sent = Buffer.from(action).toString().replace(/[\r\n\0]/g, ' ');
            if (replies.length !== 1 || replies[0]![0] !== 'action' || replies[0]![1] !== sent) throw new Error(`action ${JSON.stringify(action)} came back as ${JSON.stringify(replies)}`);
            fc.pre(fitsCaps(attrs));
            let encoded: string;
            try {
              encoded = encodePolicyRequest(attrs);
            } catch (err) {
              tally.add('unencodable', codeOf(err, ProtocolError));
              return;
            }
            const o = feedAttr(Buffer.from(encoded), cuts, POLICY_LIMITS);
            const m = o.blocks.length === 1 && o.error === null ? decodePolicyRequest(o.blocks[0]!) : null;
            const want = new Map([['request', 'smtpd_access_policy'], ...Object.entries(attrs)]);
            if (m === null || JSON.stringify([...m]) !== JSON.stringify([...want])) throw new Error(`request ${JSON.stringify(attrs)} did not decode back`);
            tally.add('valid', 'ok');
          }),
        },
      ],
    };
  },
};
