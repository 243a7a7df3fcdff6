/** The helper's frames: split anywhere, capped, strict. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { encodeFrame, FrameDecoder, helperOptionsSchema, requestSchema, responseSchema } from './helper-frames.js';

const messages = [{ id: 1, script: 'flush set inet filter doorman_v4\n' }, { id: 2, script: 'é ✓ \u2028' }, { id: 3, ok: true, out: '' }];

test('frames split at every byte come out whole, in order', () => {
  const bytes = Buffer.concat(messages.map(encodeFrame));
  for (let cut = 0; cut <= bytes.length; cut++) {
    for (const step of [1, 3, 7]) {
      const d = new FrameDecoder(1024);
      const out: unknown[] = [...d.push(bytes.subarray(0, cut))];
      for (let i = cut; i < bytes.length; i += step) out.push(...d.push(bytes.subarray(i, i + step)));
      assert.deepEqual(out, messages, `cut at ${cut}, then ${step} at a time`);
      assert.equal(d.partial, false);
    }
  }
});

test('any split of any messages decodes to the same messages (property)', () => {
  fc.assert(
    fc.property(fc.array(fc.record({ id: fc.integer({ min: 1 }), script: fc.string({ unit: 'binary', maxLength: 200 }) }).map((r) => ({ ...r })), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 10 }), (ms, cuts) => {
      const bytes = Buffer.concat(ms.map(encodeFrame));
      const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
      const d = new FrameDecoder(1 << 20);
      const out: unknown[] = [];
      let at = 0;
      for (const p of [...points, bytes.length]) {
        out.push(...d.push(bytes.subarray(at, p)));
        at = p;
      }
      assert.deepEqual(out, ms);
    }),
    { numRuns: 500 },
  );
});

test('a frame of length 0 or past the cap, or not JSON, breaks the stream for good', () => {
  const zero = Buffer.from([0, 0, 0, 0]);
  assert.throws(() => new FrameDecoder(10).push(zero), { message: 'a frame of 0 bytes (allowed: 1 to 10)' });
  const big = new FrameDecoder(10);
  // Refused from the header alone: the body is never waited for.
  assert.throws(() => big.push(Buffer.from([0, 0, 0, 11])), /a frame of 11 bytes \(allowed: 1 to 10\)/);
  assert.throws(() => big.push(encodeFrame(1)), /already broken/);
  assert.throws(() => new FrameDecoder(10).push(Buffer.from([0xff, 0xff, 0xff, 0xff])), /a frame of 4294967295 bytes/);
  const body = Buffer.from('{"id":', 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length);
  assert.throws(() => new FrameDecoder(100).push(Buffer.concat([head, body])), /a frame of 6 bytes that is not JSON/);
  const d = new FrameDecoder(100);
  assert.deepEqual(d.push(Buffer.from([0, 0])), []);
  assert.equal(d.partial, true, 'half a header waits');
});

test('the messages are strict: unknown keys, wrong types and out-of-range ids are not of the protocol', () => {
  assert.equal(requestSchema.safeParse({ id: 1, script: 'x' }).success, true);
  for (const bad of [{ id: 0, script: 'x' }, { id: 1.5, script: 'x' }, { id: 1, script: 1 }, { id: 1 }, { id: 1, script: 'x', args: ['-i'] }, { id: 2 ** 31 + 1, script: 'x' }, null, [], 'x']) {
    assert.equal(requestSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
  assert.equal(responseSchema.safeParse({ id: 1, ok: false, error: 'x', refused: true }).success, true);
  assert.equal(responseSchema.safeParse({ id: 1, ok: true, out: 'x', error: 'y' }).success, false);
  assert.equal(responseSchema.safeParse({ id: 1, ok: false, error: 'x'.repeat(4097), refused: false }).success, false);
  const opts = { table: 'inet filter', v4: 'doorman_v4', v6: null, command: ['nft'], timeoutMs: 30_000 };
  assert.equal(helperOptionsSchema.safeParse(opts).success, true);
  for (const bad of [{ ...opts, table: 'inet filter; flush ruleset' }, { ...opts, v4: 'a b' }, { ...opts, command: [] }, { ...opts, timeoutMs: 0 }, { ...opts, extra: 1 }]) {
    assert.equal(helperOptionsSchema.safeParse(bad).success, false, JSON.stringify(bad));
  }
});
