/**
 * One admitted connection of the guard proxy, from the backend connect to the
 * last byte: connect under a deadline, send the PROXY header and whatever the
 * client sent early, then relay both ways with Node's own pipe (backpressure
 * both ways, no copy beyond the socket buffers), half-close passed on in
 * each direction, and a close that happens exactly once and always gives
 * the connection's counts back.
 *
 * The relay does not parse the session. It watches two things only, a byte
 * compare per chunk: whether the client has started TLS (a handshake record
 * after STARTTLS, or an implicit-TLS port), and whether the server's last
 * chunk ended a line. Together they say whether a goodbye can still be
 * written to the client when an operator kicks the session.
 */
import { connect, type Socket } from 'node:net';
import type { Endpoint } from './stream-listener.js';
import type { ConnectionHandle } from '../core/connections.js';

/** What the relay needs from its listener. */
export interface RelayHost {
  readonly backend: Endpoint;
  readonly connectTimeoutMs: number;
  /** Called when the backend could not be reached in time; the client has not been answered yet. */
  unreachable(c: Relay, why: string): void;
  /** Called exactly once, when both sides are closed. */
  closed(c: Relay, why: string): void;
  /** The goodbye for a kicked client; null: close without one (implicit TLS). */
  goodbye(text: string): Buffer | null;
}

/** Bytes a client that was told goodbye (or refused) may take to close its side. */
export const LINGER_MS = 5_000;

export class Relay implements ConnectionHandle {
  readonly client: Socket;
  private backendSocket: Socket | null = null;
  private readonly host: RelayHost;
  private tls: boolean;
  /** Whether the server's output so far ends a line (or is empty): a goodbye will not split one. */
  private atLineEnd = true;
  private done = false;
  private seenClientData = false;
  private closeReason = 'closed';
  /** Activity mark for the listener's idle sweep. */
  idleMark = 0;
  idleSince = 0;

  constructor(host: RelayHost, client: Socket, implicitTls: boolean) {
    this.host = host;
    this.client = client;
    this.tls = implicitTls;
  }

  /**
   * Connects the backend, then sends `header` and `early` (bytes the client
   * sent before the relay began) before anything else.
   */
  start(header: Buffer | null, early: Buffer | null): void {
    const e = this.host.backend;
    const client = this.client;
    const backend = e.path !== undefined ? connect({ path: e.path, allowHalfOpen: true }) : connect({ host: e.host ?? '127.0.0.1', port: e.port ?? 0, allowHalfOpen: true, noDelay: true });
    this.backendSocket = backend;
    backend.setTimeout(this.host.connectTimeoutMs);
    backend.once('timeout', () => this.fail(`backend did not accept within ${this.host.connectTimeoutMs} ms`));
    backend.on('error', (err: NodeJS.ErrnoException) => {
      if (backend.connecting || backend.pending) this.fail(`backend connect failed: ${err.code ?? err.message}`);
      else this.abort(`backend error: ${err.code ?? err.message}`);
    });
    client.on('error', (err: NodeJS.ErrnoException) => this.abort(`client error: ${err.code ?? err.message}`));
    client.on('close', () => this.finish());
    backend.once('connect', () => {
      if (this.done) return;
      backend.setTimeout(0);
      backend.removeAllListeners('timeout');
      if (header !== null || early !== null) {
        backend.cork();
        if (header !== null) backend.write(header);
        if (early !== null && early.length > 0) {
          this.watchClient(early);
          backend.write(early);
        }
        backend.uncork();
      }
      if (!this.tls) client.on('data', (chunk: Buffer) => this.watchClient(chunk));
      else client.once('data', (chunk: Buffer) => this.watchClient(chunk));
      backend.on('data', (chunk: Buffer) => {
        this.atLineEnd = chunk[chunk.length - 1] === 0x0a;
      });
      client.pipe(backend);
      backend.pipe(client);
      // The backend gone (FIN, reset): the client gets what is queued, then its FIN.
      backend.on('close', () => {
        if (this.closeReason === 'closed') this.closeReason = 'backend closed';
        this.endClient();
      });
      client.on('end', () => {
        if (this.closeReason === 'closed') this.closeReason = 'client closed';
      });
    });
  }

  private watchClient(chunk: Buffer): void {
    if (!this.seenClientData) {
      this.seenClientData = true;
      if (looksLikeProxyHeader(chunk)) return this.abort('a PROXY header from a client that is not a trusted proxy');
    }
    // A TLS handshake record (content type 22, version 3.x) from the client: STARTTLS took effect.
    if (!this.tls && chunk[0] === 0x16 && chunk[1] === 0x03) this.tls = true;
  }

  /** The backend could not be reached: the listener answers the client (temporary failure), then the relay closes. */
  private fail(why: string): void {
    if (this.done) return;
    this.closeReason = why;
    this.backendSocket?.destroy();
    this.host.unreachable(this, why);
  }

  /** A hard error on either side: both go at once. */
  private abort(why: string): void {
    if (this.closeReason === 'closed') this.closeReason = why;
    this.backendSocket?.destroy();
    this.client.destroy();
  }

  /** Ends the client's side after what is queued for it, and closes it for good a little later. */
  private endClient(): void {
    const c = this.client;
    if (c.destroyed) return;
    if (!c.writableEnded) c.end();
    // A client that never closes its side would hold the socket: the linger timer ends it.
    c.setTimeout(LINGER_MS, () => c.destroy());
  }

  /** The client socket closed: the session is over. */
  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.backendSocket?.destroy();
    this.host.closed(this, this.closeReason);
  }

  /** Activity so far, both ways, for the idle sweep. */
  activity(): number {
    return this.client.bytesRead + this.client.bytesWritten;
  }

  /** One side has sent its FIN and the other has not yet: the session is winding down. */
  halfClosed(): boolean {
    return this.client.readableEnded !== this.client.writableEnded;
  }

  bytesIn(): number {
    return this.client.bytesRead;
  }

  bytesOut(): number {
    return this.client.bytesWritten;
  }

  encrypted(): boolean {
    return this.tls;
  }

  /**
   * Closes the session; a client still in plain text is told `goodbye` first,
   * between the server's lines. `reason` is for the log only.
   */
  kick(reason: string, goodbye = 'Connection closed by the administrator'): void {
    if (this.done) return;
    this.closeReason = reason;
    const backend = this.backendSocket;
    const line = this.tls ? null : this.host.goodbye(goodbye);
    if (backend !== null) {
      backend.unpipe(this.client);
      backend.removeAllListeners('close');
      backend.destroy();
    }
    this.client.unpipe();
    if (line === null || this.client.destroyed) {
      this.client.destroy();
      return;
    }
    this.client.end(this.atLineEnd ? line : Buffer.concat([CRLF, line]));
    this.client.resume();
    this.client.setTimeout(LINGER_MS, () => this.client.destroy());
  }
}

const CRLF = Buffer.from('\r\n');

/** The start of a v1 ("PROXY ") or v2 (\r\n\r\n\0\r\nQUIT\n) header: never a client's first words in a mail protocol. */
export function looksLikeProxyHeader(chunk: Buffer): boolean {
  if (chunk.length < 5) return false;
  const a = chunk[0];
  if (a === 0x50) return chunk[1] === 0x52 && chunk[2] === 0x4f && chunk[3] === 0x58 && chunk[4] === 0x59; // "PROXY"
  return a === 0x0d && chunk[1] === 0x0a && chunk[2] === 0x0d && chunk[3] === 0x0a && chunk[4] === 0x00;
}
