/**
 * A stand-in mail server for the guard proxy's tests: it reads the PROXY
 * header the proxy sends (when told to expect one), greets, answers QUIT, and
 * keeps every session so a test can look at what arrived or act on it.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { ProxyHeaderParser, type ProxyHeader } from '../../src/protocols/proxy-protocol.js';

export interface BackendSession {
  readonly socket: Socket;
  /** The PROXY header received, once it has been. */
  header: ProxyHeader | null;
  /** Everything after the header. */
  data: Buffer;
  /** The proxy ended its side (half-close). */
  ended: boolean;
}

export interface FakeBackend {
  readonly port: number;
  readonly sessions: BackendSession[];
  /** Resolves with the next session whose header (if any) has arrived. */
  nextSession(): Promise<BackendSession>;
  close(): Promise<void>;
}

export interface FakeBackendOptions {
  /** Expect a PROXY header first. */
  readonly proxy: boolean;
  /** Sent once the header is in; '' sends nothing. */
  readonly greeting?: string;
  /** Answer "QUIT" with this and close; default a 221. */
  readonly quitReply?: string;
  /** When the proxy ends its side, end ours too, as mail servers do (default); false keeps it half-open. */
  readonly endOnEnd?: boolean;
  /** Listen on this UNIX socket path instead of a loopback port. */
  readonly path?: string;
}

export async function startFakeBackend(opts: FakeBackendOptions): Promise<FakeBackend> {
  const sessions: BackendSession[] = [];
  const waiters: Array<(s: BackendSession) => void> = [];
  const ready = (s: BackendSession) => {
    const w = waiters.shift();
    if (w) w(s);
    else queue.push(s);
  };
  const queue: BackendSession[] = [];
  const greeting = opts.greeting ?? '220 backend.test ESMTP\r\n';
  const server: Server = createServer({ allowHalfOpen: true }, (socket) => {
    const s: BackendSession = { socket, header: null, data: Buffer.alloc(0), ended: false };
    sessions.push(s);
    socket.on('error', () => socket.destroy());
    socket.on('end', () => {
      s.ended = true;
      if (opts.endOnEnd !== false) socket.end();
    });
    const parser = opts.proxy ? new ProxyHeaderParser() : null;
    let headerDone = parser === null;
    const greet = () => {
      if (greeting !== '') socket.write(greeting);
      ready(s);
    };
    if (headerDone) greet();
    socket.on('data', (chunk: Buffer) => {
      if (!headerDone && parser !== null) {
        const r = parser.write(chunk);
        if (!r.done) return;
        headerDone = true;
        s.header = r.header;
        chunk = r.rest;
        greet();
      }
      s.data = Buffer.concat([s.data, chunk]);
      if (s.data.toString('latin1').endsWith('QUIT\r\n')) socket.end(opts.quitReply ?? '221 2.0.0 Bye\r\n');
    });
  });
  await new Promise<void>((resolve) => (opts.path !== undefined ? server.listen(opts.path, resolve) : server.listen(0, '127.0.0.1', resolve)));
  const port = opts.path !== undefined ? 0 : (server.address() as { port: number }).port;
  return {
    port,
    sessions,
    nextSession: () => {
      const s = queue.shift();
      if (s) return Promise.resolve(s);
      return new Promise((resolve) => waiters.push(resolve));
    },
    close: async () => {
      for (const s of sessions) s.socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
