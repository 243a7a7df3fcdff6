/**
 * Temporary bans of an address or a network, each with an expiry and a
 * reason. Exact addresses are a Map lookup; network bans are few and
 * scanned. Expired bans are dropped when met and by sweep().
 *
 * This is the in-process list; fleet mode will keep bans in Redis behind the
 * same methods.
 */
import type { ParsedIp } from './ip.js';
import { hostText, networkContains, parseNetwork, type Network } from './networks.js';

export interface Ban {
  /** The address or network as given, normalised for exact addresses. */
  readonly target: string;
  readonly until: number;
  readonly reason: string;
  readonly createdAt: number;
}

export class BanList {
  private readonly exact = new Map<string, Ban>();
  private readonly nets: Array<{ net: Network; ban: Ban }> = [];

  /** Bans `target` (an address or a CIDR network) until now + ttlMs; a longer existing ban is kept. */
  add(target: string, ttlMs: number, reason: string, now: number): Ban {
    const net = parseNetwork(target);
    const host = hostText(net);
    const isHost = host !== null;
    const key = host ?? net.text;
    const ban: Ban = { target: key, until: now + ttlMs, reason, createdAt: now };
    if (isHost) {
      const old = this.exact.get(key);
      if (old !== undefined && old.until >= ban.until) return old;
      this.exact.set(key, ban);
    } else {
      const i = this.nets.findIndex((n) => n.ban.target === key);
      if (i >= 0 && (this.nets[i] as { ban: Ban }).ban.until >= ban.until) return (this.nets[i] as { ban: Ban }).ban;
      if (i >= 0) this.nets.splice(i, 1);
      this.nets.push({ net, ban });
    }
    return ban;
  }

  /** The ban covering `ip` now, or null. `text` is the address as formatted by formatIp. */
  find(ip: ParsedIp, text: string, now: number): Ban | null {
    const b = this.exact.get(text);
    if (b !== undefined) {
      if (b.until > now) return b;
      this.exact.delete(text);
    }
    for (const n of this.nets) if (n.ban.until > now && networkContains(n.net, ip)) return n.ban;
    return null;
  }

  remove(target: string): boolean {
    if (this.exact.delete(target)) return true;
    const i = this.nets.findIndex((n) => n.ban.target === target);
    if (i < 0) return false;
    this.nets.splice(i, 1);
    return true;
  }

  /** Forgets every ban (before loading a fleet's list in its place). */
  clear(): void {
    this.exact.clear();
    this.nets.length = 0;
  }

  list(now: number): Ban[] {
    this.sweep(now);
    return [...this.exact.values(), ...this.nets.map((n) => n.ban)];
  }

  sweep(now: number): void {
    for (const [k, b] of this.exact) if (b.until <= now) this.exact.delete(k);
    for (let i = this.nets.length - 1; i >= 0; i--) if ((this.nets[i] as { ban: Ban }).ban.until <= now) this.nets.splice(i, 1);
  }
}
