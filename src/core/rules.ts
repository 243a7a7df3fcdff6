/**
 * Compiled rules: the services' limits, country rules, exception networks
 * and overrides, turned once from configuration into lookups that cost
 * nothing per request. A contradiction (a country allow and deny list for
 * one phase, a network that does not parse, a service name that is no
 * protocol and says none, an override for a service that does not exist) is
 * a ConfigError naming the key, raised at start and by `doorman config check`.
 */
import { ConfigError, type ConfigIssue } from '../errors.js';
import type { ParsedIp } from './ip.js';
import { NetworkSet, parseNetwork, type Network } from './networks.js';

/** The protocols a service speaks: the guard proxy's refusals and the counting keys follow them. */
export const PROTOCOLS = ['smtp', 'submission', 'smtps', 'pop3', 'pop3s', 'imap', 'imaps'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** Every limit a service (or an override) may set; null is no limit. */
export const LIMIT_KEYS = [
  'connections_per_address',
  'connections_per_prefix',
  'connection_rate',
  'message_rate',
  'recipient_rate',
  'auth_rate',
  'auth_failure_rate',
] as const;
export type LimitKey = (typeof LIMIT_KEYS)[number];
export type Limits = { [K in LimitKey]: number | null };

export type RulePhase = 'connect' | 'auth';
export type RuleMode = 'enforce' | 'dry-run';

/**
 * What the rules are compiled from: the shape the configuration's schema
 * (../config/rules-schema.ts) validates and fills with defaults. Declared
 * here, by the core that reads it; the configuration is checked against it
 * where it calls compile().
 */
export interface CountryRuleInput {
  readonly allow?: readonly string[];
  readonly deny?: readonly string[];
  readonly mode?: RuleMode;
}

export interface ServiceInput {
  readonly protocol?: Protocol;
  readonly mode: RuleMode;
  readonly limits: Readonly<Limits>;
  readonly prefix: { readonly ipv4: number; readonly ipv6: number };
  readonly countries: { readonly connect?: CountryRuleInput; readonly auth?: CountryRuleInput };
  /** ms */
  readonly auth_failure_ban: number;
  readonly max_countries_per_login: {
    readonly countries: number;
    /** ms */
    readonly window: number;
    readonly action: 'report' | 'refuse';
    readonly exempt_logins: readonly string[];
  } | null;
  /** ms: window, max_ban */
  readonly repeat_offenders: { readonly window: number; readonly multiplier: number; readonly max_ban: number } | null;
  /** ms */
  readonly good_login: number | null;
  /** ms: window */
  readonly login_failures: { readonly addresses: number; readonly window: number } | null;
  /** ms: window, ban */
  readonly early_leavers: { readonly sessions: number; readonly window: number; readonly ban: number } | null;
  /** ms: window, ban */
  readonly recipient_probing: { readonly recipients: number; readonly window: number; readonly ban: number } | null;
  /** The guard proxy in front of the service; only whether there is one, and whom it takes PROXY headers from, matter here. */
  readonly proxy: { readonly accept_proxy_from: readonly string[] } | null;
}

export interface OverrideInput {
  readonly networks: readonly string[];
  readonly services?: readonly string[];
  readonly limits: Readonly<Partial<Limits>>;
  readonly reason?: string;
}

/**
 * Run-time country rules over the configured ones, per service and phase:
 * a rule in place of the configuration's, null for none, absent for the
 * configuration's own.
 */
export type CountryOverlay = Readonly<Record<string, { readonly connect?: CountryRuleInput | null; readonly auth?: CountryRuleInput | null }>>;

export interface CountryRule {
  readonly kind: 'allow' | 'deny';
  readonly codes: ReadonlySet<string>;
  readonly dryRun: boolean;
  /** The configuration key, e.g. services.imap.countries.auth. */
  readonly key: string;
}

export interface ServiceRules {
  readonly name: string;
  readonly protocol: Protocol;
  /**
   * Whose counts the service's connections are: 'proxy' when the guard proxy
   * stands in front of it (keyed by address), 'postfix' for an SMTP service
   * without one (smtpd reports it to the anvil service, keyed as smtpd names
   * the client), 'self' for the rest (Dovecot's AUTH counts, by address).
   */
  readonly counts: 'proxy' | 'postfix' | 'self';
  readonly dryRun: boolean;
  readonly limits: Readonly<Limits>;
  readonly prefixV4: number;
  readonly prefixV6: number;
  readonly countries: { readonly connect: CountryRule | null; readonly auth: CountryRule | null };
  readonly authFailureBanMs: number;
  readonly maxCountriesPerLogin: {
    readonly countries: number;
    readonly windowMs: number;
    readonly refuse: boolean;
    readonly exempt: ReadonlySet<string>;
  } | null;
  /** Automatic bans made again within windowMs grow by multiplier, up to maxBanMs. */
  readonly repeatOffenders: { readonly windowMs: number; readonly multiplier: number; readonly maxBanMs: number } | null;
  /** How long a good login exempts its address from AUTH-failure bans. */
  readonly goodLoginMs: number | null;
  readonly loginFailures: { readonly addresses: number; readonly windowMs: number } | null;
  readonly recipientProbing: { readonly recipients: number; readonly windowMs: number; readonly banMs: number } | null;
  readonly earlyLeavers: { readonly sessions: number; readonly windowMs: number; readonly banMs: number } | null;
}

interface Override {
  readonly key: string;
  readonly networks: NetworkSet;
  readonly services: ReadonlySet<string> | null;
  readonly limits: Partial<Limits>;
  readonly reason: string;
}

/** Limits in force for one client of one service, and the override that changed them. */
export interface EffectiveLimits {
  readonly limits: Readonly<Limits>;
  readonly override: string | null;
}

const NO_LIMITS: Limits = Object.freeze(Object.fromEntries(LIMIT_KEYS.map((k) => [k, null])) as unknown as Limits);

export interface RulesInput {
  readonly services: Readonly<Record<string, ServiceInput>>;
  readonly exceptions: readonly string[];
  readonly overrides: readonly OverrideInput[];
}

export class Rules {
  readonly services: ReadonlyMap<string, ServiceRules>;
  readonly exceptions: NetworkSet;
  private readonly overrides: readonly Override[];
  private readonly fallback = new Map<string, ServiceRules>();

  private constructor(services: Map<string, ServiceRules>, exceptions: NetworkSet, overrides: Override[]) {
    this.services = services;
    this.exceptions = exceptions;
    this.overrides = overrides;
  }

  /** Compiles the rules; every problem found is reported at once. */
  static compile(input: RulesInput, file: string): Rules {
    const issues: ConfigIssue[] = [];
    const issue = (key: string, value: unknown, expected: string) => issues.push({ file, key, value, expected });
    const services = new Map<string, ServiceRules>();
    for (const [name, s] of Object.entries(input.services)) {
      const protocol = s.protocol ?? ((PROTOCOLS as readonly string[]).includes(name) ? (name as Protocol) : undefined);
      if (protocol === undefined) {
        issue(`services.${name}.protocol`, undefined, `one of ${PROTOCOLS.join(', ')} ("${name}" is not a protocol name, so say which protocol it speaks)`);
        continue;
      }
      const country = (phase: RulePhase): CountryRule | null => {
        const c = s.countries[phase];
        return c === undefined ? null : countryRule(c, s.mode, `services.${name}.countries.${phase}`, issue);
      };
      const m = s.max_countries_per_login;
      services.set(name, {
        name,
        protocol,
        counts: countsOf(protocol, s.proxy != null),
        dryRun: s.mode === 'dry-run',
        limits: Object.freeze({ ...s.limits }),
        prefixV4: s.prefix.ipv4,
        prefixV6: s.prefix.ipv6,
        countries: { connect: country('connect'), auth: country('auth') },
        authFailureBanMs: s.auth_failure_ban,
        maxCountriesPerLogin: m && { countries: m.countries, windowMs: m.window, refuse: m.action === 'refuse', exempt: new Set(m.exempt_logins) },
        repeatOffenders: s.repeat_offenders && { windowMs: s.repeat_offenders.window, multiplier: s.repeat_offenders.multiplier, maxBanMs: s.repeat_offenders.max_ban },
        goodLoginMs: s.good_login,
        loginFailures: s.login_failures && { addresses: s.login_failures.addresses, windowMs: s.login_failures.window },
        recipientProbing: s.recipient_probing && { recipients: s.recipient_probing.recipients, windowMs: s.recipient_probing.window, banMs: s.recipient_probing.ban },
        earlyLeavers: s.early_leavers && { sessions: s.early_leavers.sessions, windowMs: s.early_leavers.window, banMs: s.early_leavers.ban },
      });
    }
    const networks = (key: string, list: readonly string[]): Network[] =>
      list.flatMap((text, i) => {
        try {
          return [parseNetwork(text)];
        } catch (err) {
          issue(`${key}.${i}`, text, `a network such as 192.0.2.0/24 or 2001:db8::/32 (${(err as Error).message})`);
          return [];
        }
      });
    const exceptions = new NetworkSet(networks('exceptions', input.exceptions));
    for (const [name, s] of Object.entries(input.services)) {
      if (s.proxy) networks(`services.${name}.proxy.accept_proxy_from`, s.proxy.accept_proxy_from);
    }
    const overrides = input.overrides.map((o, i): Override => {
      const key = `overrides.${i}`;
      for (const [j, svc] of (o.services ?? []).entries()) {
        if (!services.has(svc) && !Object.prototype.hasOwnProperty.call(input.services, svc)) {
          issue(`${key}.services.${j}`, svc, `a service defined under services (${[...Object.keys(input.services)].join(', ') || 'none are'})`);
        }
      }
      return {
        key,
        networks: new NetworkSet(networks(`${key}.networks`, o.networks)),
        services: o.services ? new Set(o.services) : null,
        limits: o.limits,
        reason: o.reason ?? `override ${i}`,
      };
    });
    if (issues.length > 0) throw new ConfigError(issues);
    return new Rules(services, exceptions, overrides);
  }

  /**
   * These rules with run-time country rules in place of the configured ones
   * (the admin API's and the fleet's, kept in the state file): only the
   * services' country rules change, nothing is compiled again. A rule that
   * does not hold together (both lists, or neither) is a ConfigError naming
   * `source`; a service that is not configured is skipped (its state outlived
   * a configuration that dropped it).
   */
  withCountries(overlay: CountryOverlay, source: string): Rules {
    const issues: ConfigIssue[] = [];
    const issue = (key: string, value: unknown, expected: string) => issues.push({ file: source, key, value, expected });
    const services = new Map(this.services);
    for (const [name, phases] of Object.entries(overlay)) {
      const s = services.get(name);
      if (s === undefined) continue;
      const countries = { ...s.countries };
      for (const phase of ['connect', 'auth'] as const) {
        const v = phases[phase];
        if (v === undefined) continue;
        countries[phase] = v === null ? null : countryRule(v, s.dryRun ? 'dry-run' : 'enforce', `services.${name}.countries.${phase}`, issue);
      }
      services.set(name, { ...s, countries });
    }
    if (issues.length > 0) throw new ConfigError(issues);
    return new Rules(services, this.exceptions, [...this.overrides]);
  }

  /** True when some service or override limits connections per prefix. */
  get countsPrefixes(): boolean {
    for (const s of this.services.values()) if (s.limits.connections_per_prefix !== null) return true;
    return this.overrides.some((o) => o.limits.connections_per_prefix != null);
  }

  /** The rules of a service; an unknown name gets no limits and no country rules. */
  service(name: string): ServiceRules {
    const s = this.services.get(name);
    if (s !== undefined) return s;
    let f = this.fallback.get(name);
    if (f === undefined) {
      const protocol = (PROTOCOLS as readonly string[]).includes(name) ? (name as Protocol) : 'smtp';
      f = {
        name,
        protocol,
        counts: countsOf(protocol, false),
        dryRun: false,
        limits: NO_LIMITS,
        prefixV4: 24,
        prefixV6: 64,
        countries: { connect: null, auth: null },
        authFailureBanMs: 3_600_000,
        maxCountriesPerLogin: null,
        repeatOffenders: null,
        goodLoginMs: null,
        loginFailures: null,
        recipientProbing: null,
        earlyLeavers: null,
      };
      if (this.fallback.size < 64) this.fallback.set(name, f);
    }
    return f;
  }

  /** The service's limits for this client: the first matching override replaces the keys it sets. */
  limitsFor(s: ServiceRules, ip: ParsedIp): EffectiveLimits {
    for (const o of this.overrides) {
      if (o.services !== null && !o.services.has(s.name)) continue;
      if (o.networks.match(ip) === null) continue;
      return { limits: { ...s.limits, ...definedOnly(o.limits) }, override: `${o.key} (${o.reason})` };
    }
    return { limits: s.limits, override: null };
  }
}

/** One phase's country rule; a contradiction is reported through `issue` and gives no rule. */
function countryRule(c: CountryRuleInput, serviceMode: RuleMode, key: string, issue: (key: string, value: unknown, expected: string) => void): CountryRule | null {
  if (c.allow !== undefined && c.deny !== undefined) {
    issue(key, c, 'an allow list or a deny list for one phase, not both');
    return null;
  }
  if (c.allow === undefined && c.deny === undefined) {
    issue(key, c, 'an allow list or a deny list of country codes');
    return null;
  }
  const kind = c.allow !== undefined ? 'allow' : 'deny';
  return { kind, codes: new Set(c.allow ?? c.deny), dryRun: (c.mode ?? serviceMode) === 'dry-run', key };
}

function countsOf(protocol: Protocol, proxied: boolean): ServiceRules['counts'] {
  if (proxied) return 'proxy';
  return protocol === 'smtp' || protocol === 'submission' || protocol === 'smtps' ? 'postfix' : 'self';
}

function definedOnly(l: Partial<Limits>): Partial<Limits> {
  return Object.fromEntries(Object.entries(l).filter(([, v]) => v !== undefined)) as Partial<Limits>;
}
