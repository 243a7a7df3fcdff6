/**
 * Prometheus metrics (docs/admin-api.md, "Metrics"), in a registry of
 * Doorman's own rather than prom-client's global one, so two daemons in one
 * process (the tests) never share a counter. One DoorMetrics per daemon,
 * made by the composition root whether or not the admin API runs; the admin
 * API and the metrics-only listener (src/http/metrics-server.ts) serve it.
 *
 *   doorman_connections{service}                      gauge, live proxied connections (read at scrape)
 *   doorman_connections_total{service}                counter, connections admitted by the proxy
 *   doorman_decisions_total{service,action,rule}      counter: refusals by every front-end (proxy,
 *                                                     policy, dovecot, haproxy), admissions by the proxy
 *                                                     and HAProxy's SPOE agent (rule "none")
 *   doorman_refusals_by_country_total{service,country} counter; "none" for no country, at most
 *                                                     MAX_COUNTRIES others, the rest as "other"
 *   doorman_engine_entries                            gauge, keys in the counter table (read at scrape)
 *   doorman_bans{origin}                              gauge, bans in force: operator, auto, crowdsec (read at scrape)
 *   doorman_kicks_total                               counter, connections closed by the administrator
 *   doorman_store_up                                  gauge, 1 while the counter store answers (always,
 *                                                     for the memory store)
 *   doorman_store_failovers                           gauge, fleet mode: times Redis was found unreachable
 *   doorman_listener_clients{listener,address}        gauge, clients connected to a capped listener now
 *   doorman_listener_max_clients{listener,address}    gauge, its cap (max_clients, max_connections)
 *   doorman_listener_full_total{listener,address}     counter, connections refused because it was full
 *                                                     (listener: the configuration section holding the
 *                                                     cap: anvil, postfix_policy, dovecot_policy,
 *                                                     services.NAME.proxy, haproxy_spoe; address: where it listens)
 *   doorman_firewall_sync_total{result}               counter, nft runs writing the nftables sets: ok, error
 *                                                     (firewall.nft; read from the writer at scrape)
 *   doorman_firewall_in_sync                          gauge, 1 while the sets hold every ban (0: changes
 *                                                     waiting, or retrying after a failure)
 *   doorman_decision_seconds{front}                   histogram, a complete request to its answer, per
 *                                                     front-end: anvil, policy, dovecot, proxy, spoe (./latency.ts)
 *   doorman_process_…, doorman_nodejs_…               prom-client's default metrics, but for
 *                                                     the ones costing a walk over every socket
 *
 * Counters are fed from the DoorEventBus, or read from the listeners'
 * own totals at scrape; gauges are read when scraped, so nothing is done per
 * connection for them. Decision times are recorded by the front-ends, through
 * a DecisionTimer each (decisionTimer()). Every label's values are capped:
 * a label fed from the network (a Dovecot `protocol`, a country) must not
 * grow the series without bound.
 */
import type { BanOrigin } from '../core/bans.js';
import { readdir } from 'node:fs/promises';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { StoreStatus } from '../core/ports.js';
import type { ConnectionRegistry } from '../core/connections.js';
import type { DoorEventBus, DoorEvents } from '../core/events.js';
import { DecisionLatency, type DecisionTimer, type Front } from './latency.js';

/** As the contract says: a country map of 50 series per service is readable; past that, "other". */
const MAX_COUNTRIES = 50;
/** Rule labels are configuration keys; this many means something is generating them. */
const MAX_RULES = 200;

export interface MetricsSources {
  readonly registry: Pick<ConnectionRegistry, 'countsByService' | 'admittedByService'>;
  readonly entries: () => number;
  /** Bans in force by origin. */
  readonly bans: () => Readonly<Record<BanOrigin, number>>;
  /** A fleet store's health; null for the memory store. */
  readonly store?: () => StoreStatus | null;
  /** Service names a label may hold (the configured ones, the protocol names); any other is "other". */
  readonly services: readonly string[];
  /** Services with a guard proxy: their connection series read 0 when idle rather than being absent. */
  readonly proxied: readonly string[];
  /** The listeners with a cap on clients, read at scrape (they may be bound after this is made). */
  readonly listeners?: () => readonly ListenerLoad[];
  /** Clients HAProxy's SPOE agent allowed since start, per service (issue 19); read at scrape. */
  readonly spoeAdmitted?: () => ReadonlyMap<string, number> | null;
  /** The nftables set writer's runs and state (issue 20); null when firewall.nft is off. */
  readonly firewall?: () => { readonly syncs: { readonly ok: number; readonly error: number }; readonly state: string } | null;
}

/** A listener with a cap on its clients, as the metrics read it at scrape. */
export interface ListenerLoad {
  /** The configuration section holding the cap: anvil, postfix_policy, dovecot_policy, services.NAME.proxy. */
  readonly listener: string;
  /** host:port (the port bound) or a socket path. */
  readonly address: string;
  /** max_clients or max_connections. */
  readonly max: number;
  /** Clients connected now. */
  clients(): number | Promise<number>;
  /** Connections refused since start because it was full. */
  full(): number;
}

const OPEN_FDS = 'doorman_process_open_fds';
const O_HANDLES = ['doorman_nodejs_active_handles', 'doorman_nodejs_active_handles_total', 'doorman_nodejs_active_resources', 'doorman_nodejs_active_resources_total'];

/** Process-wide default metrics: they describe the process, so one set serves every daemon in it. */
let processRegistry: Registry | null = null;
function processMetrics(): Registry {
  if (processRegistry === null) {
    const r = new Registry();
    collectDefaultMetrics({ register: r, prefix: 'doorman_' });
    // These list every libuv handle (two per proxied connection) at each
    // scrape: 10-15 ms with 10,000 connections, blocking the relay.
    // doorman_connections says the same for what matters here.
    for (const name of O_HANDLES) r.removeSingleMetric(name);
    // prom-client counts open descriptors with readdirSync('/proc/self/fd'):
    // 20 ms with 10,000 proxied connections (two descriptors each), all of it
    // blocking the event loop that relays them. The same count, read in the
    // thread pool instead:
    if (r.getSingleMetric(OPEN_FDS) !== undefined) {
      r.removeSingleMetric(OPEN_FDS);
      new Gauge({
        name: OPEN_FDS,
        help: 'Number of open file descriptors.',
        registers: [r],
        async collect() {
          // Less the one readdir itself holds open.
          this.set((await readdir('/proc/self/fd')).length - 1);
        },
      });
    }
    processRegistry = r;
  }
  return processRegistry;
}

/** A label value from a bounded set: the first `max` seen are kept, the rest become "other". */
class CappedLabel {
  private readonly seen = new Set<string>();
  constructor(private readonly max: number) {}
  of(v: string): string {
    if (this.seen.has(v)) return v;
    if (this.seen.size >= this.max) return 'other';
    this.seen.add(v);
    return v;
  }
}

export class DoorMetrics {
  readonly register = new Registry();
  private readonly bus: DoorEventBus;
  private readonly services: ReadonlySet<string>;
  private readonly countries = new CappedLabel(MAX_COUNTRIES);
  private readonly rules = new CappedLabel(MAX_RULES);
  private readonly connectionsTotal: Counter<'service'>;
  private readonly decisions: Counter<'service' | 'action' | 'rule'>;
  private readonly byCountry: Counter<'service' | 'country'>;
  private readonly kicks: Counter;
  private readonly latency = new DecisionLatency();
  private readonly listeners: { [K in 'refusal' | 'kick']: (...a: DoorEvents[K]) => void };
  private attached = false;

  constructor(bus: DoorEventBus, src: MetricsSources) {
    this.bus = bus;
    this.services = new Set(src.services);
    const registers = [this.register];
    const known = src.proxied;
    new Gauge({
      name: 'doorman_connections',
      help: 'Live proxied connections, per service',
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        const now = src.registry.countsByService();
        for (const s of known) this.set({ service: s }, now[s] ?? 0);
        // Names from the registry are configured proxy services: bounded.
        for (const [s, n] of Object.entries(now)) if (!known.includes(s)) this.set({ service: s }, n);
      },
    });
    // Admissions are read from the registry's totals at scrape time rather than
    // counted per connection: the proxy's accept path then builds no event for them.
    const seen = new Map<string, number>();
    const metrics = this;
    const admitted = (): Array<[string, number]> => {
      const out: Array<[string, number]> = [];
      for (const [svc, total] of src.registry.admittedByService()) {
        const delta = total - (seen.get(svc) ?? 0);
        if (delta > 0) out.push([metrics.service(svc), delta]);
        seen.set(svc, total);
      }
      return out;
    };
    // Allowed by HAProxy's SPOE agent: read from its totals at scrape, like the proxy's admissions.
    const spoeSeen = new Map<string, number>();
    const spoeAdmitted = (): Array<[string, number]> => {
      const out: Array<[string, number]> = [];
      for (const [svc, total] of src.spoeAdmitted?.() ?? []) {
        const delta = total - (spoeSeen.get(svc) ?? 0);
        if (delta > 0) out.push([metrics.service(svc), delta]);
        spoeSeen.set(svc, total);
      }
      return out;
    };
    this.connectionsTotal = new Counter({ name: 'doorman_connections_total', help: 'Connections admitted by the guard proxy, per service', labelNames: ['service'], registers });
    this.decisions = new Counter({
      name: 'doorman_decisions_total',
      help: 'Decisions: refusals by every front-end, admissions by the guard proxy and the SPOE agent (rule "none")',
      labelNames: ['service', 'action', 'rule'],
      registers,
      collect() {
        for (const [service, n] of admitted()) {
          metrics.connectionsTotal.inc({ service }, n);
          this.inc({ service, action: 'allow', rule: 'none' }, n);
        }
        for (const [service, n] of spoeAdmitted()) this.inc({ service, action: 'allow', rule: 'none' }, n);
      },
    });
    this.byCountry = new Counter({
      name: 'doorman_refusals_by_country_total',
      help: `Refusals per service and client country ("none": no country; past ${MAX_COUNTRIES} countries, "other")`,
      labelNames: ['service', 'country'],
      registers,
    });
    new Gauge({
      name: 'doorman_engine_entries',
      help: 'Keys in the counter table',
      registers,
      collect() {
        this.set(src.entries());
      },
    });
    new Gauge({
      name: 'doorman_bans',
      help: 'Bans in force, by who made them: operator, auto (a rule of Doorman\'s), crowdsec',
      labelNames: ['origin'],
      registers,
      collect() {
        for (const [origin, n] of Object.entries(src.bans())) this.set({ origin }, n);
      },
    });
    if (src.store !== undefined) {
      const status = src.store;
      new Gauge({
        name: 'doorman_store_up',
        help: '1 while the counter store answers (always, for the memory store); fleet mode: 0 while Redis does not and services follow on_store_failure',
        registers,
        collect() {
          // The memory store has no status: it cannot be away, so a "store down" alert never fires on a single host.
          const st = status();
          this.set(st === null || st.up ? 1 : 0);
        },
      });
      new Gauge({
        name: 'doorman_store_failovers',
        help: 'Fleet mode: times Redis was found unreachable since start',
        registers,
        collect() {
          const st = status();
          if (st !== null) this.set(st.failovers);
        },
      });
    }
    this.kicks = new Counter({ name: 'doorman_kicks_total', help: 'Connections closed by the administrator', registers });
    if (src.listeners !== undefined) listenerMetrics(src.listeners, registers);
    if (src.firewall !== undefined) firewallMetrics(src.firewall, registers);
    // Series exist from the start, so a rate() over a fresh daemon is 0, not absent.
    for (const s of known) this.connectionsTotal.inc({ service: s }, 0);
    this.kicks.inc(0);
    this.listeners = {
      refusal: (e) => {
        const service = this.service(e.service);
        this.decisions.inc({ service, action: 'refuse', rule: this.rules.of(e.rule) });
        this.byCountry.inc({ service, country: e.country === null ? 'none' : this.countries.of(e.country) });
      },
      kick: (e) => this.kicks.inc(e.kicked),
    };
  }

  /** Starts counting the bus's events. */
  attach(): void {
    if (this.attached) return;
    this.attached = true;
    this.bus.on('refusal', this.listeners.refusal);
    this.bus.on('kick', this.listeners.kick);
  }

  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.bus.off('refusal', this.listeners.refusal);
    this.bus.off('kick', this.listeners.kick);
  }

  get contentType(): string {
    return this.register.contentType;
  }

  /** The timer a front-end records its answers' times with (doorman_decision_seconds{front}). */
  decisionTimer(front: Front): DecisionTimer {
    return this.latency.timer(front);
  }

  /** The exposition text: Doorman's metrics, then the process's. */
  async text(): Promise<string> {
    const [own, proc] = await Promise.all([this.register.metrics(), processMetrics().metrics()]);
    return `${own}\n${this.latency.text()}\n${proc}`;
  }

  private service(name: string): string {
    return this.services.has(name) ? name : 'other';
  }
}

/** doorman_listener_*: every capped listener's clients, cap and refusals for being full, read at scrape. */
function listenerMetrics(listeners: () => readonly ListenerLoad[], registers: Registry[]): void {
  const labelNames = ['listener', 'address'] as const;
  new Gauge({
    name: 'doorman_listener_clients',
    help: 'Clients connected to a listener now (listener: the configuration section holding its cap)',
    labelNames,
    registers,
    async collect() {
      this.reset();
      const now = listeners();
      const counts = await Promise.all(now.map((l) => l.clients()));
      now.forEach((l, i) => this.set({ listener: l.listener, address: l.address }, counts[i] ?? 0));
    },
  });
  new Gauge({
    name: 'doorman_listener_max_clients',
    help: "A listener's cap on clients: its max_clients, or a proxy's max_connections",
    labelNames,
    registers,
    collect() {
      this.reset();
      for (const l of listeners()) this.set({ listener: l.listener, address: l.address }, l.max);
    },
  });
  // Each listener keeps its own total (a plain increment where it refuses);
  // the counter takes what was added since the last scrape.
  const seen = new Map<ListenerLoad, number>();
  new Counter({
    name: 'doorman_listener_full_total',
    help: 'Connections refused because the listener had its maximum of clients',
    labelNames,
    registers,
    collect() {
      for (const l of listeners()) {
        const total = l.full();
        this.inc({ listener: l.listener, address: l.address }, total - (seen.get(l) ?? 0));
        seen.set(l, total);
      }
    },
  });
}

/** doorman_firewall_*: the nftables set writer's runs, read from its totals at scrape, and whether it is in sync. */
function firewallMetrics(firewall: NonNullable<MetricsSources['firewall']>, registers: Registry[]): void {
  const seen = { ok: 0, error: 0 };
  new Counter({
    name: 'doorman_firewall_sync_total',
    help: 'nft runs writing bans to the nftables sets (firewall.nft), by result: ok or error (an error is retried by a full resync)',
    labelNames: ['result'],
    registers,
    collect() {
      const s = firewall();
      if (s === null) return;
      for (const result of ['ok', 'error'] as const) {
        this.inc({ result }, s.syncs[result] - seen[result]);
        seen[result] = s.syncs[result];
      }
    },
  });
  new Gauge({
    name: 'doorman_firewall_in_sync',
    help: '1 while the nftables sets hold every ban in force; 0 while changes wait for nft or a failed run waits to be retried',
    registers,
    collect() {
      const s = firewall();
      if (s !== null) this.set(s.state === 'in_sync' ? 1 : 0);
    },
  });
}
