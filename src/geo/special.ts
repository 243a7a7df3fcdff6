/**
 * Which special-purpose block a client address falls in, and which address a
 * country database should be asked about.
 *
 * Country databases answer for addresses they should know nothing about: the
 * CC0 database bundled with Doorman says AU for 192.168.1.1 and 203.0.113.7 and
 * JP for 2001:db8::1. So every address is judged here first, against the table
 * in ./special-blocks.ts (the IANA registries and the rest; the most specific
 * block wins), and only an address in none of them is looked up. The IPv6
 * forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo)
 * are judged, and looked up, by that IPv4 address.
 *
 * This runs for every connection, so the parser is hand-written: no regular
 * expression, no allocation (results are the table's own strings; scratch state
 * lives in module variables, which is safe in a single-threaded isolate), and a
 * 64 KiB bitmap of the first 16 bits lets most global addresses leave after one
 * array read. bench/geo puts it beside node:net's BlockList (about 20x faster).
 *
 * Accepted text: dotted-quad IPv4 without leading zeros, and RFC 4291 IPv6
 * (any case, "::", a dotted IPv4 tail, a "%zone" suffix) — exactly what
 * node:net's isIP() accepts, which is what a socket's remoteAddress looks like.
 * An address the core has parsed already (core/ip.ts's ParsedIp: the guard
 * proxy's, the gatekeeper's) is judged by its words, with no text read:
 * lookupParsed().
 */
import type { ParsedIp } from '../core/ip.js';
import { SPECIAL_BLOCKS, type EmbeddedIPv4 } from './special-blocks.js';

export { SPECIAL_BLOCKS, type EmbeddedIPv4, type SpecialBlock } from './special-blocks.js';

/** What specialPurpose() answers for a string that is not an IP address. */
export const NOT_AN_ADDRESS = 'invalid';

/**
 * A full IPv6 address with an IPv4 tail is 45 characters; the rest is room for
 * a zone index ("%eth0", "%enp0s31f6"). Longer strings are refused unread.
 */
const MAX_ADDRESS_LENGTH = 64;

const GLOBAL = -1;
const INVALID = -2;
const EMBED_NONE = 0;
const EMBED_LOW32 = 1;
const EMBED_6TO4 = 2;
const EMBED_TEREDO = 3;
const EMBED_CODE: Record<EmbeddedIPv4, number> = { none: EMBED_NONE, 'low-32-bits': EMBED_LOW32, '6to4': EMBED_6TO4, teredo: EMBED_TEREDO };

// Scratch state of the last parse. Int32 views of the address: v4 for IPv4;
// w0..w3 for IPv6, w0 holding bits 0-31.
let v4 = 0;
let w0 = 0;
let w1 = 0;
let w2 = 0;
let w3 = 0;
/** Index of "%" in the last IPv6 string, or -1. */
let zoneAt = -1;
/** The last IPv6 string ended in a dotted IPv4 tail. */
let dottedTail = false;
/** How the last judge() found an IPv4 address in an IPv6 one (held in v4), or EMBED_NONE. */
let embedKind = EMBED_NONE;
const groups = new Uint16Array(8);

/** Parses `s` as dotted-quad IPv4 between from and to into v4. */
function parse4(s: string, from: number, to: number): boolean {
  let acc = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return false; // leading zero: octal to inet_aton, refused by isIP
      octet = octet * 10 + (c - 48);
      if (octet > 255) return false;
      digits++;
    } else if (c === 46) {
      if (digits === 0 || dots === 3) return false;
      acc = (acc << 8) | octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      return false;
    }
  }
  if (digits === 0 || dots !== 3) return false;
  v4 = (acc << 8) | octet;
  return true;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** A zone index as isIP() takes it: one or more of [0-9A-Za-z.:-]. */
function validZone(s: string, from: number): boolean {
  if (from >= s.length) return false;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 48 && c <= 58) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 46;
    if (!ok) return false;
  }
  return true;
}

/** Parses `s` as IPv6 into w0..w3, zoneAt and dottedTail. */
function parse6(s: string): boolean {
  zoneAt = s.indexOf('%');
  const end = zoneAt === -1 ? s.length : zoneAt;
  if (zoneAt !== -1 && !validZone(s, zoneAt + 1)) return false;
  let n = 0;
  let gap = -1;
  let i = 0;
  if (end >= 2 && s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false;
    gap = 0;
    i = 2;
  }
  while (i < end) {
    let value = 0;
    let j = i;
    for (; j < end; j++) {
      const h = hexValue(s.charCodeAt(j));
      if (h < 0) break;
      value = (value << 4) | h;
      if (j - i >= 4) return false; // a fifth hex digit
    }
    if (j < end && s.charCodeAt(j) === 46) {
      // The dotted IPv4 tail: two groups, and the end of the address.
      if (n > 6 || !parse4(s, i, end)) return false;
      groups[n++] = v4 >>> 16;
      groups[n++] = v4 & 0xffff;
      dottedTail = true;
      break;
    }
    if (j === i || n === 8) return false;
    groups[n++] = value;
    i = j;
    if (i === end) break;
    if (s.charCodeAt(i) !== 58) return false;
    i++;
    if (i < end && s.charCodeAt(i) === 58) {
      if (gap !== -1) return false;
      gap = n;
      i++;
    } else if (i === end) {
      return false; // a single trailing ":"
    }
  }
  if (gap === -1) {
    if (n !== 8) return false;
  } else {
    if (n > 7) return false; // "::" stands for at least one group
    const tail = n - gap;
    for (let k = 0; k < tail; k++) groups[7 - k] = groups[n - 1 - k] as number;
    for (let k = gap; k < 8 - tail; k++) groups[k] = 0;
  }
  w0 = ((groups[0] as number) << 16) | (groups[1] as number);
  w1 = ((groups[2] as number) << 16) | (groups[3] as number);
  w2 = ((groups[4] as number) << 16) | (groups[5] as number);
  w3 = ((groups[6] as number) << 16) | (groups[7] as number);
  return true;
}

/** 4, 6, or 0 for a string that is not an address; fills the scratch state. */
function parse(s: string): number {
  zoneAt = -1;
  dottedTail = false;
  const n = s.length;
  if (n === 0 || n > MAX_ADDRESS_LENGTH) return 0;
  if (s.indexOf(':') === -1) return parse4(s, 0, n) ? 4 : 0;
  return parse6(s) ? 6 : 0;
}

// ---- compiled table ----------------------------------------------------------

interface ParsedCidr {
  readonly family: 4 | 6;
  readonly words: readonly number[];
  readonly length: number;
}

function parseCidr(cidr: string): ParsedCidr {
  const slash = cidr.indexOf('/');
  const addr = cidr.slice(0, slash);
  const length = Number(cidr.slice(slash + 1));
  const family = parse(addr);
  if (family === 0 || !Number.isInteger(length) || length < 0 || length > (family === 4 ? 32 : 128)) {
    throw new Error(`special.ts: bad block ${cidr}`);
  }
  return { family, words: family === 4 ? [v4] : [w0, w1, w2, w3], length } as ParsedCidr;
}

/** The int32 mask of word k (bits 32k..32k+31) of a prefix of `length` bits. */
function wordMask(length: number, k: number): number {
  const bits = Math.max(0, Math.min(32, length - 32 * k));
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) | 0;
}

/** Marks every value of the first 16 bits that a prefix reaches. */
function markFirst16(bitmap: Uint8Array, first32: number, length: number): void {
  const top = first32 >>> 16;
  const span = length >= 16 ? 1 : 1 << (16 - length);
  const start = length >= 16 ? top : top & ~(span - 1);
  bitmap.fill(1, start, start + span);
}

interface Compiled {
  readonly index: Int32Array;
  readonly base: Int32Array;
  readonly mask: Int32Array;
  /** 1 where some block meets this value of the address's first 16 bits. */
  readonly scan: Uint8Array;
}

function compile(family: 4 | 6): Compiled {
  const width = family === 4 ? 1 : 4;
  const rows = SPECIAL_BLOCKS.map((block, index) => ({ index, ...parseCidr(block.cidr) }))
    .filter((r) => r.family === family)
    // Most specific first, so the first match is the answer.
    .sort((x, y) => y.length - x.length);
  const index = new Int32Array(rows.length);
  const base = new Int32Array(rows.length * width);
  const mask = new Int32Array(rows.length * width);
  const scan = new Uint8Array(65536);
  rows.forEach((r, i) => {
    index[i] = r.index;
    for (let k = 0; k < width; k++) {
      const m = wordMask(r.length, k);
      mask[i * width + k] = m;
      base[i * width + k] = (r.words[k] as number) & m;
    }
    markFirst16(scan, r.words[0] as number, r.length);
  });
  return { index, base, mask, scan };
}

const NAMES: readonly string[] = SPECIAL_BLOCKS.map((x) => x.name);
const EMBEDS = Uint8Array.from(SPECIAL_BLOCKS, (x) => EMBED_CODE[x.embeds]);
const T4 = compile(4);
const T6 = compile(6);

function classify4(a: number): number {
  if (T4.scan[a >>> 16] === 0) return GLOBAL;
  const { index, base, mask } = T4;
  for (let i = 0; i < index.length; i++) {
    if ((a & (mask[i] as number)) === base[i]) return index[i] as number;
  }
  return GLOBAL;
}

function classify6(): number {
  if (T6.scan[w0 >>> 16] === 0) return GLOBAL;
  const { index, base, mask } = T6;
  for (let i = 0, k = 0; i < index.length; i++, k += 4) {
    if (
      (w0 & (mask[k] as number)) === base[k] &&
      (w1 & (mask[k + 1] as number)) === base[k + 1] &&
      (w2 & (mask[k + 2] as number)) === base[k + 2] &&
      (w3 & (mask[k + 3] as number)) === base[k + 3]
    ) {
      return index[i] as number;
    }
  }
  return GLOBAL;
}

/** Block index, GLOBAL or INVALID; sets embedKind (and v4) for the IPv4-carrying forms. */
function judge(ip: string): number {
  embedKind = EMBED_NONE;
  const family = parse(ip);
  if (family === 4) return classify4(v4);
  if (family === 0) return INVALID;
  return judge6();
}

/** judge() of the IPv6 address in w0..w3 (embedKind already cleared). */
function judge6(): number {
  const block = classify6();
  if (block < 0) return block;
  const how = EMBEDS[block] as number;
  if (how === EMBED_NONE) return block;
  if (how === EMBED_LOW32) v4 = w3;
  else if (how === EMBED_6TO4) v4 = (w0 << 16) | (w1 >>> 16);
  else v4 = ~w3;
  embedKind = how;
  return classify4(v4);
}

function formatV4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
}

// ---- public API -------------------------------------------------------------

/**
 * The short name of the special-purpose block `ip` is in ('private-use',
 * 'loopback', 'documentation', …), NOT_AN_ADDRESS ('invalid') for a string that
 * is not an IP address, or null for an ordinary global unicast address. So a
 * non-null answer always means: no country applies. An IPv6 form that carries
 * an IPv4 address (see the module comment) gets the answer for that address.
 */
export function specialPurpose(ip: string): string | null {
  const r = judge(ip);
  if (r === GLOBAL) return null;
  if (r === INVALID) return NOT_AN_ADDRESS;
  return NAMES[r] as string;
}

/**
 * The IPv4 address carried by an IPv4-mapped, IPv4-compatible, NAT64
 * (64:ff9b::/96), 6to4 or Teredo address, dotted; null for any other string.
 * Answers whatever class that IPv4 address is in: ask specialPurpose() too.
 */
export function embeddedIPv4(ip: string): string | null {
  judge(ip);
  return embedKind === EMBED_NONE ? null : formatV4(v4);
}

/**
 * The address to ask a country database about: `ip` itself for a global
 * address (without a zone index), the embedded IPv4 address for the forms that
 * carry a global one, and null for everything else (special, not an address).
 * One parse; allocates nothing for plain addresses and for "::ffff:a.b.c.d".
 */
export function lookupAddress(ip: string): string | null {
  const r = judge(ip);
  if (r !== GLOBAL) return null;
  if (embedKind === EMBED_NONE) return zoneAt === -1 ? ip : ip.slice(0, zoneAt);
  if (dottedTail && embedKind === EMBED_LOW32) {
    const end = zoneAt === -1 ? ip.length : zoneAt;
    return ip.slice(ip.lastIndexOf(':', end) + 1, end);
  }
  return formatV4(v4);
}

/**
 * lookupAddress() of an address the core parsed: `ip`'s words are judged as
 * they are, and `text`, which must be its canonical text (core/ip.ts's
 * formatIp or canonicalText), is what a global address is looked up by. The
 * forms that carry an IPv4 address are looked up by that address, dotted
 * (IPv4-mapped ones are family 4 in the core, their canonical text dotted
 * already). Allocates nothing but for the IPv6 forms that carry one.
 */
export function lookupParsed(ip: ParsedIp, text: string): string | null {
  embedKind = EMBED_NONE;
  const w = ip.words;
  // Family 4 is [0, 0, 0xffff, v4]: the mapped block, whose IPv4 address is judged.
  if (ip.family === 4) return classify4(w[3] | 0) === GLOBAL ? text : null;
  w0 = w[0] | 0;
  w1 = w[1] | 0;
  w2 = w[2] | 0;
  w3 = w[3] | 0;
  if (judge6() !== GLOBAL) return null;
  return embedKind === EMBED_NONE ? text : formatV4(v4);
}

/** True when `ip` is an IPv4 or IPv6 address in the text forms this module accepts (those of node:net isIP). */
export function isIPAddress(ip: string): boolean {
  return parse(ip) !== 0;
}
