/**
 * nginx mail's auth_http server (ngx_mail_auth_http_module): nginx asks at
 * every login attempt — IMAP LOGIN/AUTHENTICATE, POP3 PASS, SMTP AUTH — with
 * one HTTP/1.0 GET whose headers say who logs in from where, and proxies the
 * session to the server the answer names, or gives the client the answer's
 * refusal. A thin adapter: the headers are read by ../protocols/nginx-auth.ts,
 * the answer written by ../protocols/nginx-auth-answer.ts, the gatekeeper
 * decides.
 *
 * What is judged, for the Doorman service named like the protocol (imap,
 * pop3, smtp): at each attempt the connect-phase rules that count nothing —
 * bans, the connect country rule — then the AUTH attempt counted and judged
 * (AUTH rate, the AUTH country rule, AUTH-failure bans). nginx asks nothing
 * at connect and never says how a login ended, so concurrency, the
 * connection rate and the failures themselves are not seen here (README,
 * "nginx mail").
 *
 * Plain node:http, not fastify: nginx reads at most 1,024 bytes of answer,
 * and every header the server adds counts against them.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { then } from '../core/awaitable.js';
import type { Awaitable } from '../core/awaitable.js';
import type { Decision } from '../core/decision.js';
import type { DoorEventBus } from '../core/events.js';
import type { Gatekeeper } from '../core/gate.js';
import { parseHostPort } from '../config/endpoint.js';
import type { NginxAuthConfig } from '../config/schema.js';
import { DoormanError, ListenError } from '../errors.js';
import { decodeNginxAuthRequest, headerPairs, MAX_REQUEST_BYTES, type NginxAuthRequest, type NginxMailProtocol } from '../protocols/nginx-auth.js';
import { encodeNginxAuthAnswer, nginxRefusal, type NginxAuthAnswer } from '../protocols/nginx-auth-answer.js';
import { decisionRecorder, type DecisionRecorder } from '../observability/decisions.js';
import { NO_TIMER, timed, type DecisionTimer } from '../observability/latency.js';

/** The header nginx sends the shared secret in: `auth_http_header X-Doorman-Key SECRET;`. */
export const NGINX_KEY_HEADER = 'x-doorman-key';
/** Said to a client whose login Doorman cannot judge (a request it cannot read, a backend not configured): nginx shows it and closes. */
const CANNOT_JUDGE = 'Temporary authentication failure, try again later';
/** Warnings about nginx's requests, at most this often: a misconfigured nginx asks at every login. */
const WARN_EVERY_MS = 60_000;

export type NginxGate = Pick<Gatekeeper, 'checkConnect' | 'authAttempt'>;

export class NginxAuthServer {
  private readonly server: Server;
  private readonly key: Buffer;
  private readonly record: DecisionRecorder;
  private readonly backends: { readonly [P in NginxMailProtocol]: { server: string; port: number } | null };
  private lastWarning = 0;
  /** Connections refused since start because max_clients were connected. */
  full = 0;
  private port = 0;

  constructor(
    private readonly gate: NginxGate,
    private readonly log: Logger,
    private readonly cfg: NginxAuthConfig,
    events: DoorEventBus | null = null,
    private readonly timer: DecisionTimer = NO_TIMER,
  ) {
    this.key = Buffer.from(cfg.api_key ?? '', 'utf8');
    this.record = decisionRecorder(log, events, { by: 'nginx', refused: 'refused', dryRun: 'dry-run: would refuse' });
    const backend = (text: string | null) => (text === null ? null : (({ host, port }) => ({ server: host, port }))(parseHostPort(text)));
    this.backends = { imap: backend(cfg.backends.imap), pop3: backend(cfg.backends.pop3), smtp: backend(cfg.backends.smtp) };
    const t = cfg.request_timeout;
    // request_timeout bounds a request from its first byte; nginx sends one request per connection.
    this.server = createServer({ maxHeaderSize: MAX_REQUEST_BYTES, requestTimeout: t, headersTimeout: t, keepAliveTimeout: t }, (req, res) => this.handle(req, res));
    this.server.maxConnections = cfg.max_clients;
    this.server.on('drop', () => void this.full++);
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  async listen(): Promise<number> {
    const listen = this.cfg.listen as string;
    const { host, port } = parseHostPort(listen);
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', (err) => reject(new ListenError('DOORMAN_ERR_LISTEN', `nginx_auth on ${listen}: ${err.message}`, { cause: err })));
      this.server.listen({ host, port }, () => resolve());
    });
    const addr = this.server.address();
    this.port = addr !== null && typeof addr === 'object' ? addr.port : 0;
    this.log.info({ address: host, port: this.port, path: this.cfg.path }, 'nginx_auth service listening');
    return this.port;
  }

  /** Connections open now (the metrics read it at scrape). */
  clients(): Promise<number> {
    return new Promise((resolve) => this.server.getConnections((err, n) => resolve(err ? 0 : n)));
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const started = this.timer.start();
    const [path] = (req.url ?? '').split('?', 1);
    if (path !== this.cfg.path || req.method !== 'GET') return this.send(res, 404, null);
    if (!this.authorized(req.headers[NGINX_KEY_HEADER])) {
      this.warn({ peer: req.socket.remoteAddress }, `nginx_auth: a request without the right ${NGINX_KEY_HEADER} header was refused`);
      return this.send(res, 403, { status: 'refuse', text: CANNOT_JUDGE, waitSec: 0, smtpCode: null });
    }
    let r: NginxAuthRequest;
    try {
      r = decodeNginxAuthRequest({ method: req.method, path: req.url ?? '', headers: headerPairs(req.rawHeaders) });
    } catch (err) {
      if (!(err instanceof DoormanError)) throw err;
      this.warn({ err: err.message, code: err.code }, 'nginx_auth: a request Doorman cannot read was answered with a temporary failure');
      return this.send(res, 400, { status: 'refuse', text: CANNOT_JUDGE, waitSec: 0, smtpCode: null });
    }
    const answered = timed(this.timer, started, this.decide(r));
    if (answered instanceof Promise) {
      answered.then(
        (a) => this.send(res, 200, a),
        (err: unknown) => {
          this.log.error({ err, client: r.clientIp }, 'nginx_auth: decision failed; the client was told to try later');
          this.send(res, 500, { status: 'refuse', text: CANNOT_JUDGE, waitSec: 0, smtpCode: null });
        },
      );
    } else this.send(res, 200, answered);
  }

  /** Connect-phase rules that count nothing, then the AUTH attempt: the first refusal answers. */
  private decide(r: NginxAuthRequest): Awaitable<NginxAuthAnswer> {
    const service = r.protocol;
    const fields = { service, address: r.clientIp, login: r.user, attempt: r.loginAttempt };
    const next = (atConnect: Decision): Awaitable<NginxAuthAnswer> => {
      if (atConnect.refusal !== null) return this.answer(r, atConnect, fields);
      if (atConnect.dryRun.length > 0) this.record(atConnect, service, r.clientIp, fields);
      return then(this.gate.authAttempt(service, r.clientIp, r.user), (atAuth: Decision) => this.answer(r, atAuth, fields));
    };
    const atConnect = this.gate.checkConnect(service, r.clientIp);
    return atConnect instanceof Promise ? atConnect.then(next) : next(atConnect);
  }

  private answer(r: NginxAuthRequest, d: Decision, fields: Record<string, unknown>): NginxAuthAnswer {
    if (d.refusal !== null || d.dryRun.length > 0) this.record(d, r.protocol, r.clientIp, fields);
    if (d.refusal !== null) return nginxRefusal(r.protocol, d.refusal, d.refusal.temporary ? Math.round(this.cfg.refusal_wait / 1000) : 0);
    const to = this.backends[r.protocol];
    if (to === null) {
      this.warn({ protocol: r.protocol }, `nginx_auth: no nginx_auth.backends.${r.protocol}: ${r.protocol} logins are refused`);
      return { status: 'refuse', text: CANNOT_JUDGE, waitSec: 0, smtpCode: null };
    }
    return { status: 'ok', server: to.server, port: to.port };
  }

  private authorized(given: string | string[] | undefined): boolean {
    if (typeof given !== 'string') return false;
    const b = Buffer.from(given, 'utf8');
    return b.length === this.key.length && timingSafeEqual(b, this.key);
  }

  private send(res: ServerResponse, status: number, a: NginxAuthAnswer | null): void {
    if (res.writableEnded || res.destroyed) return;
    const headers = a === null ? [] : encodeNginxAuthAnswer(a);
    res.sendDate = false;
    res.writeHead(status, [...headers.flat(), 'content-length', '0', 'connection', 'close']);
    res.end();
  }

  private warn(fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.lastWarning < WARN_EVERY_MS) return;
    this.lastWarning = now;
    this.log.warn(fields, msg);
  }
}
