/**
 * The gatekeeper: front-ends ask it about a client of a service and get a
 * Decision. It gathers the facts — parsed address, country, exception, ban,
 * effective limits, counts from the engine — and hands them to the pure
 * evaluate* functions of ./decision.ts. Keys are the engine's:
 * "service:address" (the anvil ident for Postfix) and "service:prefix/len".
 */
import { settle, then } from './awaitable.js';
import { StoreUnavailableError } from '../errors.js';
import type { Logger } from 'pino';
import { parseAnvilIdent } from './anvil-ident.js';
import { BanList, type Ban } from './bans.js';
import type { Clock } from './clock.js';
import { evaluateAuth, evaluateConnect, evaluateEvent, type ClientFacts, type Decision } from './decision.js';
import { Engine } from './engine.js';
import { canonicalText, formatIp, fullBits, parseClientRange, parseIp, prefixOf, rangeText, type ClientAddress, type ParsedIp } from './ip.js';
import { PostfixRanges } from './postfix-ranges.js';
import { BOOKKEEPING_PREFIX, EMPTY_SNAPSHOT, type KeySnapshot, type RateMetric } from './metrics.js';
import type { Peak, PeakName } from './peaks.js';
import type { EffectiveLimits, Rules, ServiceRules } from './rules.js';
import type { AcquireResult, CounterStore, HitResult, Owner, StoreStatus } from './ports.js';
import type { Awaitable } from './awaitable.js';

/** Country of an address: an ISO code, or null for none (special-purpose, unknown). */
export interface CountryOf {
  /**
   * `text` is the address in canonical form (formatIp's); `ip`, when given,
   * is the same address as the gatekeeper parsed it, for a source that can
   * read it as it is rather than parse the text again.
   */
  country(text: string, ip?: ParsedIp): string | null;
}

export const NO_COUNTRIES: CountryOf = { country: () => null };

/** A connection the gatekeeper counted (or refused) at the door. */
export interface Admission {
  readonly decision: Decision;
  /** The address as judged, in canonical form. */
  readonly address: string;
  /** Engine keys this connection holds; give them back with leave() when it closes. Empty when refused. */
  readonly keys: readonly string[];
}

/**
 * A connection another proxy holds and never reports the end of (HAProxy,
 * asking through SPOE), judged at its door. Nothing is held for it.
 */
export interface Screening {
  readonly decision: Decision;
  /** The address as judged, in canonical form; null when it is no IP address (allowed, unjudged). */
  readonly address: string | null;
  /**
   * The connections_per_address limit in force for this client (an
   * override's, if one matches), for the other proxy to count against;
   * null when none is enforced (no limit, an exception network, dry-run).
   */
  readonly connLimit: number | null;
}

const NO_COUNTS = { address: EMPTY_SNAPSHOT, prefix: null, prefixText: null };

function same(k: KeySnapshot): KeySnapshot {
  return k;
}

function plusOne(k: KeySnapshot): KeySnapshot {
  return { count: k.count + 1, rates: { ...k.rates, conn: k.rates.conn + 1 } };
}

function snapshotOf(a: AcquireResult): KeySnapshot {
  return { count: a.count, rates: { ...EMPTY_SNAPSHOT.rates, conn: a.rate } };
}

/**
 * The shared store failed and the service's on_store_failure is closed (or
 * the failure came mid-call): a temporary refusal, so the client retries.
 * Anything else than a store failure is a bug and is thrown on.
 */
function storeFailure(f: ClientFacts, err: unknown): Decision {
  if (!(err instanceof StoreUnavailableError)) throw err;
  return {
    action: 'refuse',
    refusal: { temporary: true, cause: 'store', rule: `services.${f.service.name}.on_store_failure`, reason: `the shared counter store is unreachable (${err.message})`, retryAfterSec: 60 },
    dryRun: [],
    exempt: null,
    country: f.country,
  };
}

/** A store failure turned into the service's decision; a sync value passes through as is. */
function guarded(f: ClientFacts, v: Awaitable<Decision>): Awaitable<Decision> {
  return v instanceof Promise ? v.catch((err: unknown) => storeFailure(f, err)) : v;
}

/** Login names are cut to this length where they become a key or a member. */
const MAX_LOGIN = 256;

/** login_failures: the addresses a login failed from. */
function loginFailuresKey(service: string, login: string): string {
  return `${BOOKKEEPING_PREFIX}loginfail:${service}:${login.slice(0, MAX_LOGIN)}`;
}

/** good_login: the logins accepted from an address, whatever the service (a ban is for every service). */
function goodLoginKey(address: string): string {
  return `${BOOKKEEPING_PREFIX}good:${address}`;
}

/** A shared store failure turned into "nothing happened" (null, or nothing); anything else is thrown on. */
function unlessStoreFails<T>(v: Awaitable<T>, none: T): Awaitable<T> {
  return v instanceof Promise
    ? v.catch((err: unknown) => {
        if (!(err instanceof StoreUnavailableError)) throw err;
        return none;
      })
    : v;
}

/** A decision for an address that is not an IP: nothing can be judged, so nothing is refused. */
function unjudged(address: string | ClientAddress): Decision {
  const text = typeof address === 'string' ? address : address.text;
  return { action: 'allow', refusal: null, dryRun: [], exempt: `"${text.slice(0, 64)}" is not an IP address`, country: null };
}

/** What the gatekeeper is made from: the store it counts in, and the rest of what a decision reads. */
export interface GateOptions {
  readonly store: CounterStore;
  readonly rules: Rules;
  readonly bans?: BanList;
  readonly countries?: CountryOf;
  readonly clock: Clock;
  readonly log: Logger;
  /** engine.rate_time_unit */
  readonly rateUnitMs: number;
  /** engine.status_update_time: how often peaks are logged. */
  readonly statusUpdateMs: number;
  readonly ranges?: PostfixRanges;
}

/** What the monitor reads of the counter table. */
export interface GateStats {
  readonly entries: number;
  /** "memory" or "redis". */
  readonly storeKind: string;
  /** A fleet store's health; null for the memory store. */
  readonly store: StoreStatus | null;
}

/**
 * The one door into the core. Every front-end (the anvil service, the
 * policy service, the Dovecot endpoint, the guard proxy, HAProxy's SPOE
 * agent), the operator's
 * controls and the monitor call the Gatekeeper; none of them touches the
 * Engine, which is its own.
 */
/**
 * Whether a connect's ident can teach anything about how smtpd names
 * clients, decided without parsing it: a range ("smtp:::/84"), anything with
 * two colons (an IPv6 address whole, as 3.7 sends it, or a host:port service
 * name), or any ident at all when the configured IPv4 length assumes ranges.
 * A plain "smtp:203.0.113.9", the common case, is not parsed.
 */
function mayTeach(ident: string, ranges: PostfixRanges): boolean {
  return ident.indexOf('/') !== -1 || ident.indexOf(':') !== ident.lastIndexOf(':') || ranges.assumesIPv4Ranges;
}

/** `r` once `first` has settled too; both run at once, and a failure of either is the result's. */
function both<T>(first: Awaitable<unknown>, r: Awaitable<T>): Awaitable<T> {
  if (!(first instanceof Promise) && !(r instanceof Promise)) return r;
  return Promise.all([first, r]).then(([, v]) => v);
}

export class Gatekeeper {
  private readonly engine: Engine;
  /** Replaced whole by setRules(); every decision reads it once, so a swap is atomic per decision. */
  rules: Rules;
  readonly bans: BanList;
  private geo: CountryOf;
  private readonly clock: Clock;
  private readonly rateUnitSec: number;

  /** How smtpd names clients to anvil, learned from the anvil service's idents. */
  readonly ranges: PostfixRanges;

  constructor(engine: Engine, rules: Rules, bans: BanList, geo: CountryOf, clock: Clock, rateUnitMs: number, ranges = new PostfixRanges()) {
    this.engine = engine;
    this.ranges = ranges;
    this.rules = rules;
    this.bans = bans;
    this.geo = geo;
    this.clock = clock;
    this.rateUnitSec = Math.round(rateUnitMs / 1000);
    this.prefixCounting = rules.countsPrefixes;
  }

  /** A gatekeeper over `store`, with an engine of its own (started: call stop() to end its timers). */
  static open(o: GateOptions): Gatekeeper {
    const engine = new Engine(o.store, o.clock, o.log, { rateUnitMs: o.rateUnitMs, statusUpdateMs: o.statusUpdateMs });
    const gate = new Gatekeeper(engine, o.rules, o.bans ?? new BanList(), o.countries ?? NO_COUNTRIES, o.clock, o.rateUnitMs, o.ranges);
    engine.start();
    return gate;
  }

  /** Ends the engine's timers, logs the last statistics and closes the store it counts in. */
  stop(): Promise<void> {
    return this.engine.stop();
  }

  /** Whether any rule counts per prefix: when none does, anvilClient() returns at once. */
  prefixCounting: boolean;

  /** Told of every ban the gatekeeper makes itself (AUTH failures), so it can be kept with the operator's. */
  onAutoBan: ((ban: Ban) => void) | null = null;

  /** The country source, once a reload brings the first rule that needs one. */
  setCountrySource(geo: CountryOf): void {
    this.geo = geo;
  }

  /** Swaps in new rules (country rules changed at run time, a reload). */
  setRules(rules: Rules): void {
    this.rules = rules;
    this.prefixCounting = rules.countsPrefixes;
  }

  /** The country of an address (any form), or null. */
  countryOf(address: string): string | null {
    const ip = parseIp(address);
    return ip === null ? null : this.geo.country(formatIp(ip), ip);
  }

  /**
   * Everything the rules need about one client of one service; null for a
   * non-IP address. `key` is where the client's counts are: under its address,
   * or, for what Postfix's smtpd reports (`postfix`: the policy service and
   * checks of an SMTP service without a guard proxy), under the ident smtpd
   * writes, which from Postfix 3.8 names a range (see ./postfix-ranges.ts).
   * `address` is text, or a ClientAddress a front-end parsed where the
   * client came in, taken as it is.
   */
  facts(serviceName: string, address: string | ClientAddress, postfix = false): { facts: ClientFacts; ip: ParsedIp; key: string; bits: number } | null {
    // Text is parsed here, with no ClientAddress made around it: the front-ends that pass text pay no extra object.
    const ip = typeof address === 'string' ? parseIp(address) : address.ip;
    if (ip === null) return null;
    const text = typeof address === 'string' ? canonicalText(address, ip) : address.text;
    const service = this.rules.service(serviceName);
    const full = fullBits(ip.family);
    const bits = postfix && service.counts === 'postfix' ? this.ranges.bits(serviceName, ip.family) : full;
    const client = bits >= full ? text : rangeText(ip, bits);
    const now = this.clock.now();
    const facts: ClientFacts = {
      service,
      address: text,
      client,
      country: this.geo.country(text, ip),
      exception: this.rules.exceptions.match(ip)?.text ?? null,
      ban: this.bans.find(ip, text, now),
      limits: this.rules.limitsFor(service, ip),
      now,
      rateUnitSec: this.rateUnitSec,
    };
    return { facts, ip, key: `${serviceName}:${client}`, bits };
  }

  /**
   * The network a client is counted under for connections_per_prefix, as
   * text; null when the service sets no such limit for it. A client that is
   * itself a range at least as wide as the prefix (smtpd's /84 against a /96
   * prefix) is its own network: "same", and its count is the network's; a
   * narrower range is counted in its prefix as an address is (/84 in a /64).
   */
  private networkOf(s: ServiceRules, limits: EffectiveLimits, ip: ParsedIp, bits: number): string | null | 'same' {
    if (limits.limits.connections_per_prefix === null) return null;
    const prefix = ip.family === 4 ? s.prefixV4 : s.prefixV6;
    if (bits < fullBits(ip.family) && prefix >= bits) return 'same';
    return prefixOf(ip, s.prefixV4, s.prefixV6);
  }

  /**
   * For the anvil service, on connect and disconnect: learns from a connect
   * how smtpd names this service's clients (an address or a range), and
   * returns the key counting the client's network when the service limits
   * connections per prefix (null otherwise, and for a client that is no
   * address: anvil keeps those as opaque names). `client` is the ident's part
   * after the service: "203.0.113.9", "2001:db8::/84".
   */
  anvilClient(service: string, client: string, connect: boolean): string | null {
    const r = parseClientRange(client);
    if (r === null) return null;
    if (connect) this.ranges.learn(service, r.ip.family, r.bits);
    if (!this.prefixCounting) return null;
    const s = this.rules.services.get(service);
    if (s === undefined) return null;
    const net = this.networkOf(s, this.rules.limitsFor(s, r.ip), r.ip, r.bits);
    return net === null || net === 'same' ? null : `${service}:${net}`;
  }

  // Postfix's anvil (../listeners/anvil-server.ts): smtpd's own counts, under its idents.

  /**
   * A session opens. Counted under smtpd's ident; when a rule counts per
   * prefix, under the client's network too (the policy service reads it),
   * and the first sessions of a service teach how smtpd names its clients.
   */
  anvilConnect(ident: string, owner: Owner): Awaitable<AcquireResult> {
    const net = this.anvilNetwork(ident, true, owner);
    const r = this.engine.connect(ident, owner);
    return net === null ? r : both(net, r);
  }

  /** A session closes; its network's count goes with it. */
  anvilDisconnect(ident: string, owner: Owner): Awaitable<number> {
    const net = this.anvilNetwork(ident, false, owner);
    const r = this.engine.disconnect(ident, owner);
    return net === null ? r : both(net, r);
  }

  /** A MAIL, RCPT, new TLS session, AUTH or (Postfix 3.12) TLS trace event of a session `owner` holds. */
  anvilEvent(ident: string, metric: 'mail' | 'rcpt' | 'newtls' | 'auth' | 'tlstr', owner: Owner): Awaitable<HitResult> {
    return this.engine.event(ident, metric, owner);
  }

  /** The counts under a key (an anvil ident, or `service:address`). */
  lookup(key: string): Awaitable<KeySnapshot> {
    return this.engine.lookup(key);
  }

  /** The network key counted beside an anvil ident, counted; null when there is none. */
  private anvilNetwork(ident: string, connect: boolean, owner: Owner): Awaitable<unknown> | null {
    if (!this.prefixCounting && !(connect && mayTeach(ident, this.ranges))) return null;
    const { service, address } = parseAnvilIdent(ident);
    const key = this.anvilClient(service, address, connect);
    if (key === null) return null;
    return connect ? this.engine.connect(key, owner) : this.engine.disconnect(key, owner);
  }

  // Owners: whoever holds connections (an anvil client socket, a proxy listener).

  createOwner(label: string): Owner {
    return this.engine.createOwner(label);
  }

  /** Releases everything `owner` holds: its socket or listener is gone. */
  closeOwner(owner: Owner): Awaitable<number> {
    return this.engine.closeOwner(owner);
  }

  // The monitor's view.

  stats(): GateStats {
    return { entries: this.engine.entries, storeKind: this.engine.storeKind, store: this.engine.storeStatus() };
  }

  /** The busiest clients under `prefix`, by count or a rate (bookkeeping keys are never listed). */
  top(prefix: string, by: 'count' | RateMetric, limit: number, maxScan?: number): ReturnType<Engine['top']> {
    return this.engine.top(prefix, by, limit, maxScan);
  }

  peaks(): Partial<Record<PeakName, Peak>> {
    return this.engine.peaks.snapshot();
  }

  /**
   * At connect, from counts someone else registered (the anvil service for
   * Postfix; the proxy registers its own): concurrency and connection rate
   * are read, not counted again.
   */
  checkConnect(serviceName: string, address: string, next = false): Awaitable<Decision> {
    const f = this.facts(serviceName, address, true);
    if (f === null) return unjudged(address);
    const net = this.networkOf(f.facts.service, f.facts.limits, f.ip, f.bits);
    // `next`: as the next connection would be judged, itself counted (the admin API's check).
    const plus = next ? plusOne : same;
    return guarded(f.facts, then(this.engine.lookup(f.key), (addressSnap) => {
      if (net === null) return evaluateConnect(f.facts, { address: plus(addressSnap), prefix: null, prefixText: null });
      if (net === 'same') return evaluateConnect(f.facts, { address: plus(addressSnap), prefix: plus(addressSnap), prefixText: f.facts.client });
      return then(this.engine.lookup(`${serviceName}:${net}`), (prefixSnap) =>
        evaluateConnect(f.facts, { address: plus(addressSnap), prefix: plus(prefixSnap), prefixText: net }),
      );
    }) as Awaitable<Decision>);
  }

  /**
   * A connection at the door of a front-end that counts its own (the guard
   * proxy): bans and country rules first, which cost no counting, so a
   * banned flood does not fill the table; then the connection is counted
   * under its address (and network, for a prefix limit) as held by `owner`,
   * and judged on counts that include it. A refused connection is given back
   * at once but stays in the connection rate, as in anvil. `address` is
   * text, or the ClientAddress the proxy parsed at accept, taken as it is.
   */
  admit(serviceName: string, address: string | ClientAddress, owner: Owner): Awaitable<Admission> {
    const f = this.facts(serviceName, address);
    if (f === null) return { decision: unjudged(address), address: typeof address === 'string' ? address : address.text, keys: [] };
    const pre = evaluateConnect(f.facts, NO_COUNTS);
    if (pre.action === 'refuse') return { decision: pre, address: f.facts.address, keys: [] };
    const net = this.networkOf(f.facts.service, f.facts.limits, f.ip, f.bits);
    const prefixText = net === 'same' ? null : net;
    const judge = (a: AcquireResult, p: AcquireResult | null, keys: string[]): Awaitable<Admission> => {
      const decision = evaluateConnect(f.facts, { address: snapshotOf(a), prefix: p && snapshotOf(p), prefixText });
      if (decision.action === 'allow') return { decision, address: f.facts.address, keys };
      return then(this.leave(keys, owner), () => ({ decision, address: f.facts.address, keys: [] }));
    };
    const keys = prefixText === null ? [f.key] : [f.key, `${serviceName}:${prefixText}`];
    return settle(
      this.engine.connectMany(keys, owner),
      (r) => judge(r[0] as AcquireResult, r[1] ?? null, keys),
      (err: unknown) => ({ decision: storeFailure(f.facts, err), address: f.facts.address, keys: [] }),
    );
  }

  /**
   * A connection at the door of a proxy that counts its own concurrency and
   * never says when a session ends (HAProxy through SPOE, which has no event
   * for it): bans and country rules first, which count nothing; then one
   * connection event under the proxy-style key `service:address`, so the
   * connection rate is Doorman's, shared by every front-end and host that
   * counts in the same store; judged with no concurrency, since nothing is
   * held here and nothing could be given back. The per-address limit in
   * force comes back with the decision, for the proxy to count against.
   */
  screen(serviceName: string, address: string): Awaitable<Screening> {
    const f = this.facts(serviceName, address);
    if (f === null) return { decision: unjudged(address), address: null, connLimit: null };
    const facts = f.facts;
    const pre = evaluateConnect(facts, NO_COUNTS);
    if (pre.action === 'refuse') return { decision: pre, address: facts.address, connLimit: null };
    const connLimit = pre.exempt !== null || facts.service.dryRun ? null : facts.limits.limits.connections_per_address;
    const judged = then(this.engine.event(f.key, 'conn'), (r): Screening => {
      const decision = evaluateConnect(facts, { address: { count: 0, rates: { ...EMPTY_SNAPSHOT.rates, conn: r.rate } }, prefix: null, prefixText: null });
      return { decision, address: facts.address, connLimit };
    });
    return judged instanceof Promise
      ? judged.catch((err: unknown): Screening => ({ decision: storeFailure(facts, err), address: facts.address, connLimit: null }))
      : judged;
  }

  /** Gives back the keys an admitted connection held. */
  leave(keys: readonly string[], owner: Owner): Awaitable<void> {
    if (keys.length === 0) return undefined;
    return then(this.engine.disconnectMany(keys, owner), () => undefined);
  }

  /**
   * One message or recipient: counted when the service limits it (a limit
   * Postfix enforces itself is counted through the anvil service instead, so
   * nothing is counted twice), then judged.
   */
  event(serviceName: string, address: string, metric: 'mail' | 'rcpt', recipient = ''): Awaitable<Decision> {
    const f = this.facts(serviceName, address, true);
    if (f === null) return unjudged(address);
    const probing = metric === 'rcpt' && recipient !== '' && f.facts.exception === null && f.facts.ban === null ? f.facts.service.recipientProbing : null;
    const limit = f.facts.limits.limits[metric === 'mail' ? 'message_rate' : 'recipient_rate'];
    if (probing !== null) return guarded(f.facts, then(this.probe(f.facts, f.key, recipient, probing), (facts) => this.counted(facts, f.key, metric, limit)) as Awaitable<Decision>);
    return this.counted(f.facts, f.key, metric, limit);
  }

  private counted(facts: ClientFacts, key: string, metric: 'mail' | 'rcpt', limit: number | null): Awaitable<Decision> {
    if (limit === null || facts.exception !== null) return evaluateEvent(facts, metric, 0);
    return guarded(facts, then(this.engine.event(key, metric), (r) => evaluateEvent(facts, metric, r.rate)));
  }

  /**
   * recipient_probing: the distinct recipients an unauthenticated client
   * named within the window; over the limit, the address is banned (longer
   * for a repeat offender) and the facts carry the ban, so this recipient
   * is refused with it.
   */
  private probe(facts: ClientFacts, key: string, recipient: string, rule: { recipients: number; windowMs: number; banMs: number }): Awaitable<ClientFacts> {
    return then(this.engine.touchMember(`${BOOKKEEPING_PREFIX}rcpt:${key}`, recipient.toLowerCase().slice(0, 320), rule.windowMs), (m) => {
      if (m.size <= rule.recipients || facts.service.dryRun) return facts;
      const reason = `${m.size} distinct recipients within ${Math.round(rule.windowMs / 60_000)} min, over the limit of ${rule.recipients} (recipient probing)`;
      const ban = this.autoBan(facts, rule.banMs, reason);
      // Judged as of the ban's making, so the time left reads as the ban's length.
      return { ...facts, ban, now: ban.createdAt };
    });
  }

  /**
   * Before a password is checked (Dovecot's first `allow`): counts the AUTH
   * attempt, then bans, the AUTH-phase country rule, the AUTH and
   * AUTH-failure rates.
   */
  authAttempt(serviceName: string, address: string | ClientAddress, login = ''): Awaitable<Decision> {
    const f = this.facts(serviceName, address);
    if (f === null) return unjudged(address);
    if (f.facts.exception !== null) return evaluateAuth(f.facts, { address: EMPTY_SNAPSHOT }, null);
    return guarded(f.facts, then(this.engine.event(f.key, 'auth'), (r) =>
      then(this.engine.lookup(f.key), (snap) =>
        then(this.loginFailedFrom(f.facts, login), (failures) => evaluateAuth(f.facts, { address: snap, authRate: r.rate }, null, failures)),
      ),
    ) as Awaitable<Decision>);
  }

  /**
   * For login_failures: how many addresses `login` failed from within the
   * window; null when the rule is off, the login unknown, or this address
   * logged in as `login` well within good_login (the owner is never locked
   * out by the guessers of their name).
   */
  private loginFailedFrom(f: ClientFacts, login: string): Awaitable<{ name: string; addresses: number } | null> {
    const rule = f.service.loginFailures;
    if (rule === null || login === '') return null;
    return then(this.engine.members(loginFailuresKey(f.service.name, login), null, rule.windowMs), (m) => {
      if (m.size <= rule.addresses) return null;
      return then(this.engine.members(goodLoginKey(f.address), login, f.service.goodLoginMs ?? rule.windowMs), (good) =>
        good.has ? null : { name: login, addresses: m.size },
      );
    }) as Awaitable<{ name: string; addresses: number } | null>;
  }

  /**
   * A login accepted from `address` (Dovecot's after-auth report; Postfix's
   * sasl_username): for good_login, its AUTH failures ban nobody for a
   * while. Nothing to do when the service does not set good_login.
   */
  goodLogin(serviceName: string, address: string | ClientAddress, login: string): Awaitable<void> {
    const ms = this.rules.service(serviceName).goodLoginMs;
    if (ms === null || login === '') return undefined;
    const ip = typeof address === 'string' ? parseIp(address) : address.ip;
    if (ip === null) return undefined;
    const text = typeof address === 'string' ? canonicalText(address, ip) : address.text;
    // Not recorded without the store: the failures that follow may ban, as without the rule.
    return unlessStoreFails(then(this.engine.touchMember(goodLoginKey(text), login.slice(0, MAX_LOGIN), ms), () => undefined), undefined);
  }

  /**
   * Makes an automatic ban on the client's address: `baseMs` long, or for a
   * repeat offender (banned again within repeat_offenders.window) the last
   * ban's length times the multiplier, up to max_ban. Recorded for the next
   * time and told to onAutoBan, which keeps it.
   */
  private autoBan(f: ClientFacts, baseMs: number, reason: string): Ban {
    const now = this.clock.now();
    const ro = f.service.repeatOffenders;
    const prior = this.bans.offence(f.address);
    const strike = ro !== null && prior !== undefined && now - prior.at < ro.windowMs ? prior.strike + 1 : 1;
    const ttl = ro === null ? baseMs : Math.min(baseMs * ro.multiplier ** (strike - 1), Math.max(ro.maxBanMs, baseMs));
    const why = strike > 1 ? `${reason}; banned ${strike} times within ${Math.round((ro?.windowMs ?? 0) / 3_600_000)} h (repeat offender)` : reason;
    const ban = this.bans.add(f.address, ttl, why, now, { origin: 'auto', strike });
    this.bans.recordOffence({ target: ban.target, strike, at: now });
    this.onAutoBan?.(ban);
    return ban;
  }

  /**
   * After the password was accepted (Dovecot's second `allow`): records the
   * login's country and applies max_countries_per_login.
   */
  authSucceeded(serviceName: string, address: string | ClientAddress, login: string): Awaitable<Decision> {
    const f = this.facts(serviceName, address);
    if (f === null) return unjudged(address);
    const good = this.goodLogin(serviceName, { ip: f.ip, text: f.facts.address }, login);
    const travel = f.facts.service.maxCountriesPerLogin;
    const country = f.facts.country;
    if (travel === null || country === null || login === '' || f.facts.exception !== null) {
      return both(good, evaluateAuth(f.facts, { address: EMPTY_SNAPSHOT }, null));
    }
    return guarded(f.facts, both(good, then(this.engine.touchMember(`logins:${serviceName}:${login}`, country, travel.windowMs), (m) =>
      evaluateAuth(f.facts, { address: EMPTY_SNAPSHOT }, { name: login, countriesSeen: m.size, newCountry: m.added }),
    )));
  }

  /**
   * A failed login. The same wrong password again from the same address and
   * login (the office phone with an old password) counts once per rate
   * window, not as a guess each time; distinct failures count against the
   * address (and, for login_failures, the address against the login), and
   * over auth_failure_rate the address is banned for auth_failure_ban
   * (longer for a repeat offender) — unless someone logged in well from it
   * within good_login. Returns the ban made, if any.
   */
  authFailed(serviceName: string, address: string | ClientAddress, login: string, pwhash: string): Awaitable<Ban | null> {
    const f = this.facts(serviceName, address);
    if (f === null || f.facts.exception !== null) return null;
    const seenKey = `${BOOKKEEPING_PREFIX}authfail:${f.key}:${login}:${pwhash}`;
    // Only the client's own key may be a peak: the other two are bookkeeping, with a login and a password hash in them.
    const counted = then(this.engine.event(seenKey, 'authfail', undefined, { peak: false }), (seen) => {
      if (seen.rate > 1) return null;
      const byLogin = f.facts.service.loginFailures;
      const named =
        byLogin !== null && login !== ''
          ? this.engine.touchMember(loginFailuresKey(serviceName, login), f.facts.address, byLogin.windowMs)
          : undefined;
      return then(both(named, this.engine.event(`${BOOKKEEPING_PREFIX}login:${f.key}:${login}`, 'authfail', undefined, { peak: false })), () =>
        then(this.engine.event(f.key, 'authfail'), (r) => {
          const limit = f.facts.limits.limits.auth_failure_rate;
          if (limit === null || r.rate <= limit || f.facts.service.dryRun) return null;
          const reason = `${r.rate} AUTH failures in ${this.rateUnitSec}s, over the limit of ${limit}`;
          const goodMs = f.facts.service.goodLoginMs;
          if (goodMs === null) return this.autoBan(f.facts, f.facts.service.authFailureBanMs, reason);
          return then(this.engine.members(goodLoginKey(f.facts.address), null, goodMs), (good) =>
            good.size > 0 ? null : this.autoBan(f.facts, f.facts.service.authFailureBanMs, reason),
          );
        }),
      );
    }) as Awaitable<Ban | null>;
    // Without the store the failure is not counted; nothing else is lost.
    return unlessStoreFails(counted, null);
  }

  /**
   * A session the guard proxy admitted ended with nothing sent by the
   * client (a scanner, a banner grabber). For early_leavers: over the
   * service's count within its window, the address is banned (longer for a
   * repeat offender). `session` names the session, so each counts once.
   */
  leftEarly(serviceName: string, address: string | ClientAddress, session: string): Awaitable<Ban | null> {
    const rule = this.rules.service(serviceName).earlyLeavers;
    if (rule === null) return null;
    const f = this.facts(serviceName, address);
    if (f === null || f.facts.exception !== null || f.facts.ban !== null) return null;
    const counted = then(this.engine.touchMember(`${BOOKKEEPING_PREFIX}early:${f.key}`, session, rule.windowMs), (m) => {
      if (m.size <= rule.sessions || f.facts.service.dryRun) return null;
      const reason = `${m.size} sessions that sent nothing within ${Math.round(rule.windowMs / 60_000)} min, over the limit of ${rule.sessions} (early leavers)`;
      return this.autoBan(f.facts, rule.banMs, reason);
    });
    return unlessStoreFails(counted, null);
  }

  /** At AUTH (Postfix: a request with sasl_username): the AUTH-phase country rule, bans and rates. */
  checkAuth(serviceName: string, address: string): Awaitable<Decision> {
    const f = this.facts(serviceName, address, true);
    if (f === null) return unjudged(address);
    return guarded(f.facts, then(this.engine.lookup(f.key), (snap) => evaluateAuth(f.facts, { address: snap }, null)));
  }
}
