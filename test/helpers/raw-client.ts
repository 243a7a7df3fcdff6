/**
 * A bare TCP client for proxy tests: keeps everything received, waits for a
 * pattern or for the close, and can bind a chosen loopback source address
 * (any 127.x.y.z works on Linux) to act as a distinct client.
 */
import { connect, type Socket } from 'node:net';

export const RAW_TIMEOUT_MS = 5000;

export class RawClient {
  readonly socket: Socket;
  received = '';
  ended = false;
  private readonly closedP: Promise<void>;
  private waiters: Array<() => void> = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.received += d;
      this.notify();
    });
    socket.on('end', () => {
      this.ended = true;
      this.notify();
    });
    socket.on('error', () => {});
    this.closedP = new Promise((resolve) => socket.once('close', () => resolve()));
    void this.closedP.then(() => this.notify());
  }

  static async open(port: number, opts: { host?: string; localAddress?: string; allowHalfOpen?: boolean } = {}): Promise<RawClient> {
    const host = opts.host ?? '127.0.0.1';
    const socket = connect({ port, host, localAddress: opts.localAddress, allowHalfOpen: opts.allowHalfOpen ?? false });
    const c = new RawClient(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('error', reject);
    });
    return c;
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves when what was received matches `re`; rejects with what was received after the timeout. */
  async waitFor(re: RegExp, timeoutMs = RAW_TIMEOUT_MS): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.received);
      if (m) return m[0];
      if (this.socket.destroyed && this.socket.readableEnded !== false) {
        // Closed: nothing more will come.
        if (!re.test(this.received)) throw new Error(`closed without ${re}; received ${JSON.stringify(this.received)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${re} within ${timeoutMs} ms; received ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Resolves when the socket has closed; rejects after the timeout. */
  async closed(timeoutMs = RAW_TIMEOUT_MS): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`still open after ${timeoutMs} ms; received ${JSON.stringify(this.received)}`)), timeoutMs);
    });
    try {
      await Promise.race([this.closedP, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  write(s: string | Buffer): void {
    this.socket.write(s);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
