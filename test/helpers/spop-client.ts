/**
 * HAProxy's side of SPOP, for tests of the SPOE agent without HAProxy: a
 * connection that sends HELLO, NOTIFY and DISCONNECT frames as HAProxy 2.6
 * does (../../src/protocols/spop-messages.ts encodes both directions) and
 * reads the agent's frames back, with deadlines.
 */
import { connect, type Socket } from 'node:net';
import { SPOP_FRAME, SpopFrameReader, type SpopFrame, type SpopValue } from '../../src/protocols/spop.js';
import { decodeAck, decodeAgentHello, decodeDisconnect, encodeDisconnect, encodeHaproxyHello, encodeNotify, type SpopArg } from '../../src/protocols/spop-messages.js';

export const HAPROXY_HELLO_FIELDS = { supportedVersions: ['2.0'], maxFrameSize: 16380, capabilities: ['pipelining', 'async'], healthcheck: false, engineId: 'test-engine' };

/** The arguments of the shipped spoe-message for a client from `src` (IPv4 or IPv6) to `service`. */
export function clientArgs(src: string, service: string, dstPort: number | null = 25): SpopArg[] {
  const args: SpopArg[] = [
    { name: 'src', value: { type: src.includes(':') ? 'ipv6' : 'ipv4', value: src } },
    { name: 'service', value: { type: 'string', value: service } },
  ];
  if (dstPort !== null) args.push({ name: 'dst_port', value: { type: 'int64', value: BigInt(dstPort) } });
  return args;
}

/** An ACK's set-var actions as name → value (HAProxy would prefix them). */
export function ackVars(f: SpopFrame): Record<string, string | number | bigint | boolean | null> {
  const out: Record<string, string | number | bigint | boolean | null> = {};
  for (const a of decodeAck(f).actions) {
    if (a.action !== 'set-var') continue;
    const v: SpopValue = a.value;
    out[a.name] = v.type === 'null' ? null : v.type === 'binary' ? v.value.toString('hex') : v.value;
  }
  return out;
}

export class FakeHaproxy {
  private readonly socket: Socket;
  private readonly reader = new SpopFrameReader(65536);
  private readonly frames: SpopFrame[] = [];
  private waiter: (() => void) | null = null;
  closed = false;
  private readonly closedP: Promise<void>;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      for (let f = this.reader.next(); f !== null; f = this.reader.next()) this.frames.push({ ...f, payload: Buffer.from(f.payload) });
      this.waiter?.();
    });
    this.closedP = new Promise((resolve) => {
      socket.on('close', () => {
        this.closed = true;
        this.waiter?.();
        resolve();
      });
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<FakeHaproxy> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host }, () => resolve(new FakeHaproxy(s)));
      s.once('error', reject);
    });
  }

  /** Connects and shakes hands; resolves with the agent's HELLO items. */
  static async ready(port: number, hello: Partial<typeof HAPROXY_HELLO_FIELDS> = {}): Promise<FakeHaproxy> {
    const h = await FakeHaproxy.connect(port);
    h.send(encodeHaproxyHello({ ...HAPROXY_HELLO_FIELDS, ...hello }));
    const f = await h.next();
    if (f.type !== SPOP_FRAME.AGENT_HELLO) throw new Error(`expected AGENT-HELLO, got frame type ${f.type}`);
    decodeAgentHello(f.payload, hello.maxFrameSize ?? HAPROXY_HELLO_FIELDS.maxFrameSize);
    return h;
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  notify(streamId: number, frameId: number, messages: ReadonlyArray<{ name: string; args: SpopArg[] }>): void {
    this.send(encodeNotify({ streamId, frameId, messages }, 16380));
  }

  disconnect(status = 0, message = 'normal'): void {
    this.send(encodeDisconnect(SPOP_FRAME.HAPROXY_DISCONNECT, { status, message }, 16380));
  }

  /** The next frame from the agent; rejects on close or after timeoutMs. */
  async next(timeoutMs = 2000): Promise<SpopFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.shift();
      if (f !== undefined) return f;
      if (this.closed) throw new Error('the agent closed the connection');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no frame from the agent within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = null;
          resolve();
        };
      });
    }
  }

  /** The agent's AGENT-DISCONNECT (its status and message). */
  async agentDisconnect(timeoutMs = 2000): Promise<{ status: number; message: string }> {
    const f = await this.next(timeoutMs);
    if (f.type !== SPOP_FRAME.AGENT_DISCONNECT) throw new Error(`expected AGENT-DISCONNECT, got frame type ${f.type}`);
    return decodeDisconnect(f.payload);
  }

  waitClosed(timeoutMs = 2000): Promise<void> {
    return Promise.race([this.closedP, new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`still open after ${timeoutMs} ms`)), timeoutMs).unref())]);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
