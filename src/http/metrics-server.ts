/**
 * The metrics-only listener: Prometheus text on GET /metrics, `{"status":"ok"}`
 * on GET /health, nothing else. It asks for no token, as Prometheus scrapes
 * without one: bind it where only Prometheus reaches (metrics.listen). It
 * also serves /metrics when the admin API is off, so a daemon always has
 * metrics (issue 17).
 *
 * node:http rather than fastify: two fixed routes need no router, schemas or
 * plugins, and the daemon's start does not pay for a second fastify.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { ListenError } from '../errors.js';
import { parseHostPort } from '../config/endpoint.js';

/** A scrape's request arrives within this, or the socket is closed (a slow client holds nothing long). */
const REQUEST_TIMEOUT_MS = 10_000;
/** Scrapers keep one connection each; this many at once is a handful of Prometheus servers with room to spare. */
const MAX_CONNECTIONS = 64;

/** What the listener serves: DoorMetrics. */
export interface MetricsText {
  readonly contentType: string;
  text(): Promise<string>;
}

export interface MetricsServerOptions {
  /** host:port */
  readonly listen: string;
  /** Added to a bind failure's message: why the listener is there (the fallback says which keys to set). */
  readonly why?: string;
}

export class MetricsServer {
  readonly server: Server;
  /** The TCP port bound (listen may say 0). */
  port = 0;
  private readonly metrics: MetricsText;
  private readonly log: Logger;
  private readonly opts: MetricsServerOptions;

  constructor(metrics: MetricsText, log: Logger, opts: MetricsServerOptions) {
    this.metrics = metrics;
    this.log = log;
    this.opts = opts;
    this.server = createServer({ requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: REQUEST_TIMEOUT_MS, connectionsCheckingInterval: 1000 }, (req, res) => this.handle(req, res));
    this.server.maxConnections = MAX_CONNECTIONS;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    res.setHeader('x-content-type-options', 'nosniff');
    if (path !== '/metrics' && path !== '/health') {
      reply(res, 404, 'application/json', '{"error":"not found: this listener serves /metrics and /health"}\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      reply(res, 405, 'application/json', '{"error":"method not allowed"}\n');
      return;
    }
    if (path === '/health') {
      reply(res, 200, 'application/json', '{"status":"ok"}\n', req.method === 'HEAD');
      return;
    }
    this.metrics.text().then(
      (text) => reply(res, 200, this.metrics.contentType, text, req.method === 'HEAD'),
      (err: unknown) => {
        this.log.error({ err }, 'metrics: scrape failed');
        reply(res, 500, 'application/json', '{"error":"scrape failed; see the log"}\n');
      },
    );
  }

  /** Binds; a port in use is a ListenError naming the address (and why it is there). Resolves with the port. */
  async listen(): Promise<number> {
    const { listen, why } = this.opts;
    const { host, port } = parseHostPort(listen);
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen({ host, port }, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      throw new ListenError('DOORMAN_ERR_LISTEN', `metrics on ${listen}: ${(err as Error).message}${why === undefined ? '' : ` (${why})`}`, { cause: err });
    }
    this.server.on('error', (err) => this.log.error({ err }, 'metrics: server error'));
    const addr = this.server.address();
    this.port = addr !== null && typeof addr === 'object' ? addr.port : 0;
    const shown = host.includes(':') ? `[${host}]` : host;
    this.log.info({ address: host, port: this.port }, `metrics on http://${shown}:${this.port}/metrics (no token: reachable by whoever reaches the address)`);
    return this.port;
  }

  /** Stops accepting and closes every connection, idle keep-alive ones included. */
  close(): Promise<void> {
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function reply(res: ServerResponse, status: number, type: string, body: string, headOnly = false): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(headOnly ? undefined : body);
}
