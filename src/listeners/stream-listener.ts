/**
 * A net.Server on a UNIX socket path or a TCP host:port, with what every
 * Doorman listener needs: a cap on concurrent clients (logged at most once a
 * minute when hit, and counted for the metrics), one idle sweep for all sessions, safe claiming and
 * removal of socket files, and a close that stops accepting and closes every
 * session.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { ListenError } from '../errors.js';
import { prepareSocketPath, removeSocket, setSocketAccess } from './unix-socket.js';
import { describeEndpoint, type Endpoint } from '../config/endpoint.js';

export { describeEndpoint, parseEndpoint, type Endpoint } from '../config/endpoint.js';

export interface StreamListenerOptions {
  readonly name: string;
  readonly endpoint: Endpoint;
  readonly maxClients: number;
  readonly idleTimeoutMs: number;
  /** For UNIX sockets. */
  readonly mode?: number;
  readonly uid?: number | null;
  readonly gid?: number | null;
}

export interface Session {
  checkIdle(): void;
  destroy(): void;
}

export class StreamListener<S extends Session> {
  private readonly opts: StreamListenerOptions;
  private readonly log: Logger;
  private readonly accept: (socket: Socket) => S;
  private readonly sessions = new Set<S>();
  private server: Server | null = null;
  private idleSweep: NodeJS.Timeout | null = null;
  private lastDropWarning = 0;
  /** The TCP port actually bound (port 0 picks one). */
  port = 0;
  /** Connections refused since start because max_clients were connected. */
  full = 0;

  constructor(opts: StreamListenerOptions, log: Logger, accept: (socket: Socket) => S) {
    this.opts = opts;
    this.log = log;
    this.accept = accept;
  }

  get size(): number {
    return this.sessions.size;
  }

  get maxClients(): number {
    return this.opts.maxClients;
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
    const server = createServer((socket) => this.sessions.add(this.accept(socket)));
    server.maxConnections = this.opts.maxClients;
    server.on('drop', () => {
      this.full++;
      const now = Date.now();
      if (now - this.lastDropWarning > 60_000) {
        this.lastDropWarning = now;
        this.log.warn({ max_clients: this.opts.maxClients }, `${name}: connection refused, ${name}.max_clients reached`);
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new ListenError('DOORMAN_ERR_LISTEN', `${name} on ${where}: ${err.message}`, { cause: err })));
      // A backlog of max_clients (the kernel caps it at net.core.somaxconn):
      // with Node's default of 511, a burst of connects to a UNIX socket
      // (every smtpd reconnecting after a restart) fails at once with EAGAIN
      // past 511 pending, and smtpd then waits a second before it retries.
      const backlog = Math.max(511, this.opts.maxClients);
      if (e.path !== undefined) server.listen({ path: e.path, backlog }, () => resolve());
      else server.listen({ port: e.port, host: e.host, backlog }, () => resolve());
    });
    server.on('error', (err) => this.log.error({ err }, `${name}: server error`));
    this.server = server;
    const addr = server.address();
    if (addr !== null && typeof addr === 'object') this.port = addr.port;
    // One timer for all sessions rather than a socket timeout that every read
    // and write must push back: a session is closed after between one and
    // two idle periods of silence.
    this.idleSweep = setInterval(() => {
      for (const s of this.sessions) s.checkIdle();
    }, this.opts.idleTimeoutMs);
    this.idleSweep.unref();
    if (e.path !== undefined) {
      const mode = this.opts.mode ?? 0o666;
      try {
        setSocketAccess(e.path, mode, this.opts.uid ?? null, this.opts.gid ?? null);
      } catch (err) {
        await this.close();
        throw new ListenError('DOORMAN_ERR_SOCKET_ACCESS', `${name} socket ${e.path}: cannot set mode/owner: ${String(err)}`, { cause: err });
      }
      this.log.info({ socket: e.path, mode: mode.toString(8).padStart(4, '0') }, `${name} service listening`);
    } else {
      this.log.info({ address: e.host, port: this.port }, `${name} service listening`);
    }
  }

  /** The session's socket closed. */
  remove(session: S): void {
    this.sessions.delete(session);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server === null) return;
    if (this.idleSweep !== null) clearInterval(this.idleSweep);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of [...this.sessions]) s.destroy();
    await closed;
    if (this.opts.endpoint.path !== undefined) removeSocket(this.opts.endpoint.path);
  }
}
