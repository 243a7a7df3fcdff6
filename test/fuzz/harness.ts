/**
 * The fuzzing harness every codec's properties share: how an input's fate is
 * counted, how valid encodings are mutated and cut into chunks, and how a
 * codec's properties are run, whether 300 times in a unit test or a million
 * times in `npm run fuzz` (./run.ts). One definition of each property serves
 * both, so the long run checks exactly what the unit tests check.
 *
 * A property fails on anything but the codec's own coded error: a TypeError,
 * a RangeError from runaway recursion, a plain Error from a library, a wrong
 * round trip or a broken cap. Refusals with a coded error are counted, by
 * code, so the long run can show what the inputs exercised.
 */
import fc from 'fast-check';
import { DoormanError } from '../../src/errors.js';

/** What became of one input: its kind ("random", "mutated", "valid"...), then "ok", "incomplete" or an error code. */
export class Tally {
  readonly counts = new Map<string, number>();
  inputs = 0;
  /** Told the count every 1024 inputs: the long run's progress and heap sampling. */
  onProgress: ((inputs: number) => void) | null = null;

  add(kind: string, outcome: string): void {
    if ((++this.inputs & 1023) === 0) this.onProgress?.(this.inputs);
    const key = `${kind} ${outcome}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
  }

  /** Counts by outcome alone, every kind together, largest first. */
  byOutcome(): Array<[string, number]> {
    const m = new Map<string, number>();
    for (const [key, n] of this.counts) {
      const outcome = key.slice(key.indexOf(' ') + 1);
      m.set(outcome, (m.get(outcome) ?? 0) + n);
    }
    return [...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  }
}

/** One property of a codec, synchronous or not. */
export interface NamedProperty {
  readonly name: string;
  readonly property: fc.IRawProperty<unknown, boolean>;
}

/** A codec's properties, built against one Tally; `close` frees what they hold (a server). */
export interface FuzzSession {
  readonly properties: readonly NamedProperty[];
  close?(): Promise<void>;
}

export interface FuzzCodec {
  readonly name: string;
  open(tally: Tally): FuzzSession | Promise<FuzzSession>;
}

export interface RunOptions {
  /** Runs for the whole codec, shared evenly among its properties (a run may feed more than one input). */
  readonly numRuns: number;
  readonly seed?: number;
  /** Told the inputs run so far, every 1024 inputs. */
  readonly onProgress?: (inputs: number) => void;
}

export interface CodecReport {
  readonly codec: string;
  readonly tally: Tally;
  readonly ms: number;
}

/** Runs every property of `codec`; throws fast-check's report (seed, path, counterexample) on the first failure. */
export async function runCodec(codec: FuzzCodec, opts: RunOptions): Promise<CodecReport> {
  const tally = new Tally();
  tally.onProgress = opts.onProgress ?? null;
  const session = await codec.open(tally);
  const started = performance.now();
  try {
    const per = Math.ceil(opts.numRuns / session.properties.length);
    for (const p of session.properties) {
      const params: fc.Parameters<unknown> = { numRuns: per, includeErrorInReport: true, ...(opts.seed === undefined ? {} : { seed: opts.seed }) };
      try {
        await fc.assert(p.property, params);
      } catch (err) {
        throw new Error(`${codec.name} / ${p.name}: ${(err as Error).message}`, { cause: err });
      }
    }
  } finally {
    await session.close?.();
  }
  return { codec: codec.name, tally, ms: performance.now() - started };
}

/**
 * The code of a coded error of class `cls`; anything else is rethrown as it
 * is, so the property fails on it with its own stack.
 */
export function codeOf(err: unknown, cls: abstract new (...args: never[]) => DoormanError): string {
  if (err instanceof cls && /^DOORMAN_ERR_[A-Z0-9_]+$/.test(err.code)) return err.code;
  throw err;
}

/** A byte that often matters to a parser: framing, separators, the top bit. */
const SHARP_BYTES = [0x00, 0x0a, 0x0d, 0x20, 0x3a, 0x3d, 0x2e, 0x5b, 0x5d, 0x7f, 0x80, 0xc3, 0xff];

type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; byte: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; n: number }
  | { op: 'truncate'; at: number }
  | { op: 'repeat'; at: number; n: number; times: number };

function mutationArb(tokens: readonly Uint8Array[]): fc.Arbitrary<Mutation> {
  const at = fc.nat();
  const insertBytes = tokens.length > 0 ? fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 8 }), fc.constantFrom(...tokens)) : fc.uint8Array({ minLength: 1, maxLength: 8 });
  return fc.oneof(
    fc.record({ op: fc.constant('flip' as const), at, bit: fc.integer({ min: 0, max: 7 }) }),
    fc.record({ op: fc.constant('set' as const), at, byte: fc.oneof(fc.constantFrom(...SHARP_BYTES), fc.integer({ min: 0, max: 255 })) }),
    fc.record({ op: fc.constant('insert' as const), at, bytes: insertBytes }),
    fc.record({ op: fc.constant('delete' as const), at, n: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ op: fc.constant('truncate' as const), at }),
    fc.record({ op: fc.constant('repeat' as const), at, n: fc.integer({ min: 1, max: 16 }), times: fc.integer({ min: 2, max: 4 }) }),
  );
}

function applyMutation(b: Buffer, m: Mutation): Buffer {
  const len = b.length;
  const at = len === 0 ? 0 : m.at % (len + 1);
  switch (m.op) {
    case 'flip':
    case 'set': {
      if (len === 0) return b;
      const out = Buffer.from(b);
      const i = m.at % len;
      out[i] = m.op === 'flip' ? (out[i] as number) ^ (1 << m.bit) : m.byte;
      return out;
    }
    case 'insert':
      return Buffer.concat([b.subarray(0, at), m.bytes, b.subarray(at)]);
    case 'delete':
      return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(len, at + m.n))]);
    case 'truncate':
      return b.subarray(0, at);
    case 'repeat': {
      const piece = b.subarray(at, Math.min(len, at + m.n));
      return Buffer.concat([b.subarray(0, at), ...Array<Buffer>(m.times).fill(piece), b.subarray(at + piece.length)]);
    }
  }
}

/** `base` after one to five mutations: bit flips, sharp bytes, insertions (random or `tokens`), deletions, truncation, repeats. */
export function mutated(base: fc.Arbitrary<Buffer>, tokens: readonly Uint8Array[] = []): fc.Arbitrary<Buffer> {
  return fc.tuple(base, fc.array(mutationArb(tokens), { minLength: 1, maxLength: 5 })).map(([b, ms]) => ms.reduce(applyMutation, b));
}

/** Random bytes, biased toward the bytes a parser cares about. */
export function randomBytes(maxLength: number): fc.Arbitrary<Buffer> {
  const byte = fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 0, max: 255 }) }, { weight: 1, arbitrary: fc.constantFrom(...SHARP_BYTES) });
  return fc.array(byte, { maxLength }).map((a) => Buffer.from(a));
}

/** How an input is cut into writes: at most a dozen cuts, or (for short inputs) a byte at a time. */
export type Cuts = readonly number[] | 'bytewise';

export const cutsArb: fc.Arbitrary<Cuts> = fc.oneof(
  { weight: 5, arbitrary: fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 12 }) },
  { weight: 1, arbitrary: fc.constant('bytewise' as const) },
);

/** The chunks `cuts` makes of `b`; bytewise only up to 512 bytes, so no input costs more than a few hundred writes. */
export function chunksOf(b: Buffer, cuts: Cuts): Buffer[] {
  const out: Buffer[] = [];
  if (cuts === 'bytewise' && b.length <= 512) {
    for (let i = 0; i < b.length; i++) out.push(b.subarray(i, i + 1));
    return out;
  }
  let pos = 0;
  if (cuts !== 'bytewise') {
    for (const n of cuts) {
      if (pos >= b.length) break;
      out.push(b.subarray(pos, pos + n));
      pos += n;
    }
  }
  if (pos < b.length || out.length === 0) out.push(b.subarray(pos));
  return out;
}

/**
 * Text over all of Unicode, weighted toward the short UTF-8 forms. Built from
 * code points here: fast-check's `unit: 'binary'` strings allocate a table of
 * every code point (about 100 MB of heap), which would swamp the heap figures.
 */
export function unicodeString(maxLength: number): fc.Arbitrary<string> {
  const cp = fc.oneof(
    { weight: 6, arbitrary: fc.integer({ min: 0, max: 0x7f }) },
    { weight: 2, arbitrary: fc.integer({ min: 0x80, max: 0x7ff }) },
    { weight: 2, arbitrary: fc.integer({ min: 0x800, max: 0xffff }) },
    { weight: 1, arbitrary: fc.integer({ min: 0x10000, max: 0x10ffff }) },
  );
  return fc.array(cp, { maxLength }).map((cps) => String.fromCodePoint(...cps));
}

/** A string that survives UTF-8 both ways (a lone surrogate becomes U+FFFD) and holds none of `forbidden`. */
export function wireString(maxLength: number, forbidden: RegExp): fc.Arbitrary<string> {
  return fc
    .oneof(fc.string({ maxLength }), unicodeString(maxLength))
    .map((s) => Buffer.from(s).toString().replace(forbidden, '_'));
}
