/**
 * The guardrails on operator changes, as pure functions: each answers the
 * reason a change is refused, or null. A ban must not cover the caller's
 * own address nor overlap a configured exception network; a country rule
 * in force (not dry-run) must not block the caller's own country. Control
 * turns a reason into a GuardrailError; the automatic bans of later issues
 * go through the same functions.
 */
import type { ParsedIp } from '../core/ip.js';
import { networkContains, parseNetwork, type Network } from '../core/networks.js';
import type { CountryRule } from '../core/rules.js';

/** Why a ban on `net` is refused for a caller at `caller` (null: not an address), or null. */
export function banRefusal(net: Network, caller: { readonly text: string; readonly ip: ParsedIp | null }, exceptions: Iterable<Network>): string | null {
  if (caller.ip !== null && networkContains(net, caller.ip)) return `refused: ${net.text} covers your own address ${caller.text}`;
  for (const ex of exceptions) {
    if (overlaps(net, ex)) return `refused: ${net.text} overlaps the exception network ${ex.text}`;
  }
  return null;
}

/** Whether `rule` refuses a client from `country` (null: no known country, which no rule refuses). */
export function countryBlocked(rule: CountryRule | null, country: string | null): boolean {
  return rule !== null && country !== null && (rule.kind === 'allow') !== rule.codes.has(country);
}

/** Why putting `rule` in force for `service` is refused for a caller from `country`, or null. A dry-run rule blocks nobody. */
export function countryRuleRefusal(rule: CountryRule | null, service: string, caller: string, country: string | null): string | null {
  if (rule === null || rule.dryRun || !countryBlocked(rule, country)) return null;
  return `refused: this rule would block your own address ${caller} (country ${country}) from ${service}`;
}

/** Whether two networks share an address: one contains the other's base. */
export function overlaps(a: Network, b: Network): boolean {
  const base = (n: Network): ParsedIp => ({ words: n.words, family: 6 });
  return networkContains(a, base(b)) || networkContains(b, base(a));
}

/** Whether a stored ban target names the same network as `net` (however either was written). */
export function sameTarget(stored: string, net: Network): boolean {
  try {
    const n = parseNetwork(stored);
    return n.bits === net.bits && n.words.every((w, i) => w === net.words[i]);
  } catch {
    return false;
  }
}
