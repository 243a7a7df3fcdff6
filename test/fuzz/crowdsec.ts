/**
 * Fuzzing the reading of CrowdSec's decisions stream (src/crowdsec/stream.ts
 * and go-duration.ts): whatever bytes the Local API sends, they are refused
 * whole (not JSON, or not {new, deleted} lists: StreamShapeError) or read
 * into decisions that each name an address or network Doorman can ban, for
 * a positive whole number of milliseconds, with every field within its cap,
 * and counted: taken + skipped = what was sent. Answers written as the Local
 * API writes them are read back exactly.
 */
import fc from 'fast-check';
import { parseNetwork } from '../../src/core/networks.js';
import { formatGoDuration } from '../../src/crowdsec/go-duration.js';
import { readStreamAnswer, StreamShapeError, type StreamAnswer } from '../../src/crowdsec/stream.js';
import { mutated, randomBytes, unicodeString, type FuzzCodec, type Tally } from './harness.js';

interface Wire {
  id: number;
  origin: string;
  type: string;
  scope: string;
  value: string;
  duration: string;
  scenario: string;
}

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
const ipv6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((w) => w.map((x) => x.toString(16)).join(':'));
const validArb: fc.Arbitrary<Wire & { ms: number }> = fc
  .record({
    id: fc.nat(2 ** 31),
    origin: fc.constantFrom('crowdsec', 'cscli', 'CAPI', 'lists'),
    range: fc.boolean(),
    v6: fc.boolean(),
    addr4: ipv4,
    addr6: ipv6,
    len: fc.nat(128),
    ms: fc.integer({ min: 1, max: 400 * 86_400_000 }),
    sub: fc.nat(999_999),
    scenario: unicodeString(80),
  })
  .map((r) => {
    const addr = r.v6 ? r.addr6 : r.addr4;
    const value = r.range ? `${addr}/${r.len % (r.v6 ? 129 : 33)}` : addr;
    // Go writes the nanoseconds too: "3h59m58.123456789s".
    const d = formatGoDuration(r.ms);
    const frac = /^(.*?)(\d+)(?:\.(\d{1,3}))?s$/.exec(d);
    const duration = frac !== null && !d.endsWith('ms') ? `${frac[1]}${frac[2]}.${(frac[3] ?? '').padEnd(3, '0')}${String(r.sub).padStart(6, '0')}s` : d;
    return { id: r.id, origin: r.origin, type: 'ban', scope: r.range ? 'Range' : 'Ip', value, duration, scenario: r.scenario, ms: r.ms };
  });

const answerArb = fc.record({ new: fc.oneof(fc.constant(null), fc.array(validArb, { maxLength: 8 })), deleted: fc.oneof(fc.constant(null), fc.array(validArb, { maxLength: 4 })) });

const TOKENS = ['{', '}', '[', ']', ',', ':', '"', 'null', '-', '.', 'e', '"new"', '"deleted"', '"id"', '"duration"', '"value"', '"scope"', '"Ip"', '"Range"', '"ban"', '"1h"', '"-1ms"', '"µs"', '/', '::', '4294967296', '1e308'].map((t) => Buffer.from(t));

/** The answer read from bytes, or the tally word for its refusal; anything else thrown fails the property. */
function read(b: Buffer): StreamAnswer | string {
  let json: unknown;
  try {
    json = JSON.parse(b.toString('utf8'));
  } catch (err) {
    if (err instanceof SyntaxError) return 'not-json';
    throw err;
  }
  try {
    return readStreamAnswer(json);
  } catch (err) {
    if (err instanceof StreamShapeError) return 'shape';
    throw err;
  }
}

/** The invariants of any answer read. */
function sound(a: StreamAnswer, sent: { new?: unknown; deleted?: unknown }): boolean {
  const sentNew = Array.isArray(sent.new) ? sent.new.length : 0;
  const sentDeleted = Array.isArray(sent.deleted) ? sent.deleted.length : 0;
  const skipped = a.skipped.malformed + a.skipped.type + a.skipped.scope + a.skipped.over;
  if (a.added.length + skipped + a.deleted.length !== sentNew + sentDeleted) throw new Error(`counted ${a.added.length}+${skipped}+${a.deleted.length}, sent ${sentNew}+${sentDeleted}`);
  for (const d of a.added) {
    const n = parseNetwork(d.target);
    if (!Number.isSafeInteger(d.ttlMs) || d.ttlMs <= 0) throw new Error(`ttl ${d.ttlMs}`);
    if (d.scenario.length > 256 || d.target.length > 64) throw new Error('a field over its cap');
    if (n.text !== d.target) throw new Error('not canonical');
  }
  return true;
}

function tallied(tally: Tally, kind: string, b: Buffer): boolean {
  const r = read(b);
  if (typeof r === 'string') {
    tally.add(kind, r);
    return true;
  }
  tally.add(kind, r.added.length > 0 ? 'ok' : 'ok-empty');
  return sound(r, JSON.parse(b.toString('utf8')) as { new?: unknown; deleted?: unknown });
}

export const crowdsecCodec: FuzzCodec = {
  name: 'crowdsec-stream',
  open(tally) {
    const validBytes = answerArb.map((a) => Buffer.from(JSON.stringify(a)));
    return {
      properties: [
        { name: 'random bytes are refused or read soundly', property: fc.property(randomBytes(512), (b) => tallied(tally, 'random', b)) },
        { name: 'mutated answers are refused or read soundly', property: fc.property(mutated(validBytes, TOKENS), (b) => tallied(tally, 'mutated', b)) },
        {
          name: 'odd JSON values anywhere are refused or read soundly',
          property: fc.property(fc.record({ new: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.array(fc.jsonValue({ maxDepth: 2 }))), deleted: fc.jsonValue({ maxDepth: 2 }) }), (a) => tallied(tally, 'json', Buffer.from(JSON.stringify(a)))),
        },
        {
          name: 'answers as the Local API writes them are read back exactly',
          property: fc.property(answerArb, (a) => {
            const r = read(Buffer.from(JSON.stringify(a)));
            if (typeof r === 'string') throw new Error(`a valid answer refused: ${r}`);
            tally.add('valid', 'ok');
            const want = (a.new ?? []).map((d) => d.id);
            if (JSON.stringify(r.added.map((d) => d.id)) !== JSON.stringify(want)) throw new Error('decisions lost');
            for (const [i, d] of r.added.entries()) {
              const w = (a.new ?? [])[i]!;
              if (d.ttlMs !== w.ms) throw new Error(`${w.duration} read as ${d.ttlMs} ms, not ${w.ms}`);
              if (parseNetwork(d.target).bits !== parseNetwork(w.value).bits) throw new Error('prefix changed');
            }
            if (JSON.stringify(r.deleted) !== JSON.stringify((a.deleted ?? []).map((d) => d.id))) throw new Error('deletions lost');
            return true;
          }),
        },
      ],
    };
  },
};
