/**
 * Dovecot's auth policy protocol (auth_policy_server_url), as Dovecot 2.3
 * speaks it (seen from Debian 12's 2.3.19):
 *
 *   POST <path>?command=allow    before the password is checked, and again
 *                                after it was accepted (same session_id)
 *   POST <path>?command=report   after the attempt: success, policy_reject
 *   body: {"device_id":"","login":"alice","protocol":"imap","pwhash":"0dcd",
 *          "remote":"203.0.113.7","session_id":"…","tls":false, …}
 *   reply: {"status": N, "msg": "…"}  N < 0 refuses (msg shown to the
 *          client), N > 0 tarpits N seconds, 0 lets the login go on.
 *
 * Dovecot 2.4 speaks the same protocol, with two differences that matter
 * here: every body carries `fail_type` ("" in allow requests; in a report
 * why the attempt failed: credentials, account, internal, expired, disabled,
 * policy), so only guesses count toward AUTH-failure bans (countsAsGuess);
 * and a reply
 * without `status` is an error to it (2.3 took `{}` as 0), so every reply
 * carries one.
 *
 * The two allow requests look the same; the second for a session_id is the
 * after-auth check, so recent sessions are remembered (bounded). A request
 * without the configured API key or basic credentials gets 401. The service
 * whose rules apply is the body's protocol (imap, pop3).
 */
import { timingSafeEqual } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Decision } from '../core/decision.js';
import type { DoorEventBus } from '../core/events.js';
import type { Gatekeeper } from '../core/gate.js';
import { formatIp, parseIp } from '../core/ip.js';
import type { DovecotPolicyConfig } from '../config/schema.js';
import { NO_TIMER, type DecisionTimer } from '../observability/latency.js';
import { decisionRecorder, type DecisionRecorder } from '../observability/decisions.js';
import { parseHostPort } from '../config/endpoint.js';

/** Sessions remembered to tell the second allow from the first. */
const MAX_SESSIONS = 100_000;
const SESSION_TTL_MS = 5 * 60_000;
/** A policy request is a few hundred bytes; 16 KiB leaves room for extra attributes. */
const BODY_LIMIT = 16 * 1024;
/**
 * How often Node checks request deadlines. Its default, 30 s, let a client
 * that sends its headers a byte at a time (never silent long enough for the
 * inactivity timeout) hold a connection up to 30 s past request_timeout.
 */
const DEADLINE_CHECK_MS = 1000;

const bodySchema = {
  type: 'object',
  required: ['remote'],
  properties: {
    login: { type: 'string', maxLength: 512 },
    remote: { type: 'string', maxLength: 64 },
    protocol: { type: 'string', maxLength: 32 },
    pwhash: { type: 'string', maxLength: 128 },
    session_id: { type: 'string', maxLength: 128 },
    device_id: { type: 'string', maxLength: 256 },
    tls: { type: 'boolean' },
    success: { type: 'boolean' },
    policy_reject: { type: 'boolean' },
    // Dovecot 2.4: why an attempt failed ("" when it did not); any string is
    // taken, so a kind a later release adds is not a 400 (see countsAsGuess).
    fail_type: { type: 'string', maxLength: 32 },
  },
} as const;

interface PolicyBody {
  login?: string;
  remote: string;
  protocol?: string;
  pwhash?: string;
  session_id?: string;
  success?: boolean;
  policy_reject?: boolean;
  fail_type?: string;
}

/**
 * Whether a failed login reported by Dovecot counts toward AUTH-failure bans.
 * Dovecot 2.3 says only that it failed (no fail_type): every failure counts,
 * as before. Dovecot 2.4 says why (src/auth/auth-policy.c): a wrong password
 * (`credentials`) or an unknown user (`account`) is a guess at credentials,
 * which Dovecot answers the client alike and a password sprayer produces by
 * the thousand; an internal error, an expired password, a disabled account, a
 * policy refusal (counted where it was refused) or a kind this code does not
 * know is no guess, and must not get an innocent address banned.
 */
export function countsAsGuess(failType: string | undefined): boolean {
  return failType === undefined || failType === 'credentials' || failType === 'account';
}

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
  private readonly sessions = new Map<string, number>();
  private readonly record: DecisionRecorder;
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
    this.timer = timer;
    // request_timeout bounds a request from its first byte (headers included), and silence on
    // an open connection; max_clients caps connections, the excess closed at accept.
    const t = cfg.request_timeout;
    this.app = Fastify({
      loggerInstance: log.child({ http: 'dovecot_policy' }) as FastifyBaseLogger,
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: BODY_LIMIT,
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
    this.app.post<{ Querystring: { command: 'allow' | 'report' }; Body: PolicyBody }>(
      cfg.path,
      { schema: { querystring: { type: 'object', required: ['command'], properties: { command: { enum: ['allow', 'report'] } } }, body: bodySchema } },
      async (req) => {
        const started = this.timer.start();
        try {
          return await (req.query.command === 'allow' ? this.allow(req.body) : this.report(req.body));
        } finally {
          this.timer.stop(started);
        }
      },
    );
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

  /** The first allow of a session is the before-auth check; a later one, the after-auth check. */
  private isSecondAllow(session: string | undefined): boolean {
    if (!session) return false;
    const now = Date.now();
    const seen = this.sessions.get(session);
    if (seen !== undefined && now - seen < SESSION_TTL_MS) return true;
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string);
    this.sessions.set(session, now);
    return false;
  }

  private async allow(b: PolicyBody): Promise<{ status: number; msg?: string }> {
    const service = b.protocol || 'imap';
    const login = b.login ?? '';
    const second = this.isSecondAllow(b.session_id);
    const d = await (second ? this.gate.authSucceeded(service, b.remote, login) : this.gate.authAttempt(service, b.remote));
    return this.answer(d, { service, remote: b.remote, login, check: second ? 'after-auth' : 'before-auth' });
  }

  private async report(b: PolicyBody): Promise<{ status: number }> {
    if (b.session_id) this.sessions.delete(b.session_id);
    if (b.success === false && b.policy_reject !== true && countsAsGuess(b.fail_type)) {
      const service = b.protocol || 'imap';
      const ban = await this.gate.authFailed(service, b.remote, b.login ?? '', b.pwhash ?? '');
      if (ban !== null) this.log.warn({ service, remote: b.remote, until: new Date(ban.until).toISOString(), reason: ban.reason }, 'banned');
    }
    return { status: 0 };
  }

  private answer(d: Decision, ctx: Record<string, string>): { status: number; msg?: string } {
    if (d.refusal === null && d.dryRun.length === 0) return { status: 0 };
    const remote = ctx['remote'] ?? '';
    const ip = parseIp(remote);
    this.record(d, ctx['service'] ?? '', ip === null ? remote : formatIp(ip), ctx);
    return d.refusal === null ? { status: 0 } : { status: -1, msg: d.refusal.reason };
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
