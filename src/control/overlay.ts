/**
 * Country rules changed at run time, over the configured ones: the state
 * file keeps them per service and phase, and these pure functions work out
 * the next rule for a block or an unblock of one country, and put the
 * overlay over the configuration's compiled rules (nothing is compiled
 * again; see Rules.withCountries).
 */
import type { Config } from '../config/load.js';
import type { CountryRule, CountryRuleInput, Rules } from '../core/rules.js';
import type { RuntimeState } from '../state/runtime-state.js';

/** The configuration's rules with the run-time country rules in place of the file's. */
export function rulesWith(config: Config, state: RuntimeState): Rules {
  return config.rules.withCountries(state.countries, `${config.source} (with run-time country rules)`);
}

/** A compiled rule as the input it was made from (codes sorted), or null for none. */
export function ruleInput(rule: CountryRule | null): CountryRuleInput | null {
  if (rule === null) return null;
  const codes = [...rule.codes].sort();
  const mode = rule.dryRun ? 'dry-run' : 'enforce';
  return rule.kind === 'allow' ? { allow: codes, mode } : { deny: codes, mode };
}

/**
 * The rule after blocking `code`, whatever the rule was: added to a deny
 * list, taken from an allow list, a new deny list when there was none.
 * 'every-country' when it would leave an allow list empty: that blocks
 * every country, which is no block of one.
 */
export function withBlocked(cur: CountryRuleInput | null, code: string): CountryRuleInput | 'every-country' {
  if (cur === null) return { deny: [code] };
  if (cur.allow !== undefined) {
    const allow = cur.allow.filter((x) => x !== code);
    return allow.length === 0 ? 'every-country' : { ...cur, allow };
  }
  return { ...cur, deny: [...new Set([...(cur.deny ?? []), code])] };
}

/** The rule after unblocking `code`: taken from a deny list (null, no rule, once it empties), added to an allow list. */
export function withUnblocked(cur: CountryRuleInput | null, code: string): CountryRuleInput | null {
  if (cur === null) return null;
  if (cur.allow !== undefined) return { ...cur, allow: [...new Set([...cur.allow, code])] };
  const deny = (cur.deny ?? []).filter((x) => x !== code);
  return deny.length === 0 ? null : { ...cur, deny };
}
