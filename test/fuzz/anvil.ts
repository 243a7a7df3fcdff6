/**
 * Fuzzing the anvil protocol as the anvil service reads it: bytes framed by
 * an AttrReader under ANVIL_LIMITS, each block through decodeAnvilRequest,
 * each ident through parseAnvilIdent (src/protocols/anvil.ts). The client
 * side's decodeAnvilReply is fuzzed too: the `doorman` tools read replies.
 */
import fc from 'fast-check';
import { parseIp, rangeText } from '../../src/core/ip.js';
import { ProtocolError } from '../../src/errors.js';
import {
  ANVIL_LIMITS,
  REPLY_FIELDS,
  decodeAnvilReply,
  decodeAnvilRequest,
  encodeAnvilReply,
  encodeAnvilRequest,
  parseAnvilIdent,
  type AnvilReply,
  type AnvilRequestName,
} from '../../src/protocols/anvil.js';
import { encodeAttrs } from '../../src/protocols/attr-plain.js';
import { ATTR_TOKENS, feedAttr, outcomeWord, type AttrOutcome } from './attr.js';
import { codeOf, cutsArb, mutated, randomBytes, wireString, type FuzzCodec, type Tally } from './harness.js';

const NAMES = Object.keys(REPLY_FIELDS) as AnvilRequestName[];

/** A service as master.cf names it, in the forms anvil idents carry: a name, IPv4:port, [IPv6]:port. */
const serviceArb = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_.-]{1,16}$/).filter((s) => !/^\d+\.\d+\.\d+\.\d+$/.test(s)),
  fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([a, p]) => `${a}:${p}`),
  fc.tuple(fc.ipV6(), fc.integer({ min: 1, max: 65535 })).map(([a, p]) => `[${a}]:${p}`),
);
/** A client as smtpd names it: an address, or from Postfix 3.8 its range (`2001:db8::/84`, `::/84`). */
const rangeArb = fc
  .oneof(fc.ipV4(), fc.ipV6())
  .map((a) => parseIp(a))
  .filter((ip): ip is NonNullable<typeof ip> => ip !== null);
const addressArb = fc.oneof(
  fc.ipV4(),
  fc.ipV6(),
  fc.tuple(rangeArb, fc.nat(128)).map(([ip, n]) => rangeText(ip, n % (ip.family === 4 ? 33 : 129))),
);
const requestNameArb = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...NAMES) }, { weight: 1, arbitrary: wireString(12, /[\n\0]/g) });
/** Idents: mostly well-formed, some any text with colons in it. */
const identArb = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(serviceArb, addressArb).map(([s, a]) => `${s}:${a}`) },
  { weight: 1, arbitrary: fc.array(fc.oneof(wireString(6, /[\n\0]/g), fc.constant(':'), fc.constant('::'), addressArb), { maxLength: 8 }).map((p) => p.join('')) },
);
const requestsArb = fc.array(fc.tuple(requestNameArb, identArb), { minLength: 1, maxLength: 4 });

/** A request stream with lines and blocks around ANVIL_LIMITS' caps. */
const nearCapArb = fc
  .array(fc.integer({ min: ANVIL_LIMITS.maxLine - 8, max: ANVIL_LIMITS.maxLine + 2 }), { minLength: 1, maxLength: 3 })
  .map((lens) => Buffer.from(lens.map((n, i) => `${i === 0 ? 'request' : 'ident'}=${'x'.repeat(Math.max(0, n - (i === 0 ? 8 : 6)))}\n`).join('') + '\n'));

/** Decodes every block the reader handed out; returns the first refusal's code, if any. */
function decodeRequests(o: AttrOutcome): string | null {
  for (const attrs of o.blocks) {
    try {
      const req = decodeAnvilRequest(attrs);
      checkIdent(req.ident);
    } catch (err) {
      return codeOf(err, ProtocolError);
    }
  }
  return null;
}

/** parseAnvilIdent never throws, loses nothing, and finds an address only where there is one. */
function checkIdent(ident: string): void {
  const { service, address } = parseAnvilIdent(ident);
  const whole = service === '' ? address : `${service}:${address}`;
  if (whole !== ident) throw new Error(`ident ${JSON.stringify(ident)} split into ${JSON.stringify([service, address])}`);
}

function requestStream(requests: ReadonlyArray<readonly [string, string]>): Buffer {
  return Buffer.from(requests.map(([r, i]) => encodeAnvilRequest(r, i)).join(''));
}

function fitsCaps(requests: ReadonlyArray<readonly [string, string]>): boolean {
  return requests.every(([r, i]) => Buffer.byteLength(`request=${r}`) <= ANVIL_LIMITS.maxLine && Buffer.byteLength(`ident=${i}`) <= ANVIL_LIMITS.maxLine);
}

function replyProperty(tally: Tally) {
  const values = fc.array(fc.integer({ min: -0x80000000, max: 0x7fffffff }), { minLength: 8, maxLength: 8 });
  const replyBytes = fc.tuple(fc.constantFrom(...NAMES), values).map(([name, v]) => {
    const fields = REPLY_FIELDS[name] as readonly string[];
    return Buffer.from(encodeAttrs(fields.flatMap((f, i) => [f, String(v[i]! >>> 0)])));
  });
  const bytes = fc.oneof(randomBytes(200), mutated(replyBytes, [...ATTR_TOKENS, Buffer.from('4294967295'), Buffer.from('-1')]));
  return fc.property(fc.constantFrom(...NAMES), values, bytes, cutsArb, (name, v, b, cuts) => {
    // A valid reply round-trips, -1 included (sent as 4294967295, read back as a C int).
    const fields = REPLY_FIELDS[name] as readonly string[];
    const want = Object.fromEntries(fields.map((f, i) => [f, v[i]!])) as AnvilReply<typeof name>;
    const back = feedAttr(Buffer.from(encodeAnvilReply(name, want)), cuts, { ...ANVIL_LIMITS, maxAttrs: 16 });
    let decoded: unknown = null;
    try {
      decoded = decodeAnvilReply(name, back.blocks[0] ?? []);
    } catch (err) {
      // Only a lone status of -1 is the failure answer.
      if (!(codeOf(err, ProtocolError) === 'DOORMAN_ERR_ANVIL_FAIL' && fields.length === 1 && v[0] === -1)) throw err;
      decoded = want;
    }
    if (JSON.stringify(decoded) !== JSON.stringify(want)) throw new Error(`reply ${JSON.stringify(want)} decoded as ${JSON.stringify(decoded)}`);
    tally.add('reply-valid', 'ok');
    // Arbitrary bytes read as a reply: decoded or refused with a ProtocolError.
    const o = feedAttr(b, cuts, { ...ANVIL_LIMITS, maxAttrs: 16 });
    let err: string | null = null;
    for (const attrs of o.blocks) {
      try {
        decodeAnvilReply(name, attrs);
      } catch (e) {
        err ??= codeOf(e, ProtocolError);
      }
    }
    tally.add('reply', outcomeWord(o, err));
  });
}

export const anvilCodec: FuzzCodec = {
  name: 'anvil',
  open(tally) {
    return {
      properties: [
        {
          name: 'random bytes, any cuts',
          property: fc.property(randomBytes(600), cutsArb, (b, cuts) => {
            const o = feedAttr(b, cuts, ANVIL_LIMITS);
            tally.add('random', outcomeWord(o, decodeRequests(o)));
          }),
        },
        {
          name: 'mutated request streams, any cuts',
          property: fc.property(fc.oneof(mutated(requestsArb.map(requestStream), [...ATTR_TOKENS, Buffer.from(':')]), mutated(nearCapArb)), cutsArb, (b, cuts) => {
            const o = feedAttr(b, cuts, ANVIL_LIMITS);
            tally.add('mutated', outcomeWord(o, decodeRequests(o)));
          }),
        },
        {
          name: 'valid requests decode back, idents split into service and address',
          property: fc.property(fc.array(fc.tuple(requestNameArb, fc.tuple(serviceArb, addressArb)), { minLength: 1, maxLength: 4 }), cutsArb, (reqs, cuts) => {
            const pairs = reqs.map(([r, [s, a]]) => [r, `${s}:${a}`] as const);
            fc.pre(fitsCaps(pairs));
            const o = feedAttr(requestStream(pairs), cuts, ANVIL_LIMITS);
            if (o.error !== null || o.pending || o.blocks.length !== pairs.length) throw new Error(`valid requests gave ${outcomeWord(o)}`);
            o.blocks.forEach((attrs, i) => {
              const req = decodeAnvilRequest(attrs);
              const [r, [s, a]] = reqs[i]!;
              const id = parseAnvilIdent(req.ident);
              if (req.request !== r || id.service !== s || id.address !== a) {
                throw new Error(`${JSON.stringify([r, s, a])} came back as ${JSON.stringify([req.request, id.service, id.address])}`);
              }
            });
            tally.add('valid', 'ok');
          }),
        },
        { name: 'replies: round trip, and arbitrary replies refused with a ProtocolError', property: replyProperty(tally) },
      ],
    };
  },
};
