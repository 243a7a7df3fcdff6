/**
 * The operator's controls, as plain async functions: list and kick live
 * connections, ban and unban, read and change country rules, read counts,
 * peaks and what an address would get. The admin API and the CLI call these;
 * nothing here speaks HTTP.
 *
 * Every change is written to the state file (atomically) and appended to the
 * audit log before it takes effect and before the call returns; a change
 * that cannot be written is refused and nothing changes. Guardrails: a ban or
 * country block that would lock out the caller's own address, or a ban that
 * would cover a configured exception network, is refused with the reason.
 * Every change can be asked for with dryRun first: it then reports the live
 * connections it would hit, and changes nothing.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import type { Ban } from '../core/bans.js';
import type { Clock } from '../core/clock.js';
import type { ConnectionFilter, ConnectionRegistry, ConnectionView } from '../core/connections.js';
import type { Decision } from '../core/decision.js';
import type { DoorEventBus } from '../core/events.js';
import type { Gatekeeper } from '../core/gate.js';
import { parseIp } from '../core/ip.js';
import type { KeySnapshot } from '../core/metrics.js';
import { networkContains, parseNetwork, type Network } from '../core/networks.js';
import type { Peak, PeakName } from '../core/peaks.js';
import type { Rules, RulePhase } from '../core/rules.js';
import { DoormanError } from '../errors.js';
import type { FleetBus } from '../fleet/bus.js';
import type { AuditSink } from '../state/audit-log.js';
import type { RuntimeState, RuntimeStateStore } from '../state/runtime-state.js';

/** A change refused to keep the operator from locking themselves (or an exception network) out. */
export class GuardrailError extends DoormanError {}
/** A request naming something that does not exist or is malformed. */
export class ControlInputError extends DoormanError {}

/** Who asks: their address is checked by the guardrails and written to the audit log. */
export interface Caller {
  readonly address: string;
}

export interface CountryRuleInput {
  readonly allow?: readonly string[];
  readonly deny?: readonly string[];
  readonly mode?: 'enforce' | 'dry-run';
}

export interface ChangeResult<T> {
  readonly dryRun: boolean;
  /** Live connections the change hits (kicked, or that would be refused on their next connect). */
  readonly hits: readonly ConnectionView[];
  readonly result: T;
  /** Fleet mode: live nodes that did not answer in time (their connections are not in hits). */
  readonly missing?: readonly string[];
}

/** A live connection with the node that holds it. */
export type FleetConnectionView = ConnectionView & { readonly node: string };

export interface ControlDeps {
  readonly config: Config;
  readonly gate: Gatekeeper;
  readonly registry: ConnectionRegistry;
  readonly state: RuntimeStateStore;
  readonly audit: AuditSink;
  /** This host's name: in a fleet, every connection is shown with its node's. */
  readonly node: string;
  /** Fleet mode: asks the other nodes for their connections, and kicks there too. */
  readonly fleet?: FleetBus | null;
  readonly clock: Clock;
  readonly log: Logger;
  readonly events: DoorEventBus;
}

const PAGE_MAX = 1000;

export class Control {
  private readonly d: ControlDeps;
  /**
   * Changes run one at a time: each reads the state and rules its
   * predecessor left, so two at once cannot both succeed with one lost.
   */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(deps: ControlDeps) {
    this.d = { ...deps };
  }

  /** The configuration the rules are compiled from. */
  get config(): Config {
    return this.d.config;
  }

  /**
   * A reloaded configuration: its rules, with the run-time country rules
   * over them, replace the running ones in one step (after every change
   * already queued). Throws, changing nothing, if they do not compile.
   */
  reconfigure(config: Config): Promise<void> {
    return this.exclusive(async () => {
      const rules = rulesWith(config, this.d.state.current);
      (this.d as { config: Config }).config = config;
      this.d.gate.setRules(rules);
    });
  }

  /** This host's name (its node name in a fleet). */
  get node(): string {
    return this.d.node;
  }

  private exclusive<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Applies a loaded state: its bans (those not yet expired) and its country rules. */
  static restore(deps: ControlDeps): Control {
    const c = new Control(deps);
    c.applyState(deps.state.current);
    deps.fleet?.handle('connections', (args) => c.localConnections(args as RemoteListArgs));
    deps.fleet?.handle('connection', (args) => c.connection(String((args as { id?: unknown } | null)?.id ?? '')));
    deps.fleet?.handle('kick', (args) => c.localKick(args as RemoteKickArgs));
    return c;
  }

  /**
   * Puts a state in force: its bans replace the ones held (a fleet's list is
   * the whole truth), and its country rules. Run at start and whenever
   * another node changed the fleet's state.
   */
  applyState(state: RuntimeState): void {
    const now = this.d.clock.now();
    if (this.d.fleet) this.d.gate.bans.clear();
    for (const b of state.bans) {
      if (b.until > now) this.d.gate.bans.add(b.target, b.until - now, b.reason, now);
    }
    this.d.gate.setRules(rulesWith(this.d.config, state));
  }

  /** This node's connections matching `filter`, one page, oldest first. */
  connections(filter: ConnectionFilter = {}, page: { offset?: number; limit?: number } = {}): { total: number; items: FleetConnectionView[] } {
    const offset = Math.max(0, page.offset ?? 0);
    const limit = Math.min(PAGE_MAX, Math.max(1, page.limit ?? 100));
    const r = this.d.registry.page(checkedFilter(filter), offset, limit);
    return { total: r.total, items: r.items.map((v) => this.withNode(v)) };
  }

  /**
   * Every node's connections (in a fleet; else this node's), oldest first:
   * each node sends its first offset+limit matches, and the page is cut
   * from them merged. Nodes that did not answer in time are in `missing`.
   */
  async fleetConnections(filter: ConnectionFilter = {}, page: { offset?: number; limit?: number } = {}): Promise<{ total: number; items: FleetConnectionView[]; missing: string[] }> {
    if (!this.d.fleet) return { ...this.connections(filter, page), missing: [] };
    const offset = Math.max(0, page.offset ?? 0);
    const limit = Math.min(PAGE_MAX, Math.max(1, page.limit ?? 100));
    checkedFilter(filter);
    const r = await this.d.fleet.ask<{ total: number; items: FleetConnectionView[] }>('connections', { filter, limit: offset + limit } satisfies RemoteListArgs);
    let total = 0;
    const all: FleetConnectionView[] = [];
    for (const a of r.answers.values()) {
      if (!Array.isArray(a?.items)) continue;
      total += a.total;
      all.push(...a.items);
    }
    all.sort((x, y) => x.startedAt - y.startedAt);
    return { total, items: all.slice(offset, offset + limit), missing: [...r.missing] };
  }

  /** This node's connection with this id (a fleet asks each node with it). */
  connection(id: string): FleetConnectionView | null {
    const v = this.d.registry.get(id);
    return v === null ? null : this.withNode(v);
  }

  private withNode(v: ConnectionView): FleetConnectionView {
    return { ...v, node: this.d.node };
  }

  /** A fleet question: this node's first `limit` connections matching the filter. */
  private localConnections(a: RemoteListArgs): { total: number; items: FleetConnectionView[] } {
    const limit = Math.min(100_000, Math.max(1, Number(a?.limit) || 100));
    const r = this.d.registry.page(checkedFilter(a?.filter ?? {}), 0, limit);
    return { total: r.total, items: r.items.map((v) => this.withNode(v)) };
  }

  /** A fleet order: kick this node's connections with this id, or from this address or network. */
  private localKick(a: RemoteKickArgs): { kicked: number; ids: string[] } {
    const reason = typeof a?.reason === 'string' ? a.reason.slice(0, 500) : 'kicked by the administrator';
    const one = typeof a?.target === 'string' ? this.d.registry.get(a.target) : null;
    let hits: ConnectionView[] = [];
    if (one !== null) hits = typeof a.service === 'string' && one.service !== a.service ? [] : [one];
    else if (typeof a?.target === 'string' && isNetwork(a.target)) hits = this.d.registry.list(typeof a.service === 'string' ? { address: a.target, service: a.service } : { address: a.target });
    for (const h of hits) this.d.registry.kick(h.id, reason);
    if (hits.length > 0) this.d.events.emit('kick', { target: a.target, kicked: hits.length, ban: null, reason });
    return { kicked: hits.length, ids: hits.map((h) => h.id) };
  }

  /** Kicks by id, address or network; with banMs, bans the address or network first. */
  kick(target: string, opts: { banMs?: number; reason?: string; service?: string; dryRun?: boolean }, caller: Caller): Promise<ChangeResult<{ kicked: number; ban: Ban | null }>> {
    return this.exclusive(() => this.kickNow(target, opts, caller));
  }

  private async kickNow(target: string, opts: { banMs?: number; reason?: string; service?: string; dryRun?: boolean }, caller: Caller): Promise<ChangeResult<{ kicked: number; ban: Ban | null }>> {
    const fleet = this.d.fleet ?? null;
    // An unknown service is an error here as in every command that takes one, not a filter that matches nothing.
    if (opts.service !== undefined) this.knownService(opts.service);
    // A ban says why wherever it is made: POST /api/bans requires a reason, and so does a kick that bans.
    if (opts.banMs !== undefined && (opts.reason === undefined || opts.reason.trim() === '')) {
      throw new ControlInputError('DOORMAN_ERR_REASON', 'a kick that bans needs a reason, as every ban does');
    }
    let one = this.connection(target);
    let missing: string[] = [];
    // An id held by another node: ask the fleet which one holds it.
    if (one === null && fleet !== null && !isNetwork(target)) {
      const r = await fleet.ask<FleetConnectionView | null>('connection', { id: target });
      for (const a of r.answers.values()) if (typeof a?.id === 'string') one ??= a;
      missing = [...r.missing];
      if (one === null) throw new ControlInputError('DOORMAN_ERR_TARGET', `"${target.slice(0, 64)}" is no live connection on any node, nor an address or network`);
    }
    // An id names one connection; --service narrows it too, as it narrows an address.
    if (one !== null && opts.service !== undefined && one.service !== opts.service) {
      throw new ControlInputError('DOORMAN_ERR_TARGET', `connection ${one.id} is to ${one.service}, not ${opts.service.slice(0, 64)}: nothing kicked`);
    }
    const where = one !== null ? one.client.address : target;
    if (one === null) network(target);
    const filter = opts.service === undefined ? { address: target } : { address: target, service: opts.service };
    let hits: FleetConnectionView[];
    if (one !== null) hits = [one];
    else if (fleet !== null) {
      const r = await this.fleetConnections(filter, { limit: PAGE_MAX });
      hits = r.items;
      missing = r.missing;
    } else hits = this.d.registry.list(filter).map((v) => this.withNode(v));
    if (opts.banMs !== undefined) this.guardBan(where, caller);
    if (opts.dryRun) return { dryRun: true, hits, result: { kicked: 0, ban: null }, missing };
    const reason = opts.reason ?? 'kicked by the administrator';
    let ban: Ban | null = null;
    if (opts.banMs !== undefined) ban = (await this.banNow(where, opts.banMs, reason, caller, false)).result;
    let kicked: number;
    if (fleet === null) {
      for (const h of hits) this.d.registry.kick(h.id, reason);
      kicked = hits.length;
      this.d.events.emit('kick', { target, kicked, ban: ban?.target ?? null, reason });
    } else {
      // Every node kicks what it holds (this one answers locally).
      const r = await fleet.ask<{ kicked: number }>('kick', { target: one !== null ? one.id : target, service: opts.service, reason } satisfies RemoteKickArgs);
      kicked = [...r.answers.values()].reduce((n, a) => n + (Number(a?.kicked) || 0), 0);
      missing = [...new Set([...missing, ...r.missing])];
    }
    await this.d.audit.append({ action: 'kick', target, by: caller.address, reason: opts.reason ?? null, details: { kicked, ids: hits.map((h) => h.id), ...(fleet ? { nodes: [...new Set(hits.map((h) => h.node))] } : {}) } }, this.d.clock.now());
    return { dryRun: false, hits, result: { kicked, ban }, missing };
  }

  bans(): Ban[] {
    return this.d.gate.bans.list(this.d.clock.now());
  }

  ban(target: string, ttlMs: number, reason: string, caller: Caller, dryRun = false): Promise<ChangeResult<Ban | null>> {
    return this.exclusive(() => this.banNow(target, ttlMs, reason, caller, dryRun));
  }

  private async banNow(target: string, ttlMs: number, reason: string, caller: Caller, dryRun: boolean): Promise<ChangeResult<Ban | null>> {
    const net = network(target);
    if (!(ttlMs >= 1000 && ttlMs <= 366 * 86_400_000)) throw new ControlInputError('DOORMAN_ERR_BAN_TTL', 'a ban lasts from 1 s to 366 days');
    this.guardBan(target, caller);
    const hits = this.d.registry.list({ address: target });
    if (dryRun) return { dryRun: true, hits, result: null };
    const now = this.d.clock.now();
    const until = now + ttlMs;
    await this.d.state.update((s) => ({
      ...s,
      bans: [...s.bans.filter((b) => b.until > now && sameTarget(b.target, net) === false), { target: net.text, until, reason, created_at: now }],
    }));
    const ban = this.d.gate.bans.add(target, ttlMs, reason, now);
    await this.d.audit.append({ action: 'ban.add', target: ban.target, by: caller.address, reason, details: { until: new Date(until).toISOString() } }, now);
    return { dryRun: false, hits, result: ban };
  }

  /**
   * Writes a ban the gatekeeper made itself (too many AUTH failures) to the
   * state file and the audit log, so it outlives a restart like the
   * operator's. It is already in force; a failed write is logged, not thrown.
   */
  keepAutoBan(ban: Ban): Promise<void> {
    return this.exclusive(async () => {
      const now = this.d.clock.now();
      await this.d.state.update((s) => ({
        ...s,
        bans: [...s.bans.filter((b) => b.until > now && b.target !== ban.target), { target: ban.target, until: ban.until, reason: ban.reason, created_at: ban.createdAt }],
      }));
      await this.d.audit.append({ action: 'ban.auto', target: ban.target, by: 'internal', reason: ban.reason, details: { until: new Date(ban.until).toISOString() } }, now);
    }).catch((err: unknown) => this.d.log.error({ err, target: ban.target }, 'an automatic ban is in force but could not be written to the state file'));
  }

  unban(target: string, caller: Caller): Promise<boolean> {
    return this.exclusive(() => this.unbanNow(target, caller));
  }

  private async unbanNow(target: string, caller: Caller): Promise<boolean> {
    const net = network(target);
    const now = this.d.clock.now();
    const key = this.bans().find((b) => sameTarget(b.target, net))?.target;
    if (key === undefined) return false;
    await this.d.state.update((s) => ({ ...s, bans: s.bans.filter((b) => b.until > now && !sameTarget(b.target, net)) }));
    this.d.gate.bans.remove(key);
    await this.d.audit.append({ action: 'ban.remove', target: key, by: caller.address, reason: null }, now);
    return true;
  }

  /** Country rules in force per service and phase, and whether each was set at run time. */
  countries(): Record<string, Record<RulePhase, { kind: 'allow' | 'deny'; codes: string[]; mode: string; source: 'config' | 'runtime' } | null>> {
    const overlay = this.d.state.current.countries;
    const out: Record<string, Record<RulePhase, { kind: 'allow' | 'deny'; codes: string[]; mode: string; source: 'config' | 'runtime' } | null>> = {};
    for (const [name, s] of this.d.gate.rules.services) {
      const one = (phase: RulePhase) => {
        const r = s.countries[phase];
        const source: 'config' | 'runtime' = overlay[name]?.[phase] !== undefined ? 'runtime' : 'config';
        return r === null ? null : { kind: r.kind, codes: [...r.codes].sort(), mode: r.dryRun ? 'dry-run' : 'enforce', source };
      };
      out[name] = { connect: one('connect'), auth: one('auth') };
    }
    return out;
  }

  /** Sets (or with null lifts) the country rule of a service's phase. */
  setCountries(service: string, phase: RulePhase, rule: CountryRuleInput | null, caller: Caller, dryRun = false): Promise<ChangeResult<null>> {
    return this.exclusive(() => this.setCountriesNow(service, phase, rule, caller, dryRun));
  }

  private async setCountriesNow(service: string, phase: RulePhase, rule: CountryRuleInput | null, caller: Caller, dryRun: boolean): Promise<ChangeResult<null>> {
    this.knownService(service);
    const next: RuntimeState = { ...this.d.state.current, countries: { ...this.d.state.current.countries, [service]: { ...this.d.state.current.countries[service], [phase]: rule === null ? null : { ...rule } } } };
    let rules: Rules;
    try {
      rules = rulesWith(this.d.config, next);
    } catch (err) {
      throw new ControlInputError('DOORMAN_ERR_COUNTRY_RULE', (err as Error).message);
    }
    const compiled = rules.service(service).countries[phase];
    const blocks = (country: string | null) => compiled !== null && country !== null && compiled.kind === 'allow' !== compiled.codes.has(country);
    const own = this.d.gate.countryOf(caller.address);
    if (!compiled?.dryRun && blocks(own)) {
      throw new GuardrailError('DOORMAN_ERR_GUARDRAIL', `refused: this rule would block your own address ${caller.address} (country ${own}) from ${service}`);
    }
    const hits = phase === 'connect' ? this.d.registry.list({ service }).filter((c) => blocks(c.country)) : [];
    if (dryRun) return { dryRun: true, hits, result: null };
    await this.d.state.update(() => next);
    this.d.gate.setRules(rules);
    await this.d.audit.append({ action: rule === null ? 'country.lift' : 'country.set', target: `${service}.${phase}`, by: caller.address, reason: null, details: { rule } }, this.d.clock.now());
    return { dryRun: false, hits, result: null };
  }

  /**
   * Blocks one country for a service's phase, whatever the rule in force:
   * added to a deny list, removed from an allow list (a new deny list when
   * there is no rule).
   */
  blockCountry(service: string, phase: RulePhase, code: string, caller: Caller, dryRun = false): Promise<ChangeResult<null>> {
    return this.exclusive(() => this.blockCountryNow(service, phase, code, caller, dryRun));
  }

  private async blockCountryNow(service: string, phase: RulePhase, code: string, caller: Caller, dryRun: boolean): Promise<ChangeResult<null>> {
    const cur = this.ruleInput(service, phase);
    const c = countryCode(code);
    const next: CountryRuleInput =
      cur === null ? { deny: [c] } : cur.allow !== undefined ? { ...cur, allow: cur.allow.filter((x) => x !== c) } : { ...cur, deny: [...new Set([...(cur.deny ?? []), c])] };
    if (next.allow !== undefined && next.allow.length === 0) {
      throw new ControlInputError('DOORMAN_ERR_COUNTRY_RULE', `${c} is the only country allowed for ${service} at ${phase}: blocking it would block every country`);
    }
    return this.setCountriesNow(service, phase, next, caller, dryRun);
  }

  /** The reverse of blockCountry: removed from a deny list (the rule lifted when it empties), added to an allow list. */
  unblockCountry(service: string, phase: RulePhase, code: string, caller: Caller, dryRun = false): Promise<ChangeResult<null>> {
    return this.exclusive(async () => {
      const cur = this.ruleInput(service, phase);
      const c = countryCode(code);
      if (cur === null) return this.setCountriesNow(service, phase, null, caller, dryRun);
      if (cur.allow !== undefined) return this.setCountriesNow(service, phase, { ...cur, allow: [...new Set([...cur.allow, c])] }, caller, dryRun);
      const deny = (cur.deny ?? []).filter((x) => x !== c);
      return this.setCountriesNow(service, phase, deny.length === 0 ? null : { ...cur, deny }, caller, dryRun);
    });
  }

  /** Throws DOORMAN_ERR_SERVICE, in the one wording every command shares, when `service` is not configured. */
  knownService(service: string): void {
    if (!this.d.gate.rules.services.has(service)) throw new ControlInputError('DOORMAN_ERR_SERVICE', `no service "${service.slice(0, 64)}" in the configuration`);
  }

  private ruleInput(service: string, phase: RulePhase): CountryRuleInput | null {
    const s = this.d.gate.rules.services.get(service);
    if (s === undefined) throw new ControlInputError('DOORMAN_ERR_SERVICE', `no service "${service.slice(0, 64)}" in the configuration`);
    const r = s.countries[phase];
    if (r === null) return null;
    const codes = [...r.codes].sort();
    return r.kind === 'allow' ? { allow: codes, mode: r.dryRun ? 'dry-run' : 'enforce' } : { deny: codes, mode: r.dryRun ? 'dry-run' : 'enforce' };
  }

  /** The newest audit entries, newest first: the fleet's in fleet mode, else this host's. */
  audit(limit: number): Promise<unknown[]> {
    return this.d.audit.recent(Math.min(1000, Math.max(1, limit)));
  }

  counts(key: string): Promise<KeySnapshot> | KeySnapshot {
    return this.d.gate.engine.lookup(key);
  }

  peaks(): Partial<Record<PeakName, Peak>> {
    return this.d.gate.engine.peaks.snapshot();
  }

  /** What the next connection and AUTH from `address` would get now, with live counts and bans. */
  async check(address: string, service: string): Promise<{ connect: Decision; auth: Decision; countedAs: string }> {
    const f = this.d.gate.facts(service, address, true);
    if (f === null) throw new ControlInputError('DOORMAN_ERR_ADDRESS', `"${address.slice(0, 64)}" is not an IP address`);
    return { connect: await this.d.gate.checkConnect(service, address, true), auth: await this.d.gate.checkAuth(service, address), countedAs: f.facts.client };
  }

  /** A ban on `target` must not cover the caller, nor overlap an exception network. */
  private guardBan(target: string, caller: Caller): void {
    const net = network(target);
    const me = parseIp(caller.address);
    if (me !== null && networkContains(net, me)) {
      throw new GuardrailError('DOORMAN_ERR_GUARDRAIL', `refused: ${net.text} covers your own address ${caller.address}`);
    }
    for (const ex of this.d.gate.rules.exceptions.networks) {
      if (overlaps(net, ex)) throw new GuardrailError('DOORMAN_ERR_GUARDRAIL', `refused: ${net.text} overlaps the exception network ${ex.text}`);
    }
  }
}

/** The configuration's rules with the run-time country rules in place of the file's; compiles nothing again. */
export function rulesWith(config: Config, state: RuntimeState): Rules {
  return config.rules.withCountries(state.countries, `${config.source} (with run-time country rules)`);
}

function countryCode(code: string): string {
  if (!/^[A-Za-z]{2}$/.test(code)) throw new ControlInputError('DOORMAN_ERR_COUNTRY', `"${code.slice(0, 16)}" is not a two-letter country code`);
  return code.toUpperCase();
}

function network(target: string): Network {
  try {
    return parseNetwork(target);
  } catch (err) {
    throw new ControlInputError('DOORMAN_ERR_TARGET', `"${target.slice(0, 64)}" is no connection id, address or network (${(err as Error).message})`);
  }
}

function isNetwork(target: string): boolean {
  try {
    parseNetwork(target);
    return true;
  } catch {
    return false;
  }
}

interface RemoteListArgs {
  readonly filter: ConnectionFilter;
  readonly limit: number;
}

interface RemoteKickArgs {
  readonly target: string;
  readonly service?: string;
  readonly reason: string;
}

function checkedFilter(f: ConnectionFilter): ConnectionFilter {
  if (f.address !== undefined) network(f.address);
  return f;
}

function sameTarget(stored: string, net: Network): boolean {
  try {
    const n = parseNetwork(stored);
    return n.bits === net.bits && n.words.every((w, i) => w === net.words[i]);
  } catch {
    return false;
  }
}

/** Whether two networks share an address: one contains the other's base. */
function overlaps(a: Network, b: Network): boolean {
  const base = (n: Network) => ({ words: n.words, family: 6 as const });
  return networkContains(a, base(b)) || networkContains(b, base(a));
}
