/**
 * Decisions: what Doorman answers, and why. Every decision names the rule
 * that made it (a configuration key), a reason a person can read, and how
 * long the client should wait before trying again. A limit being hit is a
 * decision, never an error.
 *
 * The evaluate* functions are pure: the caller fetches counts, the ban and
 * the country, and passes them in. A rule in dry-run mode never refuses: its
 * would-be refusal is returned in `dryRun` for logging and metrics, and
 * evaluation goes on.
 */
import type { Ban } from './bans.js';
import type { KeySnapshot, RateMetric } from './metrics.js';
import type { CountryRule, EffectiveLimits, ServiceRules } from './rules.js';
import type { LimitKey } from './rules.js';

/**
 * What refused a client, as a front-end words it: a ban, a country rule, a
 * limit (named by its key), the countries a login was used from, or the
 * shared store being away. The rule string says where in the configuration;
 * this says what kind of thing it was, so nobody parses the rule to find out.
 */
export type RefusalCause = 'ban' | 'country' | LimitKey | 'countries_per_login' | 'login_failures' | 'store';

export interface Refusal {
  /** true: try again later (4xx, NO [UNAVAILABLE], -ERR [SYS/TEMP]); false: do not (5xx, [AUTH]). */
  readonly temporary: boolean;
  readonly cause: RefusalCause;
  readonly rule: string;
  readonly reason: string;
  readonly retryAfterSec: number;
  /** The limit that was passed, for limit rules: a refusal can name it. */
  readonly limit?: number;
  /** What passed `limit`: the count or rate (the current event included), the countries a login was used from, or the addresses it failed from. */
  readonly count?: number;
  /**
   * What was counted: the address, the range smtpd counts it in, the network
   * (connections_per_prefix) or the login (countries_per_login, login_failures);
   * for a ban, its target.
   */
  readonly key?: string;
  /** The ban that refused: its layer, origin and strike say who may lift it. */
  readonly ban?: Ban;
}

export interface Decision {
  readonly action: 'allow' | 'refuse';
  /** Set when action is refuse. */
  readonly refusal: Refusal | null;
  /** Refusals that dry-run rules would have made. */
  readonly dryRun: readonly Refusal[];
  /** Why it was allowed without checks (an exception network), if so. */
  readonly exempt: string | null;
  readonly country: string | null;
}

export interface ClientFacts {
  readonly service: ServiceRules;
  readonly address: string;
  /**
   * What the client's counts are kept under: the address, or the range
   * Postfix 3.8+ smtpd counts it in ("2001:db8::/84"). Count and rate
   * refusals name it.
   */
  readonly client: string;
  readonly country: string | null;
  /** The exception network holding the address, if any. */
  readonly exception: string | null;
  readonly ban: Ban | null;
  readonly limits: EffectiveLimits;
  readonly now: number;
  readonly rateUnitSec: number;
}

type Check = Refusal & { readonly dry: boolean };

/** Collects checks in order; the first enforced refusal wins. */
class Verdicts {
  private readonly dry: Refusal[] = [];
  private refusal: Refusal | null = null;
  add(c: Check | null): boolean {
    if (c === null || this.refusal !== null) return this.refusal !== null;
    const { dry, ...r } = c;
    if (dry) this.dry.push(r);
    else this.refusal = r;
    return this.refusal !== null;
  }
  done(f: ClientFacts): Decision {
    return { action: this.refusal ? 'refuse' : 'allow', refusal: this.refusal, dryRun: this.dry, exempt: null, country: f.country };
  }
}

function exempt(f: ClientFacts): Decision | null {
  return f.exception === null
    ? null
    : { action: 'allow', refusal: null, dryRun: [], exempt: `${f.address} is in exception network ${f.exception}`, country: f.country };
}

function banCheck(f: ClientFacts): Check | null {
  if (f.ban === null) return null;
  const left = Math.max(1, Math.ceil((f.ban.until - f.now) / 1000));
  return { temporary: true, cause: 'ban', rule: 'bans', reason: `${f.address} is banned for ${left} s more (${f.ban.reason})`, retryAfterSec: left, key: f.ban.target, ban: f.ban, dry: false };
}

function countryCheck(f: ClientFacts, rule: CountryRule | null, phase: string): Check | null {
  // No country (special-purpose or unknown address) is never country-blocked.
  if (rule === null || f.country === null) return null;
  const listed = rule.codes.has(f.country);
  if (rule.kind === 'allow' ? listed : !listed) return null;
  const why = rule.kind === 'allow' ? 'is not in the allow list' : 'is in the deny list';
  return {
    temporary: false,
    cause: 'country',
    rule: rule.key,
    reason: `country ${f.country} of ${f.address} ${why} for ${f.service.name} at ${phase}`,
    retryAfterSec: 0,
    dry: rule.dryRun,
  };
}

const LIMIT_WORDS: Record<LimitKey, string> = {
  connections_per_address: 'connections from',
  connections_per_prefix: 'connections from network',
  connection_rate: 'connection rate of',
  message_rate: 'message rate of',
  recipient_rate: 'recipient rate of',
  auth_rate: 'AUTH rate of',
  auth_failure_rate: 'AUTH failure rate of',
};

function limitKey(f: ClientFacts, key: LimitKey): string {
  return f.limits.override ? `${f.limits.override}.limits.${key}` : `services.${f.service.name}.limits.${key}`;
}

/** value is over the limit when it exceeds it: anvil's rule, the current event included. */
function countCheck(f: ClientFacts, key: 'connections_per_address' | 'connections_per_prefix', value: number, who: string): Check | null {
  const limit = f.limits.limits[key];
  if (limit === null || value <= limit) return null;
  return {
    temporary: true,
    cause: key,
    rule: limitKey(f, key),
    reason: `${value} ${LIMIT_WORDS[key]} ${who}, over the limit of ${limit}`,
    retryAfterSec: 60,
    limit,
    count: value,
    key: who,
    dry: f.service.dryRun,
  };
}

function rateCheck(f: ClientFacts, key: LimitKey, value: number): Check | null {
  const limit = f.limits.limits[key];
  if (limit === null || value <= limit) return null;
  return {
    temporary: true,
    cause: key,
    rule: limitKey(f, key),
    reason: `${LIMIT_WORDS[key]} ${f.client} is ${value}/${f.rateUnitSec}s, over the limit of ${limit}`,
    retryAfterSec: f.rateUnitSec,
    limit,
    count: value,
    key: f.client,
    dry: f.service.dryRun,
  };
}

/** At connect: bans, country, concurrency per address and per prefix, connection rate. */
export function evaluateConnect(f: ClientFacts, counts: { address: KeySnapshot; prefix: KeySnapshot | null; prefixText: string | null }): Decision {
  const e = exempt(f);
  if (e) return e;
  const v = new Verdicts();
  v.add(banCheck(f)) ||
    v.add(countryCheck(f, f.service.countries.connect, 'connect')) ||
    v.add(countCheck(f, 'connections_per_address', counts.address.count, f.client)) ||
    (counts.prefix !== null && v.add(countCheck(f, 'connections_per_prefix', counts.prefix.count, counts.prefixText ?? ''))) ||
    v.add(rateCheck(f, 'connection_rate', counts.address.rates.conn));
  return v.done(f);
}

/**
 * At AUTH: bans, the AUTH-phase country rule, AUTH and AUTH-failure rates,
 * countries per login, and a login failing from too many addresses
 * (`failures`: how many it failed from, when over the rule's limit).
 */
export function evaluateAuth(
  f: ClientFacts,
  counts: { address: KeySnapshot; authRate?: number },
  login: { name: string; countriesSeen: number; newCountry: boolean } | null,
  failures: { name: string; addresses: number } | null = null,
): Decision {
  const e = exempt(f);
  if (e) return e;
  const v = new Verdicts();
  const travel = f.service.maxCountriesPerLogin;
  v.add(banCheck(f)) ||
    v.add(countryCheck(f, f.service.countries.auth, 'auth')) ||
    v.add(rateCheck(f, 'auth_rate', counts.authRate ?? counts.address.rates.auth)) ||
    v.add(rateCheck(f, 'auth_failure_rate', counts.address.rates.authfail)) ||
    (travel !== null &&
      login !== null &&
      login.newCountry &&
      !travel.exempt.has(login.name) &&
      login.countriesSeen > travel.countries &&
      v.add({
        temporary: false,
        cause: 'countries_per_login',
        rule: `services.${f.service.name}.max_countries_per_login`,
        reason: `login ${login.name} used from ${login.countriesSeen} countries within ${Math.round(travel.windowMs / 3_600_000)} h (now ${f.country}), over ${travel.countries}`,
        retryAfterSec: 0,
        limit: travel.countries,
        count: login.countriesSeen,
        key: login.name,
        dry: !travel.refuse || f.service.dryRun,
      })) ||
    (failures !== null &&
      f.service.loginFailures !== null &&
      failures.addresses > f.service.loginFailures.addresses &&
      v.add({
        temporary: true,
        cause: 'login_failures',
        rule: `services.${f.service.name}.login_failures`,
        reason: `login ${failures.name.slice(0, 64)} failed from ${failures.addresses} addresses within ${Math.round(f.service.loginFailures.windowMs / 60_000)} min, over the limit of ${f.service.loginFailures.addresses}`,
        retryAfterSec: Math.ceil(f.service.loginFailures.windowMs / 1000),
        limit: f.service.loginFailures.addresses,
        count: failures.addresses,
        key: failures.name.slice(0, 64),
        dry: f.service.dryRun,
      }));
  return v.done(f);
}

/** For one counted event (message, recipient): its rate against its limit. */
export function evaluateEvent(f: ClientFacts, metric: RateMetric & ('mail' | 'rcpt'), rate: number): Decision {
  const e = exempt(f);
  if (e) return e;
  const v = new Verdicts();
  v.add(banCheck(f)) || v.add(rateCheck(f, metric === 'mail' ? 'message_rate' : 'recipient_rate', rate));
  return v.done(f);
}
