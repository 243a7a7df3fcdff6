/**
 * Fuzzing Postfix's plain attribute encoding (src/protocols/attr-plain.ts).
 *
 * The reader is checked against a reference model written straight from the
 * grammar (`attrModel`): whatever the bytes and however they are cut into
 * writes, the reader must hand out the same blocks and fail with the same
 * code as the model does on the whole input. After every write it survives,
 * the bytes it holds must be within its caps (`checkCaps`): a reader that
 * accepted a line or a block over its cap would be buffering for a peer.
 *
 * `feedAttr` is shared with the anvil and policy codecs (./anvil.ts, ./policy.ts),
 * which decode the blocks further.
 */
import fc from 'fast-check';
import { ProtocolError } from '../../src/errors.js';
import { AttrReader, encodeAttrs, type AttrLimits } from '../../src/protocols/attr-plain.js';
import { chunksOf, codeOf, cutsArb, mutated, randomBytes, wireString, type Cuts, type FuzzCodec } from './harness.js';

export interface AttrOutcome {
  readonly blocks: string[][];
  /** The error code of the first refusal, or null. */
  readonly error: string | null;
  /** Part of a block arrived but not its end. */
  readonly pending: boolean;
}

const LF = 0x0a;

/** What the grammar and the caps say of `b` read whole, checks in the reader's documented order. */
export function attrModel(b: Buffer, limits: AttrLimits): AttrOutcome {
  const blocks: string[][] = [];
  let attrs: string[] = [];
  let blockBytes = 0;
  let pos = 0;
  const refuse = (error: string): AttrOutcome => ({ blocks, error, pending: false });
  for (;;) {
    const nl = b.indexOf(LF, pos);
    if (nl === -1) {
      const rest = b.length - pos;
      if (rest > limits.maxLine || blockBytes + rest > limits.maxBlock) return refuse('DOORMAN_ERR_ATTR_TOO_LONG');
      return { blocks, error: null, pending: rest > 0 || attrs.length > 0 };
    }
    const line = b.subarray(pos, nl);
    pos = nl + 1;
    blockBytes += line.length + 1;
    if (line.length > limits.maxLine || blockBytes > limits.maxBlock) return refuse('DOORMAN_ERR_ATTR_TOO_LONG');
    if (line.length === 0) {
      blocks.push(attrs);
      attrs = [];
      blockBytes = 0;
      continue;
    }
    const eq = line.indexOf('=');
    if (eq === -1) return refuse('DOORMAN_ERR_ATTR_NO_VALUE');
    if (eq === 0) return refuse('DOORMAN_ERR_ATTR_NO_NAME');
    if (line.includes(0)) return refuse('DOORMAN_ERR_ATTR_NUL');
    if (attrs.length / 2 >= limits.maxAttrs) return refuse('DOORMAN_ERR_ATTR_TOO_MANY');
    attrs.push(line.toString('utf8', 0, eq), line.toString('utf8', eq + 1));
  }
}

/**
 * Feeds `bytes` to a real AttrReader in the chunks `cuts` makes, checking
 * the caps after every write and the result against the model. Returns the
 * reader's outcome; throws on any disagreement or an uncoded error.
 */
export function feedAttr(bytes: Buffer, cuts: Cuts, limits: AttrLimits): AttrOutcome {
  const blocks: string[][] = [];
  const reader = new AttrReader(limits, (attrs) => void blocks.push(attrs));
  let error: string | null = null;
  const held = { line: 0, block: 0 };
  for (const chunk of chunksOf(bytes, cuts)) {
    try {
      reader.write(chunk);
    } catch (err) {
      error = codeOf(err, ProtocolError);
      break;
    }
    checkCaps(chunk, held, limits);
  }
  const outcome = { blocks, error, pending: error === null && reader.pending };
  const model = attrModel(bytes, limits);
  if (outcome.error !== model.error) throw new Error(`reader ended with ${outcome.error}, the model with ${model.error}`);
  if (JSON.stringify(outcome.blocks) !== JSON.stringify(model.blocks)) throw new Error('reader and model disagree on the blocks');
  if (outcome.pending !== model.pending) throw new Error(`reader pending=${outcome.pending}, model pending=${model.pending}`);
  if (error !== null) assertStaysFailed(reader);
  return outcome;
}

/** Tracks the unfinished line and block after an accepted write; either over its cap is a reader that buffers too much. */
function checkCaps(chunk: Buffer, held: { line: number; block: number }, limits: AttrLimits): void {
  for (let i = 0; i < chunk.length; i++) {
    if (chunk[i] === LF) {
      held.block = held.line === 0 ? 0 : held.block + 1;
      held.line = 0;
    } else {
      held.line++;
      held.block++;
    }
  }
  if (held.line > limits.maxLine) throw new Error(`reader accepted a line of ${held.line} bytes over its cap of ${limits.maxLine}`);
  if (held.block > limits.maxBlock) throw new Error(`reader accepted a block of ${held.block} bytes over its cap of ${limits.maxBlock}`);
}

/** After a refusal the reader refuses everything, with a coded error. */
function assertStaysFailed(reader: AttrReader): void {
  try {
    reader.write(Buffer.from('a=b\n\n'));
  } catch (err) {
    codeOf(err, ProtocolError);
    return;
  }
  throw new Error('a failed reader accepted more bytes');
}

/** The outcome as a tally word: the first error code, else incomplete or ok. */
export function outcomeWord(o: AttrOutcome, decodeError: string | null = null): string {
  return decodeError ?? o.error ?? (o.pending ? 'incomplete' : 'ok');
}

const attrName = wireString(12, /[=\n\0]/g).filter((s) => s.length > 0);
const attrValue = wireString(24, /[\n\0]/g);
/** Blocks as flat [name, value, ...] lists. */
export const blocksArb = fc.array(fc.array(fc.tuple(attrName, attrValue), { maxLength: 6 }).map((pairs) => pairs.flat()), { minLength: 1, maxLength: 4 });

/** Tokens worth splicing into attribute streams. */
export const ATTR_TOKENS = ['\n', '\n\n', '=', '\0', 'request=', 'ident=', '\r\n'].map((t) => Buffer.from(t));

/** The smallest limits that let `blocks` through, so that one less on any cap refuses them. */
function tightLimits(blocks: readonly string[][]): AttrLimits {
  let maxLine = 1;
  let maxAttrs = 1;
  let maxBlock = 1;
  for (const flat of blocks) {
    let block = 1;
    for (let i = 0; i < flat.length; i += 2) {
      const line = Buffer.byteLength(`${flat[i]}=${flat[i + 1]}`);
      maxLine = Math.max(maxLine, line);
      block += line + 1;
    }
    maxAttrs = Math.max(maxAttrs, flat.length / 2);
    maxBlock = Math.max(maxBlock, block);
  }
  return { maxLine, maxAttrs, maxBlock };
}

const smallLimits: fc.Arbitrary<AttrLimits> = fc.record({
  maxLine: fc.integer({ min: 1, max: 64 }),
  maxAttrs: fc.integer({ min: 1, max: 8 }),
  maxBlock: fc.integer({ min: 1, max: 300 }),
});

/** The reader alone, under small random caps so that every cap is hit often. */
export const attrPlainCodec: FuzzCodec = {
  name: 'attr-plain',
  open(tally) {
    const encoded = blocksArb.map((bs) => Buffer.from(bs.map(encodeAttrs).join('')));
    return {
      properties: [
        {
          name: 'random bytes, any cuts, small caps',
          property: fc.property(randomBytes(400), cutsArb, smallLimits, (b, cuts, limits) => {
            tally.add('random', outcomeWord(feedAttr(b, cuts, limits)));
          }),
        },
        {
          name: 'mutated encodings, any cuts, small caps',
          property: fc.property(mutated(encoded, ATTR_TOKENS), cutsArb, smallLimits, (b, cuts, limits) => {
            tally.add('mutated', outcomeWord(feedAttr(b, cuts, limits)));
          }),
        },
        {
          name: 'encoded blocks decode back at the tightest caps, and one byte or attribute less refuses',
          property: fc.property(blocksArb, cutsArb, fc.constantFrom('maxLine', 'maxAttrs', 'maxBlock'), (blocks, cuts, which) => {
            const bytes = Buffer.from(blocks.map(encodeAttrs).join(''));
            const tight = tightLimits(blocks);
            const ok = feedAttr(bytes, cuts, tight);
            if (ok.error !== null || JSON.stringify(ok.blocks) !== JSON.stringify(blocks)) throw new Error('encoded blocks did not decode back');
            tally.add('valid', outcomeWord(ok));
            const under = feedAttr(bytes, cuts, { ...tight, [which]: tight[which] - 1 });
            // Every block empty: only the block cap (the blank line's own byte) can be broken.
            const breakable = which === 'maxBlock' || blocks.some((b) => b.length > 0);
            const want = !breakable ? null : which === 'maxAttrs' ? 'DOORMAN_ERR_ATTR_TOO_MANY' : 'DOORMAN_ERR_ATTR_TOO_LONG';
            if (under.error !== want) throw new Error(`one under the ${which} cap gave ${under.error}, expected ${want}`);
            tally.add('over-cap', outcomeWord(under));
          }),
        },
      ],
    };
  },
};
