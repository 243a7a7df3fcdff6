/**
 * One client connection of a Postfix attribute protocol (anvil, policy
 * delegation): bytes are framed by an AttrReader, each complete block goes to
 * the subclass, replies go out in request order even when the store answers
 * asynchronously, a request left half-sent is dropped after a deadline, and
 * the owning listener's idle sweep closes sessions that stay silent. A client
 * that sends requests without reading the replies is not read from until its
 * replies drain: what it can make us buffer is bounded by the socket's
 * high-water mark and one chunk of requests, not by how much it sends.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { DoormanError, type ErrorCode } from '../errors.js';
import { AttrReader, type AttrLimits } from '../protocols/attr-plain.js';
import type { Awaitable } from '../core/awaitable.js';

export interface SessionHost {
  readonly log: Logger;
  /** For log lines: "anvil", "policy". */
  readonly name: string;
  readonly requestTimeoutMs: number;
  /** Called once, when the session's socket has closed. */
  forget(session: AttrSession): void;
}

export abstract class AttrSession {
  readonly id: string;
  protected readonly socket: Socket;
  protected readonly host: SessionHost;
  private readonly reader: AttrReader;
  private requestTimer: NodeJS.Timeout | null = null;
  private tail: Promise<void> | null = null;
  /** Reading is paused until the replies queued for a peer that is not reading them drain. */
  private heldBack = false;
  /** Set on every read; the listener's idle sweep clears it. */
  private active = true;
  protected closed = false;

  constructor(host: SessionHost, socket: Socket, id: string, limits: AttrLimits) {
    this.host = host;
    this.socket = socket;
    this.id = id;
    this.reader = new AttrReader(limits, (attrs) => {
      if (!this.closed) this.onBlock(attrs);
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onClose());
  }

  /** One complete block from the peer. A ProtocolError thrown here drops the session. */
  protected abstract onBlock(attrs: string[]): void;

  /** True when silence is expected (an smtpd mid-session holding counts): the idle sweep spares it. */
  protected keepWhenIdle(): boolean {
    return false;
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
        this.requestTimer = setTimeout(() => this.drop('DOORMAN_ERR_REQUEST_STALLED', 'request not finished in time'), this.host.requestTimeoutMs);
      }
    } else if (this.requestTimer !== null) {
      clearTimeout(this.requestTimer);
      this.requestTimer = null;
    }
  }

  /** Writes a reply; replies leave in request order even when some are promises. */
  protected send(reply: Awaitable<string>): void {
    if (this.tail === null && !(reply instanceof Promise)) {
      this.write(reply);
      return;
    }
    const next: Promise<void> = (this.tail ?? Promise.resolve())
      .then(() => reply)
      .then(
        (s) => {
          if (!this.closed) this.write(s);
        },
        (err: unknown) => {
          const fallback = this.failReply(err);
          if (fallback === null) this.drop('DOORMAN_ERR_STORE', err);
          else if (!this.closed) this.write(fallback);
        },
      )
      .finally(() => {
        if (this.tail === next) this.tail = null;
      });
    this.tail = next;
  }

  /**
   * Backpressure: once the socket's buffer is past its high-water mark, stop
   * reading requests until it drains. A peer that never reads is then idle
   * to the sweep, or stalled mid-request, and dropped like any other.
   */
  private write(s: string): void {
    if (this.socket.write(s) || this.heldBack) return;
    this.heldBack = true;
    this.socket.pause();
    this.socket.once('drain', () => {
      this.heldBack = false;
      if (!this.closed) this.socket.resume();
    });
  }

  /** The reply for a request whose answer failed, or null to drop the client. */
  protected failReply(err: unknown): string | null {
    void err;
    return null;
  }

  /** Called by the listener's idle sweep: closes a session silent since the last sweep. */
  checkIdle(): void {
    if (this.active) {
      this.active = false;
      return;
    }
    if (!this.keepWhenIdle()) this.drop('DOORMAN_ERR_IDLE', 'idle');
  }

  drop(code: ErrorCode, reason: unknown): void {
    if (this.closed) return;
    const message = reason instanceof Error ? reason.message : String(reason);
    this.host.log.warn({ client: this.id, code, reason: message }, `${this.host.name}: client dropped`);
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.requestTimer !== null) clearTimeout(this.requestTimer);
    this.host.forget(this);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
