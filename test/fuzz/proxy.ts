/**
 * Fuzzing the PROXY protocol v1/v2 parser (src/protocols/proxy-protocol.ts).
 *
 * Every input is fed in chunks and also whole: both must end the same way
 * (the same header and leftover bytes, the same error code, or both still
 * waiting). While the parser waits it may hold no more than its cap
 * (PROXY_HEADER_MAX; 107 bytes for a v1 line), and a header it returns must
 * fit the cap and carry addresses and ports that are what they claim.
 */
import { isIP } from 'node:net';
import fc from 'fast-check';
import { formatIp, parseIp } from '../../src/core/ip.js';
import { ProtocolError } from '../../src/errors.js';
import { PROXY_HEADER_MAX, ProxyHeaderParser, encodeProxyV1, encodeProxyV2, type ProxyHeader } from '../../src/protocols/proxy-protocol.js';
import { chunksOf, codeOf, cutsArb, mutated, randomBytes, type Cuts, type FuzzCodec } from './harness.js';

/** The spec's bound for a v1 line, CRLF included. */
const V1_MAX = 107;
const V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');

type ProxyOutcome = { readonly kind: 'done'; readonly header: ProxyHeader; readonly length: number; readonly rest: Buffer } | { readonly kind: 'error'; readonly code: string } | { readonly kind: 'incomplete' };

/** Feeds `bytes` in the chunks `cuts` makes, checking the caps after every answer. */
function feed(bytes: Buffer, cuts: Cuts): ProxyOutcome {
  const p = new ProxyHeaderParser();
  let fed = 0;
  const v1 = bytes.subarray(0, V1_PREFIX.length).equals(V1_PREFIX);
  for (const chunk of chunksOf(bytes, cuts)) {
    fed += chunk.length;
    let r;
    try {
      r = p.write(chunk);
    } catch (err) {
      return { kind: 'error', code: codeOf(err, ProtocolError) };
    }
    if (!r.done) {
      if (fed > PROXY_HEADER_MAX || (v1 && fed >= V1_MAX)) throw new Error(`parser still waiting after ${fed} bytes (${v1 ? 'v1' : 'v2'})`);
      continue;
    }
    const length = fed - r.rest.length;
    if (length < 0 || length > (v1 ? V1_MAX : PROXY_HEADER_MAX)) throw new Error(`a header of ${length} bytes was accepted`);
    if (!r.rest.equals(bytes.subarray(length, fed))) throw new Error('rest is not the bytes after the header');
    checkHeader(r.header);
    return { kind: 'done', header: r.header, length, rest: bytes.subarray(length) };
  }
  return { kind: 'incomplete' };
}

function checkHeader(h: ProxyHeader): void {
  if (h.version !== 1 && h.version !== 2) throw new Error(`version ${String(h.version)}`);
  if (!h.proxied) {
    if (h.source !== undefined || h.destination !== undefined) throw new Error('an unproxied header with addresses');
    return;
  }
  for (const end of [h.source, h.destination]) {
    if (end === undefined || isIP(end.address) === 0 || !Number.isInteger(end.port) || end.port < 0 || end.port > 65535) {
      throw new Error(`a proxied header with a bad end: ${JSON.stringify(end)}`);
    }
  }
}

function word(o: ProxyOutcome): string {
  if (o.kind === 'error') return o.code;
  if (o.kind === 'incomplete') return 'incomplete';
  return `ok v${o.header.version}${o.header.proxied ? '' : ' unproxied'}`;
}

/** Fed in chunks and fed whole end alike; the chunked outcome is returned. */
function feedBothWays(bytes: Buffer, cuts: Cuts): ProxyOutcome {
  const split = feed(bytes, cuts);
  const whole = feed(bytes, []);
  const same =
    split.kind === whole.kind &&
    (split.kind !== 'error' || split.code === (whole as typeof split).code) &&
    (split.kind !== 'done' || (JSON.stringify(split.header) === JSON.stringify((whole as typeof split).header) && split.length === (whole as typeof split).length));
  if (!same) throw new Error(`chunked: ${word(split)}; whole: ${word(whole)}`);
  return split;
}

const addressArb = fc.oneof(fc.ipV4(), fc.ipV6());
const portArb = fc.integer({ min: 0, max: 65535 });
const endsArb = fc.tuple(addressArb, portArb, addressArb, portArb);
const trailingArb = fc.oneof(fc.constant(Buffer.alloc(0)), fc.constantFrom('EHLO x\r\n', 'A1 LOGIN a b\r\n', 'PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n').map((s) => Buffer.from(s)), randomBytes(40));

/** v2 headers built field by field: any command, family, transport, TLV tail, and sometimes a length that lies. */
const v2Arb = fc
  .record({
    verCmd: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0x20, 0x21) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
    famProto: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) }),
    tlvs: randomBytes(48),
    lie: fc.option(fc.integer({ min: 0, max: 0xffff }), { freq: 8 }),
    seed: fc.integer({ min: 0, max: 255 }),
  })
  .map(({ verCmd, famProto, tlvs, lie, seed }) => {
    const block = ({ 1: 12, 2: 36, 3: 216 } as Record<number, number>)[famProto >> 4] ?? 0;
    const body = Buffer.concat([Buffer.alloc(block, seed), tlvs]);
    const head = Buffer.from([verCmd, famProto, 0, 0]);
    head.writeUInt16BE(lie ?? body.length, 2);
    return Buffer.concat([V2_SIGNATURE, head, body]);
  });

/** Headers at the caps: v2 declaring lengths around PROXY_HEADER_MAX, v1 lines around 107 bytes. */
const nearCapArb = fc.oneof(
  fc.integer({ min: PROXY_HEADER_MAX - 16 - 2, max: PROXY_HEADER_MAX - 16 + 2 }).map((n) => {
    const head = Buffer.from([0x21, 0x11, 0, 0]);
    head.writeUInt16BE(n, 2);
    return Buffer.concat([V2_SIGNATURE, head, Buffer.alloc(n, 7)]);
  }),
  // UNKNOWN takes anything up to the CRLF: lines of exactly n bytes, 107 the longest allowed.
  fc.integer({ min: V1_MAX - 2, max: V1_MAX + 2 }).map((n) => Buffer.from(`PROXY UNKNOWN ${'x'.repeat(n - 16)}\r\n`, 'latin1')),
);

const validArb = fc.oneof(
  endsArb.map(([s, sp, d, dp]) => encodeProxyV1(s, sp, d, dp)),
  endsArb.map(([s, sp, d, dp]) => encodeProxyV2(s, sp, d, dp)),
  fc.constant(Buffer.from('PROXY UNKNOWN\r\n')),
  fc.constant(Buffer.from('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n')),
  v2Arb,
);
const TOKENS = [V2_SIGNATURE, V1_PREFIX, Buffer.from('\r\n'), Buffer.from(' '), Buffer.from('TCP4'), Buffer.from('TCP6'), Buffer.from('UNKNOWN'), Buffer.from([0xff, 0xff])];

/** What a v2 header carries for `a`: IPv6 text is made canonical, IPv4 (in a v4 header) stays as sent. */
function asV2(a: string, six: boolean): string {
  if (!six) return a;
  const p = parseIp(isIP(a) === 4 ? `::ffff:${a}` : a);
  if (p === null) throw new Error(`not an address: ${a}`);
  // As 16 bytes on the wire: a mapped IPv4 address is written as IPv6 words.
  return formatIp({ words: p.words, family: 6 });
}

export const proxyCodec: FuzzCodec = {
  name: 'proxy-protocol',
  open(tally) {
    return {
      properties: [
        {
          name: 'random bytes, bare or behind a signature, any cuts',
          property: fc.property(
            fc.oneof(randomBytes(200), randomBytes(120).map((b) => Buffer.concat([V1_PREFIX, b])), randomBytes(120).map((b) => Buffer.concat([V2_SIGNATURE, b]))),
            cutsArb,
            (b, cuts) => void tally.add('random', word(feedBothWays(b, cuts))),
          ),
        },
        {
          name: 'mutated headers and headers at the caps, any cuts',
          property: fc.property(fc.oneof({ weight: 8, arbitrary: mutated(fc.tuple(validArb, trailingArb).map((p) => Buffer.concat(p)), TOKENS) }, { weight: 1, arbitrary: nearCapArb }, { weight: 1, arbitrary: v2Arb }), cutsArb, (b, cuts) => {
            tally.add('mutated', word(feedBothWays(b, cuts)));
          }),
        },
        {
          name: 'v1 and v2 round-trip, with the bytes after the header kept',
          property: fc.property(endsArb, fc.boolean(), trailingArb, cutsArb, ([src, sport, dst, dport], two, trailing, cuts) => {
            const header = (two ? encodeProxyV2 : encodeProxyV1)(src, sport, dst, dport);
            const o = feedBothWays(Buffer.concat([header, trailing]), cuts);
            const six = isIP(src) === 6 || isIP(dst) === 6;
            const want = (a: string) => (two ? asV2(a, six) : six && isIP(a) === 4 ? `::ffff:${a}` : a);
            if (
              o.kind !== 'done' ||
              o.length !== header.length ||
              !o.rest.equals(trailing) ||
              o.header.source?.address !== want(src) ||
              o.header.destination?.address !== want(dst) ||
              o.header.source.port !== sport ||
              o.header.destination.port !== dport
            ) {
              throw new Error(`${two ? 'v2' : 'v1'} ${src}:${sport} -> ${dst}:${dport} came back as ${JSON.stringify(o.kind === 'done' ? o.header : o)}`);
            }
            tally.add('valid', word(o));
          }),
        },
      ],
    };
  },
};
