import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../errors.js';
import { AttrReader, encodeAttrs, type AttrLimits } from './attr-plain.js';

const LIMITS: AttrLimits = { maxLine: 1024, maxAttrs: 8, maxBlock: 4096 };

/** Bytes captured from Postfix 3.7.11's smtpd on this kind of machine: one SMTP session. */
const SMTPD_SESSION = Buffer.from(
  'request=connect\nident=127.0.0.1:12525:127.0.0.1\n\n' +
    'request=message\nident=127.0.0.1:12525:127.0.0.1\n\n' +
    'request=recipient\nident=127.0.0.1:12525:127.0.0.1\n\n' +
    'request=disconnect\nident=127.0.0.1:12525:127.0.0.1\n\n',
  'latin1',
);

function decodeAll(chunks: Buffer[], limits = LIMITS): string[][] {
  const blocks: string[][] = [];
  const r = new AttrReader(limits, (b) => blocks.push(b));
  for (const c of chunks) r.write(c);
  assert.equal(r.pending, false, 'nothing left half-read');
  return blocks;
}

test('decodes captured smtpd bytes identically at every split point', () => {
  const whole = decodeAll([SMTPD_SESSION]);
  assert.equal(whole.length, 4);
  assert.deepEqual(whole[0], ['request', 'connect', 'ident', '127.0.0.1:12525:127.0.0.1']);
  assert.deepEqual(whole[3], ['request', 'disconnect', 'ident', '127.0.0.1:12525:127.0.0.1']);
  for (let i = 1; i < SMTPD_SESSION.length; i++) {
    for (const j of [i + 1, i + 7, SMTPD_SESSION.length]) {
      if (j > SMTPD_SESSION.length || j <= i) continue;
      const parts = [SMTPD_SESSION.subarray(0, i), SMTPD_SESSION.subarray(i, j), SMTPD_SESSION.subarray(j)];
      assert.deepEqual(decodeAll(parts), whole, `split at ${i},${j}`);
    }
  }
});

test('decodes one byte at a time', () => {
  const bytes = [...SMTPD_SESSION].map((b) => Buffer.from([b]));
  assert.deepEqual(decodeAll(bytes), decodeAll([SMTPD_SESSION]));
});

test('pending is true only inside a block', () => {
  const r = new AttrReader(LIMITS, () => {});
  assert.equal(r.pending, false);
  r.write(Buffer.from('request=con'));
  assert.equal(r.pending, true);
  r.write(Buffer.from('nect\n'));
  assert.equal(r.pending, true);
  r.write(Buffer.from('\n'));
  assert.equal(r.pending, false);
});

function rejects(input: string, code: string, limits = LIMITS): void {
  const r = new AttrReader(limits, () => {});
  assert.throws(
    () => r.write(Buffer.from(input, 'latin1')),
    (e: unknown) => e instanceof ProtocolError && e.code === code,
    `${JSON.stringify(input)} → ${code}`,
  );
  assert.throws(() => r.write(Buffer.from('\n')), ProtocolError, 'a failed reader stays failed');
}

test('rejects malformed input with typed errors', () => {
  rejects('request\n\n', 'DOORMAN_ERR_ATTR_NO_VALUE');
  rejects('=x\n\n', 'DOORMAN_ERR_ATTR_NO_NAME');
  rejects('req\0uest=x\n\n', 'DOORMAN_ERR_ATTR_NUL');
  rejects('a=\0\n\n', 'DOORMAN_ERR_ATTR_NUL');
  rejects('a=1\nb=2\nc=3\n\n', 'DOORMAN_ERR_ATTR_TOO_MANY', { ...LIMITS, maxAttrs: 2 });
});

test('caps a line before its newline arrives', () => {
  const r = new AttrReader({ ...LIMITS, maxLine: 16 }, () => {});
  r.write(Buffer.from('a='.padEnd(16, 'x')));
  assert.throws(() => r.write(Buffer.from('x')), (e: unknown) => (e as ProtocolError).code === 'DOORMAN_ERR_ATTR_TOO_LONG');
});

test('caps a block over many short lines', () => {
  const r = new AttrReader({ maxLine: 100, maxAttrs: 1000, maxBlock: 50 }, () => {});
  assert.throws(() => r.write(Buffer.from('a=1\n'.repeat(20))), (e: unknown) => (e as ProtocolError).code === 'DOORMAN_ERR_ATTR_TOO_LONG');
});

test('keeps UTF-8 values intact across splits inside a character', () => {
  const bytes = Buffer.from('name=José Ünicode\n\n', 'utf8');
  for (let i = 1; i < bytes.length; i++) {
    assert.deepEqual(decodeAll([bytes.subarray(0, i), bytes.subarray(i)]), [['name', 'José Ünicode']]);
  }
});

test('encodeAttrs refuses what cannot be framed', () => {
  assert.equal(encodeAttrs(['status', '0', 'rate', '1']), 'status=0\nrate=1\n\n');
  assert.equal(encodeAttrs([]), '\n');
  for (const bad of [['', 'x'], ['a=b', 'x'], ['a', 'x\ny'], ['a\n', 'x'], ['a', '\0']]) {
    assert.throws(() => encodeAttrs(bad), ProtocolError);
  }
});

const attrName = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !/[=\n\0]/.test(s));
const attrValue = fc.string({ maxLength: 40 }).filter((s) => !/[\n\0]/.test(s));

test('property: any encodable blocks decode back, however the bytes are split', () => {
  fc.assert(
    fc.property(
      fc.array(fc.array(fc.tuple(attrName, attrValue), { maxLength: 6 }), { minLength: 1, maxLength: 5 }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (blocks, cuts) => {
        const flat = blocks.map((b) => b.flat());
        const bytes = Buffer.from(flat.map(encodeAttrs).join(''), 'utf8');
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let last = 0;
        for (const p of points) {
          chunks.push(bytes.subarray(last, p));
          last = p;
        }
        chunks.push(bytes.subarray(last));
        assert.deepEqual(decodeAll(chunks, { maxLine: 1024, maxAttrs: 8, maxBlock: 8192 }), flat);
      },
    ),
  );
});

test('property: arbitrary bytes either decode or throw ProtocolError, nothing else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const r = new AttrReader({ maxLine: 64, maxAttrs: 4, maxBlock: 200 }, () => {});
      try {
        r.write(Buffer.from(bytes));
      } catch (e) {
        assert.ok(e instanceof ProtocolError, String(e));
      }
    }),
  );
});
