/**
 * Bans as nftables set elements, with no I/O: an address or network becomes
 * a range in the 128-bit address space (IPv4 as ::ffff:a.b.c.d, as the core
 * keeps it), ranges become the elements of an IPv4 or IPv6 set, and a ban's
 * remaining time becomes the element's `timeout`, so the kernel drops the
 * element when the ban ends and Doorman does nothing at expiry.
 *
 * The sets hold intervals (`flags interval, timeout`), and nft refuses an
 * element that overlaps one already in the set ("interval overlaps with an
 * existing one", nft 1.0.6). Bans can nest (an address inside a banned
 * network, the same target in both layers), so what is written is the
 * bans' upper envelope: disjoint ranges, each with the latest end among the
 * bans covering it. An address banned for a day inside a network banned for
 * an hour is three elements: the network's two sides for an hour, the
 * address for a day; when the hour is up the kernel drops the sides and the
 * address stays. At any moment the set holds an address exactly when some
 * ban in force covers it.
 *
 * Timeouts are written as nft prints them (`1d2h3m4s5ms`): nft 1.0.6 takes
 * "60d" but refuses "2147483647ms" ("value too large"), and a timeout of 0
 * would mean the set's default, so an element with no time left is not
 * written at all.
 */
import { formatIp, type IpWords } from '../core/ip.js';
import type { Network } from '../core/networks.js';

export type Family = 4 | 6;

/** An inclusive range of the 128-bit space. */
export interface Span {
  readonly lo: bigint;
  readonly hi: bigint;
}

/** A range with the time its last ban ends (epoch ms). */
export interface Piece extends Span {
  readonly until: number;
}

/** ::ffff:0.0.0.0 to ::ffff:255.255.255.255: the IPv4 addresses. */
export const MAPPED: Span = { lo: 0xffff_0000_0000n, hi: 0xffff_ffff_ffffn };
/** 127.0.0.0/8 (mapped) and ::1: never written, whatever a ban says. */
export const LOOPBACK: readonly Span[] = [
  { lo: 0xffff_7f00_0000n, hi: 0xffff_7fff_ffffn },
  { lo: 1n, hi: 1n },
];

const ALL = (1n << 128n) - 1n;

function wordsToBig(w: IpWords): bigint {
  return (BigInt(w[0] >>> 0) << 96n) | (BigInt(w[1] >>> 0) << 64n) | (BigInt(w[2] >>> 0) << 32n) | BigInt(w[3] >>> 0);
}

function bigToWords(v: bigint): IpWords {
  const m = 0xffff_ffffn;
  return [Number((v >> 96n) & m), Number((v >> 64n) & m), Number((v >> 32n) & m), Number(v & m)];
}

/** The range a network covers (bits in the 128-bit form, as core/networks.ts keeps them). */
export function networkSpan(n: Network): Span {
  const lo = wordsToBig(n.words);
  const host = n.bits >= 128 ? 0n : ALL >> BigInt(n.bits);
  return { lo, hi: lo | host };
}

export function overlaps(a: Span, b: Span): boolean {
  return a.lo <= b.hi && b.lo <= a.hi;
}

export function contains(outer: Span, inner: Span): boolean {
  return outer.lo <= inner.lo && inner.hi <= outer.hi;
}

/**
 * The set a range belongs in: 4 for IPv4 and IPv4-mapped IPv6 (one address
 * however it was written), 6 for the rest of IPv6; null for a range that
 * holds the mapped block and more (::/64), which covers loopback anyway.
 */
export function familyOf(s: Span): Family | null {
  if (contains(MAPPED, s)) return 4;
  if (!overlaps(MAPPED, s)) return 6;
  return null;
}

/** An address of the range's family, as nft reads it. */
function addressText(v: bigint, family: Family): string {
  return family === 4 ? formatIp({ words: [0, 0, 0xffff, Number(v & 0xffff_ffffn)], family: 4 }) : formatIp({ words: bigToWords(v), family: 6 });
}

/** The element as nft reads it: an address, a prefix when the range is one, else lo-hi. */
export function elementText(s: Span, family: Family): string {
  if (s.lo === s.hi) return addressText(s.lo, family);
  const size = s.hi - s.lo + 1n;
  if ((size & (size - 1n)) === 0n && s.lo % size === 0n) {
    const hostBits = size.toString(2).length - 1;
    return `${addressText(s.lo, family)}/${(family === 4 ? 32 : 128) - hostBits}`;
  }
  return `${addressText(s.lo, family)}-${addressText(s.hi, family)}`;
}

/** A time as nft prints one: 1d2h3m4s5ms (ms ≥ 1). */
export function timeoutText(ms: number): string {
  let left = Math.max(1, Math.floor(ms));
  let out = '';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(left / size);
    if (n > 0) out += `${n}${unit}`;
    left -= n * size;
  }
  return out;
}

/**
 * The upper envelope of nested ranges: disjoint pieces, in order, each with
 * the latest `until` among the ranges covering it; neighbours that end at
 * the same time are merged. The ranges must be CIDR networks (two either
 * nest or are apart), which every ban is. Linear after a sort.
 */
export function envelope(ranges: readonly Piece[]): Piece[] {
  const sorted = [...ranges].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : a.hi > b.hi ? -1 : a.hi < b.hi ? 1 : 0));
  const out: Piece[] = [];
  const emit = (lo: bigint, hi: bigint, until: number): void => {
    if (lo > hi) return;
    const last = out[out.length - 1];
    // Neighbours merge, but never across the edges of the IPv4 block: each element stays in one set.
    const edge = lo === MAPPED.lo || lo === MAPPED.hi + 1n;
    if (last !== undefined && !edge && last.until === until && last.hi + 1n === lo) out[out.length - 1] = { lo: last.lo, hi, until };
    else out.push({ lo, hi, until });
  };
  // The chain of ranges open at the point reached, outermost first, each
  // with the latest end among itself and those around it; `at` is the first
  // address not yet emitted.
  const open: Piece[] = [];
  let at = 0n;
  const closeUpTo = (lo: bigint): void => {
    // Emit what lies before `lo`, closing the ranges that end before it.
    for (let top = open[open.length - 1]; top !== undefined && top.hi < lo; top = open[open.length - 1]) {
      emit(at, top.hi, top.until);
      at = top.hi + 1n;
      open.pop();
    }
    const top = open[open.length - 1];
    if (top !== undefined && at < lo) emit(at, lo - 1n, top.until);
    if (at < lo) at = lo;
  };
  for (const r of sorted) {
    closeUpTo(r.lo);
    const around = open[open.length - 1];
    open.push({ lo: r.lo, hi: r.hi, until: Math.max(r.until, around?.until ?? -Infinity) });
  }
  closeUpTo(ALL + 1n);
  return out;
}
