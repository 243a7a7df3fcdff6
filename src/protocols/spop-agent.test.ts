import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ACK_ACTIONS,
  ACK_V4,
  AGENT_DISCONNECT_NORMAL,
  AGENT_HELLO,
  HAPROXY_DISCONNECT_IDLE,
  HAPROXY_HELLO,
  HAPROXY_HELLO_HEALTHCHECK,
  NOTIFY_PIPELINED,
  NOTIFY_PIPELINED_STREAMS,
  NOTIFY_V4,
  NOTIFY_V6,
} from '../../test/helpers/spop-golden.js';
import { ProtocolError } from '../errors.js';
import { SPOP_FRAME, SPOP_HELLO_FRAME_MAX, SPOP_STATUS, SpopError, decodeFrame, encodeFrame } from './spop.js';
import { SPOP_AGENT_CAPABILITIES, SPOP_MAX_IN_FLIGHT, SpopAgentConnection, type SpopEvent } from './spop-agent.js';
import { decodeAgentHello, decodeDisconnect, encodeDisconnect, encodeHaproxyHello, encodeNotify, type SpopNotify } from './spop-messages.js';

const HELLO = { supportedVersions: ['2.0'], maxFrameSize: 16380, capabilities: ['pipelining'], healthcheck: false, engineId: null };

function notifyFrame(streamId: number, frameId: number): Buffer {
  return encodeNotify({ streamId, frameId, messages: [{ name: 'doorman-client', args: [{ name: 'src', value: { type: 'ipv4', value: '192.0.2.7' } }] }] }, 16380);
}

/** An agent past HELLO. */
function ready(hello = HELLO, opts = {}): SpopAgentConnection {
  const a = new SpopAgentConnection(opts);
  const [e] = a.receive(encodeHaproxyHello(hello));
  assert.equal(e?.kind, 'hello');
  return a;
}

/** The one event `bytes` cause, which must be an error with `code` and `status`; its reply must say the same status. */
function refused(a: SpopAgentConnection, bytes: Buffer, code: string, status: number): SpopError {
  const events = a.receive(bytes);
  const last = events[events.length - 1];
  assert.ok(last?.kind === 'error', `expected an error, got ${events.map((e) => e.kind).join(',')}`);
  assert.equal(last.error.code, code, last.error.message);
  assert.equal(last.error.status, status);
  assert.equal(decodeDisconnect(decodeFrame(last.reply.subarray(4)).payload).status, status, 'the AGENT-DISCONNECT carries the status');
  assert.equal(decodeFrame(last.reply.subarray(4)).type, SPOP_FRAME.AGENT_DISCONNECT);
  assert.ok(a.closed);
  assert.deepEqual(a.receive(NOTIFY_V4), [], 'bytes after the close are ignored');
  return last.error;
}

/** A session as HAProxy 2.6 sent it, as events; requests replaced by their ids. */
function session(pieces: Buffer[]): string[] {
  const a = new SpopAgentConnection();
  const out: string[] = [];
  for (const p of pieces) {
    for (const e of a.receive(p)) {
      if (e.kind === 'notify') out.push(`notify ${e.notify.streamId}/${e.notify.frameId} ${e.notify.messages[0]?.args[0]?.value.type}`);
      else if (e.kind === 'hello') out.push(`hello ${e.maxFrameSize} ${e.reply.toString('hex')}`);
      else if (e.kind === 'disconnect') out.push(`disconnect ${e.status} ${e.message} ${e.reply.toString('hex')}`);
      else out.push(`error ${e.error.code}`);
    }
  }
  assert.equal(a.partial, false);
  return out;
}

const SESSION = Buffer.concat([HAPROXY_HELLO, NOTIFY_V4, NOTIFY_V6, NOTIFY_PIPELINED, HAPROXY_DISCONNECT_IDLE]);

test('HAProxy 2.6\'s session: HELLO answered with the AGENT-HELLO it accepted, seven requests, DISCONNECT answered with status 0', () => {
  const whole = session([SESSION]);
  assert.deepEqual(whole, [
    `hello 16380 ${AGENT_HELLO.toString('hex')}`,
    'notify 0/1 ipv4',
    'notify 4/1 ipv6',
    ...NOTIFY_PIPELINED_STREAMS.map((s) => `notify ${s}/1 ipv4`),
    `disconnect 2 a timeout occurred ${AGENT_DISCONNECT_NORMAL.toString('hex')}`,
  ]);
});

test('the same session split at every byte, and a byte at a time, gives the same events', () => {
  const whole = session([SESSION]);
  for (let i = 1; i < SESSION.length; i++) assert.deepEqual(session([SESSION.subarray(0, i), SESSION.subarray(i)]), whole, `split at ${i}`);
  assert.deepEqual(session([...SESSION].map((b) => Buffer.from([b]))), whole);
});

test('receive() keeps nothing of a chunk once it returns: one buffer read into again and again gives the same events', () => {
  const whole = session([SESSION]);
  const shared = Buffer.alloc(SESSION.length);
  for (const at of [1, 3, 4, 5, 7, 11, 90, 200, SESSION.length - 1]) {
    const a = new SpopAgentConnection();
    const out: string[] = [];
    for (const piece of [SESSION.subarray(0, at), SESSION.subarray(at)]) {
      // Each piece is read into the one shared buffer, scribbled over once the agent has had it.
      piece.copy(shared);
      for (const e of a.receive(shared.subarray(0, piece.length))) out.push(e.kind === 'notify' ? `notify ${e.notify.streamId}/${e.notify.frameId} ${e.notify.messages[0]?.args[0]?.value.type}` : e.kind === 'hello' ? `hello ${e.maxFrameSize} ${e.reply.toString('hex')}` : e.kind === 'disconnect' ? `disconnect ${e.status} ${e.message} ${e.reply.toString('hex')}` : `error ${e.error.code}`);
      shared.fill(0xaa);
    }
    assert.deepEqual(out, whole, `split at ${at}`);
  }
});

test('pipelining: five NOTIFY frames in one read, answered last first; each ACK carries its own ids', () => {
  const a = new SpopAgentConnection();
  a.receive(HAPROXY_HELLO);
  const events = a.receive(NOTIFY_PIPELINED);
  const notes = events.map((e) => (e.kind === 'notify' ? e.notify : assert.fail(e.kind)));
  assert.deepEqual(notes.map((n) => n.streamId), NOTIFY_PIPELINED_STREAMS);
  assert.equal(a.inFlight, 5);
  for (const n of [...notes].reverse()) {
    const ack = decodeFrame(a.ack(n.streamId, n.frameId, [])!.subarray(4));
    assert.deepEqual([ack.type, ack.streamId, ack.frameId], [SPOP_FRAME.ACK, n.streamId, n.frameId]);
  }
  assert.equal(a.inFlight, 0);
  assert.throws(() => a.ack(19, 1, []), (e: unknown) => e instanceof ProtocolError && e.code === 'DOORMAN_ERR_SPOP_NOT_WAITING', 'answered twice');
});

test('the ACK to HAProxy\'s first NOTIFY is the bytes HAProxy 2.6 accepted', () => {
  const a = new SpopAgentConnection();
  a.receive(HAPROXY_HELLO);
  const [e] = a.receive(NOTIFY_V4);
  assert.equal(e?.kind, 'notify');
  assert.deepEqual(a.ack(0, 1, ACK_ACTIONS), ACK_V4);
});

test('health check: AGENT-HELLO, then close; nothing after it is read', () => {
  const a = new SpopAgentConnection();
  const [e, ...rest] = a.receive(Buffer.concat([HAPROXY_HELLO_HEALTHCHECK, NOTIFY_V4]));
  assert.ok(e?.kind === 'hello' && e.close && e.hello.healthcheck);
  assert.deepEqual(rest, []);
  assert.deepEqual(decodeAgentHello(decodeFrame(e.reply.subarray(4)).payload, 16380), { version: '2.0', maxFrameSize: 16380, capabilities: [...SPOP_AGENT_CAPABILITIES] });
  assert.ok(a.closed);
});

test('frame size: the lower of HAProxy\'s and ours is announced, and then enforced both ways', () => {
  const a = ready({ ...HELLO, maxFrameSize: 300 });
  assert.equal(a.maxFrameSize, 300);
  const small = ready(HELLO, { maxFrameSize: 512 });
  assert.equal(small.maxFrameSize, 512);
  const [n] = a.receive(notifyFrame(1, 1));
  assert.equal(n?.kind, 'notify');
  const many = Array.from({ length: 20 }, () => ({ action: 'set-var' as const, scope: 'txn' as const, name: 'refusal_text', value: { type: 'string' as const, value: 'x'.repeat(40) } }));
  assert.throws(() => a.ack(1, 1, many), (e: unknown) => e instanceof ProtocolError && e.code === 'DOORMAN_ERR_SPOP_ENCODE', 'an ACK over 300 bytes is the caller\'s to shorten');
  assert.equal(a.inFlight, 1, 'still waiting after the refused ACK');
  const big = encodeFrame(SPOP_FRAME.NOTIFY, 2, 1, 1000, (w) => w.bytes(Buffer.alloc(301 - 7)));
  refused(a, big, 'DOORMAN_ERR_SPOP_TOO_BIG', SPOP_STATUS.TOO_BIG);
});

test('before HELLO, a frame over 1024 bytes is refused without waiting for it', () => {
  const a = new SpopAgentConnection();
  const len = Buffer.alloc(4);
  len.writeUInt32BE(SPOP_HELLO_FRAME_MAX + 1);
  const e = refused(a, len, 'DOORMAN_ERR_SPOP_TOO_BIG', SPOP_STATUS.TOO_BIG);
  assert.match(e.message, /1025/);
});

test('out-of-order and malformed frames each end the connection with their status', () => {
  refused(new SpopAgentConnection(), NOTIFY_V4, 'DOORMAN_ERR_SPOP_STATE', SPOP_STATUS.INVALID);
  refused(ready(), HAPROXY_HELLO, 'DOORMAN_ERR_SPOP_STATE', SPOP_STATUS.INVALID);
  refused(ready(), encodeFrame(SPOP_FRAME.ACK, 1, 1, 1000, () => {}), 'DOORMAN_ERR_SPOP_TYPE', SPOP_STATUS.INVALID);
  refused(ready(), encodeFrame(SPOP_FRAME.AGENT_HELLO, 0, 0, 1000, () => {}), 'DOORMAN_ERR_SPOP_TYPE', SPOP_STATUS.INVALID);
  refused(ready(), encodeFrame(200 as typeof SPOP_FRAME.NOTIFY, 1, 1, 1000, () => {}), 'DOORMAN_ERR_SPOP_TYPE', SPOP_STATUS.INVALID);
  const helloWithIds = Buffer.from(encodeHaproxyHello(HELLO));
  helloWithIds[10] = 1; // frame-id
  refused(new SpopAgentConnection(), helloWithIds, 'DOORMAN_ERR_SPOP_FRAME', SPOP_STATUS.INVALID);
  refused(new SpopAgentConnection(), encodeHaproxyHello({ ...HELLO, supportedVersions: ['1.0'] }), 'DOORMAN_ERR_SPOP_BAD_VERSION', SPOP_STATUS.BAD_VERSION);
  refused(new SpopAgentConnection(), encodeHaproxyHello({ ...HELLO, supportedVersions: ['3.0'] }), 'DOORMAN_ERR_SPOP_BAD_VERSION', SPOP_STATUS.BAD_VERSION);
  // A 337-byte HELLO announcing 256: built at 1000 (varint f8 2f), then the value patched to 256 (f0 01).
  const tooSmallForItself = Buffer.from(encodeHaproxyHello({ ...HELLO, maxFrameSize: 1000, engineId: 'e'.repeat(250) }));
  const at = tooSmallForItself.indexOf(Buffer.from('max-frame-size\x03\xf8\x2f', 'latin1')) + 15;
  assert.ok(at > 15);
  tooSmallForItself[at] = 0xf0;
  tooSmallForItself[at + 1] = 0x01;
  refused(new SpopAgentConnection(), tooSmallForItself, 'DOORMAN_ERR_SPOP_TOO_BIG', SPOP_STATUS.TOO_BIG);
  const a = ready();
  assert.equal(a.receive(notifyFrame(5, 1))[0]?.kind, 'notify');
  refused(a, notifyFrame(5, 1), 'DOORMAN_ERR_SPOP_STATE', SPOP_STATUS.INVALID);
  const fragment = Buffer.from(notifyFrame(6, 1));
  fragment[8] = 0; // FIN clear
  refused(ready(), fragment, 'DOORMAN_ERR_SPOP_FRAGMENTED', SPOP_STATUS.FRAGMENTATION_NOT_SUPPORTED);
  const discWithIds = encodeFrame(SPOP_FRAME.HAPROXY_DISCONNECT, 1, 1, 1000, () => {});
  refused(ready(), discWithIds, 'DOORMAN_ERR_SPOP_FRAME', SPOP_STATUS.INVALID);
});

test('several frames of one stream may wait at once, answered in any order; a pair waiting is refused again', () => {
  const isNotWaiting = (e: unknown) => e instanceof ProtocolError && e.code === 'DOORMAN_ERR_SPOP_NOT_WAITING';
  for (const order of [[1, 2, 3], [3, 2, 1], [2, 1, 3]]) {
    const a = ready();
    assert.deepEqual(a.receive(Buffer.concat([notifyFrame(7, 1), notifyFrame(7, 2), notifyFrame(7, 3), notifyFrame(8, 1)])).map((e) => e.kind), ['notify', 'notify', 'notify', 'notify']);
    assert.equal(a.inFlight, 4);
    assert.throws(() => a.ack(7, 4, []), isNotWaiting);
    assert.throws(() => a.ack(9, 1, []), isNotWaiting);
    for (const f of order) {
      assert.equal(decodeFrame(a.ack(7, f, [])!.subarray(4)).frameId, f);
      assert.throws(() => a.ack(7, f, []), isNotWaiting, `frame ${f} answered twice`);
    }
    assert.equal(a.inFlight, 1);
    refused(a, notifyFrame(8, 1), 'DOORMAN_ERR_SPOP_STATE', SPOP_STATUS.INVALID);
  }
  const b = ready();
  b.receive(Buffer.concat([notifyFrame(5, 1), notifyFrame(5, 2)]));
  refused(b, notifyFrame(5, 2), 'DOORMAN_ERR_SPOP_STATE', SPOP_STATUS.INVALID);
});

test('a connection holds at most maxInFlight unanswered NOTIFY frames', () => {
  const a = ready(HELLO, { maxInFlight: 3 });
  assert.deepEqual(a.receive(Buffer.concat([notifyFrame(1, 1), notifyFrame(2, 1), notifyFrame(3, 1)])).map((e) => e.kind), ['notify', 'notify', 'notify']);
  refused(a, notifyFrame(4, 1), 'DOORMAN_ERR_SPOP_CAP', SPOP_STATUS.RESOURCE);
  const b = ready(HELLO, { maxInFlight: 1 });
  b.receive(notifyFrame(1, 1));
  b.ack(1, 1, []);
  assert.equal(b.receive(notifyFrame(1, 2))[0]?.kind, 'notify', 'an answered slot is free again');
  assert.equal(SPOP_MAX_IN_FLIGHT, 256);
});

test('our own DISCONNECT, and ACKs after the close', () => {
  const a = ready();
  a.receive(notifyFrame(1, 1));
  const bye = a.disconnect();
  assert.deepEqual(decodeDisconnect(decodeFrame(bye!.subarray(4)).payload), { status: 0, message: 'normal close' });
  assert.equal(a.ack(1, 1, []), null, 'the decision came too late: nothing to write');
  assert.equal(a.disconnect(), null);
  const before = new SpopAgentConnection().disconnect(SPOP_STATUS.TIMEOUT, 'x'.repeat(400));
  assert.ok(before!.length - 4 <= 256, 'before HELLO it fits the least any HAProxy takes');
});

test('options are checked', () => {
  for (const maxFrameSize of [255, 65533, 1.5]) assert.throws(() => new SpopAgentConnection({ maxFrameSize }), RangeError);
  assert.throws(() => new SpopAgentConnection({ maxInFlight: 0 }), RangeError);
});

test('a DISCONNECT while requests wait closes them all', () => {
  const a = ready();
  a.receive(notifyFrame(1, 1));
  const [e] = a.receive(encodeDisconnect(SPOP_FRAME.HAPROXY_DISCONNECT, { status: 0, message: 'bye' }, 16380));
  assert.ok(e?.kind === 'disconnect' && e.status === 0 && e.message === 'bye');
  assert.equal(a.inFlight, 0);
  assert.equal(a.ack(1, 1, []), null);
});

test('property: any bytes after HELLO end in events, never a throw; an error is the last event', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, hello) => {
      const a = new SpopAgentConnection();
      const events: SpopEvent[] = a.receive(Buffer.concat([hello ? HAPROXY_HELLO : Buffer.alloc(0), Buffer.from(bytes)]));
      const i = events.findIndex((e) => e.kind === 'error' || e.kind === 'disconnect');
      assert.ok(i === -1 || i === events.length - 1);
      for (const e of events) if (e.kind === 'notify') assert.ok(a.ack(e.notify.streamId, e.notify.frameId, []) !== undefined);
    }),
  );
});

test('property: NOTIFY frames with fresh ids, any number and split, come out as sent', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.tuple(fc.nat({ max: 0xffffffff }), fc.integer({ min: 1, max: 0xffffffff })), { maxLength: 20, selector: ([s, f]) => `${s}:${f}` }), fc.nat(), (ids, cut) => {
      const a = ready();
      const bytes = Buffer.concat(ids.map(([s, f]) => notifyFrame(s, f)));
      const at = bytes.length === 0 ? 0 : cut % bytes.length;
      const got = [...a.receive(bytes.subarray(0, at)), ...a.receive(bytes.subarray(at))].map((e) => (e.kind === 'notify' ? (e.notify as SpopNotify) : assert.fail(e.kind)));
      assert.deepEqual(got.map((n) => [n.streamId, n.frameId]), ids);
    }),
  );
});
