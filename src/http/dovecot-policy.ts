/**
 * Doorman as Dovecot's auth policy server (auth_policy_server_url): the HTTP
 * side. The protocol, what Dovecot 2.3 and 2.4 send and what they read
 * back, is ../protocols/dovecot-policy.ts; which of the two allow checks a
 * request is, ../protocols/dovecot-sessions.ts. Here: credentials (a request
 * without the configured API key or basic credentials gets 401), the caps
 * on clients and bodies, the deadlines; then each request is decoded (400
 * with the codec's code when it is refused), the gatekeeper asked, the
 * decision recorded, and the reply encoded. The service whose rules apply
 * is the body's protocol (imap, pop3; imap when there is none).
 */
import { timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { DoorEventBus } from '../core/events.js';
import type { Gatekeeper } from '../core/gate.js';
import type { DovecotPolicyConfig } from '../config/schema.js';
import { NO_TIMER, type DecisionTimer } from '../observability/latency.js';
import { decisionRecorder, recordAuthFailure, type DecisionRecorder } from '../observability/decisions.js';
import { parseHostPort } from '../config/endpoint.js';
import {
  DOVECOT_FIELDS,
  CONTINUE_REPLY,
  DovecotPolicyError,
  MAX_BODY_BYTES,
  REFUSE_STATUS,
  decodeDovecotRequest,
  encodeDovecotReply,
  reportsFailedGuess,
  type DovecotPolicyRequest,
} from '../protocols/dovecot-policy.js';
import { DovecotSessions } from '../protocols/dovecot-sessions.js';

/**
 * How often Node checks request deadlines. Its default, 30 s, let a client
 * that sends its headers a byte at a time (never silent long enough for the
 * inactivity timeout) hold a connection up to 30 s past request_timeout.
 */
const DEADLINE_CHECK_MS = 1000;
/** The replies are the codec's JSON text, sent as they are. */
/** The login cap the codec cuts at, for the log. */
const LOGIN_CAP = DOVECOT_FIELDS.login.maxChars;
const JSON_TYPE = 'application/json; charset=utf-8';
/** What fastify's query parser is left to return: the codec reads the command from the URL itself, so it is parsed once. */
const NO_QUERY: Readonly<Record<string, never>> = Object.freeze({});

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class DovecotPolicyServer {
  readonly app: FastifyInstance;
  private readonly gate: Gatekeeper;
  private readonly cfg: DovecotPolicyConfig;
  private readonly log: Logger;
  private readonly sessions = new DovecotSessions();
  private readonly record: DecisionRecorder;
  private readonly events: DoorEventBus | null;
  private readonly timer: DecisionTimer;
  /** Connections refused since start because max_clients were connected. */
  full = 0;

  /**
   * `events`: refusals are emitted there (by "dovecot") for the metrics and the admin API's stream.
   * `timer`: times each request from its body to its answer (doorman_decision_seconds{front="dovecot"}).
   */
  constructor(gate: Gatekeeper, log: Logger, cfg: DovecotPolicyConfig, events: DoorEventBus | null = null, timer: DecisionTimer = NO_TIMER) {
    this.gate = gate;
    this.cfg = cfg;
    this.log = log;
    this.record = decisionRecorder(log, events, { by: 'dovecot', refused: 'refused', dryRun: 'dry-run: would refuse' });
    this.events = events;
    this.timer = timer;
    // request_timeout bounds a request from its first byte (headers included), and silence on
    // an open connection; max_clients caps connections, the excess closed at accept.
    const t = cfg.request_timeout;
    this.app = Fastify({
      loggerInstance: log.child({ http: 'dovecot_policy' }) as FastifyBaseLogger,
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: MAX_BODY_BYTES,
      routerOptions: { querystringParser: () => NO_QUERY },
      requestTimeout: t,
      connectionTimeout: t,
      http: { requestTimeout: t, headersTimeout: t, connectionsCheckingInterval: Math.min(DEADLINE_CHECK_MS, t) },
    });
    this.app.server.maxConnections = cfg.max_clients;
    this.app.server.on('drop', () => void this.full++);
    this.app.addHook('onRequest', async (req, reply) => {
      if (!this.authorized(req.headers['authorization'], req.headers['x-api-key'])) {
        // No keep-alive for a caller without credentials: it must not hold one of max_clients idle.
        await reply.code(401).header('www-authenticate', 'Basic realm="doorman"').header('connection', 'close').send({ error: 'credentials required' });
      }
    });
    this.app.post(cfg.path, async (req, reply) => {
      let r: DovecotPolicyRequest;
      try {
        r = decodeDovecotRequest(req.url, req.body);
      } catch (err) {
        // Fastify's error reply ({statusCode, code, error, message}) with the codec's code; no log line, as for every request.
        if (err instanceof DovecotPolicyError) reply.code(400);
        throw err;
      }
      reply.type(JSON_TYPE);
      const started = this.timer.start();
      try {
        return await (r.command === 'allow' ? this.allow(r) : this.report(r));
      } finally {
        this.timer.stop(started);
      }
    });
  }

  private authorized(authorization: string | undefined, apiKey: string | string[] | undefined): boolean {
    const { api_key: key, basic } = this.cfg;
    if (key !== null) {
      if (typeof apiKey === 'string' && same(apiKey, key)) return true;
      if (authorization !== undefined && same(authorization, `Bearer ${key}`)) return true;
    }
    if (basic !== null && authorization?.startsWith('Basic ')) {
      return same(authorization.slice(6), Buffer.from(`${basic.user}:${basic.password}`).toString('base64'));
    }
    return false;
  }

  private async allow(r: DovecotPolicyRequest): Promise<string> {
    const service = r.protocol || 'imap';
    const login = r.login ?? '';
    const check = this.sessions.check(r.sessionId, Date.now());
    const client = r.client ?? r.remote;
    if (r.loginCut) {
      this.log.info({ service, remote: r.remote, check, login_chars: LOGIN_CAP }, 'refused: a login longer than any name');
      return encodeDovecotReply({ status: REFUSE_STATUS, msg: 'login too long' });
    }
    const d = await (check === 'after-auth' ? this.gate.authSucceeded(service, client, login) : this.gate.authAttempt(service, client, login));
    if (d.refusal === null && d.dryRun.length === 0) return CONTINUE_REPLY;
    this.record(d, service, r.client?.text ?? r.remote, { service, remote: r.remote, login, check });
    return d.refusal === null ? CONTINUE_REPLY : encodeDovecotReply({ status: REFUSE_STATUS, msg: d.refusal.reason });
  }

  private async report(r: DovecotPolicyRequest): Promise<string> {
    this.sessions.end(r.sessionId);
    if (reportsFailedGuess(r)) {
      const service = r.protocol || 'imap';
      recordAuthFailure(this.events, service, r.client?.text ?? r.remote, 'dovecot');
      const ban = await this.gate.authFailed(service, r.client ?? r.remote, r.login ?? '', r.pwhash ?? '');
      if (ban !== null) this.log.warn({ service, remote: r.remote, until: new Date(ban.until).toISOString(), reason: ban.reason }, 'banned');
    }
    return CONTINUE_REPLY;
  }

  /** Clients connected now (the metrics read it at scrape). */
  clients(): Promise<number> {
    return new Promise((resolve) => this.app.server.getConnections((err, n) => resolve(err ? 0 : n)));
  }

  async listen(): Promise<number> {
    const listen = this.cfg.listen as string;
    const { host, port: wanted } = parseHostPort(listen);
    await this.app.listen({ host, port: wanted });
    const addr = this.app.server.address();
    const port = addr !== null && typeof addr === 'object' ? addr.port : 0;
    this.log.info({ address: host, port, path: this.cfg.path }, 'dovecot_policy service listening');
    return port;
  }

  close(): Promise<void> {
    return this.app.close();
  }
}
