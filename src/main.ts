/**
 * The composition root: config → store and engine → listeners. Everything is
 * built here and nowhere else, so tests can start a whole daemon in-process.
 */
import { serviceTexts } from './config/rules-schema.js';
import type { Logger } from 'pino';
import { EMBEDDED_DEFAULTS, loadConfig, type Config } from './config/load.js';
import type { Clock } from './core/clock.js';
import { systemClock } from './core/clock.js';
import { Gatekeeper, NO_COUNTRIES, type CountryOf } from './core/gate.js';
import { rateAlgorithm } from './store/rate.js';
import type { Rules } from './core/rules.js';
import { PostfixRanges, type RangeChange } from './core/postfix-ranges.js';
import { fullBits } from './core/ip.js';
import { AnvilServer } from './listeners/anvil-server.js';
import { PolicyServer } from './listeners/policy-server.js';
import { DovecotPolicyServer } from './http/dovecot-policy.js';
import { NginxAuthServer } from './http/nginx-auth.js';
import { AdminServer } from './http/admin/server.js';
import { MetricsServer } from './http/metrics-server.js';
import { DoorMetrics, type ListenerLoad } from './observability/metrics.js';
import { PROTOCOLS, type Protocol } from './core/rules.js';
import { ADMIN_DEFAULT_LISTEN } from './config/schema.js';
import type { ServiceInfo } from './http/admin/context.js';
import { openCountryLookup, type CountryLookup } from './geo/country.js';
import { resolveGid, resolveUid } from './listeners/unix-ids.js';
import { nodeName, openStore } from './store/open.js';
import { ReloadError, reloadableChanges, restartOnlyChanges } from './config/reload.js';
import { ConnectionRegistry } from './core/connections.js';
import type { ConnectionView } from './core/connections.js';
import type { Ban } from './core/bans.js';
import { DoorEventBus } from './core/events.js';
import { Control } from './control/control.js';
import { WhyDesk } from './control/why.js';
import { RefusalLog } from './observability/refusal-log.js';
import { AuditLog } from './state/audit-log.js';
import { StateStore } from './state/runtime-state.js';
import { openStatePath } from './state/open-paths.js';
import { NetworkSet } from './core/networks.js';
import { GuardListener } from './listeners/guard-proxy.js';
import { SpoeAgentServer } from './listeners/spoe-agent.js';
import { describeEndpoint, parseEndpoint, type Session, type StreamListener } from './listeners/stream-listener.js';
import { hostname } from 'node:os';
import { CloseStack } from './close-stack.js';
import { openFleet } from './fleet/open.js';
import type { OpenedStore } from './store/open.js';
import { NftSetWriter } from './firewall/nft-set.js';
import { openNft } from './firewall/nft-run.js';
import { openCrowdsec, type OpenedCrowdsec } from './crowdsec/open.js';

export interface Daemon {
  /**
   * Swaps in a reloaded configuration's rules and log level, keeping every
   * connection and count; refuses (ReloadError, ConfigError), changing
   * nothing, when it changes what needs a restart or does not compile.
   * Resolves with the keys changed.
   */
  reload(next: Config, by: string): Promise<string[]>;
  /** reload() of the file the daemon started from, read again (SIGHUP, `doorman reload`). */
  reloadFile(by: string): Promise<string[]>;
  /** The core's one door: decisions, counts, owners, stats. */
  readonly gate: Gatekeeper;
  readonly anvil: AnvilServer | null;
  readonly policy: PolicyServer | null;
  readonly dovecot: DovecotPolicyServer | null;
  /** The Dovecot policy endpoint's bound port (0 when off). */
  readonly dovecotPort: number;
  /** nginx mail's auth_http endpoint, and its bound port (0 when off). */
  readonly nginx: NginxAuthServer | null;
  readonly nginxPort: number;
  /** HAProxy's SPOE agent; null when haproxy_spoe.listen is empty. */
  readonly spoe: SpoeAgentServer | null;
  /** Live proxied connections. */
  readonly registry: ConnectionRegistry;
  /** The guard proxy's listeners, one per service and listen address, in config order. */
  readonly proxies: readonly GuardListener[];
  /** What happens at the door, for the admin API's stream and the metrics. */
  readonly events: DoorEventBus;
  /** The operator's controls (kick, ban, country rules, counts, check). */
  readonly control: Control;
  /** Why an address is refused and how to lift it: this node's refusal record and bans (every node's, asked, in a fleet). */
  readonly why: WhyDesk;
  /** The admin API and dashboard; null when admin.listen is null. */
  readonly admin: AdminServer | null;
  /** The admin API's bound port (0 when off). */
  readonly adminPort: number;
  /** The CrowdSec bouncer and signals log; each null when off (issue 20). */
  readonly crowdsec: OpenedCrowdsec;
  /** The daemon's metrics, whether or not the admin API runs. */
  readonly metrics: DoorMetrics;
  /** The metrics-only listener: on metrics.listen, or on the admin API's default address when both are null; else null. */
  readonly metricsServer: MetricsServer | null;
  /** Its bound port (0 when off). */
  readonly metricsPort: number;
  /** The nftables set writer (firewall.nft); null when off. */
  readonly firewall: NftSetWriter | null;
  /** Closes live connections by id, address or network, optionally banning first (as the operator "internal"). */
  kick(target: string, opts?: { banMs?: number; reason?: string; service?: string }): Promise<{ kicked: readonly ConnectionView[]; ban: Ban | null }>;
  /** Stop accepting, close clients, remove sockets, log final statistics. */
  stop(): Promise<void>;
}

/** What tests may replace. */
export interface DaemonDeps {
  readonly clock?: Clock;
  readonly countries?: CountryOf;
  /** Where /metrics listens when admin.listen and metrics.listen are both null (default the admin API's default address). */
  readonly metricsFallback?: string;
}

export async function startDaemon(config: Config, log: Logger, deps: DaemonDeps = {}): Promise<Daemon> {
  const closing = new CloseStack(log);
  try {
    return await build(config, log, deps, closing);
  } catch (err) {
    await closing.closeAll();
    throw err;
  }
}

/** The wiring, in the order things open; each is closed through `closing`, in reverse, by stop() or a failed start. */
async function build(config: Config, log: Logger, deps: DaemonDeps, closing: CloseStack): Promise<Daemon> {
  const clock = deps.clock ?? systemClock;
  const startedAt = clock.now();
  // The configuration in force: a reload replaces it (see reload() below).
  let current = config;
  const core = await openCore(config, log, deps, clock, closing, (service) => current.services[service]?.on_store_failure ?? 'open');
  const { gate, fleet } = core;
  const events = new DoorEventBus();
  const registry = new ConnectionRegistry(fleet === null ? '' : `${fleet.node}-`);
  const { control, audit, bus } = await openControl(config, log, clock, closing, gate, registry, events, fleet);
  // After the state is restored, so the first resync writes the bans in force; before any listener, so a missing set stops the start.
  const firewall = await openFirewall(config, log, clock, closing, gate);
  // Every front-end's refusals, per address, for `doorman why`: kept whether or not the admin API runs, since other nodes may ask.
  const refusals = new RefusalLog(clock);
  events.on('refusal', refusals.onRefusal);
  closing.push('refusal record', () => events.off('refusal', refusals.onRefusal));
  const why = new WhyDesk({ node: control.node, gate, refusals, clock, fleet: bus });

  // Metrics exist whenever the daemon runs (issue 17): made here, then served
  // by the admin API, the metrics-only listener, or both.
  const loads: ListenerLoad[] = [];
  const metrics = new DoorMetrics(events, {
    registry,
    entries: () => gate.stats().entries,
    bans: () => control.banCounts(),
    store: () => gate.stats().store,
    // Besides the configured services, a label may hold the protocols Dovecot and Postfix name.
    services: [...new Set([...config.rules.services.keys(), ...PROTOCOLS])],
    proxied: proxiedServices(config).map(([name]) => name),
    listeners: () => loads,
    spoeAdmitted: () => fronts.spoe?.admitted ?? null,
    ...(firewall === null ? {} : { firewall: () => firewall.status() }),
  });
  metrics.attach();
  closing.push('metrics', () => metrics.detach());
  // CrowdSec (issue 20): its bans are in force before the first client is let in, and its signals log hears every front-end.
  const crowdsec = await openCrowdsec({ config, gate, events, audit, clock, log, closing, register: metrics.register, fleet: fleet === null || bus === null ? null : { client: fleet.client, bus, node: nodeName(config) } });
  const fronts = await openFrontEnds(config, log, closing, gate, registry, events, metrics, loads);

  /** Re-reads the file the daemon started from (./doorman.yaml if it started on the embedded defaults) and reloads it. */
  const reloadFile = async (by: string): Promise<string[]> => daemon.reload(loadConfig(config.source === EMBEDDED_DEFAULTS ? undefined : config.source), by);
  // Last: the admin API's status shows the other listeners' bound ports; it closes first, so no change arrives while the rest shuts down.
  let admin: AdminServer | null = null;
  let adminPort = 0;
  if (config.admin.listen !== null) {
    admin = await AdminServer.create({
      config: config.admin, control, why, gate, registry, events, clock, log, metrics,
      services: serviceInfo(config, fronts.proxies),
      frontEnds: () => frontEndInfo(fronts),
      firewall: () => firewall?.status() ?? null,
      crowdsec: () => crowdsec.bouncer?.status() ?? null,
      startedAt,
      reload: (by) => reloadFile(by),
    });
    // One that failed to bind has closed itself.
    adminPort = await admin.listen();
    const opened = admin;
    closing.push('admin API', () => opened.close());
  }
  const { metricsServer, metricsPort } = await openMetricsListener(config, log, deps, closing, metrics);

  const daemon: Daemon = {
    gate,
    ...fronts,
    firewall,
    registry,
    events,
    control,
    why,
    admin,
    adminPort,
    crowdsec,
    metrics,
    metricsServer,
    metricsPort,
    async reload(next, by) {
      const restart = restartOnlyChanges(current, next);
      if (restart.length > 0) throw new ReloadError(next.source, restart);
      const changed = reloadableChanges(current, next);
      if (core.geo === null && deps.countries === undefined && usesCountries(next.rules)) {
        const geo = await openCountryLookup(config.geo.database ?? undefined);
        core.geo = geo;
        closing.push('country database', () => geo.close());
        gate.setCountrySource(geo);
        log.info({ source: geo.source }, 'country database open (a reloaded rule uses countries)');
      }
      await control.reconfigure(next);
      current = next;
      // The set writer reads the exceptions in force; one added may cover a ban already written.
      if (changed.includes('exceptions')) firewall?.resync();
      log.level = next.log.level;
      await audit.append({ action: 'config.reload', target: next.source, by, reason: null, details: { changed } }, clock.now());
      log.info({ config: next.source, changed, by }, 'configuration reloaded');
      return changed;
    },
    async kick(target, opts = {}) {
      const r = await control.kick(target, opts, { address: 'internal' });
      log.info({ target, kicked: r.hits.length, ban: r.result.ban?.target ?? null, reason: opts.reason ?? null }, 'kick');
      return { kicked: r.hits, ban: r.result.ban };
    },
    stop: () => closing.closeAll(),
    reloadFile,
  };
  return daemon;
}

/**
 * The nftables sets (issue 20) when firewall.nft names them: checked (a set
 * missing or made wrong stops the start, naming its key), filled with every
 * ban in force, then following gate.bans. Closed with the rest; the elements
 * stay until their timeouts run out.
 */
async function openFirewall(config: Config, log: Logger, clock: Clock, closing: CloseStack, gate: Gatekeeper): Promise<NftSetWriter | null> {
  const f = config.firewall.nft;
  if (f === null) return null;
  const names = { table: f.table, v4: f.set_v4, v6: f.set_v6 };
  // As root with run_as.user, nft runs in a helper started now, which keeps root when the daemon gives it up.
  const nft = await openNft({ names, command: f.command, timeoutMs: f.timeout, source: config.source, runAsUser: config.run_as.user, uid: process.getuid?.(), log });
  closing.push('nft helper', () => nft.close());
  const writer = await NftSetWriter.open(
    { names, command: f.command, batchDelayMs: f.batch_delay, timeoutMs: f.timeout, source: config.source },
    { bans: gate.bans, exceptions: () => gate.rules.exceptions.networks, clock, log, run: nft.run },
  );
  closing.push('nftables sets', () => writer.close());
  const s = writer.status();
  log.info({ table: f.table, set_v4: f.set_v4, set_v6: f.set_v6, elements: s.elements, state: s.state, nft: nft.via, helper_pid: nft.helperPid }, `firewall: bans are written to the nftables sets of ${f.table}`);
  return writer;
}

/** Services with a guard proxy in front. */
function proxiedServices(config: Config): Array<[string, Config['services'][string]]> {
  return Object.entries(config.services).filter(([, s]) => s.proxy !== null);
}

/**
 * The store, the country database (only when a rule or a proxy needs it:
 * opening validates it, ~65 ms) and the gatekeeper over them.
 */
async function openCore(config: Config, log: Logger, deps: DaemonDeps, clock: Clock, closing: CloseStack, policyOf: (service: string) => 'open' | 'closed') {
  const e = config.engine;
  const rate = rateAlgorithm(e.rate_algorithm, e.rate_time_unit);
  const { store, fleet } = await openStore(config, rate, clock, log, policyOf);
  // Until the gatekeeper owns it (its stop() closes it), the store is closed on its own.
  let storeOwned = false;
  closing.push('store', () => (storeOwned ? undefined : store.close()));
  let geo: CountryLookup | null = null;
  if (deps.countries === undefined && (usesCountries(config.rules) || proxiedServices(config).length > 0)) {
    const opened = await openCountryLookup(config.geo.database ?? undefined, {
      onEvent: (ev) =>
        ev.type === 'reloaded'
          ? log.info({ path: ev.path, type: ev.databaseType, built: ev.buildEpoch.toISOString() }, 'country database reloaded')
          : log.error({ path: ev.path, err: ev.error.message }, 'country database not reloaded; the previous one stays in service'),
    });
    closing.push('country database', () => opened.close());
    log.info({ source: opened.source }, 'country database open');
    geo = opened;
  }
  const ranges = new PostfixRanges({ ipv4: config.anvil.client_ipv4_prefix_length, ipv6: config.anvil.client_ipv6_prefix_length });
  ranges.onChange = (c) => logRangeChange(log, c);
  const gate = Gatekeeper.open({ store, rules: config.rules, countries: deps.countries ?? geo ?? NO_COUNTRIES, clock, log, rateUnitMs: rate.unitMs, statusUpdateMs: e.status_update_time, ranges });
  storeOwned = true;
  closing.push('gatekeeper', () => gate.stop());
  return { gate, fleet, geo };
}

/**
 * The operator's controls over the state file and the audit log (in fleet
 * mode, the fleet's state and audit, and the bus), with the state restored.
 */
async function openControl(config: Config, log: Logger, clock: Clock, closing: CloseStack, gate: Gatekeeper, registry: ConnectionRegistry, events: DoorEventBus, fleet: OpenedStore['fleet']) {
  const file = await openStatePath(config.source, 'state.file', config.state.file, (p) => StateStore.open(p));
  const local = await openStatePath(config.source, 'state.audit_log', config.state.audit_log, (p) => AuditLog.open(p));
  closing.push('audit log', () => local.close());
  const node = nodeName(config);
  const shared = fleet === null ? null : await openFleet({ config, client: fleet.client, node, file, audit: local, log, closing });
  const state = shared?.state ?? file;
  const audit = shared?.audit ?? local;
  const control = Control.restore({ config, gate, registry, state, audit, clock, log, events, node, fleet: shared?.bus ?? null });
  gate.onAutoBan = (ban) => void control.keepAutoBan(ban);
  await shared?.start((s) => control.applyState(s));
  if (state.current.bans.length > 0 || Object.keys(state.current.countries).length > 0) {
    log.info({ file: state.path, bans: gate.bans.list(clock.now()).length, country_rules: Object.keys(state.current.countries).length }, 'run-time state restored');
  }
  return { control, audit, bus: shared?.bus ?? null };
}

/** Every front-end the configuration asks for, bound; each one's load is added to `loads` for the metrics. */
async function openFrontEnds(config: Config, log: Logger, closing: CloseStack, gate: Gatekeeper, registry: ConnectionRegistry, events: DoorEventBus, metrics: DoorMetrics, loads: ListenerLoad[]) {
  const host = hostname();
  const proxies: GuardListener[] = [];
  for (const [service, s] of proxiedServices(config)) {
    const p = s.proxy;
    if (p === null) continue;
    for (const listen of p.listen) {
      const g = new GuardListener(gate, registry, events, log, {
        service,
        protocol: config.rules.service(service).protocol,
        listen,
        backend: p.backend,
        proxyProtocol: p.proxy_protocol,
        trusted: NetworkSet.parse(p.accept_proxy_from),
        hostname: p.hostname ?? host,
        texts: serviceTexts(s),
        maxConnections: p.max_connections,
        connectTimeoutMs: p.connect_timeout,
        idleTimeoutMs: p.idle_timeout,
        headerTimeoutMs: p.header_timeout,
        timer: metrics.decisionTimer('proxy'),
      });
      proxies.push(g);
      closing.push(`proxy ${service} ${listen}`, () => g.close());
      await g.listen();
      loads.push(streamLoad(`services.${service}.proxy`, g.listener));
    }
  }
  let anvil: AnvilServer | null = null;
  if (config.anvil.enabled) {
    const a = config.anvil;
    const server = new AnvilServer(gate, log, {
      socket: a.socket,
      mode: parseInt(a.socket_mode, 8),
      uid: a.owner === null ? null : resolveUid(a.owner),
      gid: a.group === null ? null : resolveGid(a.group),
      maxClients: a.max_clients,
      requestTimeoutMs: a.request_timeout,
      idleTimeoutMs: a.idle_timeout,
      maxBadRequests: a.max_bad_requests,
      timer: metrics.decisionTimer('anvil'),
    });
    anvil = server;
    closing.push('anvil service', () => server.close());
    await server.listen();
    loads.push(streamLoad('anvil', server.listener));
  }
  let policy: PolicyServer | null = null;
  const p = config.postfix_policy;
  if (p.listen.length > 0) {
    const server = new PolicyServer(gate, log, {
      listen: p.listen,
      service: p.service,
      defaultAction: p.default_action,
      decisionTimeoutMs: p.decision_timeout,
      mode: parseInt(p.socket_mode, 8),
      uid: p.owner === null ? null : resolveUid(p.owner),
      gid: p.group === null ? null : resolveGid(p.group),
      maxClients: p.max_clients,
      requestTimeoutMs: p.request_timeout,
      idleTimeoutMs: p.idle_timeout,
      timer: metrics.decisionTimer('policy'),
    }, events);
    policy = server;
    closing.push('policy service', () => server.close());
    await server.listen();
    for (const l of server.listeners) loads.push(streamLoad('postfix_policy', l));
  }
  const dc = config.dovecot_policy;
  const dovecot = dc.listen === null ? null : new DovecotPolicyServer(gate, log, dc, events, metrics.decisionTimer('dovecot'));
  const dovecotPort = dovecot === null ? 0 : await openHttpFront(closing, loads, 'dovecot_policy', dc.listen as string, dc.max_clients, dovecot);
  const nc = config.nginx_auth;
  const nginx = nc.listen === null ? null : new NginxAuthServer(gate, log, nc, events, metrics.decisionTimer('nginx'));
  const nginxPort = nginx === null ? 0 : await openHttpFront(closing, loads, 'nginx_auth', nc.listen as string, nc.max_clients, nginx);
  const spoe = await openSpoeAgent(config, log, closing, gate, events, metrics, loads);
  return { proxies, anvil, policy, dovecot, dovecotPort, nginx, nginxPort, spoe };
}

/** What the HTTP front-ends (Dovecot's policy endpoint, nginx's auth_http) have in common. */
interface HttpFront {
  listen(): Promise<number>;
  close(): Promise<void>;
  clients(): Promise<number>;
  readonly full: number;
}

/** Binds an HTTP front-end of config section `listener`, closed with the rest; its load goes to the metrics. Resolves with the port bound. */
async function openHttpFront(closing: CloseStack, loads: ListenerLoad[], listener: string, listen: string, max: number, server: HttpFront): Promise<number> {
  closing.push(listener, () => server.close());
  const port = await server.listen();
  loads.push({ listener, address: describeEndpoint({ host: parseEndpoint(listen).host, port }), max, clients: () => server.clients(), full: () => server.full });
  return port;
}

/** HAProxy's SPOE agent (issue 19), when haproxy_spoe.listen names an address. */
async function openSpoeAgent(config: Config, log: Logger, closing: CloseStack, gate: Gatekeeper, events: DoorEventBus, metrics: DoorMetrics, loads: ListenerLoad[]): Promise<SpoeAgentServer | null> {
  const h = config.haproxy_spoe;
  if (h.listen.length === 0) return null;
  const server = new SpoeAgentServer(gate, log, {
    listen: h.listen,
    message: h.message,
    hostname: h.hostname ?? hostname(),
    // A service's own refusal words (services.NAME.texts, its guard proxy's over them): HAProxy's clients of that service get them too.
    texts: new Map(Object.entries(config.services).flatMap(([name, s]) => {
      const t = serviceTexts(s);
      return Object.values(t).some((v) => v !== null) ? [[name, t] as const] : [];
    })),
    maxClients: h.max_clients,
    requestTimeoutMs: h.request_timeout,
    idleTimeoutMs: h.idle_timeout,
    decisionTimeoutMs: h.decision_timeout,
    maxFrameSize: h.max_frame_size,
    maxInFlight: h.max_in_flight,
    timer: metrics.decisionTimer('spoe'),
  }, events);
  closing.push('haproxy_spoe agent', () => server.close());
  await server.listen();
  for (const l of server.listeners) loads.push(streamLoad('haproxy_spoe', l));
  return server;
}

/**
 * The metrics-only listener: on metrics.listen, or, when the admin API is off
 * too, where the admin API would be, since nothing else would serve /metrics.
 */
async function openMetricsListener(config: Config, log: Logger, deps: DaemonDeps, closing: CloseStack, metrics: DoorMetrics): Promise<{ metricsServer: MetricsServer | null; metricsPort: number }> {
  const m = config.metrics.listen;
  let server: MetricsServer;
  if (m !== null) server = new MetricsServer(metrics, log, { listen: m });
  else if (config.admin.listen === null) {
    const listen = deps.metricsFallback ?? ADMIN_DEFAULT_LISTEN;
    log.info({ address: listen }, `admin.listen is null: /metrics served alone on ${listen}, the admin API's default address (metrics.listen moves it)`);
    server = new MetricsServer(metrics, log, { listen, why: "admin.listen and metrics.listen are null, so /metrics listens at the admin API's default address; set metrics.listen" });
  } else return { metricsServer: null, metricsPort: 0 };
  closing.push('metrics listener', () => server.close());
  return { metricsServer: server, metricsPort: await server.listen() };
}

/** A stream listener's load for the metrics: read at scrape, the same object every time (the counter takes differences). */
function streamLoad(listener: string, l: StreamListener<Session>): ListenerLoad {
  return { listener, address: l.address, max: l.maxClients, clients: () => l.size, full: () => l.full };
}

/** Every configured service for the admin API's status: its protocol, its proxy's bound addresses, the front-ends that ask about it. */
function serviceInfo(config: Config, proxies: readonly GuardListener[]): ServiceInfo[] {
  return [...config.rules.services.values()].map((s) => ({
    name: s.name,
    protocol: s.protocol,
    listen: proxies.filter((g) => g.opts.service === s.name).map((g) => describeEndpoint({ host: parseEndpoint(g.opts.listen).host, port: g.port })),
    fronts: frontsOf(config, s.name, s.protocol),
  }));
}

/** Which of the configured front-ends ask about clients of a service. */
function frontsOf(config: Config, name: string, protocol: Protocol): string[] {
  const family = protocol.startsWith('pop3') ? 'pop3' : protocol.startsWith('imap') ? 'imap' : 'smtp';
  const out: string[] = [];
  if (config.services[name]?.proxy != null) out.push('guard proxy');
  if (family === 'smtp' && config.anvil.enabled) out.push('anvil');
  if (config.postfix_policy.listen.length > 0 && config.postfix_policy.service === name) out.push('postfix policy');
  if (family !== 'smtp' && config.dovecot_policy.listen !== null) out.push('dovecot');
  if (config.nginx_auth.listen !== null && name === family && config.nginx_auth.backends[family] !== null) out.push('nginx');
  // HAProxy's frontends are named like the services they guard (the message sends fe_name).
  if (config.haproxy_spoe.listen.length > 0) out.push('haproxy');
  return out;
}

/** Front-ends that are no service's listener, for /api/status (issue 19: HAProxy's SPOE agent). */
function frontEndInfo(fronts: { readonly spoe: SpoeAgentServer | null }): Record<string, object> {
  const s = fronts.spoe;
  if (s === null) return {};
  const listen = s.listeners.map((l) => l.address);
  const t = s.stats;
  return {
    haproxy_spoe: {
      listen,
      haproxy_connections: s.connections,
      notifies: t.notifies,
      reads: t.reads,
      decisions: t.decisions,
      refusals: t.refusals,
      failed_open: t.failedOpen,
      protocol_errors: t.protocolErrors,
      health_checks: t.healthChecks,
      admitted: Object.fromEntries(s.admitted),
    },
  };
}

/**
 * Says once per service and family how smtpd names its clients, and again if
 * that changes (main.cf's prefix length edited, then `postfix reload`).
 */
function logRangeChange(log: Logger, c: RangeChange): void {
  const full = fullBits(c.family);
  const naming = c.bits < full ? `IPv${c.family} clients as /${c.bits} networks (Postfix 3.8+, smtpd_client_ipv${c.family}_prefix_length)` : `IPv${c.family} clients by their whole address`;
  const fields = { service: c.service, family: c.family, prefix_length: c.bits, assumed: c.previous };
  const follow = 'the policy service and checks look counts up as smtpd writes them';
  if (!c.first) log.warn(fields, `anvil: smtpd now sends ${naming}, no longer /${c.previous}; ${follow}`);
  else if (c.bits !== c.previous) log.info(fields, `anvil: smtpd sends ${naming}, not /${c.previous} as anvil.client_ipv${c.family}_prefix_length assumed; ${follow}`);
  else if (c.bits < full) log.info(fields, `anvil: smtpd sends ${naming}; ${follow}`);
}

/** True when some service has a country rule or counts countries per login. */
function usesCountries(rules: Rules): boolean {
  for (const s of rules.services.values()) {
    if (s.countries.connect !== null || s.countries.auth !== null || s.maxCountriesPerLogin !== null) return true;
  }
  return false;
}
