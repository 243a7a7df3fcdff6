/**
 * A minimal SMTP client for tests: one command at a time, replies parsed into
 * code and text, multi-line replies (`250-…` then `250 …`) joined. It does no
 * TLS, no pipelining and no DATA dot-stuffing; it exists so a test can drive a
 * real smtpd and see exactly what it answers.
 *
 * Every wait is bounded so a server that stops talking fails the test instead
 * of hanging it.
 */
import type { Socket } from 'node:net';
import { connectWithin } from './net.js';

/** How long to wait for a reply unless told otherwise: smtpd answers loopback in milliseconds. */
export const SMTP_REPLY_TIMEOUT_MS = 5000;
/** RFC 5321 caps a reply line at 512 octets; 4 KiB leaves room for chatty servers without unbounded buffering. */
const MAX_REPLY_LINE = 4096;
/** A reply longer than this many lines is not something any test expects. */
const MAX_REPLY_LINES = 100;

export interface SmtpReply {
  /** The three-digit reply code. */
  readonly code: number;
  /** The text after the code of every line, joined with LF (e.g. `4.7.0 host Error: …`). */
  readonly text: string;
  /** The raw reply lines without CRLF. */
  readonly lines: readonly string[];
}

type Waiter = { resolve: (r: SmtpReply) => void; reject: (e: Error) => void };

export class SmtpTestClient {
  private readonly socket: Socket;
  private readonly ready: SmtpReply[] = [];
  private readonly waiting: Waiter[] = [];
  private partial: string[] = [];
  private buffer = '';
  private failure: Error | undefined;
  private ended = false;
  private readonly closedPromise: Promise<void>;
  private greetingReply: SmtpReply | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.fail(err));
    this.closedPromise = new Promise((resolve) => {
      socket.once('close', () => {
        this.ended = true;
        this.fail(new Error('SMTP connection closed by peer'));
        resolve();
      });
    });
  }

  /**
   * Connects and reads the greeting. A refusal greeting (e.g. `421 … too many
   * connections`) is not an error: it is returned in `greeting` for the test
   * to assert on. `localAddress`: the client's own address (e.g. 127.0.0.6).
   */
  static async open(host: string, port: number, timeoutMs = SMTP_REPLY_TIMEOUT_MS, localAddress?: string): Promise<SmtpTestClient> {
    const socket = await connectWithin(host, port, timeoutMs, 'SMTP', localAddress);
    const client = new SmtpTestClient(socket);
    try {
      client.greetingReply = await client.readReply(timeoutMs);
    } catch (err) {
      client.destroy();
      throw new Error(`no SMTP greeting from ${host}:${port}: ${(err as Error).message}`);
    }
    return client;
  }

  /** The reply the server greeted with. */
  get greeting(): SmtpReply {
    if (!this.greetingReply) throw new Error('no greeting yet');
    return this.greetingReply;
  }

  /** True once the server (or we) closed the connection. */
  get isClosed(): boolean {
    return this.ended;
  }

  /** Sends one command line (CRLF added) and waits for its reply. */
  async command(line: string, timeoutMs = SMTP_REPLY_TIMEOUT_MS): Promise<SmtpReply> {
    if (/[\r\n]/.test(line)) throw new Error('SMTP command must be a single line');
    if (this.ended) throw new Error(`SMTP connection is closed; cannot send ${JSON.stringify(line)}`);
    this.socket.write(`${line}\r\n`);
    return this.readReply(timeoutMs);
  }

  /** The next complete reply from the server. */
  readReply(timeoutMs = SMTP_REPLY_TIMEOUT_MS): Promise<SmtpReply> {
    const r = this.ready.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<SmtpReply>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: (reply) => {
          clearTimeout(t);
          resolve(reply);
        },
        reject: (err) => {
          clearTimeout(t);
          reject(err);
        },
      };
      const t = setTimeout(() => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(new Error(`no SMTP reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.push(waiter);
    });
  }

  /** Resolves once the connection is closed (by either side); rejects after timeoutMs. */
  async waitClosed(timeoutMs = SMTP_REPLY_TIMEOUT_MS): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`SMTP connection still open after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.closedPromise, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  /**
   * Says QUIT (if the connection is still up), waits for the reply and for the
   * server to hang up, and returns the QUIT reply (undefined if there was none).
   * Never throws: a test's teardown calls it.
   */
  async close(timeoutMs = SMTP_REPLY_TIMEOUT_MS): Promise<SmtpReply | undefined> {
    let reply: SmtpReply | undefined;
    if (!this.ended) {
      try {
        reply = await this.command('QUIT', timeoutMs);
      } catch {
        // already gone, or it did not answer: fall through to the hard close
      }
      this.socket.end();
      try {
        await this.waitClosed(timeoutMs);
      } catch {
        // ignore: destroyed below
      }
    }
    this.destroy();
    return reply;
  }

  /** Drops the connection without a word. */
  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      const nl = this.buffer.indexOf('\n');
      if (nl === -1) break;
      const line = this.buffer.slice(0, nl).replace(/\r$/, '');
      this.buffer = this.buffer.slice(nl + 1);
      this.onLine(line);
    }
    if (this.buffer.length > MAX_REPLY_LINE) {
      this.fail(new Error(`SMTP reply line longer than ${MAX_REPLY_LINE} bytes`));
      this.socket.destroy();
    }
  }

  private onLine(line: string): void {
    const m = /^([2-5][0-9]{2})([ -])(.*)$/.exec(line) ?? /^([2-5][0-9]{2})()$/.exec(line);
    if (!m) {
      this.fail(new Error(`malformed SMTP reply line ${JSON.stringify(line)}`));
      this.socket.destroy();
      return;
    }
    this.partial.push(line);
    if (this.partial.length > MAX_REPLY_LINES) {
      this.fail(new Error(`SMTP reply longer than ${MAX_REPLY_LINES} lines`));
      this.socket.destroy();
      return;
    }
    if (m[2] === '-') return;
    const lines = this.partial;
    this.partial = [];
    const reply: SmtpReply = {
      code: Number(m[1]),
      text: lines.map((l) => l.slice(4)).join('\n'),
      lines,
    };
    const w = this.waiting.shift();
    if (w) w.resolve(reply);
    else this.ready.push(reply);
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    for (const w of this.waiting.splice(0)) w.reject(err);
  }
}
