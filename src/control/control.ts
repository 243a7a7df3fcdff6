/**
 * The operator's controls, as plain async functions: list and kick live
 * connections, ban and unban, read and change country rules, read counts,
 * peaks and what an address would get. The admin API and the CLI call these;
 * nothing here speaks HTTP. The parts live beside it:
 *
 *   ./changes.ts      every change written (state file, then audit log) before it is answered, one at a time
 *   ./guardrails.ts   pure: why a ban or a country rule would lock the caller (or an exception network) out
 *   ./overlay.ts      pure: run-time country rules over the configured ones
 *   ./fleet-rpc.ts    what the other nodes of a fleet may ask, with schemas
 *
 * Every change can be asked for with dryRun first: it then reports the live
 * connections it would hit, and changes nothing.
 */
import type { Logger } from 'pino';
import type { Config } from '../config/load.js';
import type { Ban, BanLayer, BanOrigin } from '../core/bans.js';
import type { Clock } from '../core/clock.js';
import type { ConnectionFilter, ConnectionRegistry, ConnectionView } from '../core/connections.js';
import { normaliseCountry, badCountryMessage } from '../core/country-codes.js';
import type { Decision } from '../core/decision.js';
import type { DoorEventBus } from '../core/events.js';
import type { Gatekeeper } from '../core/gate.js';
import { parseIp } from '../core/ip.js';
import type { KeySnapshot } from '../core/metrics.js';
import { isNetworkText, parseNetwork, type Network } from '../core/networks.js';
import type { Peak, PeakName } from '../core/peaks.js';
import type { CountryRuleInput, Rules, RulePhase } from '../core/rules.js';
import { ControlInputError, GuardrailError } from '../errors.js';
import type { FleetBus } from '../fleet/bus.js';
import type { AuditSink } from '../state/audit-log.js';
import type { RuntimeState, RuntimeStateStore } from '../state/runtime-state.js';
import { ChangeLog } from './changes.js';
import { banLift } from './lift.js';
import { serveFleet, type KickArgs, type ListArgs } from './fleet-rpc.js';
import { banRefusal, countryBlocked, countryRuleRefusal } from './guardrails.js';
import { ruleInput, rulesWith, withBlocked, withUnblocked } from './overlay.js';

export type { CountryRuleInput } from '../core/rules.js';
export { rulesWith } from './overlay.js';

/** Who asks: their address is checked by the guardrails and written to the audit log. */
export interface Caller {
  readonly address: string;
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
/** Bans last from a second to a year and a day. */
const BAN_MIN_MS = 1000;
const BAN_MAX_MS = 366 * 86_400_000;
const DEFAULT_KICK_REASON = 'kicked by the administrator';

export class Control {
  private readonly d: ControlDeps;
  private readonly changes: ChangeLog;

  constructor(deps: ControlDeps) {
    this.d = { ...deps };
    this.changes = new ChangeLog(deps.state, deps.audit, deps.clock);
  }

  /** The configuration the rules are compiled from. */
  get config(): Config {
    return this.d.config;
  }

  /**
   * A reloaded configuration: its rules, with the run-time country rules
   * over them, replace the running ones in one step (after every change
   * already queued). Throws, changing nothing, if they do not hold together.
   */
  reconfigure(config: Config): Promise<void> {
    return this.changes.exclusive(async () => {
      const rules = rulesWith(config, this.changes.current);
      (this.d as { config: Config }).config = config;
      this.d.gate.setRules(rules);
    });
  }

  /** This host's name (its node name in a fleet). */
  get node(): string {
    return this.d.node;
  }

  /** Applies a loaded state: its bans (those not yet expired) and its country rules. */
  static restore(deps: ControlDeps): Control {
    const c = new Control(deps);
    c.applyState(deps.state.current);
    if (deps.fleet) {
      serveFleet(deps.fleet, {
        connections: (filter, limit) => c.localConnections(filter, limit),
        connection: (id) => c.connection(id),
        kick: (args) => c.localKick(args),
      });
    }
    return c;
  }

  /**
   * Puts a state in force: its bans replace the ones held (a fleet's list is
   * the whole truth), and its country rules. Run at start and whenever
   * another node changed the fleet's state.
   */
  applyState(state: RuntimeState): void {
    const now = this.d.clock.now();
    if (this.d.fleet) this.d.gate.bans.clear('local');
    for (const b of state.bans) {
      if (b.until > now) this.d.gate.bans.add(b.target, b.until - now, b.reason, now, { origin: b.origin ?? 'operator', strike: b.strike ?? 1 });
    }
    this.d.gate.bans.loadOffences(state.offenders ?? []);
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
    const r = await this.d.fleet.ask<{ total: number; items: FleetConnectionView[] }>('connections', { filter, limit: offset + limit } satisfies ListArgs);
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
  private localConnections(filter: ConnectionFilter, limit: number): { total: number; items: FleetConnectionView[] } {
    const r = this.d.registry.page(checkedFilter(filter), 0, limit);
    return { total: r.total, items: r.items.map((v) => this.withNode(v)) };
  }

  /** A fleet order: kick this node's connections with this id, or from this address or network. */
  private localKick(a: KickArgs): { kicked: number; ids: string[] } {
    const one = this.d.registry.get(a.target);
    let hits: ConnectionView[] = [];
    if (one !== null) hits = a.service !== undefined && one.service !== a.service ? [] : [one];
    else if (isNetworkText(a.target)) hits = this.d.registry.list(a.service !== undefined ? { address: a.target, service: a.service } : { address: a.target });
    for (const h of hits) this.d.registry.kick(h.id, a.reason);
    if (hits.length > 0) this.d.events.emit('kick', { target: a.target, kicked: hits.length, ban: null, reason: a.reason });
    return { kicked: hits.length, ids: hits.map((h) => h.id) };
  }

  /** Kicks by id, address or network; with banMs, bans the address or network first. */
  kick(target: string, opts: { banMs?: number; reason?: string; service?: string; dryRun?: boolean }, caller: Caller): Promise<ChangeResult<{ kicked: number; ban: Ban | null }>> {
    return this.changes.exclusive(() => this.kickNow(target, opts, caller));
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
    if (one === null && fleet !== null && !isNetworkText(target)) {
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
    if (opts.banMs !== undefined) this.guardBan(network(where), caller);
    if (opts.dryRun) return { dryRun: true, hits, result: { kicked: 0, ban: null }, missing };
    const reason = opts.reason ?? DEFAULT_KICK_REASON;
    let ban: Ban | null = null;
    if (opts.banMs !== undefined) ban = (await this.banNow(where, opts.banMs, reason, caller, false)).result;
    let kicked: number;
    if (fleet === null) {
      for (const h of hits) this.d.registry.kick(h.id, reason);
      kicked = hits.length;
      this.d.events.emit('kick', { target, kicked, ban: ban?.target ?? null, reason });
    } else {
      // Every node kicks what it holds (this one answers locally).
      const r = await fleet.ask<{ kicked: number }>('kick', { target: one !== null ? one.id : target, service: opts.service, reason } satisfies KickArgs);
      kicked = [...r.answers.values()].reduce((n, a) => n + (Number(a?.kicked) || 0), 0);
      missing = [...new Set([...missing, ...r.missing])];
    }
    await this.changes.kick(target, caller.address, opts.reason ?? null, { kicked, ids: hits.map((h) => h.id), ...(fleet ? { nodes: [...new Set(hits.map((h) => h.node))] } : {}) });
    return { dryRun: false, hits, result: { kicked, ban }, missing };
  }

  bans(): Ban[] {
    return this.d.gate.bans.list(this.d.clock.now());
  }

  /** Bans in force by origin, for the metrics. */
  banCounts(): Record<BanOrigin, number> {
    const n: Record<BanOrigin, number> = { operator: 0, auto: 0, crowdsec: 0 };
    for (const b of this.bans()) n[b.origin]++;
    return n;
  }

  ban(target: string, ttlMs: number, reason: string, caller: Caller, dryRun = false): Promise<ChangeResult<Ban | null>> {
    return this.changes.exclusive(() => this.banNow(target, ttlMs, reason, caller, dryRun));
  }

  private async banNow(target: string, ttlMs: number, reason: string, caller: Caller, dryRun: boolean): Promise<ChangeResult<Ban | null>> {
    const net = network(target);
    if (!(ttlMs >= BAN_MIN_MS && ttlMs <= BAN_MAX_MS)) throw new ControlInputError('DOORMAN_ERR_BAN_TTL', 'a ban lasts from 1 s to 366 days');
    this.guardBan(net, caller);
    const hits = this.d.registry.list({ address: target });
    if (dryRun) return { dryRun: true, hits, result: null };
    const now = this.d.clock.now();
    const ban = await this.changes.ban(net, now + ttlMs, reason, caller.address, () => this.d.gate.bans.add(target, ttlMs, reason, now));
    return { dryRun: false, hits, result: ban };
  }

  /**
   * Writes a ban the gatekeeper made itself (too many AUTH failures) to the
   * state file and the audit log, so it outlives a restart like the
   * operator's. It is already in force; a failed write is logged, not thrown.
   */
  keepAutoBan(ban: Ban): Promise<void> {
    return this.changes
      .exclusive(() => this.changes.keep(ban, this.offenceHistoryMs()))
      .catch((err: unknown) => this.d.log.error({ err, target: ban.target }, 'an automatic ban is in force but could not be written to the state file'));
  }

  /** How long an offence matters: the longest repeat_offenders window of any service (none: not kept). */
  private offenceHistoryMs(): number {
    let ms = 0;
    for (const s of this.d.gate.rules.services.values()) ms = Math.max(ms, s.repeatOffenders?.windowMs ?? 0);
    return ms;
  }

  unban(target: string, caller: Caller): Promise<boolean> {
    return this.changes.exclusive(async () => {
      const net = network(target);
      const now = this.d.clock.now();
      // The ban held on this very network, however it was written: one lookup per layer, not a scan of CrowdSec's thousands.
      const held = (layer: BanLayer) => {
        const b = this.d.gate.bans.get(net.text, layer);
        return b !== null && b.until > now ? b : null;
      };
      const key = held('local')?.target;
      if (key === undefined) {
        const theirs = held('crowdsec');
        if (theirs !== null) throw new ControlInputError('DOORMAN_ERR_CROWDSEC_BAN', `the ban on ${theirs.target} is CrowdSec's (${theirs.reason}): lift it there with \`${banLift(theirs).command}\`, and Doorman follows within one poll`);
        return false;
      }
      await this.changes.unban(net, key, caller.address, () => this.d.gate.bans.remove(key));
      return true;
    });
  }

  /** Country rules in force per service and phase, and whether each was set at run time. */
  countries(): Record<string, Record<RulePhase, { kind: 'allow' | 'deny'; codes: string[]; mode: string; source: 'config' | 'runtime' } | null>> {
    const overlay = this.changes.current.countries;
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
    return this.changes.exclusive(() => this.setCountriesNow(service, phase, rule, caller, dryRun));
  }

  private async setCountriesNow(service: string, phase: RulePhase, rule: CountryRuleInput | null, caller: Caller, dryRun: boolean): Promise<ChangeResult<null>> {
    this.knownService(service);
    const next = this.changes.withCountryRule(service, phase, rule);
    let rules: Rules;
    try {
      rules = rulesWith(this.d.config, next);
    } catch (err) {
      throw new ControlInputError('DOORMAN_ERR_COUNTRY_RULE', (err as Error).message);
    }
    const compiled = rules.service(service).countries[phase];
    const refusal = countryRuleRefusal(compiled, service, caller.address, this.d.gate.countryOf(caller.address));
    if (refusal !== null) throw new GuardrailError('DOORMAN_ERR_GUARDRAIL', refusal);
    const hits = phase === 'connect' ? this.d.registry.list({ service }).filter((c) => countryBlocked(compiled, c.country)) : [];
    if (dryRun) return { dryRun: true, hits, result: null };
    await this.changes.countries(next, service, phase, rule, caller.address, () => this.d.gate.setRules(rules));
    return { dryRun: false, hits, result: null };
  }

  /**
   * Blocks one country for a service's phase, whatever the rule in force:
   * added to a deny list, removed from an allow list (a new deny list when
   * there is no rule).
   */
  blockCountry(service: string, phase: RulePhase, code: string, caller: Caller, dryRun = false): Promise<ChangeResult<null>> {
    return this.changes.exclusive(() => {
      const c = countryCode(code);
      const next = withBlocked(this.ruleInput(service, phase), c);
      if (next === 'every-country') throw new ControlInputError('DOORMAN_ERR_COUNTRY_RULE', `${c} is the only country allowed for ${service} at ${phase}: blocking it would block every country`);
      return this.setCountriesNow(service, phase, next, caller, dryRun);
    });
  }

  /** The reverse of blockCountry: removed from a deny list (the rule lifted when it empties), added to an allow list. */
  unblockCountry(service: string, phase: RulePhase, code: string, caller: Caller, dryRun = false): Promise<ChangeResult<null>> {
    return this.changes.exclusive(() => this.setCountriesNow(service, phase, withUnblocked(this.ruleInput(service, phase), countryCode(code)), caller, dryRun));
  }

  /** Throws DOORMAN_ERR_SERVICE, in the one wording every command shares, when `service` is not configured. */
  knownService(service: string): void {
    if (!this.d.gate.rules.services.has(service)) throw new ControlInputError('DOORMAN_ERR_SERVICE', `no service "${service.slice(0, 64)}" in the configuration`);
  }

  private ruleInput(service: string, phase: RulePhase): CountryRuleInput | null {
    this.knownService(service);
    return ruleInput(this.d.gate.rules.service(service).countries[phase]);
  }

  /** The newest audit entries, newest first: the fleet's in fleet mode, else this host's. */
  audit(limit: number): Promise<unknown[]> {
    return this.changes.recent(Math.min(1000, Math.max(1, limit)));
  }

  counts(key: string): Promise<KeySnapshot> | KeySnapshot {
    return this.d.gate.lookup(key);
  }

  peaks(): Partial<Record<PeakName, Peak>> {
    return this.d.gate.peaks();
  }

  /** What the next connection and AUTH from `address` would get now, with live counts and bans. */
  async check(address: string, service: string): Promise<{ connect: Decision; auth: Decision; countedAs: string }> {
    const f = this.d.gate.facts(service, address, true);
    if (f === null) throw new ControlInputError('DOORMAN_ERR_ADDRESS', `"${address.slice(0, 64)}" is not an IP address`);
    return { connect: await this.d.gate.checkConnect(service, address, true), auth: await this.d.gate.checkAuth(service, address), countedAs: f.facts.client };
  }

  /** The guardrail on every ban (./guardrails.ts). */
  private guardBan(net: Network, caller: Caller): void {
    const refusal = banRefusal(net, { text: caller.address, ip: parseIp(caller.address) }, this.d.gate.rules.exceptions.networks);
    if (refusal !== null) throw new GuardrailError('DOORMAN_ERR_GUARDRAIL', refusal);
  }
}

/** An assigned ISO 3166-1 code in capitals, as everywhere else (../core/country-codes.ts). */
function countryCode(code: string): string {
  const c = normaliseCountry(code);
  if (c === null) throw new ControlInputError('DOORMAN_ERR_COUNTRY', badCountryMessage(code.slice(0, 16)));
  return c;
}

function network(target: string): Network {
  try {
    return parseNetwork(target);
  } catch (err) {
    throw new ControlInputError('DOORMAN_ERR_TARGET', `"${target.slice(0, 64)}" is no connection id, address or network (${(err as Error).message})`);
  }
}


function checkedFilter(f: ConnectionFilter): ConnectionFilter {
  if (f.address !== undefined) network(f.address);
  return f;
}
