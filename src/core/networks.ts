/**
 * Sets of networks (CIDR), compiled once from the configuration, matched per
 * request. A list of a few hundred networks is scanned; each entry is four
 * words and a prefix length, so a match is a handful of integer compares.
 */
import { formatIp, maskWords, parseIp, type IpWords, type ParsedIp } from './ip.js';

export interface Network {
  /** As written in the configuration, for messages. */
  readonly text: string;
  readonly words: IpWords;
  /** Prefix length in the 128-bit form (IPv4 /24 is 120). */
  readonly bits: number;
}

/** Parses "192.0.2.0/24", "2001:db8::/32" or a bare address; throws a message naming what is wrong. */
export function parseNetwork(text: string): Network {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const p = parseIp(addr);
  if (p === null) throw new Error(`"${text}" is not an IP address or network`);
  const max = p.family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText)) throw new Error(`"${text}": prefix length "${lenText}" is not a number`);
    len = Number(lenText);
    if (len > max) throw new Error(`"${text}": prefix /${len} is longer than an IPv${p.family} address (${max} bits)`);
  }
  const bits = p.family === 4 ? 96 + len : len;
  return { text, words: maskWords(p.words, bits), bits };
}

/** Whether `text` is an address or a network parseNetwork takes. */
export function isNetworkText(text: string): boolean {
  try {
    parseNetwork(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * A single-address network (/32, /128 or a bare address) as the canonical
 * address text the gatekeeper keys clients by (mapped IPv4 as dotted); null
 * for a wider network.
 */
export function hostText(n: Network): string | null {
  if (n.bits !== 128) return null;
  const w = n.words;
  return formatIp({ words: w, family: w[0] === 0 && w[1] === 0 && w[2] === 0xffff ? 4 : 6 });
}

export function networkContains(n: Network, ip: ParsedIp): boolean {
  const w = ip.words;
  const m = maskWords(w, n.bits);
  return m[0] === n.words[0] && m[1] === n.words[1] && m[2] === n.words[2] && m[3] === n.words[3];
}

export class NetworkSet {
  readonly networks: readonly Network[];
  constructor(networks: readonly Network[]) {
    this.networks = networks;
  }
  static parse(texts: readonly string[]): NetworkSet {
    return new NetworkSet(texts.map(parseNetwork));
  }
  /** The first network holding `ip`, or null. */
  match(ip: ParsedIp): Network | null {
    for (const n of this.networks) if (networkContains(n, ip)) return n;
    return null;
  }
  get size(): number {
    return this.networks.length;
  }
}
