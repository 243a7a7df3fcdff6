/**
 * Compiled rules: the services' limits, country rules, exception networks
 * and overrides, turned once from configuration into lookups that cost
 * nothing per request. A contradiction (a country allow and deny list for
 * one phase, a network that does not parse, a service name that is no
 * protocol and says none, an override for a service that does not exist) is
 * a ConfigError naming the key, raised at start and by `doorman config check`.
 */
import { ConfigError, type ConfigIssue } from '../errors.js';
import { LIMIT_KEYS, PROTOCOLS, type Limits, type OverrideConfig, type Protocol, type ServiceConfig } from '../config/rules-schema.js';
import type { ParsedIp } from './ip.js';
import { NetworkSet, parseNetwork, type Network } from './networks.js';

export type RulePhase = 'connect' | 'auth';

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

type DeepReadonly<T> = T extends (infer U)[] ? ReadonlyArray<DeepReadonly<U>> : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T;

export interface RulesInput {
  readonly services: DeepReadonly<Record<string, ServiceConfig>>;
  readonly exceptions: readonly string[];
  readonly overrides: DeepReadonly<OverrideConfig[]>;
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
        if (c === undefined) return null;
        const key = `services.${name}.countries.${phase}`;
        if (c.allow !== undefined && c.deny !== undefined) {
          issue(key, c, 'an allow list or a deny list for one phase, not both');
          return null;
        }
        if (c.allow === undefined && c.deny === undefined) {
          issue(key, c, 'an allow list or a deny list of country codes');
          return null;
        }
        const kind = c.allow !== undefined ? 'allow' : 'deny';
        return { kind, codes: new Set(c.allow ?? c.deny), dryRun: (c.mode ?? s.mode) === 'dry-run', key };
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

function countsOf(protocol: Protocol, proxied: boolean): ServiceRules['counts'] {
  if (proxied) return 'proxy';
  return protocol === 'smtp' || protocol === 'submission' || protocol === 'smtps' ? 'postfix' : 'self';
}

function definedOnly(l: Partial<Limits>): Partial<Limits> {
  return Object.fromEntries(Object.entries(l).filter(([, v]) => v !== undefined)) as Partial<Limits>;
}
