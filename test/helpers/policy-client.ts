/** A test client for Postfix's policy delegation protocol: one request at a time, like smtpd. */
import { connect, type Socket } from 'node:net';
import { AttrReader } from '../../src/protocols/attr-plain.js';
import { POLICY_LIMITS, encodePolicyRequest } from '../../src/protocols/policy.js';

export class PolicyTestClient {
  private readonly socket: Socket;
  private readonly waiting: Array<(v: string | null) => void> = [];
  closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    const reader = new AttrReader(POLICY_LIMITS, (attrs) => {
      const w = this.waiting.shift();
      if (w) w(attrs[0] === 'action' ? (attrs[1] as string) : `unexpected ${JSON.stringify(attrs)}`);
    });
    socket.on('data', (c) => reader.write(c));
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w(null);
    });
    socket.on('error', () => {});
  }

  static async open(target: { port: number; host?: string } | { path: string }): Promise<PolicyTestClient> {
    const socket = 'path' in target ? connect(target.path) : connect(target.port, target.host ?? '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new PolicyTestClient(socket);
  }

  /** Sends one request; resolves with the action, or null if the server hung up. */
  ask(attrs: Record<string, string>, timeoutMs = 5000): Promise<string | null> {
    return this.raw(encodePolicyRequest(attrs), timeoutMs);
  }

  raw(bytes: string, timeoutMs = 5000): Promise<string | null> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('policy reply timed out')), timeoutMs);
      this.waiting.push((v) => {
        clearTimeout(t);
        resolve(v);
      });
      this.socket.write(bytes);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
