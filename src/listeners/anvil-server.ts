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
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { then } from '../core/awaitable.js';
import type { Engine } from '../core/engine.js';
import { DoormanError, ListenError } from '../errors.js';
import { AttrReader } from '../protocols/attr-plain.js';
import {
  ANVIL_FAIL_REPLY,
  ANVIL_GREETING,
  ANVIL_LIMITS,
  ANVIL_STAT_OK,
  decodeAnvilRequest,
  encodeAnvilReply,
  isAnvilRequest,
  type AnvilRequestName,
} from '../protocols/anvil.js';
import type { Awaitable, Owner } from '../store/types.js';
import { prepareSocketPath, removeSocket, setSocketAccess } from './unix-socket.js';

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
}

type Handler = (engine: Engine, owner: Owner, ident: string) => Awaitable<string>;

function eventHandler(request: AnvilRequestName & ('message' | 'recipient' | 'newtls' | 'auth'), metric: 'mail' | 'rcpt' | 'newtls' | 'auth'): Handler {
  return (engine, owner, ident) =>
    then(engine.event(ident, metric, owner), (r) => encodeAnvilReply(request, { status: ANVIL_STAT_OK, rate: r.rate }));
}

/** The request table: one handler per request name the protocol defines. */
const HANDLERS: { readonly [R in AnvilRequestName]: Handler } = {
  connect: (engine, owner, ident) =>
    then(engine.connect(ident, owner), (r) => encodeAnvilReply('connect', { status: ANVIL_STAT_OK, count: r.count, rate: r.rate })),
  disconnect: (engine, owner, ident) =>
    then(engine.disconnect(ident, owner), () => encodeAnvilReply('disconnect', { status: ANVIL_STAT_OK })),
  message: eventHandler('message', 'mail'),
  recipient: eventHandler('recipient', 'rcpt'),
  newtls: eventHandler('newtls', 'newtls'),
  auth: eventHandler('auth', 'auth'),
  newtls_status: (engine, _owner, ident) =>
    then(engine.lookup(ident), (s) => encodeAnvilReply('newtls_status', { status: ANVIL_STAT_OK, rate: s.rates.newtls })),
  lookup: (engine, _owner, ident) =>
    then(engine.lookup(ident), (s) =>
      encodeAnvilReply('lookup', {
        status: ANVIL_STAT_OK,
        count: s.count,
        rate: s.rates.conn,
        mail: s.rates.mail,
        rcpt: s.rates.rcpt,
        newtls: s.rates.newtls,
        auth: s.rates.auth,
      }),
    ),
};

/** One anvil client connection (one smtpd process, typically). */
class AnvilClient {
  readonly owner: Owner;
  private readonly socket: Socket;
  private readonly server: AnvilServer;
  private readonly reader: AttrReader;
  private requestTimer: NodeJS.Timeout | null = null;
  /** Set on every read; the server's idle sweep clears it. */
  active = true;
  private tail: Promise<void> | null = null;
  private badRequests = 0;
  private closed = false;

  constructor(server: AnvilServer, socket: Socket, owner: Owner) {
    this.server = server;
    this.socket = socket;
    this.owner = owner;
    this.reader = new AttrReader(ANVIL_LIMITS, (attrs) => this.onRequest(attrs));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.socket.destroy());
    socket.on('close', () => this.onClose());
    socket.write(ANVIL_GREETING);
  }

  private onData(chunk: Buffer): void {
    this.active = true;
    try {
      this.reader.write(chunk);
    } catch (err) {
      this.drop(err instanceof DoormanError ? err.code : 'DOORMAN_ERR_INTERNAL', err);
      return;
    }
    if (this.reader.pending) {
      if (this.requestTimer === null) {
        this.requestTimer = setTimeout(() => this.drop('DOORMAN_ERR_ANVIL_STALLED', 'request not finished in time'), this.server.opts.requestTimeoutMs);
      }
    } else if (this.requestTimer !== null) {
      clearTimeout(this.requestTimer);
      this.requestTimer = null;
    }
  }

  private onRequest(attrs: string[]): void {
    if (this.closed) return;
    const { request, ident } = decodeAnvilRequest(attrs);
    if (!isAnvilRequest(request)) {
      this.server.log.warn({ client: this.owner.id, request: request.slice(0, 64) }, 'anvil: unrecognized request, answered status=fail');
      this.send(ANVIL_FAIL_REPLY);
      if (++this.badRequests >= this.server.opts.maxBadRequests) this.drop('DOORMAN_ERR_ANVIL_BAD_REQUESTS', 'too many unrecognized requests');
      return;
    }
    this.send(HANDLERS[request](this.server.engine, this.owner, ident));
  }

  /** Writes replies in request order, even when the store answers asynchronously. */
  private send(reply: Awaitable<string>): void {
    if (this.tail === null && !(reply instanceof Promise)) {
      this.socket.write(reply);
      return;
    }
    const next: Promise<void> = (this.tail ?? Promise.resolve())
      .then(() => reply)
      .then(
        (s) => {
          if (!this.closed) this.socket.write(s);
        },
        (err: unknown) => this.drop('DOORMAN_ERR_STORE', err),
      )
      .finally(() => {
        if (this.tail === next) this.tail = null;
      });
    this.tail = next;
  }

  /** Called by the idle sweep: silent since the last sweep. */
  checkIdle(): void {
    if (this.active) {
      this.active = false;
      return;
    }
    // A client holding connections is an smtpd in a long session: keep it.
    if (this.owner.held === 0) this.drop('DOORMAN_ERR_ANVIL_IDLE', 'idle');
  }

  drop(code: string, reason: unknown): void {
    if (this.closed) return;
    const message = reason instanceof Error ? reason.message : String(reason);
    this.server.log.warn({ client: this.owner.id, code, reason: message }, 'anvil: client dropped');
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.requestTimer !== null) clearTimeout(this.requestTimer);
    this.server.forget(this);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export class AnvilServer {
  readonly opts: AnvilServerOptions;
  readonly engine: Engine;
  readonly log: Logger;
  private readonly clients = new Set<AnvilClient>();
  private server: Server | null = null;
  private idleSweep: NodeJS.Timeout | null = null;
  private lastDropWarning = 0;

  constructor(engine: Engine, log: Logger, opts: AnvilServerOptions) {
    this.engine = engine;
    this.log = log;
    this.opts = opts;
  }

  get clientCount(): number {
    return this.clients.size;
  }

  async listen(): Promise<void> {
    const { replacedStale } = await prepareSocketPath(this.opts.socket);
    if (replacedStale) this.log.warn({ socket: this.opts.socket }, 'anvil: replaced a stale socket file');
    const server = createServer((socket) => this.accept(socket));
    server.maxConnections = this.opts.maxClients;
    server.on('drop', () => {
      const now = Date.now();
      if (now - this.lastDropWarning > 60_000) {
        this.lastDropWarning = now;
        this.log.warn({ max_clients: this.opts.maxClients }, 'anvil: connection refused, anvil.max_clients reached');
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new ListenError('DOORMAN_ERR_LISTEN', `anvil socket ${this.opts.socket}: ${err.message}`, { cause: err })));
      server.listen(this.opts.socket, () => resolve());
    });
    server.on('error', (err) => this.log.error({ err }, 'anvil: server error'));
    this.server = server;
    // One timer for all clients rather than a socket timeout that every read
    // and write must push back: a client is closed after between one and two
    // idle periods of silence.
    this.idleSweep = setInterval(() => {
      for (const c of this.clients) c.checkIdle();
    }, this.opts.idleTimeoutMs);
    this.idleSweep.unref();
    try {
      setSocketAccess(this.opts.socket, this.opts.mode, this.opts.uid, this.opts.gid);
    } catch (err) {
      await this.close();
      throw new ListenError('DOORMAN_ERR_SOCKET_ACCESS', `anvil socket ${this.opts.socket}: cannot set mode/owner: ${String(err)}`, { cause: err });
    }
    this.log.info({ socket: this.opts.socket, mode: this.opts.mode.toString(8).padStart(4, '0') }, 'anvil service listening');
  }

  private accept(socket: Socket): void {
    const client = new AnvilClient(this, socket, this.engine.createOwner('anvil'));
    this.clients.add(client);
  }

  /** Called when a client's socket has closed: release everything it held. */
  forget(client: AnvilClient): void {
    this.clients.delete(client);
    void then(this.engine.closeOwner(client.owner), (released) => {
      if (released > 0) this.log.debug({ client: client.owner.id, released }, 'anvil: client closed, connections released');
    });
  }

  /** Stops accepting, closes every client (releasing their counts) and removes the socket file. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    if (this.idleSweep !== null) clearInterval(this.idleSweep);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const c of [...this.clients]) c.destroy();
    await closed;
    removeSocket(this.opts.socket);
  }
}
