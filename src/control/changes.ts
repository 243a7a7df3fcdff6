/**
 * Every operator change is written before it takes effect and before it is
 * answered: the state file first (atomically; a change that cannot be
 * written is refused and nothing changes), then the audit log. Changes run
 * one at a time, so each reads the state its predecessor left and two at
 * once cannot both succeed with one lost.
 */
import type { Ban } from '../core/bans.js';
import type { Clock } from '../core/clock.js';
import type { CountryRuleInput, RulePhase } from '../core/rules.js';
import type { AuditSink } from '../state/audit-log.js';
import type { RuntimeState, RuntimeStateStore } from '../state/runtime-state.js';
import { sameTarget } from './guardrails.js';
import type { Network } from '../core/networks.js';

/** Offences the state keeps at most (the newest): a flood of new addresses cannot grow the file without end. */
export const MAX_KEPT_OFFENCES = 20_000;

export class ChangeLog {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly state: RuntimeStateStore,
    private readonly audit: AuditSink,
    private readonly clock: Clock,
  ) {}

  /** The state as last written. */
  get current(): RuntimeState {
    return this.state.current;
  }

  /** Runs `f` after every change already queued; one failing does not stop the next. */
  exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * An operator's ban on `net`: written to the state (replacing any ban on
   * the same network, dropping the expired), put in force by `apply`, then
   * audited under the target the ban list gave it.
   */
  async ban(net: Network, until: number, reason: string, by: string, apply: () => Ban): Promise<Ban> {
    const now = this.clock.now();
    await this.state.update((s) => ({
      ...s,
      bans: [...s.bans.filter((b) => b.until > now && !sameTarget(b.target, net)), { target: net.text, until, reason, created_at: now }],
    }));
    const ban = apply();
    await this.audit.append({ action: 'ban.add', target: ban.target, by, reason, details: { until: new Date(until).toISOString() } }, now);
    return ban;
  }

  /**
   * A ban the gate already put in force, kept so that it outlives a restart,
   * with its target's offence for the repeat-offender rule; offences older
   * than `historyMs` are dropped, and past MAX_KEPT_OFFENCES the oldest.
   */
  async keep(ban: Ban, historyMs: number): Promise<void> {
    const now = this.clock.now();
    await this.state.update((s) => ({
      ...s,
      bans: [...s.bans.filter((b) => b.until > now && b.target !== ban.target), { target: ban.target, until: ban.until, reason: ban.reason, created_at: ban.createdAt, origin: 'auto', strike: ban.strike }],
      offenders: [...(s.offenders ?? []).filter((o) => o.target !== ban.target && now - o.at < historyMs), { target: ban.target, strike: ban.strike, at: ban.createdAt }].slice(-MAX_KEPT_OFFENCES),
    }));
    await this.audit.append({ action: 'ban.auto', target: ban.target, by: 'internal', reason: ban.reason, details: { until: new Date(ban.until).toISOString() } }, now);
  }

  /** Lifts the ban on `net` (held as `key`): written, lifted by `apply`, audited. */
  async unban(net: Network, key: string, by: string, apply: () => void): Promise<void> {
    const now = this.clock.now();
    await this.state.update((s) => ({ ...s, bans: s.bans.filter((b) => b.until > now && !sameTarget(b.target, net)) }));
    apply();
    await this.audit.append({ action: 'ban.remove', target: key, by, reason: null }, now);
  }

  /** The state with `service`'s `phase` rule set to `rule` (null: none), not yet written. */
  withCountryRule(service: string, phase: RulePhase, rule: CountryRuleInput | null): RuntimeState {
    const s = this.state.current;
    return { ...s, countries: { ...s.countries, [service]: { ...s.countries[service], [phase]: rule === null ? null : { ...rule } } } };
  }

  /** Writes `next` (see withCountryRule), puts it in force with `apply`, audits it. */
  async countries(next: RuntimeState, service: string, phase: RulePhase, rule: CountryRuleInput | null, by: string, apply: () => void): Promise<void> {
    await this.state.update(() => next);
    apply();
    await this.audit.append({ action: rule === null ? 'country.lift' : 'country.set', target: `${service}.${phase}`, by, reason: null, details: { rule } }, this.clock.now());
  }

  async kick(target: string, by: string, reason: string | null, details: Record<string, unknown>): Promise<void> {
    await this.audit.append({ action: 'kick', target, by, reason, details }, this.clock.now());
  }

  /** The newest audit entries, newest first. */
  recent(limit: number): Promise<unknown[]> {
    return this.audit.recent(limit);
  }
}
