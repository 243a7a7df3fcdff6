/**
 * Minimal IMAP and POP3 clients for tests, over node:net with no
 * dependencies: one command at a time, no TLS, no pipelining. They exist so a
 * test can drive a real Dovecot (directly or through Doorman) and see exactly
 * what it answers. Either can send a PROXY protocol header (HAProxy's
 * proxy-protocol.txt, v1 text or v2 binary) before anything else, as a proxy
 * in front of Dovecot's `haproxy = yes` listeners would.
 *
 * Every wait is bounded and every line capped, so a server that stops
 * talking or talks nonsense fails the test instead of hanging it.
 */
import { isIP, isIPv6, type Socket } from 'node:net';
import { connectWithin } from './net.js';

/** Loopback replies come in milliseconds; a login refused by policy takes up to auth_failure_delay + 0.5 s. */
export const MAIL_REPLY_TIMEOUT_MS = 5000;
/** Dovecot's longest line (the post-login CAPABILITY) is about 500 bytes; 64 KiB leaves room without unbounded buffering. */
const MAX_LINE = 64 * 1024;
/** IMAP literals in test mailboxes are small messages. */
const MAX_LITERAL = 1024 * 1024;
/** More lines than this in one reply is a runaway, not something a test expects. */
const MAX_REPLY_LINES = 10_000;
/** The source port a PROXY header claims unless told otherwise. */
const DEFAULT_PROXY_SOURCE_PORT = 40000;
const PROXY_V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');

/** What a PROXY header claims about the connection. */
export interface ProxyHeaderOptions {
  version: 1 | 2;
  /** The client address to claim, IPv4 or IPv6. */
  source: string;
  /** Default 40000. */
  sourcePort?: number;
  /** The server address to claim; default 127.0.0.1 or ::1, matching the source's family. */
  dest?: string;
  /** Default: the port actually connected to. */
  destPort?: number;
}

export interface MailClientOptions {
  /** Send this PROXY header right after connecting. */
  proxy?: ProxyHeaderOptions;
  /** Bounds the connect and the greeting (default MAIL_REPLY_TIMEOUT_MS). */
  timeoutMs?: number;
  /** The client's own address (e.g. 127.0.0.5 on loopback); default: the system's choice. */
  localAddress?: string;
}

/**
 * Encodes a PROXY header for a TCP connection: v1 is
 * `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`; v2 is the 12-byte
 * signature, 0x21 (version 2, PROXY), 0x11 (TCP over IPv4) or 0x21 (TCP over
 * IPv6), the address block length (12 or 36, big-endian), then source and
 * destination addresses and ports, all in network order.
 */
export function encodeProxyHeader(h: ProxyHeaderOptions, connectedPort: number): Buffer {
  const family = isIP(h.source);
  if (family === 0) throw new Error(`PROXY source ${JSON.stringify(h.source)} is not an IP address`);
  const dest = h.dest ?? (family === 4 ? '127.0.0.1' : '::1');
  if (isIP(dest) !== family) throw new Error(`PROXY source ${h.source} and destination ${dest} differ in address family`);
  const sport = h.sourcePort ?? DEFAULT_PROXY_SOURCE_PORT;
  const dport = h.destPort ?? connectedPort;
  for (const p of [sport, dport]) {
    if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`PROXY port ${p} out of range`);
  }
  if (h.version === 1) {
    return Buffer.from(`PROXY TCP${family} ${h.source} ${dest} ${sport} ${dport}\r\n`, 'latin1');
  }
  const addr = (a: string): Buffer => (family === 4 ? Buffer.from(a.split('.').map(Number)) : ipv6Bytes(a));
  const block = Buffer.concat([addr(h.source), addr(dest), Buffer.alloc(4)]);
  block.writeUInt16BE(sport, block.length - 4);
  block.writeUInt16BE(dport, block.length - 2);
  const head = Buffer.from([0x21, family === 4 ? 0x11 : 0x21, 0, 0]);
  head.writeUInt16BE(block.length, 2);
  return Buffer.concat([PROXY_V2_SIGNATURE, head, block]);
}

/** The 16 bytes of an IPv6 address (`::` and an embedded IPv4 tail allowed, no zone). */
export function ipv6Bytes(address: string): Buffer {
  if (!isIPv6(address) || address.includes('%')) throw new Error(`${JSON.stringify(address)} is not an IPv6 address`);
  let text = address;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const groups = (s: string | undefined): string[] => (s ? s.split(':') : []);
  const h = groups(head);
  const t = groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/**
 * A socket read as CRLF lines (latin1, so bytes pass through unchanged) and,
 * for IMAP literals, counted bytes. One read at a time.
 */
class LineConnection {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  private ended = false;
  private readonly closedPromise: Promise<void>;

  constructor(
    private readonly socket: Socket,
    private readonly what: string,
  ) {
    socket.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      this.wake();
    });
    socket.on('error', (err) => this.fail(err));
    this.closedPromise = new Promise((resolve) => {
      socket.once('close', () => {
        this.ended = true;
        this.fail(new Error(`${what}: connection closed by peer`));
        resolve();
      });
    });
  }

  /** Connects with a deadline, then sends `preamble` (a PROXY header) if given. */
  static async open(host: string, port: number, what: string, timeoutMs: number, proxy?: ProxyHeaderOptions, localAddress?: string): Promise<LineConnection> {
    const preamble = proxy ? encodeProxyHeader(proxy, port) : undefined;
    const socket = await connectWithin(host, port, timeoutMs, what, localAddress);
    const c = new LineConnection(socket, what);
    if (preamble) socket.write(preamble);
    return c;
  }

  /** open(), then reads the greeting with `readGreeting`; any greeting is returned, the test judges it. */
  static async openGreeted(
    kind: 'IMAP' | 'POP3',
    host: string,
    port: number,
    opts: MailClientOptions,
    readGreeting: (conn: LineConnection, timeoutMs: number) => Promise<string>,
  ): Promise<{ conn: LineConnection; greeting: string }> {
    const timeoutMs = opts.timeoutMs ?? MAIL_REPLY_TIMEOUT_MS;
    const conn = await LineConnection.open(host, port, `${kind} ${host}:${port}`, timeoutMs, opts.proxy, opts.localAddress);
    try {
      return { conn, greeting: await readGreeting(conn, timeoutMs) };
    } catch (err) {
      conn.destroy();
      throw new Error(`no ${kind} greeting from ${host}:${port}: ${(err as Error).message}`);
    }
  }

  get isClosed(): boolean {
    return this.ended;
  }

  write(text: string): void {
    if (this.ended) throw new Error(`${this.what}: connection is closed; cannot send ${JSON.stringify(text)}`);
    this.socket.write(text, 'latin1');
  }

  /** The next line without its CRLF. */
  readLine(timeoutMs: number): Promise<string> {
    return this.take(timeoutMs, () => {
      const nl = this.buf.indexOf(10);
      if (nl === -1) {
        if (this.buf.length > MAX_LINE) throw new Error(`${this.what}: line longer than ${MAX_LINE} bytes`);
        return undefined;
      }
      const line = this.buf.subarray(0, nl).toString('latin1').replace(/\r$/, '');
      this.buf = this.buf.subarray(nl + 1);
      return line;
    });
  }

  /** Exactly `n` bytes (an IMAP literal), as latin1 text. */
  readBytes(n: number, timeoutMs: number): Promise<string> {
    if (n > MAX_LITERAL) return Promise.reject(new Error(`${this.what}: literal of ${n} bytes exceeds ${MAX_LITERAL}`));
    return this.take(timeoutMs, () => {
      if (this.buf.length < n) return undefined;
      const s = this.buf.subarray(0, n).toString('latin1');
      this.buf = this.buf.subarray(n);
      return s;
    });
  }

  /** Resolves once the connection is closed; rejects after timeoutMs. */
  async waitClosed(timeoutMs: number): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${this.what}: connection still open after ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.closedPromise, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  /** Says `farewell` (LOGOUT, QUIT) if still connected, half-closes, waits briefly for the peer, destroys. Never throws. */
  async hangUp(farewell: () => Promise<unknown>, timeoutMs: number): Promise<void> {
    if (!this.ended) {
      await farewell().catch(() => undefined);
      this.socket.end();
      await this.waitClosed(timeoutMs).catch(() => undefined);
    }
    this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Runs `attempt` on each arrival until it returns a value; bytes already buffered count even after close. */
  private take<T>(timeoutMs: number, attempt: () => T | undefined): Promise<T> {
    if (this.waiter) return Promise.reject(new Error(`${this.what}: a read is already pending`));
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => done(new Error(`${this.what}: nothing within ${timeoutMs} ms`)), timeoutMs);
      const done = (err: Error | undefined, value?: T): void => {
        clearTimeout(t);
        this.waiter = undefined;
        if (err) reject(err);
        else resolve(value as T);
      };
      const check = (): void => {
        let v: T | undefined;
        try {
          v = attempt();
        } catch (err) {
          this.socket.destroy();
          done(err as Error);
          return;
        }
        if (v !== undefined) done(undefined, v);
        else if (this.failure) done(this.failure);
      };
      this.waiter = check;
      check();
    });
  }

  private wake(): void {
    this.waiter?.();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.wake();
  }
}

/** A tagged IMAP reply with the untagged lines before it. */
export interface ImapReply {
  /** The tagged status line, e.g. `A2 NO [ALERT] go away`. */
  readonly tagged: string;
  /** The untagged (`* …`) and continuation (`+ …`) lines, literals inlined. */
  readonly lines: readonly string[];
  readonly tag: string;
  readonly status: 'OK' | 'NO' | 'BAD';
  /** The tagged line after `TAG STATUS `, e.g. `[ALERT] go away`. */
  readonly text: string;
}

export class ImapTestClient {
  private n = 0;

  private constructor(
    private readonly conn: LineConnection,
    /** The greeting line, e.g. `* OK [CAPABILITY …] Dovecot (Debian) ready.` */
    readonly greeting: string,
  ) {}

  /** Connects, sends the PROXY header if asked, and reads the greeting (any greeting; the test judges it). */
  static async open(host: string, port: number, opts: MailClientOptions = {}): Promise<ImapTestClient> {
    const { conn, greeting } = await LineConnection.openGreeted('IMAP', host, port, opts, readImapLine);
    return new ImapTestClient(conn, greeting);
  }

  get isClosed(): boolean {
    return this.conn.isClosed;
  }

  /** Sends `TAG text` and collects everything up to the tagged reply; a NO or BAD is returned, not thrown. */
  async command(text: string, timeoutMs = MAIL_REPLY_TIMEOUT_MS): Promise<ImapReply> {
    if (/[\r\n]/.test(text)) throw new Error('IMAP command must be a single line (no literals)');
    const tag = `A${++this.n}`;
    this.conn.write(`${tag} ${text}\r\n`);
    const lines: string[] = [];
    for (;;) {
      let line: string;
      try {
        line = await readImapLine(this.conn, timeoutMs);
      } catch (err) {
        throw new Error(`${(err as Error).message} (waiting for ${tag} ${text.split(' ')[0]}; got ${JSON.stringify(lines)})`);
      }
      const m = /^(\S+) (OK|NO|BAD)(?: (.*))?$/.exec(line);
      if (m && m[1] === tag) return { tagged: line, lines, tag, status: m[2] as ImapReply['status'], text: m[3] ?? '' };
      lines.push(line);
      if (lines.length > MAX_REPLY_LINES) throw new Error(`IMAP reply to ${tag} longer than ${MAX_REPLY_LINES} lines`);
    }
  }

  /** The next line the server sends unasked (e.g. a `* BYE`), literals inlined. */
  readLine(timeoutMs = MAIL_REPLY_TIMEOUT_MS): Promise<string> {
    return readImapLine(this.conn, timeoutMs);
  }

  /** Resolves once the server closed the connection; rejects after timeoutMs. */
  waitClosed(timeoutMs = MAIL_REPLY_TIMEOUT_MS): Promise<void> {
    return this.conn.waitClosed(timeoutMs);
  }

  /** `LOGIN "user" "pass"`. */
  login(user: string, pass: string, timeoutMs = MAIL_REPLY_TIMEOUT_MS): Promise<ImapReply> {
    return this.command(`LOGIN ${imapQuote(user)} ${imapQuote(pass)}`, timeoutMs);
  }

  /** LOGOUT if still connected, then hang up. Never throws: teardown calls it. */
  close(timeoutMs = 2000): Promise<void> {
    return this.conn.hangUp(() => this.command('LOGOUT', timeoutMs), timeoutMs);
  }

  /** Drops the connection without a word. */
  destroy(): void {
    this.conn.destroy();
  }
}

/** One IMAP response line with any `{n}` / `{n+}` literals read and inlined. */
async function readImapLine(conn: LineConnection, timeoutMs: number): Promise<string> {
  let line = await conn.readLine(timeoutMs);
  for (let m = /\{(\d+)\+?\}$/.exec(line); m; m = /\{(\d+)\+?\}$/.exec(line)) {
    const literal = await conn.readBytes(Number(m[1]), timeoutMs);
    const rest = await conn.readLine(timeoutMs);
    line = `${line}\r\n${literal}${rest}`;
    if (line.length > MAX_LITERAL + MAX_LINE) throw new Error('IMAP response with literals too long');
  }
  return line;
}

function imapQuote(s: string): string {
  if (/[\r\n\0]/.test(s)) throw new Error('IMAP quoted strings cannot hold CR, LF or NUL');
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** A POP3 reply: the status line and, for multi-line replies, the lines before the `.`. */
export interface Pop3Reply {
  readonly ok: boolean;
  /** The status line, e.g. `-ERR [AUTH] go away`. */
  readonly line: string;
  /** A multi-line reply's body, dot-unstuffed; empty for single-line replies. */
  readonly lines: readonly string[];
}

export class Pop3TestClient {
  private constructor(
    private readonly conn: LineConnection,
    /** The greeting line, e.g. `+OK Dovecot (Debian) ready.` */
    readonly greeting: string,
  ) {}

  /** Connects, sends the PROXY header if asked, and reads the greeting (any greeting; the test judges it). */
  static async open(host: string, port: number, opts: MailClientOptions = {}): Promise<Pop3TestClient> {
    const { conn, greeting } = await LineConnection.openGreeted('POP3', host, port, opts, (c, t) => c.readLine(t));
    return new Pop3TestClient(conn, greeting);
  }

  get isClosed(): boolean {
    return this.conn.isClosed;
  }

  /** A command with a single-line reply (USER, PASS, STAT, DELE, QUIT, LIST n …). */
  async command(text: string, timeoutMs = MAIL_REPLY_TIMEOUT_MS): Promise<Pop3Reply> {
    if (/[\r\n]/.test(text)) throw new Error('POP3 command must be a single line');
    this.conn.write(`${text}\r\n`);
    const line = await this.conn.readLine(timeoutMs);
    if (!/^(\+OK|-ERR)( |$)/.test(line)) throw new Error(`malformed POP3 status line ${JSON.stringify(line)}`);
    return { ok: line.startsWith('+OK'), line, lines: [] };
  }

  /** A command whose `+OK` is followed by lines up to a lone `.` (LIST, UIDL, RETR, TOP, CAPA). */
  async multiline(text: string, timeoutMs = MAIL_REPLY_TIMEOUT_MS): Promise<Pop3Reply> {
    const status = await this.command(text, timeoutMs);
    if (!status.ok) return status;
    const lines: string[] = [];
    for (;;) {
      const line = await this.conn.readLine(timeoutMs);
      if (line === '.') return { ...status, lines };
      lines.push(line.startsWith('.') ? line.slice(1) : line);
      if (lines.length > MAX_REPLY_LINES) throw new Error(`POP3 reply to ${text.split(' ')[0]} longer than ${MAX_REPLY_LINES} lines`);
    }
  }

  /** Resolves once the server closed the connection; rejects after timeoutMs. */
  waitClosed(timeoutMs = MAIL_REPLY_TIMEOUT_MS): Promise<void> {
    return this.conn.waitClosed(timeoutMs);
  }

  /** USER then PASS; returns USER's reply if it was refused, else PASS's. */
  async login(user: string, pass: string, timeoutMs = MAIL_REPLY_TIMEOUT_MS): Promise<Pop3Reply> {
    const u = await this.command(`USER ${user}`, timeoutMs);
    return u.ok ? this.command(`PASS ${pass}`, timeoutMs) : u;
  }

  /** QUIT if still connected, then hang up. Never throws: teardown calls it. */
  close(timeoutMs = 2000): Promise<void> {
    return this.conn.hangUp(() => this.command('QUIT', timeoutMs), timeoutMs);
  }

  /** Drops the connection without a word. */
  destroy(): void {
    this.conn.destroy();
  }
}
