/**
 * A net.Server on a UNIX socket path or a TCP host:port, with what every
 * Doorman listener needs: a cap on concurrent clients (logged at most once a
 * minute when hit, and counted for the metrics), one idle sweep for all sessions, safe claiming and
 * removal of socket files, and a close that stops accepting and closes every
 * session. The anvil and policy services, HAProxy's SPOE agent and the
 * guard proxy all stand on it; what only the proxy needs is an option:
 * sockets accepted paused, a client over the cap refused in its protocol's
 * words instead of closed unread, a sweep more often than the idle timeout,
 * and its own words in the log.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { ListenError } from '../errors.js';
import { prepareSocketPath, removeSocket, setSocketAccess } from './unix-socket.js';
import { describeEndpoint, type Endpoint } from '../config/endpoint.js';

export { describeEndpoint, parseEndpoint, type Endpoint } from '../config/endpoint.js';

/** What a listener's log lines and errors call it and say; made from its name unless given. */
export interface ListenerWords {
  /** Names it in the error when it cannot listen: "anvil", "proxy for smtp". */
  readonly title: string;
  /** Its line once listening, and what that line says beside the address. */
  readonly listening: string;
  readonly listeningFields?: Readonly<Record<string, unknown>>;
  /** Its warning when a client is refused for the cap (at most once a minute), and that warning's fields. */
  readonly full: string;
  readonly fullFields: Readonly<Record<string, unknown>>;
}

export interface StreamListenerOptions<S extends Session = Session> {
  /** Starts its log lines: "anvil", "proxy". */
  readonly name: string;
  readonly endpoint: Endpoint;
  readonly maxClients: number;
  readonly idleTimeoutMs: number;
  /** How often the idle sweep runs; by default every idleTimeoutMs, so a silent session goes after one to two of them. */
  readonly sweepMs?: number;
  /** For UNIX sockets. */
  readonly mode?: number;
  readonly uid?: number | null;
  readonly gid?: number | null;
  /** Sockets are handed over with nothing read (net's pauseOnConnect): the guard proxy reads nothing before its decision. */
  readonly pauseOnConnect?: boolean;
  /** A client's FIN leaves our side open (the guard proxy passes half-closes on). */
  readonly allowHalfOpen?: boolean;
  readonly noDelay?: boolean;
  /** listen()'s backlog; by default max_clients, and at least Node's 511. */
  readonly backlog?: number;
  readonly words?: ListenerWords;
  /**
   * A client over max_clients. Without this, Node closes it unread
   * (server.maxConnections: no socket is even made). With it, the socket is
   * handed here to be refused in the protocol's words, and the session
   * returned is kept like any other until its socket closes: it counts
   * against the cap while its refusal lingers, and close() ends it.
   */
  readonly onFull?: (socket: Socket) => S;
}

export interface Session {
  /** The idle sweep, with the time it runs at (Date.now(), once for all sessions). */
  checkIdle(now: number): void;
  /** The listener is closing: end the session (a goodbye first, where the protocol has one). */
  destroy(): void;
}

/** At most one warning a minute that clients are refused for the cap. */
const FULL_WARNING_MS = 60_000;

function wordsFor(name: string, maxClients: number): ListenerWords {
  return { title: name, listening: `${name} service listening`, full: `${name}: connection refused, ${name}.max_clients reached`, fullFields: { max_clients: maxClients } };
}

export class StreamListener<S extends Session> {
  private readonly opts: StreamListenerOptions<S>;
  private readonly words: ListenerWords;
  private readonly log: Logger;
  private readonly accept: (socket: Socket) => S;
  private readonly live = new Set<S>();
  private server: Server | null = null;
  private idleSweep: NodeJS.Timeout | null = null;
  private lastFullWarning = 0;
  /** The TCP port actually bound (port 0 picks one). */
  port = 0;
  /** The TCP address bound, as the server reports it ("127.0.0.1", "::"). */
  boundAddress = '';
  /** Connections refused since start because max_clients were connected. */
  full = 0;

  constructor(opts: StreamListenerOptions<S>, log: Logger, accept: (socket: Socket) => S) {
    this.opts = opts;
    this.words = opts.words ?? wordsFor(opts.name, opts.maxClients);
    this.log = log;
    this.accept = accept;
  }

  get size(): number {
    return this.live.size;
  }

  get maxClients(): number {
    return this.opts.maxClients;
  }

  /** Listening, not yet closed. */
  get open(): boolean {
    return this.server !== null;
  }

  /** The sessions of every socket accepted and not yet closed. */
  get sessions(): ReadonlySet<S> {
    return this.live;
  }

  /** The socket path, or host:port with the port bound. */
  get address(): string {
    const e = this.opts.endpoint;
    return describeEndpoint(e.path !== undefined ? e : { host: e.host, port: this.port });
  }

  async listen(): Promise<void> {
    const { endpoint: e, name } = this.opts;
    const where = describeEndpoint(e);
    if (e.path !== undefined) {
      const { replacedStale } = await prepareSocketPath(e.path);
      if (replacedStale) this.log.warn({ socket: e.path }, `${name}: replaced a stale socket file`);
    }
    const o = this.opts;
    const onFull = o.onFull;
    const server = createServer({ pauseOnConnect: o.pauseOnConnect === true, allowHalfOpen: o.allowHalfOpen === true, noDelay: o.noDelay === true }, (socket) => {
      // Every socket has its session until it closes, so the sessions are the connections the cap counts.
      if (onFull !== undefined && this.live.size >= o.maxClients) {
        this.refusedFull();
        this.live.add(onFull(socket));
      } else this.live.add(this.accept(socket));
    });
    if (onFull === undefined) {
      server.maxConnections = o.maxClients;
      server.on('drop', () => this.refusedFull());
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new ListenError('DOORMAN_ERR_LISTEN', `${this.words.title} on ${where}: ${err.message}`, { cause: err })));
      // A backlog of max_clients (the kernel caps it at net.core.somaxconn):
      // with Node's default of 511, a burst of connects to a UNIX socket
      // (every smtpd reconnecting after a restart) fails at once with EAGAIN
      // past 511 pending, and smtpd then waits a second before it retries.
      const backlog = o.backlog ?? Math.max(511, o.maxClients);
      if (e.path !== undefined) server.listen({ path: e.path, backlog }, () => resolve());
      else server.listen({ port: e.port, host: e.host, backlog }, () => resolve());
    });
    server.on('error', (err) => this.log.error({ err }, `${name}: server error`));
    this.server = server;
    const addr = server.address();
    if (addr !== null && typeof addr === 'object') {
      this.port = addr.port;
      this.boundAddress = addr.address;
    }
    // One timer for all sessions rather than a socket timeout that every read
    // and write must push back.
    this.idleSweep = setInterval(() => {
      const now = Date.now();
      for (const s of this.live) s.checkIdle(now);
    }, o.sweepMs ?? o.idleTimeoutMs);
    this.idleSweep.unref();
    if (e.path !== undefined) {
      const mode = this.opts.mode ?? 0o666;
      try {
        setSocketAccess(e.path, mode, this.opts.uid ?? null, this.opts.gid ?? null);
      } catch (err) {
        await this.close();
        throw new ListenError('DOORMAN_ERR_SOCKET_ACCESS', `${name} socket ${e.path}: cannot set mode/owner: ${String(err)}`, { cause: err });
      }
      this.log.info({ socket: e.path, mode: mode.toString(8).padStart(4, '0'), ...this.words.listeningFields }, this.words.listening);
    } else {
      this.log.info({ address: e.host, port: this.port, ...this.words.listeningFields }, this.words.listening);
    }
  }

  /** A client refused because max_clients were connected: counted, and said at most once a minute. */
  private refusedFull(): void {
    this.full++;
    const now = Date.now();
    if (now - this.lastFullWarning >= FULL_WARNING_MS) {
      this.lastFullWarning = now;
      this.log.warn(this.words.fullFields, this.words.full);
    }
  }

  /** The session's socket closed. */
  remove(session: S): void {
    this.live.delete(session);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    if (this.idleSweep !== null) clearInterval(this.idleSweep);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of [...this.live]) s.destroy();
    await closed;
    if (this.opts.endpoint.path !== undefined) removeSocket(this.opts.endpoint.path);
  }
}
