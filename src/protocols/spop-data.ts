/**
 * SPOP's typed data (doc/SPOE.txt 3.1) and the varint everything in SPOP is
 * counted with, read and written without I/O; the framing on top is ./spop.ts,
 * which re-exports all of this. Also here, because every layer throws it:
 * SpopError, carrying the status code of SPOE.txt 3.5 that the agent sends
 * back in its AGENT-DISCONNECT.
 *
 *   typed   = tag:1 data     tag = type (low nibble) | flags (high nibble)
 *   NULL 0 | BOOL 1 (flag 0x10 = true) | INT32 2, UINT32 3, INT64 4, UINT64 5: varint
 *   IPV4 6: 4 bytes | IPV6 7: 16 bytes | STRING 8, BINARY 9: varint length, bytes
 *
 * A varint is HAProxy's own encoding, not LEB128: X < 240 is one byte; else
 * the first byte is 0xF0 | (X & 0x0F), then Y = (X - 240) >> 4 goes out 7
 * bits at a time, each byte but the last with the top bit set, and 128 taken
 * off Y after each such byte. Every value has exactly one encoding, so there
 * is no overlong form to refuse, only a 10th byte that would overflow 64 bits.
 * Signed integers travel as their 64-bit two's complement: HAProxy reads every
 * integer type into an int64, so a negative INT32 is sign-extended.
 *
 * Refused: types 10-15, flag bits on anything but BOOL (and on BOOL beyond
 * "true"), an integer outside its declared type, a length past the frame or
 * over the caps below. Strings are decoded as UTF-8 (invalid sequences become
 * U+FFFD); BINARY stays bytes.
 */
import { formatIp, parseIp, parseIPv4 } from '../core/ip.js';
import { ProtocolError, type CodeOf } from '../errors.js';

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
  constructor(status: SpopStatus, code: CodeOf<'protocol'>, message: string) {
    super(code, message);
    this.status = status;
  }
}

function invalid(code: CodeOf<'protocol'>, message: string): never {
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

/** Texts up to this many bytes are looked up in TEXTS before being decoded. */
const TEXT_CACHE_MAX_LEN = 32;
/**
 * The last ASCII text of each length decoded: HAProxy sends the same few
 * names and values in every NOTIFY (the message's name, "src", "service",
 * the frontend's name), so most are recognised by their bytes instead of
 * being decoded into a new string each time.
 */
const TEXTS: Array<string | undefined> = new Array<string | undefined>(TEXT_CACHE_MAX_LEN + 1);

function text(buf: Buffer, at: number, end: number): string {
  const n = end - at;
  if (n > TEXT_CACHE_MAX_LEN) return buf.toString('utf8', at, end);
  const known = TEXTS[n];
  if (known !== undefined) {
    let i = 0;
    // An ASCII string's code units are its bytes; a byte of 0x80 or more never matches.
    while (i < n && known.charCodeAt(i) === buf[at + i]) i++;
    if (i === n) return known;
  }
  const s = buf.toString('utf8', at, end);
  if (s.length === n) TEXTS[n] = s; // as many characters as bytes: ASCII (a bad UTF-8 byte decodes to U+FFFD, which is no byte)
  return s;
}

/**
 * Reads SPOP primitives from buf[pos, end); running past `end` or breaking a
 * rule is a SpopError. `what` names the field for the error message; a
 * method that reads part of a field takes the part's name apart (`part`), so
 * that no text is put together unless there is an error to report: a NOTIFY
 * is read thousands of times a second.
 */
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

  u8(what: string, part = ''): number {
    if (this.pos >= this.end) invalid('DOORMAN_ERR_SPOP_TRUNCATED', `frame ends inside ${what}${part}`);
    return this.buf[this.pos++] as number;
  }

  /** The bytes of one varint: where it starts, and its length. */
  private varintSpan(what: string, part: string): number {
    const start = this.pos;
    for (let n = 1; ; n++) {
      const b = this.u8(what, part);
      if (n === 1 ? b < 240 : b < 128) return start;
      if (n === VARINT_MAX_BYTES) invalid('DOORMAN_ERR_SPOP_VARINT', `${what}${part}: varint longer than 64 bits`);
    }
  }

  /** A varint that must be at most `max` (itself at most 2^53 - 1). */
  varint(what: string, max: number, part = ''): number {
    const start = this.varintSpan(what, part);
    const n = this.pos - start;
    const v = n <= VARINT_EXACT_BYTES ? varintNumber(this.buf, start, n) : varintBig(this.buf, start, n);
    if (v > max) invalid('DOORMAN_ERR_SPOP_VARINT', `${what}${part} ${v} is over ${max}`);
    return Number(v);
  }

  /** A varint as an unsigned 64-bit bigint. */
  varintBig(what: string): bigint {
    const start = this.varintSpan(what, '');
    const n = this.pos - start;
    if (n <= VARINT_EXACT_BYTES) return BigInt(varintNumber(this.buf, start, n));
    const v = varintBig(this.buf, start, n);
    if (v > U64_MAX) invalid('DOORMAN_ERR_SPOP_VARINT', `${what}: varint over 2^64 - 1`);
    return v;
  }

  /** A length-prefixed run of bytes of at most `cap`; a length past the frame's end is malformed, one over the cap is refused. */
  private span(what: string, cap: number): number {
    const len = this.varint(what, Number.MAX_SAFE_INTEGER, ' length');
    if (len > this.end - this.pos) invalid('DOORMAN_ERR_SPOP_TRUNCATED', `${what} of ${len} bytes runs past the frame`);
    if (len > cap) throw new SpopError(SPOP_STATUS.RESOURCE, 'DOORMAN_ERR_SPOP_CAP', `${what} of ${len} bytes is over the ${cap}-byte cap`);
    const at = this.pos;
    this.pos += len;
    return at;
  }

  /** A bare name (no type tag), as keys, message and argument names and variable names are sent. */
  name(what: string): string {
    const at = this.span(what, SPOP_NAME_MAX);
    return text(this.buf, at, this.pos);
  }

  /** One typed value. */
  value(what: string): SpopValue {
    const tag = this.u8(what, ' type');
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
        return { type: 'string', value: text(this.buf, at, this.pos) };
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
  private buf: Buffer;
  length = 0;

  /** `size`: the bytes expected, when known, so that the buffer never grows (a copy). */
  constructor(size = 128) {
    this.buf = Buffer.allocUnsafe(size);
  }

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

  /** How many bytes varint(v) writes. */
  static varintLength(v: number): number {
    if (v < 240) return 1;
    let n = 2;
    for (let y = Math.floor((v - 240) / 16); y >= 128; y = Math.floor((y - 128) / 128)) n++;
    return n;
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

  /** The bytes written: the buffer itself when they fill it (a size given exactly), else a view of them. */
  finish(): Buffer {
    return this.length === this.buf.length ? this.buf : this.buf.subarray(0, this.length);
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

/** Integer value of any of the four integer types, when it is a safe JS integer; else null. */
export function spopInteger(v: SpopValue | undefined): number | null {
  if (v === undefined) return null;
  if (v.type === 'int32' || v.type === 'uint32') return v.value;
  if ((v.type === 'int64' || v.type === 'uint64') && v.value <= MAX_SAFE && v.value >= MIN_SAFE) return Number(v.value);
  return null;
}
