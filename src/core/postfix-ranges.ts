/**
 * How Postfix's smtpd names a client to anvil, per service.
 *
 * Up to 3.7 the anvil ident is SERVICE:ADDRESS. From 3.8 smtpd names a
 * network instead whenever its prefix length is shorter than the address:
 * `smtpd_client_ipv4_prefix_length` (default 32, so IPv4 idents stay whole)
 * and `smtpd_client_ipv6_prefix_length` (default 84), e.g.
 * `smtp:2001:db8:1234:5600::/84`, and ::1 arrives as `smtp:::/84`. smtpd
 * reads its counts back under the same ident, so the anvil service keeps them
 * as sent; but the policy service and `doorman check` start from a client
 * address, and must build the ident smtpd wrote to find them.
 *
 * They use the prefix lengths configured (defaulting to Postfix 3.8+'s), and
 * once the anvil service has seen a `connect` from a service, the lengths that
 * service really uses: a range ident teaches its length, a whole address
 * teaches the full length (Postfix 3.7, or a prefix length set to 32 / 128).
 * Learning needs no ordering luck: smtpd reports a session to anvil before it
 * asks the policy service about it, so the client being judged has always
 * been seen. A master.cf service may set its own lengths (-o), hence per
 * service. No I/O here; a change is reported to `onChange` for the log.
 */
import { fullBits } from './ip.js';

export interface PrefixLengths {
  readonly ipv4: number;
  readonly ipv6: number;
}

/** Postfix 3.8+'s defaults for smtpd_client_ipv4_prefix_length and smtpd_client_ipv6_prefix_length. */
export const POSTFIX_PREFIX_LENGTHS: PrefixLengths = Object.freeze({ ipv4: 32, ipv6: 84 });

export interface RangeChange {
  readonly service: string;
  readonly family: 4 | 6;
  /** The length smtpd uses now (the full length: whole addresses). */
  readonly bits: number;
  /** What was assumed before: the configured length, or an earlier learned one. */
  readonly previous: number;
  /** True when nothing had been learned for this service and family before. */
  readonly first: boolean;
}

/** At most this many services are remembered (master.cf has a handful; a flood of made-up names must not grow the map). */
const MAX_SERVICES = 1024;

export class PostfixRanges {
  private readonly configured: PrefixLengths;
  /** service → [IPv4 length, IPv6 length], -1 where none was learned. */
  private readonly learned = new Map<string, [number, number]>();
  /** No IPv4 range configured or seen: IPv4 clients are whole addresses, answered without a lookup (the common case). */
  private ipv4Whole: boolean;
  onChange: ((c: RangeChange) => void) | null = null;

  constructor(configured: PrefixLengths = POSTFIX_PREFIX_LENGTHS) {
    this.configured = configured;
    this.ipv4Whole = configured.ipv4 >= 32;
  }

  /** True when whole IPv4 idents must be looked at too: the configured IPv4 length assumes ranges. */
  get assumesIPv4Ranges(): boolean {
    return this.configured.ipv4 < 32;
  }

  /** Records the length a service's connect ident used. */
  learn(service: string, family: 4 | 6, bits: number): void {
    let l = this.learned.get(service);
    const i = family === 4 ? 0 : 1;
    if (l !== undefined && l[i] === bits) return;
    if (l === undefined) {
      if (this.learned.size >= MAX_SERVICES) return;
      this.learned.set(service, (l = [-1, -1]));
    }
    const first = l[i] === -1;
    const previous = first ? this.configuredBits(family) : (l[i] as number);
    l[i] = bits;
    if (family === 4 && bits < 32) this.ipv4Whole = false;
    this.onChange?.({ service, family, bits, previous, first });
  }

  /** The prefix length smtpd uses for this service and family. */
  bits(service: string, family: 4 | 6): number {
    if (family === 4 && this.ipv4Whole) return 32;
    const l = this.learned.get(service);
    const b = l === undefined ? -1 : (l[family === 4 ? 0 : 1] as number);
    return b >= 0 ? b : this.configuredBits(family);
  }

  /** What was learned, per service: {ipv4, ipv6}, null where nothing was seen. */
  snapshot(): Record<string, { ipv4: number | null; ipv6: number | null }> {
    const out: Record<string, { ipv4: number | null; ipv6: number | null }> = {};
    for (const [s, [v4, v6]] of this.learned) out[s] = { ipv4: v4 < 0 ? null : v4, ipv6: v6 < 0 ? null : v6 };
    return out;
  }

  private configuredBits(family: 4 | 6): number {
    return Math.min(fullBits(family), family === 4 ? this.configured.ipv4 : this.configured.ipv6);
  }
}
