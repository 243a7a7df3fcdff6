/**
 * SPOP 2.0, HAProxy's Stream Processing Offload Protocol (doc/SPOE.txt,
 * section 3), as an agent reads and writes it. No I/O: bytes in, frames and
 * typed values out; values in, bytes out. The per-connection state machine
 * that uses this is ./spop-agent.ts.
 *
 *   stream    = *( length frame )
 *   length    = 4 bytes, big-endian: the size of `frame`, at most the
 *               negotiated max-frame-size (the length itself not counted)
 *   frame     = type:1 flags:4 stream-id:varint frame-id:varint payload
 *   flags     = bit 0 FIN (set on every frame we take: no fragments),
 *               bit 1 ABORT; bits 2-31 reserved, refused when set
 *   payload   = kv-list (HELLO, DISCONNECT) | messages (NOTIFY) | actions (ACK)
 *   kv-list   = *( name typed )                name = varint-length bytes
 *   messages  = *( name nb-args:1 *( name typed ) )   an argument name may be empty
 *   actions   = *( 1 3 scope:1 name typed       set-var
 *                | 2 2 scope:1 name )           unset-var
 *   typed     = tag:1 data    tag = type (low nibble) | flags (high nibble)
 *
 * The spec's grammar says ACTION-ARGS are typed data; HAProxy (2.6 and 3.x)
 * reads the scope as a bare byte and the variable name as a bare `name`, and
 * only the value as typed data. That is what is encoded here.
 *
 * Varints and typed data are in ./spop-data.ts, re-exported from here.
 *
 * Strictness: a frame must carry FIN and no reserved flag; typed data must
 * use a defined type and no flag bits except BOOL's; an integer must fit its
 * declared type; a known HELLO or DISCONNECT item must have the type the
 * spec gives it and appear once; payloads must end exactly where the frame
 * ends. Every refusal is a SpopError carrying the SPOP status code the agent
 * sends back in its AGENT-DISCONNECT.
 *
 * Seen from HAProxy 2.6.12 (Debian 12), byte for byte in test/helpers/spop-golden.ts:
 *   HELLO       supported-versions "2.0", max-frame-size 16380 (tune.bufsize
 *               less 4), capabilities "pipelining,async", engine-id a UUID per
 *               thread; a health check's (option spop-check): capabilities "",
 *               healthcheck true, no engine-id
 *   NOTIFY      stream-id 0 for the process's first stream, then each stream's
 *               unique id; frame-id 1; integer samples (dst_port) as INT64, a
 *               sample that yields nothing as NULL, an unnamed argument with an
 *               empty name; five NOTIFY frames in one read once pipelining was agreed
 *   DISCONNECT  after `timeout idle`: status-code 2, message "a timeout occurred"
 * HAProxy 3.1 and later (a multiplexer) announce only "pipelining", number
 * streams 1, 3, 5..., and refuse an ACK with stream-id 0.
 */
import { ProtocolError, type CodeOf } from '../errors.js';
import { SPOP_STATUS, SpopCursor, SpopError, SpopWriter } from './spop-data.js';

export * from './spop-data.js';

function invalid(code: CodeOf<'protocol'>, message: string): never {
  throw new SpopError(SPOP_STATUS.INVALID, code, message);
}

function encodeError(message: string): never {
  throw new ProtocolError('DOORMAN_ERR_SPOP_ENCODE', message);
}

/** The one SPOP version HAProxy 2.0 through 3.x speaks (1.0 was dropped for a bug in how flags were sent). */
export const SPOP_VERSION = '2.0';

/** SPOE.txt: both peers must take frames of at least 256 bytes; a HELLO announcing less is refused. */
export const SPOP_MIN_FRAME_SIZE = 256;
/**
 * What the agent takes and announces unless told otherwise: HAProxy's own
 * default, tune.bufsize (16384) less the 4-byte length. A Doorman NOTIFY
 * (a message name, an address, a port, two names) is under 200 bytes.
 */
export const SPOP_DEFAULT_MAX_FRAME_SIZE = 16380;
/**
 * The most an agent may be configured to take: a 64 KiB tune.bufsize less
 * the length. Anything larger only lets one peer make us hold more per connection.
 */
export const SPOP_MAX_FRAME_SIZE_LIMIT = 65532;
/**
 * Cap on the first frame, before HELLO has said what the peer's frames may
 * be. HAProxy's HELLO is about 150 bytes (three short items, a 36-byte
 * engine-id, the healthcheck flag); 1024 leaves room for longer version and
 * capability lists without letting any peer that connects make us hold 16 KiB.
 */
export const SPOP_HELLO_FRAME_MAX = 1024;
/** type, flags and two one-byte varints: a frame can be no shorter. */
export const SPOP_FRAME_HEADER_MIN = 7;
/** HAProxy keeps stream and frame ids in 32 bits (2.6: unsigned int; 3.x: below 2^31). */
export const SPOP_ID_MAX = 0xffffffff;
/**
 * Messages in one NOTIFY: HAProxy puts every spoe-message bound to one event
 * in the same frame. Doorman's shipped config binds one; 16 leaves room for
 * an admin's own without letting a frame fan out into hundreds of requests.
 */
export const SPOP_MAX_MESSAGES = 16;
/** Arguments of one message (the wire allows 255): Doorman's takes about six; 32 is room for more. */
export const SPOP_MAX_ARGS = 32;
/**
 * Items in a HELLO or DISCONNECT KV list: HAProxy sends at most five
 * (supported-versions, max-frame-size, capabilities, engine-id, healthcheck)
 * and two in DISCONNECT; 16 leaves room for items a later HAProxy may add.
 */
export const SPOP_MAX_KV_ITEMS = 16;
/** HAProxy 2.6 refuses an AGENT-DISCONNECT whose message is longer than 255 bytes; we send and take no more. */
export const SPOP_DISCONNECT_MESSAGE_MAX = 255;

export const SPOP_FLAG_FIN = 0x1;
export const SPOP_FLAG_ABORT = 0x2;
const KNOWN_FLAGS = SPOP_FLAG_FIN | SPOP_FLAG_ABORT;

/** Frame types (SPOE.txt 3.2.2). UNSET (0) marks a fragment, which we never ask for. */
export const SPOP_FRAME = {
  UNSET: 0,
  HAPROXY_HELLO: 1,
  HAPROXY_DISCONNECT: 2,
  NOTIFY: 3,
  AGENT_HELLO: 101,
  AGENT_DISCONNECT: 102,
  ACK: 103,
} as const;
export type SpopFrameType = (typeof SPOP_FRAME)[keyof typeof SPOP_FRAME];

/** One frame as read: its header fields, and the payload (a view into the bytes read). */
export interface SpopFrame {
  /** The frame's length, its 4-byte length prefix not counted. */
  readonly length: number;
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly frameId: number;
  readonly payload: Buffer;
}

/** Parses a frame's header (`bytes` is the frame without its length); the payload is what follows the ids. */
export function decodeFrame(bytes: Buffer): SpopFrame {
  if (bytes.length < SPOP_FRAME_HEADER_MIN) invalid('DOORMAN_ERR_SPOP_FRAME', `a frame of ${bytes.length} bytes is shorter than its header`);
  const type = bytes[0] as number;
  const flags = bytes.readUInt32BE(1);
  if ((flags & SPOP_FLAG_FIN) === 0 || type === SPOP_FRAME.UNSET) {
    throw new SpopError(SPOP_STATUS.FRAGMENTATION_NOT_SUPPORTED, 'DOORMAN_ERR_SPOP_FRAGMENTED', `fragment of a payload (type ${type}, flags 0x${flags.toString(16)})`);
  }
  if ((flags & ~KNOWN_FLAGS) !== 0) invalid('DOORMAN_ERR_SPOP_FRAME', `reserved flags set: 0x${flags.toString(16)}`);
  const c = new SpopCursor(bytes, 5, bytes.length);
  const streamId = c.varint('stream-id', SPOP_ID_MAX);
  const frameId = c.varint('frame-id', SPOP_ID_MAX);
  return { length: bytes.length, type, flags, streamId, frameId, payload: bytes.subarray(c.pos) };
}

/**
 * Builds one frame, length first, FIN set. Throws DOORMAN_ERR_SPOP_ENCODE if
 * it would be longer than `maxFrameSize`: the caller asked for more than the
 * peer takes.
 */
export function encodeFrame(type: SpopFrameType, streamId: number, frameId: number, maxFrameSize: number, body: (w: SpopWriter) => void, sizeHint = 128): Buffer {
  if (streamId > SPOP_ID_MAX || frameId > SPOP_ID_MAX) encodeError(`stream-id ${streamId} or frame-id ${frameId} over 32 bits`);
  const w = new SpopWriter(sizeHint);
  w.u32(0);
  w.u8(type);
  w.u32(SPOP_FLAG_FIN);
  w.varint(streamId);
  w.varint(frameId);
  body(w);
  const out = w.finish();
  const len = out.length - 4;
  if (len > maxFrameSize) encodeError(`a frame of ${len} bytes is over the negotiated ${maxFrameSize}`);
  out.writeUInt32BE(len, 0);
  return out;
}

/**
 * Incremental framing. `push` what the socket delivered, then take frames
 * with `next()` until it answers null. A declared length over `limit` (or
 * under a header) is refused as soon as its four bytes are in, before any of
 * the frame is held. Set `limit` between frames, once HELLO has fixed it.
 * After a throw the reader is unusable: the caller answers and closes.
 */
export class SpopFrameReader {
  limit: number;
  private input: Buffer = Buffer.alloc(0);
  private at = 0;
  private readonly head = Buffer.alloc(4);
  private headLen = 0;
  private body: Buffer | null = null;
  private bodyLen = 0;
  private failed = false;

  constructor(limit: number) {
    this.limit = limit;
  }

  /** True while part of a frame has arrived but not all of it. */
  get pending(): boolean {
    return this.headLen > 0 || this.at < this.input.length;
  }

  push(chunk: Buffer): void {
    if (this.failed) throw new ProtocolError('DOORMAN_ERR_SPOP_STATE', 'frame reader already failed');
    // Bytes not yet taken with next() stay ahead of the new ones.
    this.input = this.at < this.input.length ? Buffer.concat([this.input.subarray(this.at), chunk]) : chunk;
    this.at = 0;
  }

  next(): SpopFrame | null {
    if (this.failed) throw new ProtocolError('DOORMAN_ERR_SPOP_STATE', 'frame reader already failed');
    try {
      return this.take();
    } catch (err) {
      this.failed = true;
      throw err;
    }
  }

  private take(): SpopFrame | null {
    const input = this.input;
    if (this.body === null) {
      let len: number;
      if (this.headLen === 0 && input.length - this.at >= 4) {
        // The whole length is in this chunk (the usual case): read it in place.
        len = input.readUInt32BE(this.at);
        this.at += 4;
        this.headLen = 4;
      } else {
        const n = Math.min(4 - this.headLen, input.length - this.at);
        input.copy(this.head, this.headLen, this.at, this.at + n);
        this.headLen += n;
        this.at += n;
        if (this.headLen < 4) return null;
        len = this.head.readUInt32BE(0);
      }
      if (len > this.limit) throw new SpopError(SPOP_STATUS.TOO_BIG, 'DOORMAN_ERR_SPOP_TOO_BIG', `a frame of ${len} bytes is over the ${this.limit}-byte limit`);
      if (len < SPOP_FRAME_HEADER_MIN) invalid('DOORMAN_ERR_SPOP_FRAME', `a frame of ${len} bytes is shorter than its header`);
      if (input.length - this.at >= len) {
        // The whole frame is in this chunk: hand out a view, no copy.
        const frame = input.subarray(this.at, this.at + len);
        this.at += len;
        this.headLen = 0;
        return decodeFrame(frame);
      }
      this.body = Buffer.allocUnsafe(len);
      this.bodyLen = 0;
    }
    const body = this.body;
    const n = Math.min(body.length - this.bodyLen, input.length - this.at);
    input.copy(body, this.bodyLen, this.at, this.at + n);
    this.bodyLen += n;
    this.at += n;
    if (this.bodyLen < body.length) return null;
    this.body = null;
    this.headLen = 0;
    return decodeFrame(body);
  }
}
