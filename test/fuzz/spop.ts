/**
 * Fuzzing SPOP as the agent reads it (src/protocols/spop.ts, spop-messages.ts,
 * spop-agent.ts): bytes into a SpopAgentConnection, events out.
 *
 * Every input is fed in chunks and also whole: both must yield the same
 * events (kinds, error codes, decoded requests). Whatever the bytes, the
 * agent must never throw: a protocol error is one last `error` event whose
 * reply is an AGENT-DISCONNECT carrying the error's status. Framing is
 * checked against a model read straight from the spec (`frameModel`): the
 * agent takes exactly the frames the model sees, and refuses a declared
 * length over the limit in force (1024 before HELLO, the negotiated size
 * after) at the frame the model says. Requests and ACKs round-trip.
 */
import fc from 'fast-check';
import { SPOP_FRAME, SPOP_HELLO_FRAME_MAX, SPOP_DEFAULT_MAX_FRAME_SIZE, SPOP_STATUS, SpopCursor, SpopError, decodeFrame, encodeFrame } from '../../src/protocols/spop.js';
import { SpopAgentConnection, type SpopEvent } from '../../src/protocols/spop-agent.js';
import { decodeAck, decodeAgentHello, decodeDisconnect, encodeDisconnect, encodeHaproxyHello, encodeNotify, type SpopAction, type SpopMessage } from '../../src/protocols/spop-messages.js';
import { sameValue, spopValueArb } from '../helpers/spop-values.js';
import { HAPROXY_DISCONNECT_IDLE, HAPROXY_HELLO, HAPROXY_HELLO_HEALTHCHECK, NOTIFY_PIPELINED, NOTIFY_V4, NOTIFY_V6 } from '../helpers/spop-golden.js';
import { chunksOf, codeOf, cutsArb, mutated, randomBytes, type Cuts, type FuzzCodec } from './harness.js';

/** What the model says the bytes frame into: lengths in order, and whether the stream ends on a length over the limit. */
interface FrameModel {
  readonly lengths: number[];
  /** Index of the frame whose declared length is over the limit in force, or -1. */
  readonly tooBig: number;
}

/** The spec's framing alone: 4-byte length, then that many bytes; `limitAt(i)` is the cap on frame i. */
function frameModel(b: Buffer, limitAt: (i: number) => number): FrameModel {
  const lengths: number[] = [];
  for (let pos = 0; pos + 4 <= b.length; ) {
    const len = b.readUInt32BE(pos);
    if (len > limitAt(lengths.length)) return { lengths, tooBig: lengths.length };
    if (pos + 4 + len > b.length) break;
    lengths.push(len);
    pos += 4 + len;
  }
  return { lengths, tooBig: -1 };
}

/** One event as a comparable word; requests with their decoded content. */
function describe(e: SpopEvent): string {
  switch (e.kind) {
    case 'hello':
      return `hello ${e.maxFrameSize}${e.close ? ' close' : ''}`;
    case 'notify':
      return `notify ${e.notify.streamId}/${e.notify.frameId} ${JSON.stringify(e.notify.messages, (_, v) => (typeof v === 'bigint' ? `${v}n` : v))}`;
    case 'disconnect':
      return `disconnect ${e.status}`;
    case 'error':
      return e.error.code;
  }
}

/**
 * Checks one event's reply bytes. A NOTIFY to answer is put in `toAnswer`:
 * answered between chunks, a NOTIFY would leave flight before a later one
 * with the same ids arrives, which fed whole would find it still in flight,
 * so chunked and whole would rightly differ.
 */
function checkEvent(e: SpopEvent, agent: SpopAgentConnection, toAnswer: SpopEvent[] | null): void {
  if (e.kind === 'error') {
    codeOf(e.error, SpopError);
    const d = decodeDisconnect(decodeFrame(e.reply.subarray(4)).payload);
    if (d.status !== e.error.status || e.reply.length - 4 > Math.max(256, agent.maxFrameSize)) throw new Error(`error reply says ${d.status}, error ${e.error.status}`);
  } else if (e.kind === 'hello') {
    const h = decodeAgentHello(decodeFrame(e.reply.subarray(4)).payload, e.hello.maxFrameSize);
    if (h.maxFrameSize !== e.maxFrameSize || h.maxFrameSize > SPOP_DEFAULT_MAX_FRAME_SIZE) throw new Error(`AGENT-HELLO announces ${h.maxFrameSize}`);
  } else if (e.kind === 'disconnect') {
    if (decodeDisconnect(decodeFrame(e.reply.subarray(4)).payload).status !== SPOP_STATUS.NONE) throw new Error('disconnect not answered with status 0');
  } else if (toAnswer !== null) toAnswer.push(e);
}

/** Answers NOTIFYs once the input is all in (the rest stay in flight); each ACK must read back. */
function answerAll(agent: SpopAgentConnection, notifies: readonly SpopEvent[]): void {
  for (const e of notifies) {
    if (e.kind !== 'notify') continue;
    const n = e.notify;
    const ack = agent.ack(n.streamId, n.frameId, [{ action: 'set-var', scope: 'sess', name: 'verdict', value: { type: 'string', value: 'ok' } }]);
    // The connection may have closed since: then there is nothing to write.
    if (ack === null ? !agent.closed : decodeAck(decodeFrame(ack.subarray(4))).frameId !== n.frameId) throw new Error('ACK does not read back');
  }
}

/** Feeds `bytes` in the chunks `cuts` makes; returns the events as words, having checked every invariant. */
function feed(bytes: Buffer, cuts: Cuts, answer: boolean): string[] {
  const agent = new SpopAgentConnection();
  const words: string[] = [];
  let negotiated = -1;
  let ended = false;
  let n = 0;
  const toAnswer: SpopEvent[] = [];
  for (const chunk of chunksOf(bytes, cuts)) {
    const events = agent.receive(chunk);
    if (ended && events.length > 0) throw new Error('events after the connection ended');
    for (const [i, e] of events.entries()) {
      const last = e.kind === 'error' || e.kind === 'disconnect' || (e.kind === 'hello' && e.close);
      if (last && i !== events.length - 1) throw new Error(`${e.kind} is not the last event`);
      ended ||= last;
      if (e.kind === 'hello') negotiated = e.maxFrameSize;
      checkEvent(e, agent, answer && n++ % 2 === 0 ? toAnswer : null);
      words.push(describe(e));
    }
  }
  if (ended !== agent.closed) throw new Error('closed without a closing event, or the reverse');
  answerAll(agent, toAnswer);
  checkFraming(bytes, words, negotiated);
  return words;
}

/** The agent saw the frames the spec's framing makes, and refused an over-long one where the model says. */
function checkFraming(bytes: Buffer, words: readonly string[], negotiated: number): void {
  const model = frameModel(bytes, (i) => (i === 0 || negotiated < 0 ? SPOP_HELLO_FRAME_MAX : negotiated));
  const error = words.findIndex((w) => w.startsWith('DOORMAN_ERR'));
  const ending = words.findIndex((w) => w.startsWith('disconnect') || w.endsWith(' close'));
  if (error === -1 && ending === -1) {
    // Nothing stopped the agent: one event per complete frame, and no over-long frame.
    if (words.length !== model.lengths.length || model.tooBig !== -1) throw new Error(`${words.length} events for ${model.lengths.length} frames (too big at ${model.tooBig})`);
  } else if (error !== -1) {
    if (error > model.lengths.length) throw new Error(`error after frame ${error} of ${model.lengths.length}`);
    if (error === model.tooBig && words[error] !== 'DOORMAN_ERR_SPOP_TOO_BIG') throw new Error(`frame ${error} over the limit, refused as ${words[error]}`);
  }
}

function sameBothWays(bytes: Buffer, cuts: Cuts, answer: boolean): string[] {
  const split = feed(bytes, cuts, answer);
  const whole = feed(bytes, [], answer);
  if (JSON.stringify(split) !== JSON.stringify(whole)) throw new Error(`chunked: ${split.join(' | ').slice(0, 300)}\nwhole: ${whole.join(' | ').slice(0, 300)}`);
  return split;
}

function outcome(words: readonly string[]): string {
  const last = words[words.length - 1];
  if (last === undefined) return 'incomplete';
  if (last.startsWith('DOORMAN_ERR')) return last;
  return last.split(' ')[0] as string;
}

const nameArb = fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/);
const messageArb: fc.Arbitrary<SpopMessage> = fc.record({ name: nameArb, args: fc.array(fc.record({ name: fc.oneof(fc.constant(''), nameArb), value: spopValueArb }), { maxLength: 6 }) });
const helloArb = fc.record({
  supportedVersions: fc.constantFrom(['2.0'], ['2.0', '1.0'], ['1.0'], ['3.1']),
  maxFrameSize: fc.oneof(fc.integer({ min: 256, max: 600 }), fc.constantFrom(16380, 65532, 0xffffffff)),
  capabilities: fc.constantFrom([], ['pipelining'], ['pipelining', 'async']),
  healthcheck: fc.boolean(),
  engineId: fc.option(fc.uuid(), { nil: null }),
});
/** A session HAProxy might send: HELLO, NOTIFY frames with fresh ids, sometimes a DISCONNECT. */
const sessionArb = fc
  .tuple(helloArb, fc.array(fc.tuple(fc.nat({ max: 3000 }), fc.array(messageArb, { maxLength: 3 })), { maxLength: 6 }), fc.boolean())
  .map(([hello, notifies, bye]) => {
    const limit = Math.min(hello.maxFrameSize, SPOP_DEFAULT_MAX_FRAME_SIZE);
    const frames = [encodeHaproxyHello(hello)];
    notifies.forEach(([streamId, messages], i) => {
      try {
        frames.push(encodeNotify({ streamId, frameId: i + 1, messages }, limit));
      } catch {
        // Over the negotiated size: HAProxy would not send it either.
      }
    });
    if (bye) frames.push(encodeDisconnect(SPOP_FRAME.HAPROXY_DISCONNECT, { status: 0, message: 'bye' }, limit));
    return Buffer.concat(frames);
  });
const goldenArb = fc.constantFrom(
  Buffer.concat([HAPROXY_HELLO, NOTIFY_V4, NOTIFY_V6, NOTIFY_PIPELINED, HAPROXY_DISCONNECT_IDLE]),
  Buffer.concat([HAPROXY_HELLO, NOTIFY_PIPELINED]),
  HAPROXY_HELLO_HEALTHCHECK,
);
const TOKENS = [
  Buffer.from([0, 0, 0, 0x58]),
  Buffer.from([0, 0, 0x04, 0x01]),
  Buffer.from([0xff, 0xff, 0xff, 0xff]),
  Buffer.from([0x03, 0, 0, 0, 0x01]),
  Buffer.from([0x01, 0, 0, 0, 0x01, 0, 0]),
  Buffer.from([0x00, 0, 0, 0, 0x00]),
  Buffer.from([0xf0, 0x80, 0x80]),
  Buffer.from([0xff, 0xf0, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0xfe, 0x0e]),
  Buffer.from([0x08, 0xf1, 0x3f]),
  Buffer.from([0x11]),
];

export const spopCodec: FuzzCodec = {
  name: 'spop',
  open(tally) {
    return {
      properties: [
        {
          name: 'random bytes, bare or behind a real HELLO, any cuts',
          property: fc.property(fc.oneof(randomBytes(300), randomBytes(300).map((b) => Buffer.concat([HAPROXY_HELLO, b]))), cutsArb, fc.boolean(), (b, cuts, answer) => {
            tally.add('random', outcome(sameBothWays(b, cuts, answer)));
          }),
        },
        {
          name: 'mutated sessions (captured from HAProxy and generated), any cuts',
          property: fc.property(mutated(fc.oneof(goldenArb, sessionArb), TOKENS), cutsArb, fc.boolean(), (b, cuts, answer) => {
            tally.add('mutated', outcome(sameBothWays(b, cuts, answer)));
          }),
        },
        {
          name: 'generated sessions decode to exactly what was encoded, and their ACKs read back',
          property: fc.property(helloArb, fc.array(fc.array(messageArb, { maxLength: 3 }), { maxLength: 5 }), cutsArb, (hello, notifies, cuts) => {
            const h = { ...hello, supportedVersions: ['2.0'], healthcheck: false };
            const limit = Math.min(h.maxFrameSize, SPOP_DEFAULT_MAX_FRAME_SIZE);
            const sent = notifies.map((messages, i) => ({ streamId: i * 2, frameId: i + 1, messages })).filter((n) => encodeNotify(n, 1 << 30).length - 4 <= limit);
            const bytes = Buffer.concat([encodeHaproxyHello(h), ...sent.map((n) => encodeNotify(n, limit))]);
            const agent = new SpopAgentConnection();
            const events = chunksOf(bytes, cuts).flatMap((c) => agent.receive(c));
            if (events[0]?.kind !== 'hello' || events.length !== sent.length + 1) throw new Error(`events ${events.map(describe).join(' | ').slice(0, 300)}`);
            const got = events.slice(1).map((e) => (e.kind === 'notify' ? e.notify : null));
            got.forEach((n, i) => {
              const want = sent[i]!;
              const same = n !== null && n.streamId === want.streamId && n.frameId === want.frameId && n.messages.length === want.messages.length && n.messages.every((m, j) => m.name === want.messages[j]?.name && m.args.every((a, k) => a.name === want.messages[j]?.args[k]?.name && sameValue(a.value, want.messages[j]?.args[k]?.value)));
              if (!same) throw new Error(`NOTIFY ${i} came back different`);
            });
            // Answered last first: pipelining lets ACKs go in any order.
            for (const n of [...sent].reverse()) {
              const actions: SpopAction[] = [{ action: 'set-var', scope: 'txn', name: `f${n.frameId}`, value: { type: 'uint32', value: n.streamId } }];
              const ack = decodeAck(decodeFrame(agent.ack(n.streamId, n.frameId, actions)!.subarray(4)));
              if (ack.streamId !== n.streamId || ack.frameId !== n.frameId || ack.actions[0]?.name !== `f${n.frameId}`) throw new Error('ACK read back wrong');
            }
            if (agent.inFlight !== 0) throw new Error(`${agent.inFlight} still in flight`);
            tally.add('valid', `ok ${sent.length} notify`);
          }),
        },
        {
          name: 'typed values: arbitrary bytes read or refused, encoded values read back',
          property: fc.property(randomBytes(60), spopValueArb, (raw, v) => {
            const c = new SpopCursor(raw, 0, raw.length);
            try {
              while (!c.done) c.value('v');
              tally.add('value', 'ok');
            } catch (err) {
              tally.add('value', codeOf(err, SpopError));
            }
            const frame = encodeFrame(SPOP_FRAME.ACK, 1, 1, 1 << 20, (w) => w.value(v));
            const f = decodeFrame(frame.subarray(4));
            if (!sameValue(v, new SpopCursor(f.payload, 0, f.payload.length).value('v'))) throw new Error(`${v.type} did not round-trip`);
          }),
        },
      ],
    };
  },
};
