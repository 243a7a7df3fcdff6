/**
 * A test client for the anvil protocol: waits for the server's greeting, then
 * sends one request at a time and decodes the reply with the same field table
 * the server encodes from.
 */
import { connect, type Socket } from 'node:net';
import { AttrReader } from '../../src/protocols/attr-plain.js';
import {
  ANVIL_LIMITS,
  decodeAnvilReply,
  encodeAnvilRequest,
  type AnvilReply,
  type AnvilRequestName,
} from '../../src/protocols/anvil.js';

export class AnvilTestClient {
  private readonly socket: Socket;
  private readonly waiting: Array<(attrs: string[]) => void> = [];
  private readonly early: string[][] = [];
  private closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    const reader = new AttrReader({ ...ANVIL_LIMITS, maxAttrs: 16 }, (attrs) => {
      const w = this.waiting.shift();
      if (w) w(attrs);
      else this.early.push(attrs);
    });
    socket.on('data', (chunk) => reader.write(chunk));
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w(['__closed__', '']);
    });
  }

  /** Connects and waits for `protocol=anvil_protocol`. */
  static async open(path: string): Promise<AnvilTestClient> {
    const socket = connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new AnvilTestClient(socket);
    const greeting = await client.next();
    if (greeting[0] !== 'protocol' || greeting[1] !== 'anvil_protocol') {
      throw new Error(`unexpected greeting ${JSON.stringify(greeting)}`);
    }
    return client;
  }

  /** The next block from the server (or ['__closed__',''] once it hung up). */
  next(timeoutMs = 5000): Promise<string[]> {
    const e = this.early.shift();
    if (e) return Promise.resolve(e);
    if (this.closed) return Promise.resolve(['__closed__', '']);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('anvil reply timed out')), timeoutMs);
      this.waiting.push((attrs) => {
        clearTimeout(t);
        resolve(attrs);
      });
    });
  }

  async request<R extends AnvilRequestName>(request: R, ident: string): Promise<AnvilReply<R>> {
    this.socket.write(encodeAnvilRequest(request, ident));
    return decodeAnvilReply(request, await this.next());
  }

  /** Sends raw bytes; the caller reads whatever comes back with next(). */
  writeRaw(data: string | Buffer): void {
    this.socket.write(data);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve());
      this.socket.end();
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
