/** Typed SPOP values for property tests and fuzzing: an arbitrary over every type, and equality as the wire carries them. */
import fc from 'fast-check';
import { parseIp } from '../../src/core/ip.js';
import type { SpopValue } from '../../src/protocols/spop.js';
import { unicodeString } from '../fuzz/harness.js';

/** Any typed value the encoder takes. */
export const spopValueArb: fc.Arbitrary<SpopValue> = fc.oneof(
  fc.constant<SpopValue>({ type: 'null' }),
  fc.boolean().map((value): SpopValue => ({ type: 'bool', value })),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }).map((value): SpopValue => ({ type: 'int32', value })),
  fc.integer({ min: 0, max: 0xffffffff }).map((value): SpopValue => ({ type: 'uint32', value })),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((value): SpopValue => ({ type: 'int64', value })),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((value): SpopValue => ({ type: 'uint64', value })),
  fc.ipV4().map((value): SpopValue => ({ type: 'ipv4', value })),
  fc.ipV6().map((value): SpopValue => ({ type: 'ipv6', value })),
  unicodeString(40).map((s): SpopValue => ({ type: 'string', value: Buffer.from(s).toString() })),
  fc.uint8Array({ maxLength: 40 }).map((b): SpopValue => ({ type: 'binary', value: Buffer.from(b) })),
);

/** Equal as SPOP carries them: IPv6 by its 128 bits (the text comes back in RFC 5952 form). */
export function sameValue(a: SpopValue, b: SpopValue | undefined): boolean {
  if (b === undefined || a.type !== b.type) return false;
  if (a.type === 'null') return true;
  if (a.type === 'binary') return b.type === 'binary' && a.value.equals(b.value);
  if (a.type === 'ipv6') return JSON.stringify(parseIp(a.value)?.words) === JSON.stringify(parseIp(String((b as { value: unknown }).value))?.words);
  return a.value === (b as { value: unknown }).value;
}
