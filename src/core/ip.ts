/**
 * IP addresses as numbers, for network matching and prefix keys. An address
 * is four 32-bit words (IPv6), IPv4 being ::ffff:a.b.c.d, so one code path
 * matches both and an IPv4-mapped IPv6 address is the IPv4 address it maps.
 * No I/O, no regular expressions on the per-request path.
 */

/** Four big-endian 32-bit words; IPv4 is [0, 0, 0xffff, v4]. */
export type IpWords = readonly [number, number, number, number];

export interface ParsedIp {
  readonly words: IpWords;
  /** 4 for IPv4 and IPv4-mapped IPv6, else 6. */
  readonly family: 4 | 6;
}

/**
 * A client address parsed once where it came in, with its canonical text,
 * so that it travels parsed: the gatekeeper and the decision recorder take
 * it as it is instead of parsing the text again.
 */
export interface ClientAddress {
  readonly ip: ParsedIp;
  /** Dotted IPv4 (also for ::ffff:a.b.c.d), RFC 5952 IPv6: formatIp's form. */
  readonly text: string;
}

/** Parses `s` into a ClientAddress; null if it is not an IP address. */
export function clientAddress(s: string): ClientAddress | null {
  const ip = parseIp(s);
  return ip === null ? null : { ip, text: canonicalText(s, ip) };
}

/** The canonical text of `ip`, which was parsed from `s`: `s` itself when it already is. */
export function canonicalText(s: string, ip: ParsedIp): string {
  // The strict IPv4 parser accepts only canonical dotted text, so a plain IPv4
  // address is its own canonical form; IPv6 and mapped forms are rewritten.
  return ip.family === 4 && s.indexOf(':') === -1 ? s : formatIp(ip);
}

/** Parses dotted IPv4 into a uint32, or -1. Strict: four decimal parts, no leading zeros. */
export function parseIPv4(s: string, from = 0, to = s.length): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = from; i <= to; i++) {
    const c = i === to ? 46 : s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || parts === 4) return -1;
      value = value * 256 + part;
      parts++;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1;
      part = part * 10 + (c - 48);
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  return parts === 4 ? value : -1;
}

/** Parses an IPv4 or IPv6 address (no zone, no brackets); null if it is not one. */
export function parseIp(s: string): ParsedIp | null {
  if (s.indexOf(':') === -1) {
    const v4 = parseIPv4(s);
    return v4 < 0 ? null : { words: [0, 0, 0xffff, v4], family: 4 };
  }
  const w = parseIPv6(s);
  if (w === null) return null;
  const mapped = w[0] === 0 && w[1] === 0 && w[2] === 0xffff;
  return { words: w, family: mapped ? 4 : 6 };
}

function parseIPv6(s: string): IpWords | null {
  if (s.length > 45 || s.length < 2) return null;
  const groups: number[] = [];
  let gap = -1;
  let i = 0;
  if (s.startsWith('::')) {
    gap = 0;
    i = 2;
    if (s.length === 2) return [0, 0, 0, 0];
  }
  while (i < s.length) {
    let j = i;
    let v = 0;
    while (j < s.length && j - i < 5) {
      const c = s.charCodeAt(j);
      const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
      if (d < 0) break;
      v = v * 16 + d;
      j++;
    }
    if (j < s.length && s.charCodeAt(j) === 46) {
      // dotted IPv4 tail
      const v4 = parseIPv4(s, i);
      if (v4 < 0 || groups.length > 6) return null;
      groups.push(v4 >>> 16, v4 & 0xffff);
      i = s.length;
      break;
    }
    if (j === i || j - i > 4) return null;
    groups.push(v);
    if (j === s.length) {
      i = j;
      break;
    }
    if (s.charCodeAt(j) !== 58) return null;
    if (s.charCodeAt(j + 1) === 58) {
      if (gap >= 0) return null;
      gap = groups.length;
      i = j + 2;
      if (i === s.length) break;
    } else {
      i = j + 1;
      if (i === s.length) return null;
    }
  }
  if (groups.length > 8 || (gap < 0 && groups.length !== 8) || (gap >= 0 && groups.length > 7)) return null;
  const full = gap < 0 ? groups : [...groups.slice(0, gap), ...new Array<number>(8 - groups.length).fill(0), ...groups.slice(gap)];
  return [
    ((full[0] as number) << 16 | (full[1] as number)) >>> 0,
    ((full[2] as number) << 16 | (full[3] as number)) >>> 0,
    ((full[4] as number) << 16 | (full[5] as number)) >>> 0,
    ((full[6] as number) << 16 | (full[7] as number)) >>> 0,
  ];
}

/** The address with all bits after `bits` cleared (bits counted in the 128-bit form). */
export function maskWords(w: IpWords, bits: number): IpWords {
  const out = [0, 0, 0, 0];
  for (let k = 0; k < 4; k++) {
    const keep = Math.max(0, Math.min(32, bits - k * 32));
    out[k] = keep === 0 ? 0 : keep === 32 ? (w[k] as number) : ((w[k] as number) & (~0 << (32 - keep))) >>> 0;
  }
  return out as unknown as IpWords;
}

/** Formats words back to text: dotted for IPv4, RFC 5952 for IPv6. */
export function formatIp(p: ParsedIp): string {
  const w = p.words;
  if (p.family === 4) {
    const v = w[3];
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const g: number[] = [];
  for (const x of w) g.push(x >>> 16, x & 0xffff);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/**
 * The network an address belongs to for per-prefix counting, as text:
 * "203.0.113.0/24", "2001:db8:1:2::/64".
 */
export function prefixOf(p: ParsedIp, v4Bits: number, v6Bits: number): string {
  const bits = p.family === 4 ? 96 + v4Bits : v6Bits;
  return `${formatIp({ words: maskWords(p.words, bits), family: p.family })}/${p.family === 4 ? v4Bits : v6Bits}`;
}

/** A client as Postfix 3.8+ smtpd names it to anvil: an address, or a network with its host bits zero. */
export interface ClientRange {
  readonly ip: ParsedIp;
  /** The prefix length as written for the family (IPv4 0–32, IPv6 0–128); the full length for a plain address. */
  readonly bits: number;
}

/** The full prefix length of a family. */
export function fullBits(family: 4 | 6): number {
  return family === 4 ? 32 : 128;
}

/**
 * Parses "ADDR" or "ADDR/LEN" strictly: LEN in decimal without leading zeros,
 * at most the family's length, and no bit set after it (smtpd zeroes them);
 * null for anything else. "ADDR/32" (or /128) is the address itself.
 */
export function parseClientRange(s: string): ClientRange | null {
  const slash = s.indexOf('/');
  if (slash === -1) {
    const ip = parseIp(s);
    return ip === null ? null : { ip, bits: fullBits(ip.family) };
  }
  const ip = parseIp(s.slice(0, slash));
  const lenText = s.slice(slash + 1);
  if (ip === null || !/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return null;
  const bits = Number(lenText);
  if (bits > fullBits(ip.family)) return null;
  const masked = maskWords(ip.words, ip.family === 4 ? 96 + bits : bits);
  for (let k = 0; k < 4; k++) if (masked[k] !== ip.words[k]) return null;
  return { ip, bits };
}

/**
 * The text smtpd 3.8+ sends for `ip` under a prefix length: the address when
 * `bits` is the full length, else the masked network and "/bits"
 * (2001:db8::7 under 84 → "2001:db8::/84"; ::1 → "::/84").
 */
export function rangeText(ip: ParsedIp, bits: number): string {
  if (bits >= fullBits(ip.family)) return formatIp(ip);
  return `${formatIp({ words: maskWords(ip.words, ip.family === 4 ? 96 + bits : bits), family: ip.family })}/${bits}`;
}
