/**
 * The anvil service: Postfix's anvil protocol on a UNIX socket, answered from
 * the engine. See ../protocols/anvil.ts for the wire format.
 *
 * Differences from Postfix's anvil, on purpose:
 * - One client connection may hold any number of remote clients (anvil keeps
 *   only the last one per connection and silently drops the others' counts).
 *   All are released when the connection closes.
 * - Requests are read without blocking: a client that sends half a request
 *   delays nobody, and is dropped after `requestTimeoutMs`.
 * - A malformed request closes that client's connection (with a log line);
 *   an unknown request name is answered with status=fail as anvil does, and
 *   after `maxBadRequests` of those the client is dropped.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { then } from '../core/awaitable.js';
import type { Gatekeeper } from '../core/gate.js';
import { NO_TIMER, timed, type DecisionTimer } from '../observability/latency.js';
import { StoreUnavailableError } from '../errors.js';
import {
  ANVIL_FAIL_REPLY,
  ANVIL_GREETING,
  ANVIL_LIMITS,
  ANVIL_STAT_OK,
  decodeAnvilRequest,
  encodeAnvilReply,
  isAnvilRequest,
  parseAnvilIdent,
  type AnvilRequestName,
} from '../protocols/anvil.js';
import type { Owner } from '../core/ports.js';
import type { Awaitable } from '../core/awaitable.js';
import { AttrSession, type SessionHost } from './attr-session.js';
import { StreamListener } from './stream-listener.js';

export interface AnvilServerOptions {
  readonly socket: string;
  readonly mode: number;
  readonly uid: number | null;
  readonly gid: number | null;
  /** Concurrent client connections; more are closed at accept. */
  readonly maxClients: number;
  /** Time a client may take to finish a request it has started. */
  readonly requestTimeoutMs: number;
  /** Time a client holding no connections may stay silent (closed after one to two of these). */
  readonly idleTimeoutMs: number;
  /** Unknown request names tolerated per connection. */
  readonly maxBadRequests: number;
  /** Times each request from its last byte to its reply (doorman_decision_seconds{front="anvil"}). */
  readonly timer?: DecisionTimer;
}

/**
 * The part of the gatekeeper the anvil service uses: smtpd's counts under
 * its idents (the gatekeeper also counts the client's network beside them,
 * and learns how smtpd names clients), and the owners that hold them.
 */
export type AnvilGate = Pick<Gatekeeper, 'anvilConnect' | 'anvilDisconnect' | 'anvilEvent' | 'lookup' | 'createOwner' | 'closeOwner'>;

type Handler = (gate: AnvilGate, owner: Owner, ident: string) => Awaitable<string>;

function eventHandler(request: AnvilRequestName & ('message' | 'recipient' | 'newtls' | 'auth' | 'tlstr'), metric: 'mail' | 'rcpt' | 'newtls' | 'auth' | 'tlstr'): Handler {
  return (gate, owner, ident) =>
    then(gate.anvilEvent(ident, metric, owner), (r) => encodeAnvilReply(request, { status: ANVIL_STAT_OK, rate: r.rate }));
}

/** The request table: one handler per request name the protocol defines. */
const HANDLERS: { readonly [R in AnvilRequestName]: Handler } = {
  connect: (gate, owner, ident) =>
    then(gate.anvilConnect(ident, owner), (r) => encodeAnvilReply('connect', { status: ANVIL_STAT_OK, count: r.count, rate: r.rate })),
  disconnect: (gate, owner, ident) =>
    then(gate.anvilDisconnect(ident, owner), () => encodeAnvilReply('disconnect', { status: ANVIL_STAT_OK })),
  message: eventHandler('message', 'mail'),
  recipient: eventHandler('recipient', 'rcpt'),
  newtls: eventHandler('newtls', 'newtls'),
  auth: eventHandler('auth', 'auth'),
  // Postfix 3.12: one global rate of TLS trace files (ident any:any), held like any event.
  tlstr: eventHandler('tlstr', 'tlstr'),
  newtls_status: (gate, _owner, ident) =>
    then(gate.lookup(ident), (s) => encodeAnvilReply('newtls_status', { status: ANVIL_STAT_OK, rate: s.rates.newtls })),
  lookup: (gate, _owner, ident) =>
    then(gate.lookup(ident), (s) =>
      encodeAnvilReply('lookup', {
        status: ANVIL_STAT_OK,
        count: s.count,
        rate: s.rates.conn,
        mail: s.rates.mail,
        rcpt: s.rates.rcpt,
        newtls: s.rates.newtls,
        auth: s.rates.auth,
        tlstr: s.rates.tlstr,
      }),
    ),
};

/** One anvil client connection (one smtpd process, typically). */
class AnvilClient extends AttrSession {
  readonly owner: Owner;
  private readonly server: AnvilServer;
  private badRequests = 0;

  constructor(server: AnvilServer, socket: Socket, owner: Owner) {
    super(server, socket, owner.id, ANVIL_LIMITS);
    this.server = server;
    this.owner = owner;
    socket.write(ANVIL_GREETING);
  }

  protected onBlock(attrs: string[]): void {
    const { request, ident } = decodeAnvilRequest(attrs);
    if (!isAnvilRequest(request)) {
      this.server.log.warn({ client: this.id, request: request.slice(0, 64) }, 'anvil: unrecognized request, answered status=fail');
      this.send(ANVIL_FAIL_REPLY);
      if (++this.badRequests >= this.server.opts.maxBadRequests) this.drop('DOORMAN_ERR_ANVIL_BAD_REQUESTS', 'too many unrecognized requests');
      return;
    }
    const timer = this.server.timer;
    const started = timer.start();
    this.send(timed(timer, started, HANDLERS[request](this.server.gate, this.owner, ident)));
  }

  /**
   * The shared store is unreachable: status=fail, which smtpd logs and
   * serves on without a limit, as it does when anvil itself is down.
   */
  protected override failReply(err: unknown): string | null {
    return err instanceof StoreUnavailableError ? ANVIL_FAIL_REPLY : null;
  }

  /** A client holding connections is an smtpd in a long session: keep it. */
  protected override keepWhenIdle(): boolean {
    return this.owner.held > 0;
  }
}

export class AnvilServer implements SessionHost {
  readonly opts: AnvilServerOptions;
  readonly gate: AnvilGate;
  readonly log: Logger;
  readonly name = 'anvil';
  readonly timer: DecisionTimer;
  /** The socket's listener: its clients and cap are read by the metrics. */
  readonly listener: StreamListener<AnvilClient>;

  constructor(gate: AnvilGate, log: Logger, opts: AnvilServerOptions) {
    this.gate = gate;
    this.log = log;
    this.opts = opts;
    this.timer = opts.timer ?? NO_TIMER;
    this.listener = new StreamListener(
      {
        name: 'anvil',
        endpoint: { path: opts.socket },
        maxClients: opts.maxClients,
        idleTimeoutMs: opts.idleTimeoutMs,
        mode: opts.mode,
        uid: opts.uid,
        gid: opts.gid,
      },
      log,
      (socket) => new AnvilClient(this, socket, gate.createOwner('anvil')),
    );
  }

  get requestTimeoutMs(): number {
    return this.opts.requestTimeoutMs;
  }

  get clientCount(): number {
    return this.listener.size;
  }

  listen(): Promise<void> {
    return this.listener.listen();
  }

  /** A client's socket closed: release everything it held. */
  forget(session: AttrSession): void {
    const client = session as AnvilClient;
    this.listener.remove(client);
    const released = then(this.gate.closeOwner(client.owner), (n) => {
      if (n > 0) this.log.debug({ client: client.id, released: n }, 'anvil: client closed, connections released');
    });
    if (released instanceof Promise) {
      released.catch((err: unknown) => this.log.error({ client: client.id, err }, 'anvil: could not release a closed client\'s connections'));
    }
  }

  /** Stops accepting, closes every client (releasing their counts) and removes the socket file. */
  close(): Promise<void> {
    return this.listener.close();
  }
}
