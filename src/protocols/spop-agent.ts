/**
 * One SPOP connection seen from the agent, as a state machine with no I/O:
 * the listener feeds it bytes and gets events, each carrying the bytes to
 * write back, and asks it for ACK bytes when it has decided.
 *
 *   hello   -- HAPROXY-HELLO ------------> ready    reply AGENT-HELLO
 *   hello   -- HAPROXY-HELLO healthcheck -> closed   reply AGENT-HELLO, then close
 *   ready   -- NOTIFY -------------------> ready    a request; ack() answers it
 *   any     -- HAPROXY-DISCONNECT -------> closed   reply AGENT-DISCONNECT (0), then close
 *   any     -- anything else, bad bytes -> closed   reply AGENT-DISCONNECT (the error's status), then close
 *   any     -- disconnect() -------------> closed   AGENT-DISCONNECT of our own (shutdown, idle)
 *
 * Capabilities: the agent announces "pipelining", so HAProxy may send several
 * NOTIFY frames before the first ACK, and the ACKs may go back in any order,
 * matched by stream-id and frame-id. It does not announce "async" (ACKs on a
 * connection other than the NOTIFY's: it would tie connections together by
 * engine-id for nothing, as a Doorman decision is made while the connection
 * waits; HAProxy 3.x ignores it) nor "fragmentation" (taking a payload split
 * over frames: a Doorman message is a few hundred bytes, reassembly would
 * mean buffering across frames, and 3.x removed it). Without it HAProxy 2.6
 * never fragments: an event whose messages do not fit one frame fails there.
 *
 * Unknown frame types are refused (SPOE.txt lets an agent skip them, and 3.x
 * lets it refuse them); so is a frame of an agent's type, HELLO twice, a
 * NOTIFY before HELLO, a NOTIFY whose stream-id/frame-id is still waiting for
 * its ACK, and more than `maxInFlight` NOTIFY frames waiting.
 */
import { ProtocolError } from '../errors.js';
import {
  SPOP_DEFAULT_MAX_FRAME_SIZE,
  SPOP_FRAME,
  SPOP_HELLO_FRAME_MAX,
  SPOP_MAX_FRAME_SIZE_LIMIT,
  SPOP_MIN_FRAME_SIZE,
  SPOP_STATUS,
  SPOP_STATUS_TEXT,
  SPOP_VERSION,
  SpopError,
  SpopFrameReader,
  type SpopFrame,
  type SpopStatus,
} from './spop.js';
import { decodeDisconnect, decodeHaproxyHello, decodeNotify, encodeAck, encodeAgentHello, encodeDisconnect, supportsOurVersion, type SpopAction, type SpopHaproxyHello, type SpopNotify } from './spop-messages.js';

/**
 * NOTIFY frames one connection may leave unanswered. HAProxy 2.6 sends at
 * most max-waiting-frames (default 20) and 3.x 20 streams per connection;
 * 256 leaves room for an admin who raised the former, and bounds what one
 * connection makes us remember.
 */
export const SPOP_MAX_IN_FLIGHT = 256;

/** What the agent announces; see the module comment for why only this. */
export const SPOP_AGENT_CAPABILITIES: readonly string[] = ['pipelining'];

export type SpopEvent =
  /** HELLO taken: write `reply`; if `close`, it was a health check: close once it is written. */
  | { readonly kind: 'hello'; readonly hello: SpopHaproxyHello; readonly maxFrameSize: number; readonly reply: Buffer; readonly close: boolean }
  /** A request: decide, then write `ack(streamId, frameId, actions)`. */
  | { readonly kind: 'notify'; readonly notify: SpopNotify }
  /** HAProxy is closing: write `reply`, then close. */
  | { readonly kind: 'disconnect'; readonly status: number; readonly message: string; readonly reply: Buffer }
  /** HAProxy broke the protocol: write `reply` (AGENT-DISCONNECT with `error.status`), then close. */
  | { readonly kind: 'error'; readonly error: SpopError; readonly reply: Buffer };

export interface SpopAgentOptions {
  /** The largest frame this agent takes, in [256, 65532]; HAProxy's own is used when it is smaller. */
  readonly maxFrameSize?: number;
  /** NOTIFY frames that may wait for an ACK at once. */
  readonly maxInFlight?: number;
}

type State = 'hello' | 'ready' | 'closed';

/**
 * The (stream-id, frame-id) pairs waiting for an ACK. HAProxy has one frame
 * of a stream in flight at a time, so the usual entry is a number keyed by a
 * number (no string built per frame); a second frame of a stream already
 * waiting, which the protocol allows, goes to a set of text keys.
 */
class WaitingFrames {
  private readonly first = new Map<number, number>();
  private readonly more = new Set<string>();

  get size(): number {
    return this.first.size + this.more.size;
  }

  has(streamId: number, frameId: number): boolean {
    const f = this.first.get(streamId);
    return f === frameId || (f !== undefined && this.more.size > 0 && this.more.has(`${streamId}:${frameId}`));
  }

  add(streamId: number, frameId: number): void {
    if (this.first.has(streamId)) this.more.add(`${streamId}:${frameId}`);
    else this.first.set(streamId, frameId);
  }

  delete(streamId: number, frameId: number): void {
    const f = this.first.get(streamId);
    if (f === frameId) {
      this.first.delete(streamId);
      if (this.more.size === 0) return;
      // Promote another waiting frame of this stream, if any.
      for (const k of this.more) {
        if (k.startsWith(`${streamId}:`)) {
          this.more.delete(k);
          this.first.set(streamId, Number(k.slice(k.indexOf(':') + 1)));
          return;
        }
      }
    } else this.more.delete(`${streamId}:${frameId}`);
  }

  clear(): void {
    this.first.clear();
    this.more.clear();
  }
}

export class SpopAgentConnection {
  private state: State = 'hello';
  private readonly reader: SpopFrameReader;
  private readonly ownMax: number;
  private readonly maxInFlight: number;
  /** The negotiated max-frame-size; before HELLO, the least any peer takes. */
  private frameSize = SPOP_MIN_FRAME_SIZE;
  private readonly waiting = new WaitingFrames();
  private haproxyHello: SpopHaproxyHello | null = null;

  constructor(opts: SpopAgentOptions = {}) {
    const max = opts.maxFrameSize ?? SPOP_DEFAULT_MAX_FRAME_SIZE;
    if (!Number.isInteger(max) || max < SPOP_MIN_FRAME_SIZE || max > SPOP_MAX_FRAME_SIZE_LIMIT) {
      throw new RangeError(`maxFrameSize must be an integer in [${SPOP_MIN_FRAME_SIZE}, ${SPOP_MAX_FRAME_SIZE_LIMIT}], got ${max}`);
    }
    const inFlight = opts.maxInFlight ?? SPOP_MAX_IN_FLIGHT;
    if (!Number.isInteger(inFlight) || inFlight < 1) throw new RangeError(`maxInFlight must be a positive integer, got ${inFlight}`);
    this.ownMax = max;
    this.maxInFlight = inFlight;
    this.reader = new SpopFrameReader(Math.min(SPOP_HELLO_FRAME_MAX, max));
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** HAProxy's HELLO, once taken. */
  get hello(): SpopHaproxyHello | null {
    return this.haproxyHello;
  }

  /** The negotiated max-frame-size (256 before HELLO). */
  get maxFrameSize(): number {
    return this.frameSize;
  }

  /** NOTIFY frames waiting for their ACK. */
  get inFlight(): number {
    return this.waiting.size;
  }

  /** True while part of a frame has arrived but not all of it: a peer that stops here is stalling. */
  get partial(): boolean {
    return this.reader.pending;
  }

  /**
   * Takes bytes from the socket; returns what they meant, in order. Never
   * throws for anything the peer sends: a protocol error is the last event.
   * After a closing event, more bytes are ignored. Nothing of `chunk` is kept
   * once this returns (a frame cut short is copied; events hold strings and
   * copies), so a listener may read every connection into one buffer.
   */
  receive(chunk: Buffer): SpopEvent[] {
    const events: SpopEvent[] = [];
    if (this.state === 'closed') return events;
    try {
      this.reader.push(chunk);
      for (let f = this.reader.next(); f !== null; f = this.closed ? null : this.reader.next()) events.push(this.take(f));
    } catch (err) {
      if (!(err instanceof SpopError)) throw err;
      events.push({ kind: 'error', error: err, reply: this.close(err.status, err.message) });
    }
    return events;
  }

  /**
   * The ACK for a NOTIFY this connection is waiting on, or null when the
   * connection has closed meanwhile (nothing to write). `actions` may be a
   * payload encodeAckPayload made beforehand. Answering a pair that is not
   * waiting is the caller's bug and throws, as does an ACK over the
   * negotiated max-frame-size.
   */
  ack(streamId: number, frameId: number, actions: readonly SpopAction[] | Buffer): Buffer | null {
    if (this.state === 'closed') return null;
    if (!this.waiting.has(streamId, frameId)) throw new ProtocolError('DOORMAN_ERR_SPOP_NOT_WAITING', `no NOTIFY ${streamId}:${frameId} is waiting for an ACK`);
    const bytes = encodeAck(streamId, frameId, actions, this.frameSize);
    this.waiting.delete(streamId, frameId);
    return bytes;
  }

  /** Our own AGENT-DISCONNECT (shutting down, idle); the caller writes it and closes. Null if already closed. */
  disconnect(status: SpopStatus = SPOP_STATUS.NONE, message: string = SPOP_STATUS_TEXT[status]): Buffer | null {
    if (this.state === 'closed') return null;
    return this.close(status, message);
  }

  private close(status: number, message: string): Buffer {
    this.state = 'closed';
    this.waiting.clear();
    return encodeDisconnect(SPOP_FRAME.AGENT_DISCONNECT, { status, message }, this.frameSize);
  }

  private take(f: SpopFrame): SpopEvent {
    switch (f.type) {
      case SPOP_FRAME.HAPROXY_HELLO:
        if (this.state !== 'hello') throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_STATE', 'HELLO after the handshake');
        return this.takeHello(f);
      case SPOP_FRAME.HAPROXY_DISCONNECT: {
        noIds(f);
        const d = decodeDisconnect(f.payload);
        return { kind: 'disconnect', status: d.status, message: d.message, reply: this.close(SPOP_STATUS.NONE, SPOP_STATUS_TEXT[SPOP_STATUS.NONE]) };
      }
      case SPOP_FRAME.NOTIFY: {
        if (this.state !== 'ready') throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_STATE', 'NOTIFY before HELLO');
        const notify = decodeNotify(f);
        if (this.waiting.has(f.streamId, f.frameId)) throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_STATE', `NOTIFY ${f.streamId}:${f.frameId} sent again before its ACK`);
        if (this.waiting.size >= this.maxInFlight) throw new SpopError(SPOP_STATUS.RESOURCE, 'DOORMAN_ERR_SPOP_CAP', `more than ${this.maxInFlight} NOTIFY frames waiting`);
        this.waiting.add(f.streamId, f.frameId);
        return { kind: 'notify', notify };
      }
      default:
        throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_TYPE', `frame type ${f.type} is not one HAProxy sends`);
    }
  }

  private takeHello(f: SpopFrame): SpopEvent {
    noIds(f);
    const hello = decodeHaproxyHello(f.payload);
    if (f.length > hello.maxFrameSize) throw new SpopError(SPOP_STATUS.TOO_BIG, 'DOORMAN_ERR_SPOP_TOO_BIG', `HELLO of ${f.length} bytes is over its own max-frame-size ${hello.maxFrameSize}`);
    if (!supportsOurVersion(hello.supportedVersions)) {
      throw new SpopError(SPOP_STATUS.BAD_VERSION, 'DOORMAN_ERR_SPOP_BAD_VERSION', `HAProxy speaks SPOP ${hello.supportedVersions.join(', ').slice(0, 64)}; we speak ${SPOP_VERSION}`);
    }
    const negotiated = Math.min(hello.maxFrameSize, this.ownMax);
    const reply = encodeAgentHello({ version: SPOP_VERSION, maxFrameSize: negotiated, capabilities: SPOP_AGENT_CAPABILITIES }, hello.maxFrameSize);
    this.haproxyHello = hello;
    this.frameSize = negotiated;
    this.reader.limit = negotiated;
    this.state = hello.healthcheck ? 'closed' : 'ready';
    return { kind: 'hello', hello, maxFrameSize: negotiated, reply, close: hello.healthcheck };
  }
}

/** HELLO and DISCONNECT belong to no stream: both ids must be 0. */
function noIds(f: SpopFrame): void {
  if (f.streamId !== 0 || f.frameId !== 0) throw new SpopError(SPOP_STATUS.INVALID, 'DOORMAN_ERR_SPOP_FRAME', `frame type ${f.type} with stream-id ${f.streamId}, frame-id ${f.frameId}`);
}
