import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HAPROXY_DISCONNECT_IDLE, HAPROXY_HELLO, NOTIFY_PIPELINED, NOTIFY_V4, NOTIFY_V6 } from '../../test/helpers/spop-golden.js';
import { ProtocolError } from '../errors.js';
import {
  SPOP_FRAME,
  SPOP_FRAME_HEADER_MIN,
  SPOP_STATUS,
  SPOP_VALUE_MAX,
  SpopCursor,
  SpopError,
  SpopFrameReader,
  SpopWriter,
  decodeFrame,
  encodeFrame,
  spopInteger,
  type SpopFrame,
  type SpopValue,
} from './spop.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/**
 * Varints worked out by hand from SPOE.txt's table (X < 240: one byte;
 * then 0xF0 | low nibble, and (X - 240) >> 4 seven bits at a time, 128 off
 * after each continued byte), at every boundary the table names.
 */
const VARINTS: Array<[bigint, string]> = [
  [0n, '00'],
  [239n, 'ef'],
  [240n, 'f0 00'],
  [2287n, 'ff 7f'],
  [2288n, 'f0 80 00'],
  [264431n, 'ff ff 7f'],
  [264432n, 'f0 80 80 00'],
  [33818863n, 'ff ff ff 7f'],
  [33818864n, 'f0 80 80 80 00'],
  [4328786159n, 'ff ff ff ff 7f'],
  [4328786160n, 'f0 80 80 80 80 00'],
  [0xffffffffn, 'ff f0 fe fe 7e'],
  [2n ** 53n - 1n, 'ff f0 fe fe fe fe fe 7e'],
  [2n ** 53n, 'f0 f1 fe fe fe fe fe 7e'],
  [2n ** 64n - 1n, 'ff f0 fe fe fe fe fe fe fe 0e'],
];

function code(c: string, status?: number) {
  return (e: unknown) => e instanceof ProtocolError && e.code === c && (status === undefined || (e instanceof SpopError && e.status === status));
}

test('varints: every boundary of the spec table encodes to the bytes worked out by hand, and back', () => {
  for (const [v, bytes] of VARINTS) {
    const w = new SpopWriter();
    w.varintBig(v);
    assert.equal(w.finish().toString('hex'), bytes.replace(/ /g, ''), `encode ${v}`);
    const b = hex(bytes);
    const c = new SpopCursor(b, 0, b.length);
    assert.equal(c.varintBig('x'), v, `decode ${bytes}`);
    assert.equal(c.pos, b.length, `all of ${bytes} read`);
    if (v <= BigInt(Number.MAX_SAFE_INTEGER)) {
      const n = new SpopWriter();
      n.varint(Number(v));
      assert.deepEqual(n.finish(), b, `number path ${v}`);
      assert.equal(new SpopCursor(b, 0, b.length).varint('x', Number.MAX_SAFE_INTEGER), Number(v));
    }
  }
});

test('varints: truncated, longer than 64 bits, or over the caller\'s maximum are refused', () => {
  const refuse = (bytes: string, max = Number.MAX_SAFE_INTEGER, big = false) => {
    const b = hex(bytes);
    const c = new SpopCursor(b, 0, b.length);
    assert.throws(() => (big ? c.varintBig('x') : c.varint('x', max)), (e: unknown) => e instanceof SpopError && e.status === SPOP_STATUS.INVALID, bytes);
  };
  refuse('f0');
  refuse('f0 80');
  refuse('ff ff ff ff ff ff ff ff ff 7f', Number.MAX_SAFE_INTEGER, true); // 10 bytes, > 2^64
  refuse('ff f0 fe fe fe fe fe fe fe 0f', Number.MAX_SAFE_INTEGER, true); // 2^64 - 1 + 2^60
  refuse('ff ff ff ff ff ff ff ff ff 80 00', Number.MAX_SAFE_INTEGER, true); // an 11th byte
  refuse('f0 f1 fe fe fe fe fe 7e'); // 2^53 where a number is wanted
  refuse('ff 7f', 2286);
  assert.equal(new SpopCursor(hex('ff 7f'), 0, 2).varint('x', 2287), 2287);
});

/** Typed data built by hand from SPOE.txt 3.1: the tag byte (type | flags << 4), then the data. */
const VALUES: Array<[SpopValue, string]> = [
  [{ type: 'null' }, '00'],
  [{ type: 'bool', value: false }, '01'],
  [{ type: 'bool', value: true }, '11'],
  [{ type: 'int32', value: 5 }, '02 05'],
  [{ type: 'int32', value: -1 }, '02 ff f0 fe fe fe fe fe fe fe 0e'], // sign-extended, as HAProxy reads it
  [{ type: 'int32', value: -(2 ** 31) }, '02 f0 f1 fe fe be fe fe fe fe 0e'],
  [{ type: 'int32', value: 2 ** 31 - 1 }, '02 ff f0 fe fe 3e'],
  [{ type: 'uint32', value: 0xffffffff }, '03 ff f0 fe fe 7e'],
  [{ type: 'int64', value: -9007199254740993n }, '04 ff f0 fe fe fe fe fe fe fd 0e'],
  [{ type: 'int64', value: 47001n }, '04 f9 ea 15'],
  [{ type: 'uint64', value: 2n ** 64n - 1n }, '05 ff f0 fe fe fe fe fe fe fe 0e'],
  [{ type: 'ipv4', value: '192.0.2.1' }, '06 c0 00 02 01'],
  [{ type: 'ipv6', value: '2001:db8::1' }, '07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01'],
  [{ type: 'ipv6', value: '::ffff:c000:201' }, '07 00 00 00 00 00 00 00 00 00 00 ff ff c0 00 02 01'],
  [{ type: 'string', value: 'mail' }, '08 04 6d 61 69 6c'],
  [{ type: 'string', value: 'é' }, '08 02 c3 a9'],
  [{ type: 'string', value: '' }, '08 00'],
  [{ type: 'binary', value: Buffer.from([0, 0xff, 0x10]) }, '09 03 00 ff 10'],
];

function readValue(b: Buffer): SpopValue {
  const c = new SpopCursor(b, 0, b.length);
  const v = c.value('v');
  assert.equal(c.pos, b.length, 'whole value read');
  return v;
}

test('typed data: each type encodes to its hand-built bytes and decodes back', () => {
  for (const [v, bytes] of VALUES) {
    const w = new SpopWriter();
    w.value(v);
    assert.equal(w.finish().toString('hex'), bytes.replace(/ /g, ''), `encode ${v.type}`);
    assert.deepEqual(readValue(hex(bytes)), v, `decode ${bytes}`);
  }
});

test('typed data: reserved types, stray flags, out-of-range integers and overruns are refused', () => {
  const refuse = (bytes: string, c: string, status: number = SPOP_STATUS.INVALID) => assert.throws(() => readValue(hex(bytes)), code(c, status), bytes);
  for (const t of ['0a', '0b', '0c', '0d', '0e', '0f']) refuse(t, 'DOORMAN_ERR_SPOP_DATA');
  refuse('12 05', 'DOORMAN_ERR_SPOP_DATA'); // INT32 with a flag
  refuse('80', 'DOORMAN_ERR_SPOP_DATA'); // NULL with a flag
  refuse('31', 'DOORMAN_ERR_SPOP_DATA'); // BOOL with a flag beside "true"
  refuse('02 f0 f1 fe fe 3e', 'DOORMAN_ERR_SPOP_DATA'); // INT32 of 2^31
  refuse('02 ff f0 fe fe be fe fe fe fe 0e', 'DOORMAN_ERR_SPOP_DATA'); // INT32 of -2^31 - 1
  refuse('03 f0 f1 fe fe 7e', 'DOORMAN_ERR_SPOP_VARINT'); // UINT32 of 2^32
  refuse('06 7f 00 00', 'DOORMAN_ERR_SPOP_TRUNCATED');
  refuse('07 00', 'DOORMAN_ERR_SPOP_TRUNCATED');
  refuse('08 05 61 62', 'DOORMAN_ERR_SPOP_TRUNCATED');
  refuse('09 f0', 'DOORMAN_ERR_SPOP_TRUNCATED');
  refuse('', 'DOORMAN_ERR_SPOP_TRUNCATED');
  const len = (n: number) => {
    const w = new SpopWriter();
    w.varint(n);
    return w.finish();
  };
  const over = Buffer.concat([hex('08'), len(SPOP_VALUE_MAX + 1), Buffer.alloc(SPOP_VALUE_MAX + 1, 0x61)]);
  assert.throws(() => readValue(over), code('DOORMAN_ERR_SPOP_CAP', SPOP_STATUS.RESOURCE));
  const at = Buffer.concat([hex('08'), len(SPOP_VALUE_MAX), Buffer.alloc(SPOP_VALUE_MAX, 0x61)]);
  assert.equal((readValue(at) as { value: string }).value.length, SPOP_VALUE_MAX, 'a value of exactly the cap is taken');
});

test('typed data: values the encoder cannot send are refused', () => {
  const bad: SpopValue[] = [
    { type: 'int32', value: 1.5 },
    { type: 'int32', value: 2 ** 31 },
    { type: 'uint32', value: -1 },
    { type: 'int64', value: 2n ** 63n },
    { type: 'uint64', value: -1n },
    { type: 'ipv4', value: '1.2.3' },
    { type: 'ipv4', value: '::1' },
    { type: 'ipv6', value: '1.2.3.4' },
    { type: 'ipv6', value: 'nope' },
    { type: 'string', value: 'x'.repeat(SPOP_VALUE_MAX + 1) },
    { type: 'binary', value: Buffer.alloc(SPOP_VALUE_MAX + 1) },
    { type: 'float' } as unknown as SpopValue,
  ];
  for (const v of bad) assert.throws(() => new SpopWriter().value(v), code('DOORMAN_ERR_SPOP_ENCODE'), JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? String(x) : x)).slice(0, 60));
});

test('spopInteger reads any integer type that fits a JS number', () => {
  assert.equal(spopInteger({ type: 'int64', value: 47001n }), 47001);
  assert.equal(spopInteger({ type: 'uint32', value: 7 }), 7);
  assert.equal(spopInteger({ type: 'int64', value: -5n }), -5);
  assert.equal(spopInteger({ type: 'uint64', value: 2n ** 60n }), null);
  assert.equal(spopInteger({ type: 'string', value: '1' }), null);
  assert.equal(spopInteger(undefined), null);
});

/** Reads every frame of `bytes` pushed in the given pieces. */
function frames(pieces: Buffer[], limit = 16380): SpopFrame[] {
  const r = new SpopFrameReader(limit);
  const out: SpopFrame[] = [];
  for (const p of pieces) {
    r.push(p);
    for (let f = r.next(); f !== null; f = r.next()) out.push({ ...f, payload: Buffer.from(f.payload) });
  }
  assert.equal(r.pending, false, 'nothing half-read');
  return out;
}

const SESSION = Buffer.concat([HAPROXY_HELLO, NOTIFY_V4, NOTIFY_V6, NOTIFY_PIPELINED, HAPROXY_DISCONNECT_IDLE]);

test('framing: HAProxy\'s captured session reads the same whole, split at every byte, and a byte at a time', () => {
  const whole = frames([SESSION]);
  assert.deepEqual(
    whole.map((f) => [f.type, f.streamId, f.frameId]),
    [[1, 0, 0], [3, 0, 1], [3, 4, 1], [3, 19, 1], [3, 30, 1], [3, 31, 1], [3, 32, 1], [3, 33, 1], [2, 0, 0]],
  );
  assert.equal(whole[0]?.length, HAPROXY_HELLO.length - 4);
  for (let i = 1; i < SESSION.length; i++) assert.deepEqual(frames([SESSION.subarray(0, i), SESSION.subarray(i)]), whole, `split at ${i}`);
  assert.deepEqual(frames([...SESSION].map((b) => Buffer.from([b]))), whole);
});

test('framing: a length over the limit is refused once its four bytes are in, before any of the frame', () => {
  const r = new SpopFrameReader(300);
  r.push(hex('00 00 01'));
  assert.equal(r.next(), null);
  r.push(hex('2d'));
  assert.throws(() => r.next(), code('DOORMAN_ERR_SPOP_TOO_BIG', SPOP_STATUS.TOO_BIG));
  assert.throws(() => r.next(), code('DOORMAN_ERR_SPOP_STATE'), 'a failed reader stays failed');
  assert.throws(() => r.push(hex('00')), code('DOORMAN_ERR_SPOP_STATE'));
  const ok = new SpopFrameReader(300);
  ok.push(Buffer.concat([hex('00 00 01 2c 03 00 00 00 01 00 01'), Buffer.alloc(300 - 7)]));
  assert.equal(ok.next()?.length, 300, 'a frame of exactly the limit is taken');
});

test('framing: short frames, fragments, reserved flags and ids over 32 bits are refused', () => {
  const refuse = (frame: string, c: string, status: number) => {
    const r = new SpopFrameReader(1000);
    const b = hex(frame);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    r.push(Buffer.concat([len, b]));
    assert.throws(() => r.next(), code(c, status), frame);
  };
  refuse('03 00 00 00 01 00', 'DOORMAN_ERR_SPOP_FRAME', SPOP_STATUS.INVALID); // 6 bytes
  refuse('', 'DOORMAN_ERR_SPOP_FRAME', SPOP_STATUS.INVALID);
  refuse('03 00 00 00 00 00 01', 'DOORMAN_ERR_SPOP_FRAGMENTED', SPOP_STATUS.FRAGMENTATION_NOT_SUPPORTED); // FIN clear
  refuse('03 00 00 00 02 00 01', 'DOORMAN_ERR_SPOP_FRAGMENTED', SPOP_STATUS.FRAGMENTATION_NOT_SUPPORTED); // ABORT without FIN
  refuse('00 00 00 00 01 00 01', 'DOORMAN_ERR_SPOP_FRAGMENTED', SPOP_STATUS.FRAGMENTATION_NOT_SUPPORTED); // UNSET: a later fragment
  refuse('03 00 00 00 05 00 01', 'DOORMAN_ERR_SPOP_FRAME', SPOP_STATUS.INVALID); // reserved bit 2
  refuse('03 80 00 00 01 00 01', 'DOORMAN_ERR_SPOP_FRAME', SPOP_STATUS.INVALID); // reserved bit 31
  refuse('03 00 00 00 01 f0 f1 fe fe 7e 01', 'DOORMAN_ERR_SPOP_VARINT', SPOP_STATUS.INVALID); // stream-id 2^32
  refuse('03 00 00 00 01 00 f0', 'DOORMAN_ERR_SPOP_TRUNCATED', SPOP_STATUS.INVALID);
  assert.equal(decodeFrame(hex('03 00 00 00 03 00 01')).flags, 3, 'ABORT with FIN is read (and ignored by the agent)');
  assert.equal(SPOP_FRAME_HEADER_MIN, 7);
});

test('encodeFrame sets the length and FIN, and refuses a frame over the peer\'s limit', () => {
  const f = encodeFrame(SPOP_FRAME.ACK, 2288, 1, 256, () => {});
  assert.equal(f.toString('hex'), '00000009' + '67' + '00000001' + 'f08000' + '01');
  assert.throws(() => encodeFrame(SPOP_FRAME.ACK, 1, 1, 256, (w) => w.bytes(Buffer.alloc(250))), code('DOORMAN_ERR_SPOP_ENCODE'));
  assert.throws(() => encodeFrame(SPOP_FRAME.ACK, 2 ** 32, 1, 256, () => {}), code('DOORMAN_ERR_SPOP_ENCODE'));
});

/** The spec table's length for v: 1 byte below 240, then each further byte covers 2^(4 + 7k) more values. */
function varintLength(v: bigint): number {
  let n = 1;
  let start = 240n;
  while (v >= start) {
    n++;
    start += 2n ** BigInt(4 + 7 * (n - 1));
  }
  return n;
}

test('property: a varint round-trips for any unsigned 64-bit value, and its length follows the spec table', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (v) => {
      const w = new SpopWriter();
      w.varintBig(v);
      const b = w.finish();
      const c = new SpopCursor(b, 0, b.length);
      assert.equal(c.varintBig('x'), v);
      assert.equal(b.length, varintLength(v));
    }),
  );
});

test('property: SpopWriter.varintLength is what varint() writes, and the spec table\'s length', () => {
  fc.assert(
    fc.property(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 0xffffffff }), fc.maxSafeNat()), (v) => {
      const w = new SpopWriter(1);
      w.varint(v);
      assert.equal(w.finish().length, SpopWriter.varintLength(v));
      assert.equal(SpopWriter.varintLength(v), varintLength(BigInt(v)));
    }),
  );
});

test('texts: a name seen before is recognised by its bytes, and a different one of the same length is not taken for it', () => {
  const read = (s: Buffer) => new SpopCursor(Buffer.concat([Buffer.from([s.length]), s]), 0, s.length + 1).name('n');
  assert.equal(read(Buffer.from('service')), 'service');
  assert.equal(read(Buffer.from('service')), 'service');
  assert.equal(read(Buffer.from('servicf')), 'servicf');
  assert.equal(read(Buffer.from('caf\u00e9!', 'utf8')), 'caf\u00e9!', 'multi-byte UTF-8');
  assert.equal(read(Buffer.from([0x63, 0x61, 0x66, 0xc3, 0xa9, 0x21])), 'caf\u00e9!');
  assert.equal(read(Buffer.from([0xff, 0x61])), '\ufffda', 'a bad byte');
  assert.equal(read(Buffer.from([0xfe, 0x61])), '\ufffda');
  assert.equal(read(Buffer.from('xa')), 'xa');
});

test('property: arbitrary bytes are read as a value or refused with a SpopError, never anything else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      const b = Buffer.from(bytes);
      const c = new SpopCursor(b, 0, b.length);
      try {
        while (!c.done) c.value('v');
      } catch (e) {
        assert.ok(e instanceof SpopError, String(e));
      }
    }),
  );
});
