/**
 * The special-purpose blocks: every row of the IANA IPv4 and IPv6
 * Special-Purpose Address Registries (RFC 6890) as IANA lists them in November
 * 2026, plus the blocks those registries leave to others: IPv4 multicast and
 * 240.0.0.0/4, IPv6 multicast, site-local, IPv4-compatible, and everything
 * IPv6 outside 2000::/3. An address in none of them is a global unicast one.
 *
 * Every row is named, including the few IANA marks globally reachable (PCP and
 * TURN anycast, AS112, AMT, ORCHIDv2, DETs): they are anycast services or
 * identifiers, so a country means nothing for them either.
 *
 * Five IPv6 blocks carry an IPv4 address, and that address is judged (and
 * looked up) instead of the IPv6 one, so `::ffff:10.0.0.1` is 'private-use'
 * and `::ffff:8.8.8.8` has 8.8.8.8's country. Their own names are therefore
 * never answered:
 *   ::ffff:0:0/96  IPv4-mapped. How a dual-stack socket reports every IPv4 peer.
 *   ::/96          IPv4-compatible (deprecated by RFC 4291; ::/128 and ::1/128
 *                  are more specific and stay unspecified and loopback).
 *   64:ff9b::/96   NAT64 well-known prefix (RFC 6052). IANA calls it globally
 *                  reachable, but as a *source* it only appears when the
 *                  operator's own translator (SIIT-DC, RFC 7755) hands over an
 *                  IPv4 client: that IPv4 address is the client. RFC 6052 §3.1
 *                  forbids non-global IPv4 in it; judging the embedded address
 *                  enforces that.
 *   2002::/16      6to4 (RFC 3056; IANA: reachability N/A). 2002:AABB:CCDD::/48
 *                  belongs to the site whose router is AA.BB.CC.DD; replies
 *                  reach the client only through that IPv4 address, so it is
 *                  where the client is. MaxMind's databases alias 2002::/16 to
 *                  the IPv4 tree for the same reason; the CC0 one does not.
 *   2001::/32      Teredo (RFC 4380 §4): the last 32 bits are the client's
 *                  public IPv4 address (its NAT's), inverted. Same reasoning.
 * The 64:ff9b:1::/48 local-use prefix (RFC 8215) carries no fixed embedding and
 * is reported as 'nat64-local-use'.
 */

/** How an IPv6 block carries an IPv4 address that is judged instead of the block. */
export type EmbeddedIPv4 = 'none' | 'low-32-bits' | '6to4' | 'teredo';

/** One row of the table. */
export interface SpecialBlock {
  readonly cidr: string;
  /** The short name specialPurpose() answers. Several blocks share one (three 'private-use'). */
  readonly name: string;
  readonly rfc: string;
  /** IANA's "Globally Reachable": null where the registry says N/A or nothing. */
  readonly globallyReachable: boolean | null;
  readonly embeds: EmbeddedIPv4;
}

function b(cidr: string, name: string, rfc: string, globallyReachable: boolean | null, embeds: EmbeddedIPv4 = 'none'): SpecialBlock {
  return Object.freeze({ cidr, name, rfc, globallyReachable, embeds });
}

/**
 * Every block Doorman treats as special. The most specific block containing an
 * address wins, whatever the order here.
 */
export const SPECIAL_BLOCKS: readonly SpecialBlock[] = Object.freeze([
  // IANA IPv4 Special-Purpose Address Registry.
  b('0.0.0.0/8', 'this-network', 'RFC 791 §3.2', false),
  b('0.0.0.0/32', 'this-host', 'RFC 1122 §3.2.1.3', false),
  b('10.0.0.0/8', 'private-use', 'RFC 1918', false),
  b('100.64.0.0/10', 'shared-address-space', 'RFC 6598', false),
  b('127.0.0.0/8', 'loopback', 'RFC 1122 §3.2.1.3', false),
  b('169.254.0.0/16', 'link-local', 'RFC 3927', false),
  b('172.16.0.0/12', 'private-use', 'RFC 1918', false),
  b('192.0.0.0/24', 'ietf-protocol-assignments', 'RFC 6890 §2.1', false),
  b('192.0.0.0/29', 'ipv4-service-continuity', 'RFC 7335', false),
  b('192.0.0.8/32', 'ipv4-dummy', 'RFC 7600', false),
  b('192.0.0.9/32', 'pcp-anycast', 'RFC 7723', true),
  b('192.0.0.10/32', 'turn-anycast', 'RFC 8155', true),
  b('192.0.0.170/32', 'nat64-discovery', 'RFC 8880, RFC 7050 §2.2', false),
  b('192.0.0.171/32', 'nat64-discovery', 'RFC 8880, RFC 7050 §2.2', false),
  b('192.0.2.0/24', 'documentation', 'RFC 5737 (TEST-NET-1)', false),
  b('192.31.196.0/24', 'as112', 'RFC 7535', true),
  b('192.52.193.0/24', 'amt', 'RFC 7450', true),
  b('192.88.99.0/24', '6to4-relay-anycast', 'RFC 7526 (deprecated, terminated 2015-03)', null),
  b('192.88.99.2/32', '6a44-relay-anycast', 'RFC 6751', false),
  b('192.168.0.0/16', 'private-use', 'RFC 1918', false),
  b('192.175.48.0/24', 'as112-direct-delegation', 'RFC 7534', true),
  b('198.18.0.0/15', 'benchmarking', 'RFC 2544', false),
  b('198.51.100.0/24', 'documentation', 'RFC 5737 (TEST-NET-2)', false),
  b('203.0.113.0/24', 'documentation', 'RFC 5737 (TEST-NET-3)', false),
  b('240.0.0.0/4', 'reserved', 'RFC 1112 §4', false),
  b('255.255.255.255/32', 'limited-broadcast', 'RFC 919 §7, RFC 8190', false),
  // IANA IPv4 Multicast Address Space Registry.
  b('224.0.0.0/4', 'multicast', 'RFC 5771', false),

  // IANA IPv6 Special-Purpose Address Registry.
  b('::/128', 'unspecified', 'RFC 4291', false),
  b('::1/128', 'loopback', 'RFC 4291', false),
  b('::ffff:0:0/96', 'ipv4-mapped', 'RFC 4291', false, 'low-32-bits'),
  b('64:ff9b::/96', 'nat64', 'RFC 6052', true, 'low-32-bits'),
  b('64:ff9b:1::/48', 'nat64-local-use', 'RFC 8215', false),
  b('100::/64', 'discard-only', 'RFC 6666', false),
  b('100:0:0:1::/64', 'dummy-prefix', 'RFC 9780', false),
  b('2001::/23', 'ietf-protocol-assignments', 'RFC 2928', false),
  b('2001::/32', 'teredo', 'RFC 4380, RFC 8190', null, 'teredo'),
  b('2001:1::1/128', 'pcp-anycast', 'RFC 7723', true),
  b('2001:1::2/128', 'turn-anycast', 'RFC 8155', true),
  b('2001:1::3/128', 'dns-sd-srp-anycast', 'RFC 9665', true),
  b('2001:2::/48', 'benchmarking', 'RFC 5180, RFC Errata 1752', false),
  b('2001:3::/32', 'amt', 'RFC 7450', true),
  b('2001:4:112::/48', 'as112', 'RFC 7535', true),
  b('2001:10::/28', 'orchid', 'RFC 4843 (deprecated, terminated 2014-03)', null),
  b('2001:20::/28', 'orchid-v2', 'RFC 7343', true),
  b('2001:30::/28', 'drone-remote-id', 'RFC 9374', true),
  b('2001:db8::/32', 'documentation', 'RFC 3849', false),
  b('2002::/16', '6to4', 'RFC 3056', null, '6to4'),
  b('2620:4f:8000::/48', 'as112-direct-delegation', 'RFC 7534', true),
  b('3fff::/20', 'documentation', 'RFC 9637', false),
  b('5f00::/16', 'srv6-sids', 'RFC 9602', false),
  b('fc00::/7', 'unique-local', 'RFC 4193, RFC 8190', false),
  b('fe80::/10', 'link-local', 'RFC 4291', false),
  // Not in that registry, but never a global unicast source.
  b('::/96', 'ipv4-compatible', 'RFC 4291 §2.5.5.1 (deprecated)', false, 'low-32-bits'),
  b('fec0::/10', 'site-local', 'RFC 3879 (deprecated)', false),
  b('ff00::/8', 'multicast', 'RFC 4291 §2.7', false),
  // IANA IPv6 Address Space Registry: only 2000::/3 is global unicast; the rest
  // not named above is reserved by the IETF.
  b('::/3', 'reserved', 'RFC 4291', false),
  b('4000::/2', 'reserved', 'RFC 4291', false),
  b('8000::/1', 'reserved', 'RFC 4291', false),
]);
