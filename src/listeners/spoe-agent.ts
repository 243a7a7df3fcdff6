/**
 * Doorman as HAProxy's SPOE agent: HAProxy asks, at each client session
 * (`event on-client-session`), whether to let the client in; Doorman answers
 * with variables HAProxy's configuration acts on (contrib/haproxy/). A thin
 * adapter: ../protocols/spop-agent.ts speaks SPOP, ../protocols/spoe-verdict.ts
 * reads the message and words the answer, the gatekeeper decides
 * (`screen`: bans, country, connection rate; concurrency is HAProxy's, as SPOE
 * never says when a session ends).
 *
 * Per HAProxy connection (2.6 opens several, per thread, on demand):
 *   HAPROXY-HELLO         → AGENT-HELLO (a health check's is answered, then closed)
 *   NOTIFY                → an ACK once decided; several may wait at once
 *                           (pipelining) and are answered as their decisions
 *                           complete, in any order, up to max_in_flight
 *   HAPROXY-DISCONNECT    → AGENT-DISCONNECT (0) and close
 *   anything that breaks SPOP → AGENT-DISCONNECT with its status, and close
 * A frame begun and not finished in request_timeout, or a connection silent
 * (with nothing waiting) for idle_timeout, is closed with AGENT-DISCONNECT
 * status 2; shutting down, every connection gets AGENT-DISCONNECT status 0.
 *
 * Failing open: a message without a usable src or service, a decision not
 * made in decision_timeout, or a decision that failed, is answered "allow"
 * with a warning (at most one a minute per kind), as HAProxy itself lets the
 * session through when its agent fails.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Awaitable } from '../core/awaitable.js';
import type { DoorEventBus } from '../core/events.js';
import type { Gatekeeper, Screening } from '../core/gate.js';
import { ProtocolError } from '../errors.js';
import { decisionRecorder, type DecisionRecorder } from '../observability/decisions.js';
import { NO_TIMER, type DecisionTimer } from '../observability/latency.js';
import { SPOP_STATUS, type SpopStatus } from '../protocols/spop.js';
import { SpopAgentConnection } from '../protocols/spop-agent.js';
import type { SpopNotify } from '../protocols/spop-messages.js';
import type { RefusalTexts } from '../protocols/refusals.js';
import { SpoeVerdicts, readSpoeRequest, type SpoeAnswer, type SpoeRequest } from '../protocols/spoe-verdict.js';
import { lendReadBuffer } from './read-buffer.js';
import { StreamListener, parseEndpoint, type Session } from './stream-listener.js';

export interface SpoeAgentOptions {
  readonly listen: readonly string[];
  /** The spoe-message answered. */
  readonly message: string;
  /** The name in SMTP refusal lines. */
  readonly hostname: string;
  /** Services with refusal texts of their own (their guard proxy's `texts`): HAProxy's clients get the same words. */
  readonly texts?: ReadonlyMap<string, RefusalTexts>;
  readonly maxClients: number;
  readonly requestTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly decisionTimeoutMs: number;
  readonly maxFrameSize: number;
  readonly maxInFlight: number;
  /** Times each decision from the NOTIFY to its ACK (doorman_decision_seconds{front="spoe"}). */
  readonly timer?: DecisionTimer;
}

/** What the agent has done since start, for the admin API and the tests. */
export interface SpoeStats {
  /** NOTIFY frames answered. */
  notifies: number;
  /** Socket reads: notifies / reads is how many NOTIFY frames HAProxy sends at once (each read and write costs more than a decision). */
  reads: number;
  /** Clients judged, refusals among them. */
  decisions: number;
  refusals: number;
  /** Messages answered "allow" unjudged: no usable src or service, no decision in time, a failed decision. */
  failedOpen: number;
  /** Connections closed for breaking SPOP. */
  protocolErrors: number;
  healthChecks: number;
}

/** After our AGENT-DISCONNECT, HAProxy closes; a peer that does not is cut off after this. */
const LINGER_MS = 1000;
/** At most one warning a minute per kind, with the count of those not logged. */
const WARN_EVERY_MS = 60_000;
/** Admissions are counted per service name; names come from HAProxy's config, but are capped all the same. */
const MAX_COUNTED_SERVICES = 256;
/** Unknown service names warned about one by one, then no more. */
const MAX_UNKNOWN_WARNED = 64;
/** The ACK of a NOTIFY carrying none of our messages: no variables. */
const NOTHING: SpoeAnswer = Object.freeze({ payload: Buffer.alloc(0), refuse: false });

/**
 * Every connection reads into this one buffer (../listeners/read-buffer.ts)
 * rather than a fresh 64 KiB one per read: the agent keeps nothing of a
 * chunk once receive() returns, and never writes from it. 64 KiB: the
 * largest frame SPOP allows (65,532 bytes) with its length fits one read.
 */
const SHARED_READ = Buffer.allocUnsafe(64 * 1024);
const sharedRead = (): Buffer => SHARED_READ;
const SESSION = Symbol('spoe session');

function onLentRead(this: Socket, n: number, buffer: Buffer): boolean {
  (this as unknown as { [SESSION]: SpoeSession })[SESSION].onData(buffer.subarray(0, n));
  return true;
}

let sessionSeq = 0;

class SpoeSession implements Session {
  readonly id = `spoe#${++sessionSeq}`;
  private readonly server: SpoeAgentServer;
  private readonly socket: Socket;
  private readonly agent: SpopAgentConnection;
  private readonly forget: () => void;
  private requestTimer: NodeJS.Timeout | null = null;
  private heldBack = false;
  /** Set on every read; the listener's idle sweep clears it. */
  private active = true;
  private closed = false;

  constructor(server: SpoeAgentServer, socket: Socket, forget: () => void) {
    this.server = server;
    this.socket = socket;
    this.forget = forget;
    this.agent = new SpopAgentConnection({ maxFrameSize: server.opts.maxFrameSize, maxInFlight: server.opts.maxInFlight });
    // ACKs are small and HAProxy's client waits on each: no Nagle delay.
    socket.setNoDelay(true);
    (socket as unknown as { [SESSION]: SpoeSession })[SESSION] = this;
    // Where Node cannot lend a buffer, its own reads ('data') do the same.
    if (!lendReadBuffer(socket, SHARED_READ, sharedRead, onLentRead)) socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onClose());
  }

  /** Bytes from HAProxy; `chunk` may be the shared read buffer: nothing of it is kept. */
  onData(chunk: Buffer): void {
    this.active = true;
    this.server.stats.reads++;
    // Every ACK decided at once from this chunk leaves in one write.
    this.socket.cork();
    try {
      for (const ev of this.agent.receive(chunk)) {
        switch (ev.kind) {
          case 'hello':
            this.write(ev.reply);
            if (ev.close) {
              this.server.stats.healthChecks++;
              this.socket.end();
            }
            break;
          case 'notify':
            this.server.respond(this, ev.notify);
            break;
          case 'disconnect':
            if (ev.status !== SPOP_STATUS.NONE && ev.status !== SPOP_STATUS.TIMEOUT) {
              this.server.log.warn({ client: this.id, status: ev.status, message: ev.message }, 'haproxy_spoe: HAProxy disconnected with an error');
            }
            this.end(ev.reply);
            break;
          case 'error':
            this.server.stats.protocolErrors++;
            this.server.log.warn({ client: this.id, code: ev.error.code, status: ev.error.status, reason: ev.error.message }, 'haproxy_spoe: SPOP broken; connection closed');
            this.end(ev.reply);
            break;
        }
      }
    } finally {
      this.socket.uncork();
    }
    this.watchRequest();
  }

  /** A frame begun must be finished within request_timeout. */
  private watchRequest(): void {
    if (this.agent.partial && !this.agent.closed) {
      this.requestTimer ??= setTimeout(() => this.goodbye(SPOP_STATUS.TIMEOUT, 'frame not finished in time', 'DOORMAN_ERR_REQUEST_STALLED'), this.server.opts.requestTimeoutMs);
    } else if (this.requestTimer !== null) {
      clearTimeout(this.requestTimer);
      this.requestTimer = null;
    }
  }

  /** The ACK for a NOTIFY; dropped when the connection closed meanwhile. */
  ack(n: SpopNotify, a: SpoeAnswer): void {
    if (this.closed) return;
    let bytes: Buffer | null;
    try {
      bytes = this.agent.ack(n.streamId, n.frameId, a.payload);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      // Over a small negotiated max-frame-size: the verdict alone still fits.
      this.server.warn('frame', { client: this.id, reason: err.message }, 'haproxy_spoe: ACK too big for the negotiated max-frame-size; sent the verdict alone');
      bytes = this.agent.ack(n.streamId, n.frameId, (a.refuse ? SpoeVerdicts.REFUSE_ONLY : SpoeVerdicts.ALLOW).payload);
    }
    if (bytes !== null) this.write(bytes);
  }

  /** Backpressure: a peer that does not read its ACKs is not read from until they drain. */
  private write(bytes: Buffer): void {
    if (this.socket.write(bytes) || this.heldBack) return;
    this.heldBack = true;
    this.socket.pause();
    this.socket.once('drain', () => {
      this.heldBack = false;
      if (!this.closed) this.socket.resume();
    });
  }

  private end(bytes: Buffer | null): void {
    if (this.closed) return;
    if (bytes === null) this.socket.end();
    else this.socket.end(bytes);
    const t = setTimeout(() => this.socket.destroy(), LINGER_MS);
    t.unref();
    this.socket.once('close', () => clearTimeout(t));
  }

  /** Our own AGENT-DISCONNECT, then a close. */
  private goodbye(status: SpopStatus, why: string, code: string | null): void {
    if (this.closed) return;
    if (code !== null) this.server.log.warn({ client: this.id, code, reason: why }, 'haproxy_spoe: connection closed');
    this.end(this.agent.disconnect(status, why));
  }

  /** The idle sweep: a connection silent since the last sweep, with nothing waiting for us, is closed. */
  checkIdle(): void {
    if (this.active) {
      this.active = false;
      return;
    }
    if (this.agent.inFlight === 0) this.goodbye(SPOP_STATUS.TIMEOUT, 'idle', null);
  }

  /** Shutting down (the listener closes): AGENT-DISCONNECT, then the close HAProxy answers with. */
  destroy(): void {
    if (this.agent.closed) this.socket.destroy();
    else this.goodbye(SPOP_STATUS.NONE, 'Doorman is shutting down', null);
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.requestTimer !== null) clearTimeout(this.requestTimer);
    this.forget();
  }
}

/** One kind of warning, logged at most once a minute with how many were not. */
class Throttled {
  private last = 0;
  private skipped = 0;
  warn(log: Logger, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    if (now - this.last < WARN_EVERY_MS) {
      this.skipped++;
      return;
    }
    log.warn(this.skipped > 0 ? { ...fields, not_logged_since_last: this.skipped } : fields, msg);
    this.last = now;
    this.skipped = 0;
  }
}

export class SpoeAgentServer {
  readonly opts: SpoeAgentOptions;
  readonly log: Logger;
  readonly stats: SpoeStats = { notifies: 0, reads: 0, decisions: 0, refusals: 0, failedOpen: 0, protocolErrors: 0, healthChecks: 0 };
  /** Clients allowed per service, for doorman_decisions_total{action="allow"}. */
  readonly admitted = new Map<string, number>();
  /** One per listen address, in `listen` order: their clients and caps are read by the metrics. */
  readonly listeners: readonly StreamListener<SpoeSession>[];
  private readonly gate: Gatekeeper;
  private readonly record: DecisionRecorder;
  private readonly timer: DecisionTimer;
  private readonly verdicts: SpoeVerdicts;
  private readonly warnings = new Map<string, Throttled>();
  private readonly unknownServices = new Set<string>();

  /** `events`: refusals are emitted there (by "haproxy") for the metrics and the admin API's stream. */
  constructor(gate: Gatekeeper, log: Logger, opts: SpoeAgentOptions, events: DoorEventBus | null = null) {
    this.gate = gate;
    this.log = log;
    this.opts = opts;
    this.timer = opts.timer ?? NO_TIMER;
    this.record = decisionRecorder(log, events, { by: 'haproxy', refused: 'haproxy: refused', dryRun: 'haproxy: would refuse (dry-run)' });
    this.verdicts = new SpoeVerdicts(opts.hostname, opts.texts);
    this.listeners = opts.listen.map((text) => {
      const l: StreamListener<SpoeSession> = new StreamListener<SpoeSession>(
        { name: 'haproxy_spoe', endpoint: parseEndpoint(text), maxClients: opts.maxClients, idleTimeoutMs: opts.idleTimeoutMs },
        log,
        (socket) => {
          const s: SpoeSession = new SpoeSession(this, socket, () => l.remove(s));
          return s;
        },
      );
      return l;
    });
  }

  /** TCP ports bound, in `listen` order. */
  get ports(): number[] {
    return this.listeners.map((l) => l.port);
  }

  /** HAProxy connections now, over every listener. */
  get connections(): number {
    return this.listeners.reduce((n, l) => n + l.size, 0);
  }

  async listen(): Promise<void> {
    for (const l of this.listeners) await l.listen();
  }

  /** Stops accepting; every connection is told AGENT-DISCONNECT and closed. */
  async close(): Promise<void> {
    await Promise.all(this.listeners.map((l) => l.close()));
  }

  /** Answers one NOTIFY: Doorman's message judged, any other acknowledged with no variables. */
  respond(session: SpoeSession, n: SpopNotify): void {
    this.stats.notifies++;
    let answer: Awaitable<SpoeAnswer> = NOTHING;
    for (const m of n.messages) {
      if (m.name !== this.opts.message) continue;
      const read = readSpoeRequest(m);
      if (read.ok) answer = this.decide(read.request);
      else answer = this.failOpen('malformed', { reason: read.why }, `haproxy_spoe: message ${this.opts.message} unusable (answered allow): check its args in the SPOE config`);
      break;
    }
    if (answer instanceof Promise) void answer.then((a) => session.ack(n, a)).catch((err: unknown) => this.log.error({ err }, 'haproxy_spoe: ACK not sent'));
    else session.ack(n, answer);
  }

  private decide(req: SpoeRequest): Awaitable<SpoeAnswer> {
    const started = this.timer.start();
    let s: Awaitable<Screening>;
    try {
      s = this.gate.screen(req.service, req.address);
    } catch (err) {
      this.timer.stop(started);
      return this.failOpen('failed', { err, client: req.address, service: req.service }, 'haproxy_spoe: decision failed (answered allow)');
    }
    if (!(s instanceof Promise)) {
      this.timer.stop(started);
      return this.answer(s, req);
    }
    return new Promise((resolve) => {
      // Whichever comes first answers; a decision after the deadline is dropped, so the log never claims a refusal HAProxy never saw.
      let done = false;
      const t = setTimeout(() => {
        done = true;
        resolve(this.failOpen('slow', { client: req.address, service: req.service, decision_timeout_ms: this.opts.decisionTimeoutMs }, 'haproxy_spoe: no decision in time (answered allow)'));
      }, this.opts.decisionTimeoutMs);
      s.then(
        (v) => {
          this.timer.stop(started);
          if (done) return;
          clearTimeout(t);
          resolve(this.answer(v, req));
        },
        (err: unknown) => {
          this.timer.stop(started);
          if (done) return;
          clearTimeout(t);
          resolve(this.failOpen('failed', { err, client: req.address, service: req.service }, 'haproxy_spoe: decision failed (answered allow)'));
        },
      );
    });
  }

  private answer(s: Screening, req: SpoeRequest): SpoeAnswer {
    if (s.address === null) return this.failOpen('malformed', { reason: `src ${JSON.stringify(req.address.slice(0, 64))} is not an IP address` }, 'haproxy_spoe: client address unusable (answered allow)');
    const d = s.decision;
    this.stats.decisions++;
    if (d.refusal !== null || d.dryRun.length > 0) {
      this.record(d, req.service, s.address, req.dstPort === null ? { client: s.address, service: req.service } : { client: s.address, service: req.service, port: req.dstPort });
    }
    if (d.action === 'refuse') this.stats.refusals++;
    else this.admit(req.service);
    const rules = this.gate.rules;
    if (!rules.services.has(req.service)) this.unknownService(req.service);
    return this.verdicts.answer(s, rules.service(req.service).protocol, req.service);
  }

  private admit(service: string): void {
    const key = this.admitted.has(service) || this.admitted.size < MAX_COUNTED_SERVICES ? service : 'other';
    this.admitted.set(key, (this.admitted.get(key) ?? 0) + 1);
  }

  /** Like the other front-ends, an unknown service has no rules but bans; said once per name, as it is likely a frontend named unlike its service. */
  private unknownService(name: string): void {
    if (this.unknownServices.has(name) || this.unknownServices.size >= MAX_UNKNOWN_WARNED) return;
    this.unknownServices.add(name);
    this.log.warn({ service: name }, `haproxy_spoe: HAProxy asked about service "${name}", which the configuration does not name: only bans apply (name HAProxy's frontends like Doorman's services)`);
  }

  private failOpen(kind: string, fields: Record<string, unknown>, msg: string): SpoeAnswer {
    this.stats.failedOpen++;
    this.warn(kind, fields, msg);
    return SpoeVerdicts.ALLOW;
  }

  /** A warning of one kind, at most once a minute. */
  warn(kind: string, fields: Record<string, unknown>, msg: string): void {
    let w = this.warnings.get(kind);
    if (w === undefined) {
      w = new Throttled();
      this.warnings.set(kind, w);
    }
    w.warn(this.log, fields, msg);
  }
}
