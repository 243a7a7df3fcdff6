/**
 * The mail server behind both proxies: a tiny SMTP-shaped banner server, run
 * as its own process (`node dist/bench/proxy/backend.js`) so that its sockets
 * and CPU are apart from the generator's. Two listeners:
 *
 *   proxied  expects a PROXY header (v1 or v2) first, parsed with Doorman's
 *            own ProxyHeaderParser; the banner follows it, as with Postfix's
 *            smtpd_upstream_proxy_protocol
 *   plain    no header: the generator's direct reference
 *
 * Then, line by line (at most MAX_LINE bytes):
 *   (banner)   220 bench.example ESMTP
 *   QUIT       221 2.0.0 Bye, then close
 *   SEND n     n bytes of bulk data, then close (backend → client)
 *   SINK n     swallows the next n bytes, then 250 2.0.0 n, then close
 *   STATS      250 and a JSON object: headers seen per version, bad headers
 *   other      500 5.5.2, then close
 *
 * The process prints one JSON line with its two ports when it listens, and
 * exits when its stdin closes, so it cannot outlive the benchmark.
 */
import type { ChildProcess } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { ProxyHeaderParser } from '../../src/protocols/proxy-protocol.js';
import { leashToStdin, spawnHelper } from './child.js';

/** A command line longer than this is garbage from a broken proxy. */
const MAX_LINE = 1024;
/** SEND writes this buffer over and over: large writes, little per-call cost. */
const BULK_CHUNK = Buffer.alloc(1 << 20, 0x78);
/** Listen queue: the generator opens hundreds of connections at once. */
const BACKLOG = 4096;

export const BANNER = '220 bench.example ESMTP\r\n';
export const BYE = '221 2.0.0 Bye\r\n';

/** What the backend saw: PROXY headers per version, and headers it could not parse. */
export interface Stats {
  v1: number;
  v2: number;
  local: number;
  badHeaders: number;
  lastSource: string | null;
}

const stats: Stats = { v1: 0, v2: 0, local: 0, badHeaders: 0, lastSource: null };

function serve(s: Socket, proxied: boolean): void {
  s.on('error', () => s.destroy());
  let parser: ProxyHeaderParser | null = proxied ? new ProxyHeaderParser() : null;
  let line = '';
  let sinkLeft = 0;
  let sinkTotal = 0;
  const onBytes = (chunk: Buffer): void => {
    if (parser !== null) {
      let r;
      try {
        r = parser.write(chunk);
      } catch {
        stats.badHeaders++;
        s.destroy();
        return;
      }
      if (!r.done) return;
      parser = null;
      const h = r.header;
      if (!h.proxied) stats.local++;
      else if (h.version === 1) stats.v1++;
      else stats.v2++;
      if (h.source !== undefined) stats.lastSource = h.source.address;
      s.write(BANNER);
      if (r.rest.length === 0) return;
      chunk = r.rest;
    }
    if (sinkLeft > 0) {
      sinkLeft -= chunk.length;
      if (sinkLeft <= 0) s.end(`250 2.0.0 ${sinkTotal}\r\n`);
      return;
    }
    line += chunk.toString('latin1');
    const nl = line.indexOf('\n');
    if (nl === -1) {
      if (line.length > MAX_LINE) s.end('500 5.5.2 Line too long\r\n');
      return;
    }
    const cmd = line.slice(0, nl).trimEnd();
    const after = line.length > nl + 1 ? Buffer.from(line.slice(nl + 1), 'latin1') : null;
    line = '';
    const sink = command(s, cmd);
    if (sink > 0) {
      sinkLeft = sink;
      sinkTotal = sink;
      // Bytes pipelined behind the command line count too.
      if (after !== null) onBytes(after);
    }
  };
  s.on('data', onBytes);
  if (!proxied) s.write(BANNER);
}

/** Answers one command line; returns the byte count to swallow for SINK, else 0. */
function command(s: Socket, cmd: string): number {
  const [verb = '', arg = ''] = cmd.split(' ');
  const n = Number(arg);
  const count = Number.isSafeInteger(n) && n > 0;
  switch (verb.toUpperCase()) {
    case 'QUIT':
      s.end(BYE);
      return 0;
    case 'STATS':
      s.end(`250 ${JSON.stringify(stats)}\r\n`);
      return 0;
    case 'SEND':
      if (!count) break;
      sendBulk(s, n);
      return 0;
    case 'SINK':
      if (count) return n;
      break;
  }
  s.end('500 5.5.2 Unknown command\r\n');
  return 0;
}

/** Writes n bytes with backpressure, then closes. */
function sendBulk(s: Socket, n: number): void {
  let left = n;
  const pump = (): void => {
    while (left > 0) {
      const c = left >= BULK_CHUNK.length ? BULK_CHUNK : BULK_CHUNK.subarray(0, left);
      left -= c.length;
      if (!s.write(c)) {
        if (left > 0) s.once('drain', pump);
        else s.end();
        return;
      }
    }
    s.end();
  };
  pump();
}

function listen(proxied: boolean): Promise<Server> {
  const srv = createServer({ noDelay: true }, (s) => serve(s, proxied));
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen({ port: 0, host: '127.0.0.1', backlog: BACKLOG }, () => resolve(srv));
  });
}

function portOf(srv: Server): number {
  const a = srv.address();
  if (a === null || typeof a === 'string') throw new Error('backend: no port');
  return a.port;
}

async function main(): Promise<void> {
  const [proxied, plain] = await Promise.all([listen(true), listen(false)]);
  leashToStdin();
  process.stdout.write(`${JSON.stringify({ proxied: portOf(proxied), plain: portOf(plain) })}\n`);
}

/** The backend child process, seen from the benchmark. */
export class BackendProcess {
  readonly pid: number;
  readonly proxiedPort: number;
  readonly plainPort: number;
  private readonly child: ChildProcess;
  private readonly unregister: () => void;

  private constructor(child: ChildProcess, ports: { proxied: number; plain: number }, unregister: () => void) {
    this.child = child;
    this.pid = child.pid as number;
    this.proxiedPort = ports.proxied;
    this.plainPort = ports.plain;
    this.unregister = unregister;
  }

  static async start(): Promise<BackendProcess> {
    const { child, ready, unregister } = await spawnHelper<{ proxied: number; plain: number }>('backend', [fileURLToPath(import.meta.url)]);
    return new BackendProcess(child, ready, unregister);
  }

  /** Asks the backend (on its plain port) what headers it has seen. */
  stats(): Promise<Stats> {
    return new Promise((resolve, reject) => {
      const s = connect(this.plainPort, '127.0.0.1');
      let buf = '';
      let asked = false;
      s.setEncoding('latin1');
      s.on('data', (d: string) => {
        buf += d;
        if (!asked && buf.includes('\n')) {
          asked = true;
          s.write('STATS\r\n');
        }
      });
      s.on('end', () => {
        const m = /^250 (\{.*\})\r?$/m.exec(buf);
        if (m === null) reject(new Error(`backend STATS: ${JSON.stringify(buf.slice(0, 200))}`));
        else resolve(JSON.parse(m[1] as string) as Stats);
      });
      s.on('error', reject);
    });
  }

  /** Kills the backend (it holds nothing worth a graceful close). */
  stop(): void {
    this.unregister();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`backend: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
