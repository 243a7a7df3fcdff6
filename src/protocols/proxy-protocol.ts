/**
 * The PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 and 2: the
 * header a proxy sends first to pass on the real client address. No I/O.
 *
 *   v1  "PROXY TCP4 192.0.2.1 198.51.100.2 40000 25\r\n"   (text, ≤ 107 bytes)
 *       "PROXY TCP6 2001:db8::1 2001:db8::2 40000 25\r\n"
 *       "PROXY UNKNOWN ...\r\n"                           (addresses not known)
 *   v2  \r\n\r\n\0\r\nQUIT\n, then version|command (0x21 PROXY, 0x20 LOCAL),
 *       family|transport (0x11 TCP over IPv4, 0x21 TCP over IPv6, ...),
 *       a 16-bit length, the addresses and ports, then TLVs (ignored here).
 *
 * Parsing is strict: exact spacing and CRLF for v1, addresses that parse as
 * their declared family, ports 0–65535 without leading zeros, and a cap on
 * the whole header (PROXY_HEADER_MAX) whatever its declared length says.
 * The listener owns the deadline for the header to arrive.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { formatIp, parseIp } from '../core/ip.js';
import { ProtocolError, type CodeOf } from '../errors.js';

/** smtp-server's cap; a v2 header with the longest addresses (UNIX, 216 bytes) and a few TLVs fits. */
export const PROXY_HEADER_MAX = 1024;
/** The spec's bound for a v1 line, CRLF included. */
const V1_MAX = 107;
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');

export interface ProxyHeader {
  readonly version: 1 | 2;
  /** false for v1 UNKNOWN and v2 LOCAL (health checks): use the connection's own addresses. */
  readonly proxied: boolean;
  readonly source?: { readonly address: string; readonly port: number };
  readonly destination?: { readonly address: string; readonly port: number };
}

export type ParseResult = { readonly done: false } | { readonly done: true; readonly header: ProxyHeader; readonly rest: Buffer };

function fail(code: CodeOf<'protocol'>, message: string): never {
  throw new ProtocolError(code, message);
}

function port(text: string): number {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text) || Number(text) > 65535) fail('DOORMAN_ERR_PROXY_V1', `bad port ${JSON.stringify(text.slice(0, 8))}`);
  return Number(text);
}

function parseV1(line: string): ProxyHeader {
  const f = line.split(' ');
  if (f[1] === 'UNKNOWN') return { version: 1, proxied: false };
  if (f.length !== 6) fail('DOORMAN_ERR_PROXY_V1', `a v1 header has 6 fields, got ${f.length}`);
  const [, proto, src, dst, sport, dport] = f as [string, string, string, string, string, string];
  const valid = proto === 'TCP4' ? isIPv4 : proto === 'TCP6' ? isIPv6 : null;
  if (valid === null) fail('DOORMAN_ERR_PROXY_V1', `unknown protocol ${JSON.stringify(proto.slice(0, 8))}`);
  if (!valid(src) || !valid(dst)) fail('DOORMAN_ERR_PROXY_V1', `addresses are not ${proto}`);
  return { version: 1, proxied: true, source: { address: src, port: port(sport) }, destination: { address: dst, port: port(dport) } };
}

/** The IPv6 address of 16 bytes at `at`, as RFC 5952 text. */
function ipv6Text(b: Buffer, at: number): string {
  const words = [b.readUInt32BE(at), b.readUInt32BE(at + 4), b.readUInt32BE(at + 8), b.readUInt32BE(at + 12)] as const;
  return formatIp({ words, family: 6 });
}

function parseV2(b: Buffer): ProxyHeader {
  const verCmd = b[12] as number;
  if (verCmd >> 4 !== 2) fail('DOORMAN_ERR_PROXY_V2', `unsupported version ${verCmd >> 4}`);
  const cmd = verCmd & 0x0f;
  if (cmd > 1) fail('DOORMAN_ERR_PROXY_V2', `unknown command ${cmd}`);
  const famProto = b[13] as number;
  const body = 16;
  const length = b.readUInt16BE(14);
  if (cmd === 0) return { version: 2, proxied: false };
  const fam = famProto >> 4;
  const proto = famProto & 0x0f;
  if (fam === 0 || proto !== 1) return { version: 2, proxied: false };
  if (fam === 1) {
    if (length < 12) fail('DOORMAN_ERR_PROXY_V2', 'IPv4 address block too short');
    const v4 = (at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
    return { version: 2, proxied: true, source: { address: v4(body), port: b.readUInt16BE(body + 8) }, destination: { address: v4(body + 4), port: b.readUInt16BE(body + 10) } };
  }
  if (fam === 2) {
    if (length < 36) fail('DOORMAN_ERR_PROXY_V2', 'IPv6 address block too short');
    return {
      version: 2,
      proxied: true,
      source: { address: ipv6Text(b, body), port: b.readUInt16BE(body + 32) },
      destination: { address: ipv6Text(b, body + 16), port: b.readUInt16BE(body + 34) },
    };
  }
  if (fam === 3) return { version: 2, proxied: false };
  return fail('DOORMAN_ERR_PROXY_V2', `unknown address family ${fam}`);
}

/**
 * Incremental parser: feed it what arrived; it answers done with the header
 * and the bytes after it, or not done yet, or throws ProtocolError (not a
 * PROXY header, malformed, over the cap). Feed it nothing after done.
 */
export class ProxyHeaderParser {
  private buf: Buffer = Buffer.alloc(0);

  write(chunk: Buffer): ParseResult {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const b = this.buf;
    // Decide the version as soon as the bytes allow, so garbage is refused at once.
    const sigLen = Math.min(b.length, V2_SIGNATURE.length);
    const v1Len = Math.min(b.length, V1_PREFIX.length);
    const maybeV2 = b.compare(V2_SIGNATURE, 0, sigLen, 0, sigLen) === 0;
    const maybeV1 = b.compare(V1_PREFIX, 0, v1Len, 0, v1Len) === 0;
    if (!maybeV1 && !maybeV2) fail('DOORMAN_ERR_PROXY_MISSING', 'the connection did not start with a PROXY header');
    if (maybeV1) {
      // v1 has one line ending, CRLF: a bare LF is refused at once, not waited past.
      const lf = b.indexOf(0x0a);
      if (lf !== -1 && (lf === 0 || b[lf - 1] !== 0x0d)) fail('DOORMAN_ERR_PROXY_V1', 'a v1 header must end with CRLF');
      const cr = b.indexOf('\r\n', 0, 'latin1');
      if (cr === -1) {
        if (b.length >= V1_MAX) fail('DOORMAN_ERR_PROXY_V1', `no CRLF within ${V1_MAX} bytes`);
        return { done: false };
      }
      if (cr + 2 > V1_MAX) fail('DOORMAN_ERR_PROXY_V1', `header longer than ${V1_MAX} bytes`);
      for (let i = 0; i < cr; i++) {
        const c = b[i] as number;
        if (c < 0x20 || c > 0x7e) fail('DOORMAN_ERR_PROXY_V1', 'non-printable byte in a v1 header');
      }
      return { done: true, header: parseV1(b.toString('latin1', 0, cr)), rest: b.subarray(cr + 2) };
    }
    if (b.length < 16) return { done: false };
    const total = 16 + b.readUInt16BE(14);
    if (total > PROXY_HEADER_MAX) fail('DOORMAN_ERR_PROXY_V2', `header of ${total} bytes is over the ${PROXY_HEADER_MAX}-byte cap`);
    if (b.length < total) return { done: false };
    return { done: true, header: parseV2(b.subarray(0, total)), rest: b.subarray(total) };
  }
}

/** A v1 header for a TCP connection from `src` to `dst`; mixed families are sent as IPv6. */
export function encodeProxyV1(src: string, sport: number, dst: string, dport: number): Buffer {
  const six = !isIPv4(src) || !isIPv4(dst);
  const a = six ? toV6(src) : src;
  const b = six ? toV6(dst) : dst;
  return Buffer.from(`PROXY ${six ? 'TCP6' : 'TCP4'} ${a} ${b} ${sport} ${dport}\r\n`, 'latin1');
}

/** A v2 PROXY (not LOCAL) header for TCP; mixed families are sent as IPv6 with IPv4-mapped addresses. */
export function encodeProxyV2(src: string, sport: number, dst: string, dport: number): Buffer {
  const six = !isIPv4(src) || !isIPv4(dst);
  const len = six ? 36 : 12;
  const out = Buffer.alloc(16 + len);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21;
  out[13] = six ? 0x21 : 0x11;
  out.writeUInt16BE(len, 14);
  if (six) {
    v6Bytes(toV6(src)).copy(out, 16);
    v6Bytes(toV6(dst)).copy(out, 32);
    out.writeUInt16BE(sport, 48);
    out.writeUInt16BE(dport, 50);
  } else {
    for (const [i, a] of [src, dst].entries()) a.split('.').forEach((x, k) => (out[16 + i * 4 + k] = Number(x)));
    out.writeUInt16BE(sport, 24);
    out.writeUInt16BE(dport, 26);
  }
  return out;
}

function toV6(a: string): string {
  return isIPv4(a) ? `::ffff:${a}` : a;
}

/** The 16 bytes of an IPv6 address (IPv4-mapped forms included). */
function v6Bytes(a: string): Buffer {
  const p = parseIp(a);
  if (p === null) throw new ProtocolError('DOORMAN_ERR_PROXY_ENCODE', `not an IP address: ${JSON.stringify(a.slice(0, 64))}`);
  const out = Buffer.alloc(16);
  p.words.forEach((w, i) => out.writeUInt32BE(w, i * 4));
  return out;
}
