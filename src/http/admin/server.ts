/**
 * The admin API and dashboard server (docs/admin-api.md is the contract):
 * fastify on admin.listen, JSON schemas on every route, one error shape,
 * token or cookie auth (./auth.ts), the event stream (./events-stream.ts),
 * the dashboard's static files (./dashboard.ts) and /metrics (the daemon's
 * DoorMetrics, which exist without it too). It owns the observers that exist
 * only for it — the refusal tracker, the history sampler — and detaches them
 * from the event bus when it closes.
 *
 * The routes only call the operator's controls (src/control/control.ts) and
 * read the registry, the engine and the bans: nothing here decides.
 */
import fastifyCookie from '@fastify/cookie';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AdminConfig } from '../../config/schema.js';
import type { Clock } from '../../core/clock.js';
import type { ConnectionRegistry } from '../../core/connections.js';
import type { DoorEventBus, RefusalEvent } from '../../core/events.js';
import type { Gatekeeper } from '../../core/gate.js';
import type { Control } from '../../control/control.js';
import type { WhyDesk } from '../../control/why.js';
import { ListenError } from '../../errors.js';
import { packageVersion } from '../../version.js';
import { HistorySampler } from '../../observability/history.js';
import type { DoorMetrics } from '../../observability/metrics.js';
import { RefusalTracker } from '../../observability/refusal-tracker.js';
import { callerAddress, installAuth, loadToken } from './auth.js';
import type { AdminContext, ServiceInfo } from './context.js';
import { registerDashboard } from './dashboard.js';
import { installErrorHandlers } from './errors.js';
import * as f from './fields.js';
import { EventStream } from './events-stream.js';
import { connectionRoutes } from './routes-connections.js';
import { readRoutes } from './routes-read.js';
import { ruleRoutes } from './routes-rules.js';
import { whyRoutes } from './routes-why.js';
import { parseHostPort } from '../../config/endpoint.js';

/** The largest body is a country list: 300 codes are under 2 KiB. */
const BODY_LIMIT = 64 * 1024;
/** A request's headers and body must arrive within this (slow clients hold no slot for long). */
const REQUEST_TIMEOUT_MS = 10_000;

export interface AdminServerDeps {
  readonly config: Pick<AdminConfig, 'listen' | 'token' | 'token_file'>;
  readonly control: Control;
  /** GET /api/why: the daemon's refusal record and bans, asked of every node in a fleet. */
  readonly why: WhyDesk;
  readonly gate: Gatekeeper;
  readonly registry: ConnectionRegistry;
  readonly events: DoorEventBus;
  readonly clock: Clock;
  readonly log: Logger;
  /** The daemon's metrics, served on /metrics (behind the token, like every route but /health). */
  readonly metrics: DoorMetrics;
  /** Every configured service, with its proxy's bound addresses. */
  readonly services: readonly ServiceInfo[];
  /** Epoch ms (engine clock) when the daemon started. */
  readonly startedAt: number;
  /** Front-ends that are no service's listener, for /api/status's front_ends (read per request). */
  readonly frontEnds?: () => Readonly<Record<string, object>>;
  /** The nftables set writer's state for /api/status's firewall (null: firewall.nft is off). */
  readonly firewall?: () => object | null;
  /** The CrowdSec bouncer's status, when it runs. */
  readonly crowdsec?: () => Readonly<Record<string, unknown>> | null;
  /** Where the dashboard lives; default the repository's dashboard/ (tests point elsewhere). */
  readonly dashboardDir?: string;
  /** Re-reads the configuration file and swaps in what may change (POST /api/reload); resolves with the keys changed. */
  readonly reload?: (by: string) => Promise<string[]>;
}


export class AdminServer {
  readonly app: FastifyInstance;
  readonly metrics: DoorMetrics;
  readonly refusals: RefusalTracker;
  readonly history: HistorySampler;
  readonly stream: EventStream;
  /** The directory the dashboard is served from, or null when it is not installed. */
  readonly dashboard: string | null;
  /** Whether a token is required (else loopback callers only). */
  readonly tokenRequired: boolean;
  /** The TCP port bound (admin.listen may say 0). */
  port = 0;
  private readonly deps: AdminServerDeps;
  private readonly onRefusal: (e: RefusalEvent) => void;

  private constructor(deps: AdminServerDeps, app: FastifyInstance, parts: { metrics: DoorMetrics; refusals: RefusalTracker; history: HistorySampler; stream: EventStream; dashboard: string | null; tokenRequired: boolean }) {
    this.deps = deps;
    this.app = app;
    this.metrics = parts.metrics;
    this.refusals = parts.refusals;
    this.history = parts.history;
    this.stream = parts.stream;
    this.dashboard = parts.dashboard;
    this.tokenRequired = parts.tokenRequired;
    this.onRefusal = (e) => this.refusals.record(e.address, e.country);
  }

  /** Builds the server (reading the token file, if any); listen() binds it. */
  static async create(deps: AdminServerDeps): Promise<AdminServer> {
    const token = loadToken(deps.config);
    const log = deps.log.child({ http: 'admin' });
    const proxied = deps.services.filter((s) => s.listen.length > 0).map((s) => s.name);
    const metrics = deps.metrics;
    const refusals = new RefusalTracker(deps.clock);
    const history = new HistorySampler(deps.clock, () => deps.registry.countsByService(), proxied);
    const stream = new EventStream(deps.events, log);
    const app = Fastify({
      loggerInstance: log as FastifyBaseLogger,
      // Changes are logged by the routes, with who made them; per-request lines would drown them.
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: BODY_LIMIT,
      requestTimeout: REQUEST_TIMEOUT_MS,
      // Node checks request deadlines every 30 s by default: a slow-header client would keep its socket that long.
      http: { requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000 },
      ajv: {
        // removeAdditional off: an unknown field is a 400 naming it, not silently dropped.
        // verbose: errors carry the failing schema, whose description is the message.
        customOptions: { removeAdditional: false, verbose: true, allErrors: false, coerceTypes: 'array', useDefaults: true, allowUnionTypes: true },
      },
    });
    await app.register(fastifyCookie);
    app.addHook('onRequest', async (_req, reply) => {
      reply.header('x-content-type-options', 'nosniff').header('x-frame-options', 'DENY').header('referrer-policy', 'no-referrer');
    });
    installAuth(app, token);
    installErrorHandlers(app, log);
    const ctx: AdminContext = {
      control: deps.control,
      why: deps.why,
      gate: deps.gate,
      registry: deps.registry,
      clock: deps.clock,
      log,
      services: deps.services,
      ...(deps.frontEnds === undefined ? {} : { frontEnds: deps.frontEnds }),
      ...(deps.firewall === undefined ? {} : { firewall: deps.firewall }),
      ...(deps.crowdsec === undefined ? {} : { crowdsec: deps.crowdsec }),
      version: packageVersion(),
      startedAt: deps.startedAt,
      metrics,
      refusals,
      history,
    };
    readRoutes(app, ctx);
    connectionRoutes(app, ctx);
    ruleRoutes(app, ctx);
    whyRoutes(app, ctx);
    const reload = deps.reload;
    if (reload !== undefined) {
      app.post('/api/reload', { schema: { body: { anyOf: [{ type: 'null' }, f.strict({}, [])] } } }, async (req) => {
        const by = callerAddress(req);
        const changed = await reload(by);
        return { reloaded: true, changed };
      });
    }
    app.get('/api/events', { schema: { querystring: { type: 'object', additionalProperties: false } } }, async (req, reply) => stream.open(req, reply));
    const dashboard = await registerDashboard(app, deps.dashboardDir);
    // Event streams never end by themselves: end them, or close() would wait for ever.
    app.addHook('preClose', async () => stream.closeAll());
    return new AdminServer(deps, app, { metrics, refusals, history, stream, dashboard, tokenRequired: token !== null });
  }

  /** Binds admin.listen; a port in use is a ListenError naming it. Resolves with the port. */
  async listen(): Promise<number> {
    const listen = this.deps.config.listen as string;
    const { host, port } = parseHostPort(listen);
    try {
      await this.app.listen({ host, port });
    } catch (err) {
      await this.app.close();
      throw new ListenError('DOORMAN_ERR_LISTEN', `admin API on ${listen}: ${(err as Error).message}`, { cause: err });
    }
    const addr = this.app.server.address();
    this.port = addr !== null && typeof addr === 'object' ? addr.port : 0;
    this.deps.events.on('refusal', this.onRefusal);
    this.history.start();
    const shown = host.includes(':') ? `[${host}]` : host;
    this.deps.log.info({ address: host, port: this.port, dashboard: this.dashboard !== null, auth: this.tokenRequired ? 'token' : 'none (loopback only)' }, `admin API and dashboard on http://${shown}:${this.port}/`);
    return this.port;
  }

  async close(): Promise<void> {
    this.history.stop();
    this.deps.events.off('refusal', this.onRefusal);
    await this.app.close();
  }
}
