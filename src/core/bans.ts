/**
 * Temporary bans of an address or a network, each with an expiry, a reason
 * and an origin: an operator (the API, the CLI), Doorman's own rules (too
 * many AUTH failures, …) or CrowdSec's decisions.
 *
 * Bans live in two layers. The local layer holds the operator's and the
 * automatic bans, which the state file (or the fleet's state in Redis)
 * keeps; the crowdsec layer holds what CrowdSec's Local API decided, which
 * CrowdSec keeps. A ban in either refuses; lifting one never lifts the other
 * (CrowdSec deleting its decision leaves an operator's ban on the same
 * address in force).
 *
 * Lookups cost one Map lookup per layer for an exact address and one per
 * distinct prefix length for networks (CrowdSec's lists hold thousands of
 * ranges), whatever the number of bans. Expired bans are dropped when met
 * and by sweep(); nobody is told of an expiry, since every holder of a copy
 * (an nftables set's element timeout) expires it by itself.
 */
import { maskWords, type ParsedIp } from './ip.js';
import { hostText, parseNetwork, type Network } from './networks.js';

/** Who made a ban. */
export type BanOrigin = 'operator' | 'auto' | 'crowdsec';

/** Where a ban is kept: the local layer (state file) or CrowdSec's. */
export type BanLayer = 'local' | 'crowdsec';

export interface Ban {
  /** The address or network as given, normalised for exact addresses. */
  readonly target: string;
  readonly until: number;
  readonly reason: string;
  readonly createdAt: number;
  readonly origin: BanOrigin;
  /**
   * The ban's place in its target's recent history: 1 for a first ban, 2 for
   * a repeat offender's second within the window (a longer ban), and so on.
   */
  readonly strike: number;
}

export interface BanOptions {
  readonly origin?: BanOrigin;
  readonly strike?: number;
}

/** A change to the ban list, for whoever keeps a copy (an nftables set). */
export type BanChange =
  | { readonly kind: 'add'; readonly ban: Ban }
  | { readonly kind: 'remove'; readonly ban: Ban }
  /** Every ban of a layer was dropped, before a new list is loaded in its place. */
  | { readonly kind: 'clear'; readonly layer: BanLayer };

export function layerOf(origin: BanOrigin): BanLayer {
  return origin === 'crowdsec' ? 'crowdsec' : 'local';
}

function netKey(words: readonly number[]): string {
  return `${words[0]}.${words[1]}.${words[2]}.${words[3]}`;
}

/** One layer's bans: exact addresses by text, networks by prefix length then masked address. */
class Layer {
  readonly exact = new Map<string, Ban>();
  /** Prefix length (128-bit form) → masked network words → ban. Lengths with no ban are deleted. */
  readonly nets = new Map<number, Map<string, { net: Network; ban: Ban }>>();

  get size(): number {
    let n = this.exact.size;
    for (const m of this.nets.values()) n += m.size;
    return n;
  }

  find(ip: ParsedIp, text: string, now: number): Ban | null {
    const b = this.exact.get(text);
    if (b !== undefined) {
      if (b.until > now) return b;
      this.exact.delete(text);
    }
    if (this.nets.size === 0) return null;
    for (const [bits, m] of this.nets) {
      const k = netKey(maskWords(ip.words, bits));
      const n = m.get(k);
      if (n === undefined) continue;
      if (n.ban.until > now) return n.ban;
      m.delete(k);
      if (m.size === 0) this.nets.delete(bits);
    }
    return null;
  }

  /** Every ban in force covering `ip`: the exact one, then one per prefix length holding it. */
  covering(ip: ParsedIp, text: string, now: number, out: Ban[]): void {
    const b = this.exact.get(text);
    if (b !== undefined && b.until > now) out.push(b);
    for (const [bits, m] of this.nets) {
      const n = m.get(netKey(maskWords(ip.words, bits)));
      if (n !== undefined && n.ban.until > now) out.push(n.ban);
    }
  }

  get(net: Network): Ban | undefined {
    const host = hostText(net);
    if (host !== null) return this.exact.get(host);
    return this.nets.get(net.bits)?.get(netKey(net.words))?.ban;
  }

  set(net: Network, ban: Ban): void {
    const host = hostText(net);
    if (host !== null) {
      this.exact.set(host, ban);
      return;
    }
    let m = this.nets.get(net.bits);
    if (m === undefined) this.nets.set(net.bits, (m = new Map()));
    m.set(netKey(net.words), { net, ban });
  }

  delete(net: Network): Ban | undefined {
    const host = hostText(net);
    if (host !== null) {
      const b = this.exact.get(host);
      this.exact.delete(host);
      return b;
    }
    const m = this.nets.get(net.bits);
    const k = netKey(net.words);
    const n = m?.get(k);
    if (m === undefined || n === undefined) return undefined;
    m.delete(k);
    if (m.size === 0) this.nets.delete(net.bits);
    return n.ban;
  }

  *all(): IterableIterator<Ban> {
    yield* this.exact.values();
    for (const m of this.nets.values()) for (const n of m.values()) yield n.ban;
  }

  sweep(now: number): void {
    for (const [k, b] of this.exact) if (b.until <= now) this.exact.delete(k);
    for (const [bits, m] of this.nets) {
      for (const [k, n] of m) if (n.ban.until <= now) m.delete(k);
      if (m.size === 0) this.nets.delete(bits);
    }
  }

  clear(): void {
    this.exact.clear();
    this.nets.clear();
  }
}

/** A target's last automatic ban: its strike and when it was made. */
export interface Offence {
  readonly target: string;
  readonly strike: number;
  readonly at: number;
}

/** Offences remembered at most; the oldest recorded go first. */
export const MAX_OFFENCES = 100_000;

export class BanList {
  private readonly local = new Layer();
  private readonly crowdsec = new Layer();
  private readonly listeners = new Set<(c: BanChange) => void>();
  /** Repeat offenders: each target's last automatic ban, oldest first. */
  private readonly history = new Map<string, Offence>();

  private layer(l: BanLayer): Layer {
    return l === 'crowdsec' ? this.crowdsec : this.local;
  }

  /**
   * Bans `target` (an address or a CIDR network) until now + ttlMs, in the
   * layer of its origin (operator by default); a longer ban already held
   * there on the same target is kept and returned. Throws on a target that
   * is no address or network.
   */
  add(target: string, ttlMs: number, reason: string, now: number, opts: BanOptions = {}): Ban {
    const net = parseNetwork(target);
    const origin = opts.origin ?? 'operator';
    const layer = this.layer(layerOf(origin));
    const ban: Ban = { target: hostText(net) ?? net.text, until: now + ttlMs, reason, createdAt: now, origin, strike: opts.strike ?? 1 };
    const old = layer.get(net);
    if (old !== undefined && old.until >= ban.until && old.until > now) return old;
    layer.set(net, ban);
    this.emit({ kind: 'add', ban });
    return ban;
  }

  /** The ban covering `ip` now, or null; the local layer's first. `text` is the address as formatted by formatIp. */
  find(ip: ParsedIp, text: string, now: number): Ban | null {
    return this.local.find(ip, text, now) ?? this.crowdsec.find(ip, text, now);
  }

  /**
   * Every ban in force covering `ip`, in both layers, local first (find()
   * gives the one that refuses; this, all of them, for `doorman why`): as
   * cheap as find(), whatever the number of bans.
   */
  covering(ip: ParsedIp, text: string, now: number): Ban[] {
    const out: Ban[] = [];
    this.local.covering(ip, text, now, out);
    this.crowdsec.covering(ip, text, now, out);
    return out;
  }

  /** The ban held on exactly this target (not one covering it), in force or not yet swept. */
  get(target: string, layer: BanLayer = 'local'): Ban | null {
    return this.layer(layer).get(parseNetwork(target)) ?? null;
  }

  /** Lifts the ban on exactly `target` in `layer`; false when there is none. */
  remove(target: string, layer: BanLayer = 'local'): boolean {
    const ban = this.layer(layer).delete(parseNetwork(target));
    if (ban === undefined) return false;
    this.emit({ kind: 'remove', ban });
    return true;
  }

  /** Forgets every ban of a layer (before loading a fleet's or CrowdSec's list in its place). */
  clear(layer: BanLayer = 'local'): void {
    this.layer(layer).clear();
    this.emit({ kind: 'clear', layer });
  }

  /** The bans in force, local first. */
  list(now: number, layer?: BanLayer): Ban[] {
    this.sweep(now);
    if (layer !== undefined) return [...this.layer(layer).all()];
    return [...this.local.all(), ...this.crowdsec.all()];
  }

  /** How many bans each layer holds (expired ones not yet swept included). */
  sizes(): Record<BanLayer, number> {
    return { local: this.local.size, crowdsec: this.crowdsec.size };
  }

  sweep(now: number): void {
    this.local.sweep(now);
    this.crowdsec.sweep(now);
  }

  /** The last automatic ban recorded for exactly this target. */
  offence(target: string): Offence | undefined {
    return this.history.get(target);
  }

  recordOffence(o: Offence): void {
    this.history.delete(o.target);
    this.history.set(o.target, o);
    if (this.history.size > MAX_OFFENCES) this.history.delete(this.history.keys().next().value as string);
  }

  /** Replaces the history (the state file's, or the fleet's). */
  loadOffences(list: readonly Offence[]): void {
    this.history.clear();
    for (const o of [...list].sort((a, b) => a.at - b.at)) this.recordOffence(o);
  }

  /** Calls `f` on every add, remove and clear, synchronously; returns the way to stop. */
  onChange(f: (c: BanChange) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  private emit(c: BanChange): void {
    for (const f of this.listeners) f(c);
  }
}
