/**
 * The guard proxy: one listen address in front of a mail server's port.
 *
 * For each accepted connection (read nothing yet: pauseOnConnect):
 *   1. over max_connections?      → "unavailable" in the protocol's words
 *   2. from a trusted load balancer → its PROXY header (v1/v2) must come
 *      first, within header_timeout; its source is the client judged
 *   3. the gatekeeper admits or refuses (bans, country, concurrency per
 *      address and per prefix, connection rate): a refusal is answered in
 *      the protocol's words before the backend is touched
 *   4. admitted: registered as live, relayed (./relay.ts) with our own PROXY
 *      header first when the backend expects one; a backend that cannot be
 *      reached gets the client a temporary failure, not a hang
 * and when the relay closes, for whatever reason, the counts are given back.
 *
 * The listener is a StreamListener (./stream-listener.ts) like the other
 * front-ends', with sockets accepted paused and a client over the cap
 * refused in words. Idle connections are found by its one sweep, which
 * compares byte counters, so relaying costs no timer reset per chunk.
 */
import type { Ban } from '../core/bans.js';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Protocol } from '../core/rules.js';
import type { ConnectionRegistry } from '../core/connections.js';
import type { DoorEventBus } from '../core/events.js';
import type { Admission, Gatekeeper } from '../core/gate.js';
import { clientAddress, type ClientAddress } from '../core/ip.js';
import type { NetworkSet } from '../core/networks.js';
import type { ProtocolError } from '../errors.js';
import { encodeProxyV1, encodeProxyV2, ProxyHeaderParser } from '../protocols/proxy-protocol.js';
import { IMPLICIT_TLS, goodbyeLine, refusalKindOf, refusalLine, refusalText, type RefusalKind, type RefusalTexts } from '../protocols/refusals.js';
import type { Owner } from '../core/ports.js';
import { NO_TIMER, type DecisionTimer } from '../observability/latency.js';
import { decisionRecorder, type DecisionRecorder } from '../observability/decisions.js';
import { destroySocket, LINGER_MS, Relay, type RelayHost } from './relay.js';
import { StreamListener, describeEndpoint, parseEndpoint, type Endpoint, type Session } from './stream-listener.js';

export interface GuardOptions {
  readonly service: string;
  readonly protocol: Protocol;
  /** host:port */
  readonly listen: string;
  /** host:port or a UNIX socket path. */
  readonly backend: string;
  readonly proxyProtocol: 'v1' | 'v2' | 'none';
  /** Load balancers whose PROXY header is required and believed. */
  readonly trusted: NetworkSet;
  readonly hostname: string;
  readonly texts: RefusalTexts | null;
  readonly maxConnections: number;
  readonly connectTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly headerTimeoutMs: number;
  /** Times each admission from the gatekeeper's question to its answer (doorman_decision_seconds{front="proxy"}). */
  readonly timer?: DecisionTimer;
}

/**
 * A session one side has ended while the other stays silent is closed after
 * this long (or idle_timeout, if shorter): a client that vanished behind a
 * server that ignores its FIN must not hold a slot for 35 minutes.
 */
const HALF_CLOSED_IDLE_MS = 60_000;

/** The session of a socket: set on the socket, for the close handler every socket shares. */
const SESSION = Symbol('doorman.guard');
type SessionSocket = Socket & { [SESSION]?: GuardSession };

function forgetSession(this: Socket): void {
  const s = (this as SessionSocket)[SESSION];
  if (s !== undefined) s.guard.listener.remove(s);
}

/**
 * One accepted client, from accept until its socket closes: judged, then
 * refused or relayed.
 */
class GuardSession implements Session {
  readonly guard: GuardListener;
  readonly socket: Socket;
  /**
   * The client as judged: parsed once, where it came in (the socket, or a
   * trusted proxy's header); the text as it came when it is no IP address,
   * which the gatekeeper leaves unjudged.
   */
  client: ClientAddress | string = '';
  /** The client's port. */
  port = 0;
  /** Where the client connected to, from a trusted proxy's header; null: ask the socket (a getsockname) when the header is built. */
  localAddress: string | null = null;
  localPort = 0;
  /** What the client sent before the relay began (after a trusted proxy's header). */
  early: Buffer | null = null;
  /** The decision timer's start mark. */
  started = 0;
  /** Once admitted. */
  relay: Relay | null = null;

  constructor(guard: GuardListener, socket: Socket) {
    this.guard = guard;
    this.socket = socket;
    (socket as SessionSocket)[SESSION] = this;
    socket.on('close', forgetSession);
    // Never an unhandled 'error' (a reset while the decision is pending): the relay adds its own.
    socket.on('error', destroySocket);
  }

  /** The client's address as text (a log line's). */
  get address(): string {
    const c = this.client;
    return typeof c === 'string' ? c : c.text;
  }

  checkIdle(now: number): void {
    const r = this.relay;
    if (r === null) return;
    const a = r.activity();
    if (a !== r.idleMark) {
      r.idleMark = a;
      r.idleSince = now;
      return;
    }
    r.quiet();
    const idle = this.guard.opts.idleTimeoutMs;
    if (now - r.idleSince >= (r.halfClosed() ? Math.min(HALF_CLOSED_IDLE_MS, idle) : idle)) {
      r.kick(`idle for ${Math.round((now - r.idleSince) / 1000)} s`, 'Idle for too long, closing the connection');
    }
  }

  /** The listener closes: a relayed session is told goodbye where it can be; any other goes at once. */
  destroy(): void {
    if (this.relay !== null) this.relay.kick('shutdown', this.guard.goodbyeText);
    else this.socket.destroy();
  }
}

export class GuardListener implements RelayHost {
  readonly opts: GuardOptions;
  readonly backend: Endpoint;
  readonly connectTimeoutMs: number;
  private readonly gate: Gatekeeper;
  private readonly registry: ConnectionRegistry;
  private readonly events: DoorEventBus;
  private readonly record: DecisionRecorder;
  private readonly log: Logger;
  private readonly owner: Owner;
  private readonly implicitTls: boolean;
  private readonly where: string;
  /**
   * The socket, its cap and idle sweep. Its sessions are every socket
   * accepted and not yet closed, relayed or not: the cap counts them all.
   */
  readonly listener: StreamListener<GuardSession>;
  /** What relayed clients are told when the listener closes. */
  goodbyeText = 'Service shutting down, try again later';
  private readonly refusals = new Map<string, Buffer | null>();
  private readonly timer: DecisionTimer;
  /**
   * The address bound, as a PROXY header names it, when it is one address:
   * every client connected to it, so no getsockname per connection. Null for
   * a wildcard (0.0.0.0, ::), where each connection is asked.
   */
  private boundAddress: string | null = null;

  constructor(gate: Gatekeeper, registry: ConnectionRegistry, events: DoorEventBus, log: Logger, opts: GuardOptions) {
    this.gate = gate;
    this.registry = registry;
    this.events = events;
    this.record = decisionRecorder(log, events, { by: 'proxy', refused: 'proxy: refused', dryRun: 'proxy: would refuse (dry-run)' });
    this.opts = opts;
    this.backend = parseEndpoint(opts.backend);
    this.connectTimeoutMs = opts.connectTimeoutMs;
    this.implicitTls = IMPLICIT_TLS.has(opts.protocol);
    this.where = opts.listen;
    this.log = log.child({ service: opts.service, listen: opts.listen });
    this.owner = gate.createOwner(`proxy ${opts.service} ${opts.listen}`);
    this.timer = opts.timer ?? NO_TIMER;
    const setting = `services.${opts.service}.proxy.max_connections`;
    this.listener = new StreamListener<GuardSession>(
      {
        name: 'proxy',
        endpoint: parseEndpoint(opts.listen),
        maxClients: opts.maxConnections,
        idleTimeoutMs: opts.idleTimeoutMs,
        // Four sweeps per idle period, so a session goes at most a quarter late; within 250 ms and a minute.
        sweepMs: Math.max(250, Math.min(60_000, Math.floor(opts.idleTimeoutMs / 4))),
        pauseOnConnect: true,
        allowHalfOpen: true,
        noDelay: true,
        backlog: 4096,
        words: {
          title: `proxy for ${opts.service}`,
          listening: 'proxy listening',
          listeningFields: { backend: describeEndpoint(this.backend), proxy_protocol: opts.proxyProtocol },
          full: `proxy full (${setting}): new clients told to try later`,
          fullFields: { max_connections: opts.maxConnections },
        },
        onFull: (socket) => this.acceptFull(socket),
      },
      this.log,
      (socket) => this.accept(socket),
    );
  }

  /** The TCP port bound (port 0 picks one). */
  get port(): number {
    return this.listener.port;
  }

  /** host:port with the port bound. */
  get address(): string {
    return this.listener.address;
  }

  /** Connections refused since start because max_connections were connected. */
  get full(): number {
    return this.listener.full;
  }

  async listen(): Promise<void> {
    await this.listener.listen();
    const bound = this.listener.boundAddress;
    this.boundAddress = bound === '0.0.0.0' || bound === '::' ? null : unmapped(bound);
  }

  private accept(socket: Socket): GuardSession {
    const session = new GuardSession(this, socket);
    const remote = socket.remoteAddress;
    if (remote === undefined) {
      socket.destroy();
      return session;
    }
    session.port = socket.remotePort ?? 0;
    // Parsed here, once: the trusted-proxy match and the gatekeeper take it as it is.
    const client = clientAddress(remote) ?? remote;
    session.client = client;
    if (this.opts.trusted.size > 0 && typeof client !== 'string' && this.opts.trusted.match(client.ip) !== null) {
      this.readHeader(session);
      return session;
    }
    this.judge(session);
    return session;
  }

  /** A client over max_connections: told the service is unavailable, in its protocol's words. */
  private acceptFull(socket: Socket): GuardSession {
    const session = new GuardSession(this, socket);
    if (socket.remoteAddress === undefined) socket.destroy();
    else this.refuse(socket, 'unavailable', true, null);
    return session;
  }

  /** A trusted load balancer's connection: its PROXY header first. */
  private readHeader(p: GuardSession): void {
    const s = p.socket;
    const parser = new ProxyHeaderParser();
    // A deadline from accept, not an inactivity timeout: a header sent a byte
    // at a time is never silent for header_timeout.
    const deadline = setTimeout(() => {
      this.log.warn({ peer: p.address }, `proxy: no PROXY header from a trusted proxy within ${this.opts.headerTimeoutMs} ms; closed`);
      s.destroy();
    }, this.opts.headerTimeoutMs);
    s.once('close', () => clearTimeout(deadline));
    const onData = (chunk: Buffer) => {
      let r;
      try {
        r = parser.write(chunk);
      } catch (err) {
        this.log.warn({ peer: p.address, err: (err as ProtocolError).message }, 'proxy: bad PROXY header from a trusted proxy; closed');
        s.destroy();
        return;
      }
      if (!r.done) return;
      s.removeListener('data', onData);
      clearTimeout(deadline);
      s.pause();
      const h = r.header;
      if (h.proxied && h.source !== undefined && h.destination !== undefined) {
        // The header's source is where this client came in: parsed once, here.
        p.client = clientAddress(h.source.address) ?? h.source.address;
        p.port = h.source.port;
        p.localAddress = h.destination.address;
        p.localPort = h.destination.port;
      }
      p.early = r.rest.length > 0 ? r.rest : null;
      this.judge(p);
    };
    s.on('data', onData);
    s.resume();
  }

  private judge(p: GuardSession): void {
    let a: ReturnType<Gatekeeper['admit']>;
    p.started = this.timer.start();
    try {
      a = this.gate.admit(this.opts.service, p.client, this.owner);
    } catch (err) {
      this.timer.stop(p.started);
      this.log.error({ err, client: p.address }, 'proxy: decision failed; client told to try later');
      this.refuse(p.socket, 'unavailable', true, null);
      return;
    }
    if (a instanceof Promise) {
      a.then(
        (r) => this.decided(p, r),
        (err: unknown) => {
          this.timer.stop(p.started);
          this.log.error({ err, client: p.address }, 'proxy: decision failed; client told to try later');
          this.refuse(p.socket, 'unavailable', true, null);
        },
      );
    } else this.decided(p, a);
  }

  private decided(p: GuardSession, a: Admission): void {
    this.timer.stop(p.started);
    const d = a.decision;
    const s = p.socket;
    if (s.destroyed) {
      // Gone while we decided: give the counts back.
      void this.gate.leave(a.keys, this.owner);
      return;
    }
    this.record(d, this.opts.service, a.address, { client: a.address });
    if (d.action === 'refuse' && d.refusal !== null) {
      const r = d.refusal;
      this.refuse(s, refusalKindOf(r.cause), r.temporary, r.limit ?? null);
      return;
    }
    const relay = new Relay(this, s, this.implicitTls);
    const id = this.registry.newId();
    const startedAt = Date.now();
    relay.id = id;
    relay.keys = a.keys;
    relay.startedAt = startedAt;
    relay.address = a.address;
    relay.headerBytes = s.bytesRead - (p.early?.length ?? 0);
    p.relay = relay;
    relay.idleMark = 0;
    relay.idleSince = startedAt;
    this.registry.add(
      {
        id,
        service: this.opts.service,
        protocol: this.opts.protocol,
        client: { address: a.address, port: p.port },
        country: d.country,
        listen: this.where,
        backend: this.opts.backend,
        startedAt,
      },
      relay,
    );
    relay.start(this.header(a.address, p), p.early);
    if (this.events.listenerCount('connect') > 0) {
      const view = this.registry.get(id);
      if (view !== null) this.events.emit('connect', view);
    }
  }

  private header(address: string, p: GuardSession): Buffer | null {
    const v = this.opts.proxyProtocol;
    if (v === 'none') return null;
    let dst = p.localAddress;
    let dport = p.localPort;
    if (dst === null) {
      dst = this.boundAddress ?? unmapped(p.socket.localAddress ?? '');
      dport = this.listener.port;
    }
    return v === 'v2' ? encodeProxyV2(address, p.port, dst, dport) : encodeProxyV1(address, p.port, dst, dport);
  }

  /** The refusal's bytes, made once per (kind, temporary, limit): a flood is refused without building text. */
  private refusalBytes(kind: RefusalKind, temporary: boolean, limit: number | null): Buffer | null {
    const key = `${kind}|${temporary ? 't' : 'p'}|${limit ?? ''}`;
    let line = this.refusals.get(key);
    if (line === undefined) {
      line = refusalLine(this.opts.protocol, temporary, refusalText(this.opts.protocol, kind, this.opts.texts, limit), this.opts.hostname);
      // Limits are few (services, overrides); the cap only guards against surprises.
      if (this.refusals.size < 256) this.refusals.set(key, line);
    }
    return line;
  }

  /** Tells the client no in its protocol's words (or closes, for implicit TLS), then closes. */
  private refuse(s: Socket, kind: RefusalKind, temporary: boolean, limit: number | null): void {
    const line = this.refusalBytes(kind, temporary, limit);
    if (line === null) {
      s.destroy();
      return;
    }
    // Read and drop what the client sends, so the close is a FIN after our line, not a reset that could lose it.
    s.on('end', destroySocket);
    s.resume();
    s.end(line);
    s.setTimeout(LINGER_MS);
    s.on('timeout', destroySocket);
  }

  unreachable(c: Relay, why: string): void {
    this.log.warn({ client: c.address, backend: this.opts.backend, why }, 'proxy: backend unreachable; client told to try later');
    if (!c.client.destroyed) this.refuse(c.client, 'unavailable', true, null);
  }

  closed(c: Relay, why: string): void {
    this.registry.remove(c.id);
    void this.gate.leave(c.keys, this.owner);
    // A client that closed or reset having sent nothing (a scanner, a banner grabber): early_leavers.
    if (c.bytesIn() === c.headerBytes && (why === 'client closed' || why.startsWith('client error')) && this.earlyLeavers) this.leftEarly(c);
    if (this.events.listenerCount('disconnect') > 0) {
      this.events.emit('disconnect', { id: c.id, service: this.opts.service, address: c.address, why, bytesIn: c.bytesIn(), bytesOut: c.bytesOut() });
    }
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug({ id: c.id, client: c.address, why, seconds: (Date.now() - c.startedAt) / 1000, bytes_in: c.bytesIn(), bytes_out: c.bytesOut() }, 'proxy: connection closed');
    }
  }

  /** Whether the service bans early leavers (read per session: a reload may turn it on or off). */
  private get earlyLeavers(): boolean {
    return this.gate.rules.service(this.opts.service).earlyLeavers !== null;
  }

  private leftEarly(c: Relay): void {
    const done = (ban: Ban | null) => {
      if (ban !== null) this.log.warn({ service: this.opts.service, client: c.address, until: new Date(ban.until).toISOString(), reason: ban.reason }, 'banned');
    };
    try {
      const r = this.gate.leftEarly(this.opts.service, c.address, c.id);
      if (r instanceof Promise) r.then(done, (err: unknown) => this.log.error({ err, client: c.address }, 'proxy: an early leaver was not counted'));
      else done(r);
    } catch (err) {
      this.log.error({ err, client: c.address }, 'proxy: an early leaver was not counted');
    }
  }

  goodbye(text: string): Buffer | null {
    return goodbyeLine(this.opts.protocol, this.opts.hostname, text);
  }

  /**
   * Stops accepting, then closes every live session with a goodbye where one
   * can be sent; resolves when all are closed and their counts given back.
   */
  async close(reason = 'Service shutting down, try again later'): Promise<void> {
    if (!this.listener.open) return;
    this.goodbyeText = reason;
    // Goodbyes get LINGER_MS to be read; then what is left goes.
    const deadline = setTimeout(() => {
      for (const s of this.listener.sessions) s.socket.destroy();
    }, LINGER_MS);
    await this.listener.close();
    clearTimeout(deadline);
    await this.gate.closeOwner(this.owner);
  }
}

/** A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; PROXY headers carry the plain form. */
function unmapped(a: string): string {
  return a.startsWith('::ffff:') && a.indexOf('.') > 0 ? a.slice(7) : a;
}
