/**
 * The SMTP access policy service for Postfix (check_policy_service), on TCP
 * and/or UNIX sockets. Each request is answered from the gatekeeper:
 *
 *   CONNECT, XCLIENT  bans, country at connect, concurrency per address and
 *                     per prefix and connection rate (counts kept by the
 *                     anvil service), → 421 4.7.0 / 554 5.7.1
 *   RCPT              recipient rate; with sasl_username, the AUTH-phase
 *                     country rule → 450 4.7.1 / 554 5.7.1
 *   END-OF-MESSAGE    message rate → 450 4.7.1
 *   anything else     DUNNO
 *
 * The service is named by policy_context (check_policy_service { …,
 * policy_context=submission }) when it names a configured service, else the
 * listener's default. A decision that takes longer than the deadline (a slow
 * store) is answered with the configured default action rather than letting
 * smtpd time out; a request that breaks the protocol drops that client.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Decision } from '../core/decision.js';
import type { DoorEventBus } from '../core/events.js';
import type { Gatekeeper } from '../core/gate.js';
import { formatIp, parseIp } from '../core/ip.js';
import { NO_TIMER, timed, type DecisionTimer } from '../observability/latency.js';
import { POLICY_LIMITS, decodePolicyRequest, encodePolicyAction, type PolicyRequest } from '../protocols/policy.js';
import { postfixAction, type SmtpPhase } from '../protocols/smtp-replies.js';
import type { Awaitable } from '../core/awaitable.js';
import { AttrSession, type SessionHost } from './attr-session.js';
import { StreamListener, parseEndpoint } from './stream-listener.js';
import { decisionRecorder, type DecisionRecorder } from '../observability/decisions.js';

export interface PolicyServerOptions {
  readonly listen: readonly string[];
  readonly service: string;
  readonly defaultAction: 'DUNNO' | 'DEFER_IF_PERMIT';
  readonly decisionTimeoutMs: number;
  readonly mode: number;
  /** Owner and group of UNIX socket listeners; null: the process's. */
  readonly uid?: number | null;
  readonly gid?: number | null;
  readonly maxClients: number;
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Times each request from its last byte to its answer (doorman_decision_seconds{front="policy"}). */
  readonly timer?: DecisionTimer;
}

let sessionSeq = 0;

class PolicySession extends AttrSession {
  private readonly server: PolicyServer;

  constructor(server: PolicyServer, socket: Socket) {
    super(server, socket, `policy#${++sessionSeq}`, POLICY_LIMITS);
    this.server = server;
  }

  protected onBlock(attrs: string[]): void {
    const timer = this.server.timer;
    const started = timer.start();
    this.send(timed(timer, started, this.server.answer(decodePolicyRequest(attrs), this.id)));
  }
}

export class PolicyServer implements SessionHost {
  readonly name = 'postfix_policy';
  readonly log: Logger;
  readonly timer: DecisionTimer;
  /** One per listen address, in `listen` order: their clients and caps are read by the metrics. */
  readonly listeners: readonly StreamListener<PolicySession>[];
  private readonly gate: Gatekeeper;
  private readonly opts: PolicyServerOptions;
  private readonly record: DecisionRecorder;

  /** `events`: refusals are emitted there (by "policy") for the metrics and the admin API's stream. */
  constructor(gate: Gatekeeper, log: Logger, opts: PolicyServerOptions, events: DoorEventBus | null = null) {
    this.gate = gate;
    this.log = log;
    this.opts = opts;
    this.record = decisionRecorder(log, events, { by: 'policy', refused: 'refused', dryRun: 'dry-run: would refuse' });
    this.timer = opts.timer ?? NO_TIMER;
    this.listeners = opts.listen.map(
      (text) =>
        new StreamListener<PolicySession>(
          { name: 'postfix_policy', endpoint: parseEndpoint(text), maxClients: opts.maxClients, idleTimeoutMs: opts.idleTimeoutMs, mode: opts.mode, uid: opts.uid ?? null, gid: opts.gid ?? null },
          log,
          (socket) => new PolicySession(this, socket),
        ),
    );
  }

  get requestTimeoutMs(): number {
    return this.opts.requestTimeoutMs;
  }

  /** TCP ports actually bound, in `listen` order (0 for UNIX sockets). */
  get ports(): number[] {
    return this.listeners.map((l) => l.port);
  }

  async listen(): Promise<void> {
    for (const l of this.listeners) await l.listen();
  }

  forget(session: AttrSession): void {
    for (const l of this.listeners) l.remove(session as PolicySession);
  }

  async close(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close()));
  }

  /** The action line for one request. */
  answer(req: PolicyRequest, client: string): Awaitable<string> {
    const state = req.get('protocol_state') ?? '';
    const address = req.get('client_address') ?? '';
    const context = req.get('policy_context') ?? '';
    const service = context !== '' && this.gate.rules.services.has(context) ? context : this.opts.service;
    let decision: Awaitable<Decision> | null = null;
    let phase: SmtpPhase = 'later';
    switch (state) {
      case 'CONNECT':
      case 'XCLIENT':
        phase = 'connect';
        decision = this.gate.checkConnect(service, address);
        break;
      case 'RCPT': {
        const user = req.get('sasl_username') ?? '';
        decision = user === '' ? this.gate.event(service, address, 'rcpt', req.get('recipient') ?? '') : this.rcptAfterAuth(service, address, user);
        break;
      }
      case 'END-OF-MESSAGE':
        decision = this.gate.event(service, address, 'mail');
        break;
      default:
        return encodePolicyAction('DUNNO');
    }
    const ctx = { client, service, state, address };
    if (!(decision instanceof Promise)) return this.reply(decision, phase, ctx);
    return this.withDeadline(decision, phase, ctx);
  }

  /**
   * An authenticated client's recipient: the login was good (for
   * good_login), then the AUTH-phase country rule, then the recipient rate.
   */
  private rcptAfterAuth(service: string, address: string, user: string): Awaitable<Decision> {
    const good = this.gate.goodLogin(service, address, user);
    if (good instanceof Promise) good.catch((err: unknown) => this.log.error({ err, service, address }, 'postfix_policy: a good login was not recorded'));
    const auth = this.gate.checkAuth(service, address);
    const next = (d: Decision): Awaitable<Decision> => (d.action === 'refuse' ? d : this.gate.event(service, address, 'rcpt'));
    return auth instanceof Promise ? auth.then(next) : next(auth);
  }

  private reply(d: Decision, phase: SmtpPhase, ctx: Record<string, string>): string {
    if (d.refusal !== null || d.dryRun.length > 0) {
      const ip = parseIp(ctx.address ?? '');
      this.record(d, ctx.service ?? '', ip === null ? (ctx.address ?? '') : formatIp(ip), ctx);
    }
    return encodePolicyAction(postfixAction(d, phase));
  }

  private withDeadline(p: Promise<Decision>, phase: SmtpPhase, ctx: Record<string, string>): Promise<string> {
    return new Promise((resolve) => {
      // Whichever comes first answers; a decision arriving after the default
      // was sent is dropped, so the log never claims a refusal smtpd never saw.
      let answered = false;
      const fallback = (why: string) => {
        if (answered) return;
        answered = true;
        this.log.warn({ ...ctx, action: this.opts.defaultAction }, `postfix_policy: ${why}, answered the default action`);
        resolve(encodePolicyAction(this.opts.defaultAction));
      };
      const t = setTimeout(() => fallback('no decision in time'), this.opts.decisionTimeoutMs);
      p.then(
        (d) => {
          clearTimeout(t);
          if (answered) return;
          answered = true;
          resolve(this.reply(d, phase, ctx));
        },
        (err: unknown) => {
          clearTimeout(t);
          this.log.error({ ...ctx, err }, 'postfix_policy: decision failed');
          fallback('decision failed');
        },
      );
    });
  }
}
