import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ProtocolError } from '../errors.js';
import { AttrReader } from './attr-plain.js';
import {
  ANVIL_FAIL_REPLY,
  ANVIL_LIMITS,
  REPLY_FIELDS,
  decodeAnvilReply,
  decodeAnvilRequest,
  encodeAnvilReply,
  encodeAnvilRequest,
  parseAnvilIdent,
  type AnvilReply,
  type AnvilRequestName,
} from './anvil.js';

function blocks(text: string): string[][] {
  const out: string[][] = [];
  new AttrReader({ ...ANVIL_LIMITS, maxAttrs: 16 }, (b) => out.push(b)).write(Buffer.from(text));
  return out;
}

test('replies match the bytes Postfix 3.7.11 anvil sends', () => {
  // Captured from Postfix's own anvil on this kind of machine.
  assert.equal(encodeAnvilReply('connect', { status: 0, count: 1, rate: 1 }), 'status=0\ncount=1\nrate=1\n\n');
  assert.equal(encodeAnvilReply('disconnect', { status: 0 }), 'status=0\n\n');
  assert.equal(encodeAnvilReply('newtls_status', { status: 0, rate: 0 }), 'status=0\nrate=0\n\n');
  assert.equal(ANVIL_FAIL_REPLY, 'status=4294967295\n\n');
});

test('Postfix 3.12 tlstr: status and rate; lookup ends with tlstr, as 3.12 anvil_clnt_lookup reads it', () => {
  assert.equal(encodeAnvilReply('tlstr', { status: 0, rate: 1 }), 'status=0\nrate=1\n\n');
  // 3.7 to 3.11 send the first seven; 3.12's client expects tlstr after auth (its own anvil sends auth twice there).
  assert.equal(
    encodeAnvilReply('lookup', { status: 0, count: 1, rate: 1, mail: 0, rcpt: 0, newtls: 0, auth: 0, tlstr: 2 }),
    'status=0\ncount=1\nrate=1\nmail=0\nrcpt=0\nnewtls=0\nauth=0\ntlstr=2\n\n',
  );
  assert.throws(() => decodeAnvilReply('lookup', ['status', '0', 'count', '1', 'rate', '1', 'mail', '0', 'rcpt', '0', 'newtls', '0', 'auth', '0', 'auth', '2']), /expected tlstr, got auth/);
  const older = ['status', '0', 'count', '1', 'rate', '1', 'mail', '0', 'rcpt', '0', 'newtls', '0', 'auth', '3'];
  assert.deepEqual(decodeAnvilReply('lookup', older), { status: 0, count: 1, rate: 1, mail: 0, rcpt: 0, newtls: 0, auth: 3, tlstr: 0 }, 'Postfix 3.7-3.11 anvil: no tlstr');
  assert.throws(() => decodeAnvilReply('lookup', older.slice(0, -2)), /6 attributes, expected 8/);
  assert.throws(() => decodeAnvilReply('connect', ['status', '0', 'count', '1']), /2 attributes, expected 3/, 'only lookup has a later field');
});

test('every reply round-trips through the one field table', () => {
  const names = Object.keys(REPLY_FIELDS) as AnvilRequestName[];
  fc.assert(
    fc.property(fc.constantFrom(...names), fc.array(fc.integer({ min: 0, max: 0x7fffffff }), { minLength: 8, maxLength: 8 }), (name, nums) => {
      const values = Object.fromEntries(REPLY_FIELDS[name].map((f, i) => [f, f === 'status' ? 0 : (nums[i] as number)]));
      const wire = encodeAnvilReply(name, values as AnvilReply<typeof name>);
      const [block] = blocks(wire);
      assert.deepEqual(decodeAnvilReply(name, block as string[]), values);
    }),
  );
});

test('a reply with a field out of place or missing is refused', () => {
  assert.throws(() => decodeAnvilReply('connect', ['status', '0', 'rate', '1', 'count', '1']), ProtocolError);
  assert.throws(() => decodeAnvilReply('connect', ['status', '0', 'count', '1']), ProtocolError);
  assert.throws(() => decodeAnvilReply('connect', ['status', '0', 'count', 'x', 'rate', '1']), ProtocolError);
  assert.throws(() => decodeAnvilReply('lookup', blocks(ANVIL_FAIL_REPLY)[0] as string[]), /status=fail/);
});

test('requests: exactly request then ident', () => {
  const [b] = blocks(encodeAnvilRequest('connect', 'smtp:192.0.2.1'));
  assert.deepEqual(decodeAnvilRequest(b as string[]), { request: 'connect', ident: 'smtp:192.0.2.1' });
  assert.deepEqual(decodeAnvilRequest(['request', 'bogus', 'ident', 'x']), { request: 'bogus', ident: 'x' });
  for (const bad of [
    ['ident', 'x', 'request', 'connect'],
    ['request', 'connect'],
    ['request', 'connect', 'ident', 'x', 'extra', '1'],
    ['request', 'connect', 'request', 'connect'],
    [],
  ]) {
    assert.throws(() => decodeAnvilRequest(bad), (e: unknown) => (e as ProtocolError).code === 'DOORMAN_ERR_ANVIL_REQUEST', JSON.stringify(bad));
  }
  assert.throws(() => encodeAnvilRequest('connect', 'a\nb'), ProtocolError);
});

test('ident: service and address recovered, colons on both sides', () => {
  const cases: Array<[string, string, string]> = [
    ['smtp:203.0.113.9', 'smtp', '203.0.113.9'],
    ['127.0.0.1:2525:203.0.113.9', '127.0.0.1:2525', '203.0.113.9'],
    ['127.0.0.1:12525:127.0.0.1', '127.0.0.1:12525', '127.0.0.1'],
    ['smtp:2001:db8::1', 'smtp', '2001:db8::1'],
    ['smtp:1234::1', 'smtp', '1234::1'],
    ['submission:::1', 'submission', '::1'],
    ['2525:2001:db8::7', '2525', '2001:db8::7'],
    ['127.0.0.1:25:2001:db8::7', '127.0.0.1:25', '2001:db8::7'],
    ['10.0.0.1:25:1234::1', '10.0.0.1:25', '1234::1'],
    ['[::1]:2525:2001:db8::7', '[::1]:2525', '2001:db8::7'],
    ['[2001:db8::1]:25:192.0.2.1', '[2001:db8::1]:25', '192.0.2.1'],
    ['mx.example.com:25:192.0.2.1', 'mx.example.com:25', '192.0.2.1'],
    // Postfix 3.8+: a range when the prefix length is shorter than the address.
    ['smtp:::/84', 'smtp', '::/84'],
    ['smtp:2001:db8:1234:5600::/84', 'smtp', '2001:db8:1234:5600::/84'],
    ['127.0.0.1:2525:::/84', '127.0.0.1:2525', '::/84'],
    ['[::1]:2525:2001:db8::/84', '[::1]:2525', '2001:db8::/84'],
    ['submission:192.0.2.0/24', 'submission', '192.0.2.0/24'],
    ['smtp:::1/84', 'smtp', '::1/84'], // host bits set: no range, kept whole as a name
    ['smtp:unknown', 'smtp', 'unknown'],
    ['noservice', '', 'noservice'],
  ];
  for (const [ident, service, address] of cases) assert.deepEqual(parseAnvilIdent(ident), { service, address }, ident);
});
