import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ACK_ACTIONS, ACK_V4, AGENT_DISCONNECT_NORMAL, AGENT_HELLO, HAPROXY_DISCONNECT_IDLE, HAPROXY_HELLO, HAPROXY_HELLO_ENGINE_ID, HAPROXY_HELLO_HEALTHCHECK, NOTIFY_V4, NOTIFY_V6 } from '../../test/helpers/spop-golden.js';
import { sameValue, spopValueArb } from '../../test/helpers/spop-values.js';
import { ProtocolError } from '../errors.js';
import { SPOP_FRAME, SPOP_MAX_ARGS, SPOP_MAX_KV_ITEMS, SPOP_MAX_MESSAGES, SPOP_STATUS, SpopError, SpopWriter, decodeFrame, encodeFrame, type SpopValue } from './spop.js';
import {
  decodeAck,
  decodeAgentHello,
  decodeDisconnect,
  decodeHaproxyHello,
  decodeNotify,
  encodeAck,
  encodeAgentHello,
  encodeDisconnect,
  encodeHaproxyHello,
  encodeNotify,
  spopArg,
  supportsOurVersion,
  type SpopAction,
  type SpopMessage,
} from './spop-messages.js';

const body = (framed: Buffer) => decodeFrame(framed.subarray(4));

function code(c: string, status?: number) {
  return (e: unknown) => e instanceof ProtocolError && e.code === c && (status === undefined || (e instanceof SpopError && e.status === status));
}

/** A KV-list payload built item by item: [name, typed value]. */
function kv(items: Array<[string, SpopValue]>): Buffer {
  const w = new SpopWriter();
  for (const [k, v] of items) {
    w.name(k, 'k');
    w.value(v);
  }
  return w.finish();
}

const str = (value: string): SpopValue => ({ type: 'string', value });
const u32 = (value: number): SpopValue => ({ type: 'uint32', value });
const HELLO_ITEMS: Array<[string, SpopValue]> = [['supported-versions', str('2.0')], ['max-frame-size', u32(16380)], ['capabilities', str('pipelining')]];

test('HAProxy 2.6\'s HELLO and its health check HELLO decode to what it announced', () => {
  assert.deepEqual(decodeHaproxyHello(body(HAPROXY_HELLO).payload), {
    supportedVersions: ['2.0'],
    maxFrameSize: 16380,
    capabilities: ['pipelining', 'async'],
    healthcheck: false,
    engineId: HAPROXY_HELLO_ENGINE_ID,
  });
  assert.deepEqual(decodeHaproxyHello(body(HAPROXY_HELLO_HEALTHCHECK).payload), { supportedVersions: ['2.0'], maxFrameSize: 16380, capabilities: [], healthcheck: true, engineId: null });
});

test('HELLO encodes back to HAProxy\'s bytes, item for item', () => {
  const hello = decodeHaproxyHello(body(HAPROXY_HELLO).payload);
  assert.deepEqual(encodeHaproxyHello(hello), HAPROXY_HELLO);
  assert.deepEqual(encodeHaproxyHello(decodeHaproxyHello(body(HAPROXY_HELLO_HEALTHCHECK).payload)), HAPROXY_HELLO_HEALTHCHECK);
});

test('HELLO: each missing mandatory item has its own status; bad types, duplicates and versions are refused', () => {
  const without = (key: string) => kv(HELLO_ITEMS.filter(([k]) => k !== key));
  assert.throws(() => decodeHaproxyHello(without('supported-versions')), code('DOORMAN_ERR_SPOP_NO_VERSION', SPOP_STATUS.NO_VERSION));
  assert.throws(() => decodeHaproxyHello(without('max-frame-size')), code('DOORMAN_ERR_SPOP_NO_FRAME_SIZE', SPOP_STATUS.NO_FRAME_SIZE));
  assert.throws(() => decodeHaproxyHello(without('capabilities')), code('DOORMAN_ERR_SPOP_NO_CAPABILITIES', SPOP_STATUS.NO_CAPABILITIES));
  assert.throws(() => decodeHaproxyHello(kv([...HELLO_ITEMS.slice(0, 1), ['max-frame-size', { type: 'int64', value: 16380n }], HELLO_ITEMS[2]!])), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID));
  assert.throws(() => decodeHaproxyHello(kv([...HELLO_ITEMS, ['healthcheck', str('yes')]])), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID));
  assert.throws(() => decodeHaproxyHello(kv([...HELLO_ITEMS, ['capabilities', str('')]])), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID));
  assert.throws(() => decodeHaproxyHello(kv([['', str('x')], ...HELLO_ITEMS])), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID));
  assert.throws(() => decodeHaproxyHello(kv([['supported-versions', str('2')], ...HELLO_ITEMS.slice(1)])), code('DOORMAN_ERR_SPOP_BAD_VERSION', SPOP_STATUS.BAD_VERSION));
  assert.throws(() => decodeHaproxyHello(kv([['supported-versions', str(' , ')], ...HELLO_ITEMS.slice(1)])), code('DOORMAN_ERR_SPOP_BAD_VERSION', SPOP_STATUS.BAD_VERSION));
  assert.throws(() => decodeHaproxyHello(kv([HELLO_ITEMS[0]!, ['max-frame-size', u32(255)], HELLO_ITEMS[2]!])), code('DOORMAN_ERR_SPOP_BAD_FRAME_SIZE', SPOP_STATUS.BAD_FRAME_SIZE));
  const many = Array.from({ length: SPOP_MAX_KV_ITEMS - HELLO_ITEMS.length }, (_, i): [string, SpopValue] => [`x-${i}`, { type: 'null' }]);
  assert.equal(decodeHaproxyHello(kv([...HELLO_ITEMS.slice(0, 2), ...many, HELLO_ITEMS[2]!])).maxFrameSize, 16380, 'unknown items are read and skipped, up to the cap');
  assert.throws(() => decodeHaproxyHello(kv([...HELLO_ITEMS, ...many, ['one-more', { type: 'null' }]])), code('DOORMAN_ERR_SPOP_CAP', SPOP_STATUS.RESOURCE));
  assert.throws(() => decodeHaproxyHello(Buffer.concat([kv(HELLO_ITEMS), Buffer.from([0x05])])), code('DOORMAN_ERR_SPOP_TRUNCATED', SPOP_STATUS.INVALID));
  const spaced = decodeHaproxyHello(kv([['supported-versions', str(' 2.0 , 1.5 ')], HELLO_ITEMS[1]!, ['capabilities', str(' pipelining ,, async ')]]));
  assert.deepEqual([spaced.supportedVersions, spaced.capabilities], [['2.0', '1.5'], ['pipelining', 'async']]);
});

test('our version is taken when HAProxy lists its major version, whatever the minor', () => {
  assert.equal(supportsOurVersion(['2.0']), true);
  assert.equal(supportsOurVersion(['2.5', '1.0']), true);
  assert.equal(supportsOurVersion(['1.9']), false);
  assert.equal(supportsOurVersion(['3.0']), false);
});

test('AGENT-HELLO is byte for byte what HAProxy 2.6 accepted, and reads back as HAProxy would read it', () => {
  const ours = encodeAgentHello({ version: '2.0', maxFrameSize: 16380, capabilities: ['pipelining'] }, 16380);
  assert.deepEqual(ours, AGENT_HELLO);
  assert.deepEqual(decodeAgentHello(body(ours).payload, 16380), { version: '2.0', maxFrameSize: 16380, capabilities: ['pipelining'] });
  const smaller = body(encodeAgentHello({ version: '2.0', maxFrameSize: 300, capabilities: [] }, 16380));
  assert.throws(() => decodeAgentHello(smaller.payload, 299), code('DOORMAN_ERR_SPOP_BAD_FRAME_SIZE', SPOP_STATUS.BAD_FRAME_SIZE));
  assert.throws(() => decodeAgentHello(body(encodeAgentHello({ version: '1.0', maxFrameSize: 300, capabilities: [] }, 16380)).payload, 16380), code('DOORMAN_ERR_SPOP_BAD_VERSION'));
});

test('DISCONNECT: HAProxy\'s idle timeout decodes; our reply is the bytes HAProxy took; messages are cut to 255 bytes and to the frame', () => {
  assert.deepEqual(decodeDisconnect(body(HAPROXY_DISCONNECT_IDLE).payload), { status: SPOP_STATUS.TIMEOUT, message: 'a timeout occurred' });
  assert.deepEqual(encodeDisconnect(SPOP_FRAME.AGENT_DISCONNECT, { status: 0, message: 'normal close' }, 16380), AGENT_DISCONNECT_NORMAL);
  const long = body(encodeDisconnect(SPOP_FRAME.AGENT_DISCONNECT, { status: 4, message: 'é'.repeat(200) }, 16380));
  const d = decodeDisconnect(long.payload);
  assert.equal(d.message, 'é'.repeat(127), 'cut at a character boundary within 255 bytes');
  const tight = encodeDisconnect(SPOP_FRAME.AGENT_DISCONNECT, { status: 4, message: 'x'.repeat(300) }, 256);
  assert.ok(tight.length - 4 <= 256, `a DISCONNECT before HELLO fits the 256 bytes every peer takes (${tight.length - 4})`);
  assert.throws(() => decodeDisconnect(kv([['status-code', u32(1)]])), code('DOORMAN_ERR_SPOP_MISSING_ITEM', SPOP_STATUS.INVALID));
  assert.throws(() => decodeDisconnect(kv([['status-code', u32(1)], ['message', str('x'.repeat(256))]])), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID));
});

test('NOTIFY from HAProxy 2.6: every argument type it sent, including the unnamed one and a NULL', () => {
  const v4 = decodeNotify(body(NOTIFY_V4));
  assert.equal(v4.streamId, 0);
  assert.equal(v4.frameId, 1);
  assert.equal(v4.messages.length, 1);
  const m = v4.messages[0] as SpopMessage;
  assert.equal(m.name, 'doorman-client');
  assert.deepEqual(m.args, [
    { name: 'src', value: { type: 'ipv4', value: '127.0.0.1' } },
    { name: 'dport', value: { type: 'int64', value: 47001n } },
    { name: 'frontend', value: { type: 'string', value: 'mail' } },
    { name: 'flag', value: { type: 'bool', value: true } },
    { name: 'nothing', value: { type: 'null' } },
    { name: 'blob', value: { type: 'binary', value: Buffer.from([0x00, 0xff, 0x10]) } },
    { name: '', value: { type: 'ipv4', value: '127.0.0.1' } },
  ]);
  const v6 = decodeNotify(body(NOTIFY_V6));
  assert.equal(v6.streamId, 4);
  assert.deepEqual(spopArg(v6.messages[0]!, 'src'), { type: 'ipv6', value: '::1' });
  assert.equal(spopArg(v6.messages[0]!, 'absent'), undefined);
  assert.deepEqual(encodeNotify(v4, 16380), NOTIFY_V4, 'encodes back to HAProxy\'s bytes');
});

/** A NOTIFY frame (stream 1, frame 1) whose payload is `payload`. */
function notifyOf(payload: Buffer) {
  return body(encodeFrame(SPOP_FRAME.NOTIFY, 1, 1, 1 << 20, (w) => w.bytes(payload)));
}

test('NOTIFY: caps on messages and arguments, empty names and frame-id 0 are refused', () => {
  const msg = (name: string, nargs: number) => {
    const w = new SpopWriter();
    w.name(name, 'm');
    w.u8(nargs);
    for (let i = 0; i < nargs; i++) {
      w.name(`a${i}`, 'a');
      w.value({ type: 'null' });
    }
    return w.finish();
  };
  assert.equal(decodeNotify(notifyOf(Buffer.concat(Array(SPOP_MAX_MESSAGES).fill(msg('m', 0))))).messages.length, SPOP_MAX_MESSAGES);
  assert.throws(() => decodeNotify(notifyOf(Buffer.concat(Array(SPOP_MAX_MESSAGES + 1).fill(msg('m', 0))))), code('DOORMAN_ERR_SPOP_CAP', SPOP_STATUS.RESOURCE));
  assert.equal(decodeNotify(notifyOf(msg('m', SPOP_MAX_ARGS))).messages[0]?.args.length, SPOP_MAX_ARGS);
  assert.throws(() => decodeNotify(notifyOf(msg('m', SPOP_MAX_ARGS + 1))), code('DOORMAN_ERR_SPOP_CAP', SPOP_STATUS.RESOURCE));
  assert.throws(() => decodeNotify(notifyOf(msg('', 0))), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID));
  assert.throws(() => decodeNotify(notifyOf(msg('m', 2).subarray(0, -1))), code('DOORMAN_ERR_SPOP_TRUNCATED', SPOP_STATUS.INVALID));
  assert.throws(() => decodeNotify(notifyOf(Buffer.from([0x01, 0x6d]))), code('DOORMAN_ERR_SPOP_TRUNCATED', SPOP_STATUS.INVALID), 'no argument count');
  assert.deepEqual(decodeNotify(notifyOf(Buffer.alloc(0))).messages, [], 'an empty list of messages is a list');
  const zero = body(encodeFrame(SPOP_FRAME.NOTIFY, 1, 0, 1000, () => {}));
  assert.throws(() => decodeNotify(zero), code('DOORMAN_ERR_SPOP_FRAME', SPOP_STATUS.INVALID));
});

test('ACK: the bytes HAProxy 2.6 accepted, read back action for action', () => {
  const ack = encodeAck(0, 1, ACK_ACTIONS, 16380);
  assert.deepEqual(ack, ACK_V4);
  const back = decodeAck(body(ack));
  assert.deepEqual([back.streamId, back.frameId], [0, 1]);
  assert.deepEqual(back.actions, ACK_ACTIONS);
  assert.deepEqual(encodeAck(7, 2, [], 300).toString('hex'), '0000000767000000010702', 'an ACK with no action is a bare header');
});

test('ACK: names HAProxy cannot use, unknown scopes and actions are refused both ways', () => {
  const set = (name: string, scope = 'sess'): SpopAction => ({ action: 'set-var', scope, name, value: { type: 'null' } }) as SpopAction;
  for (const a of [set(''), set('a-b'), set('a b'), set('é'), set('ok', 'global')]) assert.throws(() => encodeAck(1, 1, [a], 16380), code('DOORMAN_ERR_SPOP_ENCODE'));
  assert.throws(() => encodeAck(1, 1, [{ action: 'set-header' } as unknown as SpopAction], 16380), code('DOORMAN_ERR_SPOP_ENCODE'));
  assert.throws(() => encodeAck(1, 1, Array(40).fill(set('x'.repeat(200))), 256), code('DOORMAN_ERR_SPOP_ENCODE'), 'over the negotiated frame size');
  const ackOf = (hex: string) => body(encodeFrame(SPOP_FRAME.ACK, 1, 1, 1000, (w) => w.bytes(Buffer.from(hex.replace(/ /g, ''), 'hex'))));
  assert.deepEqual(decodeAck(ackOf('02 02 02 01 61')).actions, [{ action: 'unset-var', scope: 'txn', name: 'a' }]);
  assert.throws(() => decodeAck(ackOf('03 02 02 01 61')), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID));
  assert.throws(() => decodeAck(ackOf('01 02 02 01 61 00')), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID), 'set-var with 2 arguments');
  assert.throws(() => decodeAck(ackOf('02 02 05 01 61')), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID), 'scope 5');
  assert.throws(() => decodeAck(ackOf('02 02 02 01 2d')), code('DOORMAN_ERR_SPOP_PAYLOAD', SPOP_STATUS.INVALID), 'name "-"');
  assert.throws(() => decodeAck(ackOf('01 03 02 01 61')), code('DOORMAN_ERR_SPOP_TRUNCATED', SPOP_STATUS.INVALID), 'set-var without its value');
});

const nameArb = fc.stringMatching(/^[A-Za-z0-9._-]{1,20}$/);
const messageArb: fc.Arbitrary<SpopMessage> = fc.record({
  name: nameArb,
  args: fc.array(fc.record({ name: fc.oneof(fc.constant(''), nameArb), value: spopValueArb }), { maxLength: 8 }),
});

test('property: NOTIFY round-trips for any messages, ids and values', () => {
  fc.assert(
    fc.property(fc.nat({ max: 0xffffffff }), fc.integer({ min: 1, max: 0xffffffff }), fc.array(messageArb, { maxLength: 4 }), (streamId, frameId, messages) => {
      const back = decodeNotify(body(encodeNotify({ streamId, frameId, messages }, 16380)));
      assert.deepEqual([back.streamId, back.frameId, back.messages.length], [streamId, frameId, messages.length]);
      back.messages.forEach((m, i) => {
        const want = messages[i] as SpopMessage;
        assert.equal(m.name, want.name);
        assert.equal(m.args.length, want.args.length);
        m.args.forEach((a, j) => assert.ok(a.name === want.args[j]?.name && sameValue(a.value, want.args[j].value), `arg ${j}`));
      });
    }),
  );
});

test('property: ACK and HELLO round-trip', () => {
  const scopeArb = fc.constantFrom('proc', 'sess', 'txn', 'req', 'res' as const);
  const varName = fc.stringMatching(/^[A-Za-z0-9._]{1,30}$/);
  const actionArb: fc.Arbitrary<SpopAction> = fc.oneof(
    fc.record({ action: fc.constant('set-var' as const), scope: scopeArb, name: varName, value: spopValueArb }),
    fc.record({ action: fc.constant('unset-var' as const), scope: scopeArb, name: varName }),
  );
  fc.assert(
    fc.property(fc.array(actionArb, { maxLength: 10 }), (actions) => {
      const back = decodeAck(body(encodeAck(3, 9, actions, 16380))).actions;
      assert.equal(back.length, actions.length);
      back.forEach((a, i) => {
        const want = actions[i] as SpopAction;
        assert.deepEqual([a.action, a.scope, a.name], [want.action, want.scope, want.name]);
        if (a.action === 'set-var' && want.action === 'set-var') assert.ok(sameValue(a.value, want.value));
      });
    }),
  );
  const tokenArb = fc.stringMatching(/^[a-z0-9-]{1,12}$/);
  fc.assert(
    fc.property(
      fc.record({
        supportedVersions: fc.array(fc.tuple(fc.nat({ max: 999 }), fc.nat({ max: 999 })).map(([a, b]) => `${a}.${b}`), { minLength: 1, maxLength: 4 }),
        maxFrameSize: fc.integer({ min: 256, max: 0xffffffff }),
        capabilities: fc.array(tokenArb, { maxLength: 4 }),
        healthcheck: fc.boolean(),
        engineId: fc.option(fc.uuid(), { nil: null }),
      }),
      (h) => assert.deepEqual(decodeHaproxyHello(body(encodeHaproxyHello(h)).payload), { ...h }),
    ),
  );
});
