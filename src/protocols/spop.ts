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
 * A varint is HAProxy's own encoding, not LEB128: X < 240 is one byte; else
 * the first byte is 0xF0 | (X & 0x0F), then Y = (X - 240) >> 4 goes out 7
 * bits at a time, each byte but the last with the top bit set, and 128 taken
 * off Y after each such byte. Every value has exactly one encoding, so there
 * is no overlong form to refuse, only a 10th byte that would overflow 64 bits.
 *
 * Strictness: a frame must carry FIN and no reserved flag; typed data must
 * use a defined type and no flag bits except BOOL's; an integer must fit its
 * declared type; a known HELLO or DISCONNECT item must have the type the
 * spec gives it and appear once; payloads must end exactly where the frame
 * ends. Every refusal is a SpopError carrying the SPOP status code the agent
 * sends back in its AGENT-DISCONNECT. Strings are decoded as UTF-8 (invalid
 * sequences become U+FFFD); BINARY stays bytes.
 *
 * Seen from HAProxy 2.6.12 (Debian 12): see the golden frames in spop.test.ts.
 */
import { formatIp, parseIp, parseIPv4 } from '../core/ip.js';
import { ProtocolError } from '../errors.js';

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
/**
 * Bytes in a name (KV key, message name, argument name, variable name). These
 * are identifiers from HAProxy's config; HAProxy joins a variable's scope,
 * prefix and name in 64 bytes, so nothing legitimate comes near 255.
 */
export const SPOP_NAME_MAX = 255;
/**
 * Bytes in a STRING or BINARY value: a hostname is at most 253 bytes and a
 * proxy name an identifier; 1024 is four hostnames, and keeps a misconfigured
 * argument (a header, a certificate) from flowing into rules and logs.
 */
export const SPOP_VALUE_MAX = 1024;
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

/** Status codes of DISCONNECT frames (SPOE.txt 3.5). An agent may add its own above these. */
export const SPOP_STATUS = {
  NONE: 0,
  IO: 1,
  TIMEOUT: 2,
  TOO_BIG: 3,
  INVALID: 4,
  NO_VERSION: 5,
  NO_FRAME_SIZE: 6,
  NO_CAPABILITIES: 7,
  BAD_VERSION: 8,
  BAD_FRAME_SIZE: 9,
  FRAGMENTATION_NOT_SUPPORTED: 10,
  INTERLACED_FRAMES: 11,
  FRAME_ID_NOT_FOUND: 12,
  RESOURCE: 13,
  UNKNOWN: 99,
} as const;
export type SpopStatus = (typeof SPOP_STATUS)[keyof typeof SPOP_STATUS];

/** Our words for each status, sent as AGENT-DISCONNECT's message when there is no more precise one. */
export const SPOP_STATUS_TEXT: Readonly<Record<SpopStatus, string>> = {
  0: 'normal close',
  1: 'input/output error',
  2: 'timed out',
  3: 'frame larger than allowed',
  4: 'malformed frame',
  5: 'no version item',
  6: 'no max-frame-size item',
  7: 'no capabilities item',
  8: 'no version in common',
  9: 'max-frame-size out of range',
  10: 'fragmented payloads are not supported',
  11: 'interlaced fragments',
  12: 'no such stream-id/frame-id pending',
  13: 'over a resource cap',
  99: 'unknown error',
};

/** Bytes from HAProxy broke SPOP. `status` is what the agent answers in AGENT-DISCONNECT before closing. */
export class SpopError extends ProtocolError {
  readonly status: SpopStatus;
  constructor(status: SpopStatus, code: string, message: string) {
    super(code, message);
    this.status = status;
  }
}

function invalid(code: string, message: string): never {
  throw new SpopError(SPOP_STATUS.INVALID, code, message);
}

function encodeError(message: string): never {
  throw new ProtocolError('DOORMAN_ERR_SPOP_ENCODE', message);
}

/** Typed data (SPOE.txt 3.1). 64-bit integers are bigints; addresses are text (dotted, or RFC 5952). */
export type SpopValue =
  | { readonly type: 'null' }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'int32' | 'uint32'; readonly value: number }
  | { readonly type: 'int64' | 'uint64'; readonly value: bigint }
  | { readonly type: 'ipv4' | 'ipv6' | 'string'; readonly value: string }
  | { readonly type: 'binary'; readonly value: Buffer };
export type SpopValueType = SpopValue['type'];

/** Wire type ids, in wire order: the index is the id. */
const TYPE_IDS: readonly SpopValueType[] = ['null', 'bool', 'int32', 'uint32', 'int64', 'uint64', 'ipv4', 'ipv6', 'string', 'binary'];
const TYPE_ID = new Map(TYPE_IDS.map((t, i) => [t, i]));
const BOOL_TRUE_FLAG = 0x10;

const NULL: SpopValue = Object.freeze({ type: 'null' });
const TRUE: SpopValue = Object.freeze({ type: 'bool', value: true });
const FALSE: SpopValue = Object.freeze({ type: 'bool', value: false });

const U64_MAX = (1n << 64n) - 1n;
const I32_MIN = -(2 ** 31);
const I32_MAX = 2 ** 31 - 1;
/** Past this many bytes a varint may exceed 2^53 and is summed as a bigint (the 7-byte maximum is about 2^46). */
const VARINT_EXACT_BYTES = 7;
const VARINT_MAX_BYTES = 10;

/** Reads SPOP primitives from buf[pos, end); running past `end` or breaking a rule is a SpopError. */
export class SpopCursor {
  pos: number;
  constructor(
    readonly buf: Buffer,
    pos: number,
    readonly end: number,
  ) {
    this.pos = pos;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  u8(what: string): number {
    if (this.pos >= this.end) invalid('DOORMAN_ERR_SPOP_TRUNCATED', `frame ends inside ${what}`);
    return this.buf[this.pos++] as number;
  }

  /** The bytes of one varint: where it starts, and its length. */
  private varintSpan(what: string): number {
    const start = this.pos;
    for (let n = 1; ; n++) {
      const b = this.u8(what);
      if (n === 1 ? b < 240 : b < 128) return start;
      if (n === VARINT_MAX_BYTES) invalid('DOORMAN_ERR_SPOP_VARINT', `${what}: varint longer than 64 bits`);
    }
  }

  /** A varint that must be at most `max` (itself at most 2^53 - 1). */
  varint(what: string, max: number): number {
    const start = this.varintSpan(what);
    const n = this.pos - start;
    const v = n <= VARINT_EXACT_BYTES ? varintNumber(this.buf, start, n) : varintBig(this.buf, start, n);
    if (v > max) invalid('DOORMAN_ERR_SPOP_VARINT', `${what} ${v} is over ${max}`);
    return Number(v);
  }

  /** A varint as an unsigned 64-bit bigint. */
  varintBig(what: string): bigint {
    const start = this.varintSpan(what);
    const n = this.pos - start;
    const v = n <= VARINT_EXACT_BYTES ? BigInt(varintNumber(this.buf, start, n)) : varintBig(this.buf, start, n);
    if (v > U64_MAX) invalid('DOORMAN_ERR_SPOP_VARINT', `${what}: varint over 2^64 - 1`);
    return v;
  }

  /** A length-prefixed run of bytes of at most `cap`; a length past the frame's end is malformed, one over the cap is refused. */
  private span(what: string, cap: number): number {
    const len = this.varint(`${what} length`, Number.MAX_SAFE_INTEGER);
    if (len > this.end - this.pos) invalid('DOORMAN_ERR_SPOP_TRUNCATED', `${what} of ${len} bytes runs past the frame`);
    if (len > cap) throw new SpopError(SPOP_STATUS.RESOURCE, 'DOORMAN_ERR_SPOP_CAP', `${what} of ${len} bytes is over the ${cap}-byte cap`);
    const at = this.pos;
    this.pos += len;
    return at;
  }

  /** A bare name (no type tag), as keys, message and argument names and variable names are sent. */
  name(what: string): string {
    const at = this.span(what, SPOP_NAME_MAX);
    return this.buf.toString('utf8', at, this.pos);
  }

  /** One typed value. */
  value(what: string): SpopValue {
    const tag = this.u8(`${what} type`);
    const id = tag & 0x0f;
    const flags = tag & 0xf0;
    if (id === 1) {
      if ((flags & ~BOOL_TRUE_FLAG) !== 0) invalid('DOORMAN_ERR_SPOP_DATA', `${what}: boolean with flags 0x${flags.toString(16)}`);
      return flags === 0 ? FALSE : TRUE;
    }
    if (flags !== 0) invalid('DOORMAN_ERR_SPOP_DATA', `${what}: type ${id} with flags 0x${flags.toString(16)}`);
    switch (TYPE_IDS[id]) {
      case 'null':
        return NULL;
      case 'int32': {
        const v = BigInt.asIntN(64, this.varintBig(what));
        if (v < I32_MIN || v > I32_MAX) invalid('DOORMAN_ERR_SPOP_DATA', `${what}: ${v} does not fit INT32`);
        return { type: 'int32', value: Number(v) };
      }
      case 'uint32':
        return { type: 'uint32', value: this.varint(what, 0xffffffff) };
      case 'int64':
        return { type: 'int64', value: BigInt.asIntN(64, this.varintBig(what)) };
      case 'uint64':
        return { type: 'uint64', value: this.varintBig(what) };
      case 'ipv4': {
        const b = this.fixed(what, 4);
        return { type: 'ipv4', value: `${this.buf[b]}.${this.buf[b + 1]}.${this.buf[b + 2]}.${this.buf[b + 3]}` };
      }
      case 'ipv6': {
        const b = this.fixed(what, 16);
        const buf = this.buf;
        const words = [buf.readUInt32BE(b), buf.readUInt32BE(b + 4), buf.readUInt32BE(b + 8), buf.readUInt32BE(b + 12)] as const;
        return { type: 'ipv6', value: formatIp({ words, family: 6 }) };
      }
      case 'string': {
        const at = this.span(what, SPOP_VALUE_MAX);
        return { type: 'string', value: this.buf.toString('utf8', at, this.pos) };
      }
      case 'binary': {
        const at = this.span(what, SPOP_VALUE_MAX);
        return { type: 'binary', value: Buffer.from(this.buf.subarray(at, this.pos)) };
      }
      default:
        return invalid('DOORMAN_ERR_SPOP_DATA', `${what}: reserved data type ${id}`);
    }
  }

  private fixed(what: string, n: number): number {
    if (n > this.end - this.pos) invalid('DOORMAN_ERR_SPOP_TRUNCATED', `frame ends inside ${what}`);
    const at = this.pos;
    this.pos += n;
    return at;
  }
}

/** Sums a varint of n ≤ 7 bytes: byte 0, then byte k weighted 2^(4 + 7(k-1)), top bits included. */
function varintNumber(buf: Buffer, at: number, n: number): number {
  let v = buf[at] as number;
  let weight = 16;
  for (let k = 1; k < n; k++) {
    v += (buf[at + k] as number) * weight;
    weight *= 128;
  }
  return v;
}

function varintBig(buf: Buffer, at: number, n: number): bigint {
  let v = BigInt(buf[at] as number);
  let shift = 4n;
  for (let k = 1; k < n; k++) {
    v += BigInt(buf[at + k] as number) << shift;
    shift += 7n;
  }
  return v;
}

/** A growing output buffer for one frame. */
export class SpopWriter {
  private buf = Buffer.allocUnsafe(128);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(bigger, 0, 0, this.length);
    this.buf = bigger;
  }

  u8(v: number): void {
    this.room(1);
    this.buf[this.length++] = v;
  }

  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32BE(v, this.length);
    this.length += 4;
  }

  /** A varint of a whole number up to 2^53 - 1. */
  varint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) encodeError(`varint of ${v}`);
    if (v < 240) return this.u8(v);
    this.u8((v % 16) | 0xf0);
    let y = Math.floor((v - 240) / 16);
    while (y >= 128) {
      this.u8((y % 128) | 0x80);
      y = Math.floor((y - 128) / 128);
    }
    this.u8(y);
  }

  /** A varint of an unsigned 64-bit bigint. */
  varintBig(v: bigint): void {
    if (v < 0n || v > U64_MAX) encodeError(`varint of ${v}`);
    if (v <= BigInt(Number.MAX_SAFE_INTEGER)) return this.varint(Number(v));
    this.u8(Number(v & 0x0fn) | 0xf0);
    let y = (v - 240n) >> 4n;
    while (y >= 128n) {
      this.u8(Number(y & 0x7fn) | 0x80);
      y = (y - 128n) >> 7n;
    }
    this.u8(Number(y));
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  /** A length-prefixed UTF-8 string of at most `cap` bytes. */
  text(s: string, cap: number, what: string): void {
    const n = Buffer.byteLength(s);
    if (n > cap) encodeError(`${what} of ${n} bytes is over the ${cap}-byte cap`);
    this.varint(n);
    this.room(n);
    this.length += this.buf.write(s, this.length, 'utf8');
  }

  name(s: string, what: string): void {
    this.text(s, SPOP_NAME_MAX, what);
  }

  value(v: SpopValue): void {
    const id = TYPE_ID.get(v.type);
    if (id === undefined) encodeError(`unknown data type ${String(v.type)}`);
    switch (v.type) {
      case 'null':
        return this.u8(id);
      case 'bool':
        return this.u8(id | (v.value ? BOOL_TRUE_FLAG : 0));
      case 'int32':
      case 'uint32': {
        const [min, max] = v.type === 'int32' ? [I32_MIN, I32_MAX] : [0, 0xffffffff];
        if (!Number.isInteger(v.value) || v.value < min || v.value > max) encodeError(`${v.value} is not ${v.type.toUpperCase()}`);
        this.u8(id);
        // A negative INT32 goes out sign-extended to 64 bits: HAProxy reads every integer type into an int64.
        return v.value < 0 ? this.varintBig(BigInt.asUintN(64, BigInt(v.value))) : this.varint(v.value);
      }
      case 'int64':
      case 'uint64': {
        const ok = v.type === 'int64' ? BigInt.asIntN(64, v.value) === v.value : BigInt.asUintN(64, v.value) === v.value;
        if (typeof v.value !== 'bigint' || !ok) encodeError(`${String(v.value)} is not ${v.type.toUpperCase()}`);
        this.u8(id);
        return this.varintBig(BigInt.asUintN(64, v.value));
      }
      case 'ipv4': {
        const a = parseIPv4(v.value);
        if (a < 0) encodeError(`not an IPv4 address: ${JSON.stringify(v.value.slice(0, 64))}`);
        this.u8(id);
        return this.u32(a);
      }
      case 'ipv6': {
        const p = parseIp(v.value);
        if (p === null || v.value.indexOf(':') === -1) encodeError(`not an IPv6 address: ${JSON.stringify(v.value.slice(0, 64))}`);
        this.u8(id);
        for (const w of p.words) this.u32(w);
        return;
      }
      case 'string':
        this.u8(id);
        return this.text(v.value, SPOP_VALUE_MAX, 'string value');
      case 'binary':
        if (v.value.length > SPOP_VALUE_MAX) encodeError(`binary value of ${v.value.length} bytes is over the ${SPOP_VALUE_MAX}-byte cap`);
        this.u8(id);
        this.varint(v.value.length);
        return this.bytes(v.value);
    }
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

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
export function encodeFrame(type: SpopFrameType, streamId: number, frameId: number, maxFrameSize: number, body: (w: SpopWriter) => void): Buffer {
  if (streamId > SPOP_ID_MAX || frameId > SPOP_ID_MAX) encodeError(`stream-id ${streamId} or frame-id ${frameId} over 32 bits`);
  const w = new SpopWriter();
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
      const n = Math.min(4 - this.headLen, input.length - this.at);
      input.copy(this.head, this.headLen, this.at, this.at + n);
      this.headLen += n;
      this.at += n;
      if (this.headLen < 4) return null;
      const len = this.head.readUInt32BE(0);
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

/** Integer value of any of the four integer types, when it is a safe JS integer; else null. */
export function spopInteger(v: SpopValue | undefined): number | null {
  if (v === undefined) return null;
  if (v.type === 'int32' || v.type === 'uint32') return v.value;
  if ((v.type === 'int64' || v.type === 'uint64') && v.value <= BigInt(Number.MAX_SAFE_INTEGER) && v.value >= BigInt(Number.MIN_SAFE_INTEGER)) return Number(v.value);
  return null;
}
