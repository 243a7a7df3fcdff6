/**
 * The anvil load generator: N persistent client connections, each sending one
 * request and waiting for its reply before the next, as smtpd does. Every
 * client loops connect → disconnect, either on one hot ident or on a new ident
 * per connect ("new client every request").
 *
 * The hot loop avoids the general decoder: requests are prebuilt Buffers (hot)
 * or one string per ident (fresh), and a reply is complete when the bytes
 * received end with "\n\n" (no pipelining, so exactly one block is in flight).
 * Every reply's status is checked with a byte compare; one reply in
 * SAMPLE_EVERY is decoded in full with the project's codec.
 */
import { connect, type Socket } from 'node:net';
import { AttrReader } from '../../src/protocols/attr-plain.js';
import { ANVIL_LIMITS, decodeAnvilReply } from '../../src/protocols/anvil.js';
import { Histogram, type LatencySummary } from './histogram.js';

const GREETING = 'protocol=anvil_protocol\n\n';
const STATUS_OK = Buffer.from('status=0\n');
const LF = 0x0a;
/** Decode one reply in this many with the full codec, to check the fast path's assumptions. */
const SAMPLE_EVERY = 1024;
/** Connecting and reading the greeting; Postfix's master forks anvil on the first connection. */
const OPEN_TIMEOUT_MS = 15_000;
/** After the deadline, clients finish the connect/disconnect pair in flight; a server that stalls longer has failed. */
const DRAIN_TIMEOUT_MS = 30_000;

export type Shape =
  | { readonly kind: 'hot'; readonly ident: string }
  | { readonly kind: 'fresh'; readonly service: string; readonly firstAddress: number; readonly maxIdents: number };

export interface RunOptions {
  readonly socket: string;
  readonly clients: number;
  /** Stop starting new pairs after this long. */
  readonly durationMs: number;
  readonly shape: Shape;
  /** Width of the throughput timeline's buckets. */
  readonly bucketMs?: number;
  /**
   * Open loop: offer this many requests per second in all, whatever the
   * server's speed, so latency is measured below saturation (smtpd asks
   * anvil only when an SMTP event happens). Without it every client sends
   * its next request as soon as the reply arrives.
   */
  readonly ratePerSec?: number;
}

/** Unused tokens are kept for at most this long, so a stall is not followed by a burst. */
const PACE_BURST_MS = 0.1;

export interface RunResult {
  readonly clients: number;
  /** The offered load of a paced run; undefined for a closed loop. */
  readonly ratePerSec?: number;
  readonly requests: number;
  readonly wallMs: number;
  readonly requestsPerSec: number;
  readonly latency: LatencySummary;
  /** Generator CPU (user + system, this process) over the run. */
  readonly generatorCpuUs: number;
  /** generatorCpuUs / wall time: 1.0 means the generator used a whole core. */
  readonly generatorCpuShare: number;
  readonly errors: number;
  readonly firstError: string | null;
  /** Distinct idents sent (fresh shape), or 1 (hot). */
  readonly idents: number;
  readonly firstIdent: string;
  readonly lastIdent: string;
  /** Whether the run ended on its ident target (fresh shape) rather than on time. */
  readonly reachedTarget: boolean;
  readonly bucketMs: number;
  /** Requests completed in each bucketMs slice of the run. */
  readonly timeline: number[];
}

/** Dotted IPv4 for a 32-bit number. */
export function ipv4(n: number): string {
  return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** Bytes one read may deliver: a reply is under 100 bytes, so one read holds it. */
const READ_BUFFER_BYTES = 4096;

/**
 * One anvil connection. Reads land in one buffer reused for every read (net's
 * `onread`), so a reply costs the generator no allocation, and go to whatever
 * `onBytes` is at the time: the greeting check, then the load loop.
 */
export class AnvilConn {
  readonly socket: Socket;
  onBytes: (buf: Buffer, n: number) => void = () => {};

  private constructor(path: string) {
    const buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    this.socket = connect({
      path,
      onread: {
        buffer,
        callback: (n: number) => {
          this.onBytes(buffer, n);
          return true;
        },
      },
    });
  }

  /** Connects and waits for the `protocol=anvil_protocol` greeting. */
  static open(path: string): Promise<AnvilConn> {
    return new Promise((resolve, reject) => {
      const conn = new AnvilConn(path);
      const socket = conn.socket;
      let got = '';
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const onClose = () => fail(new Error('anvil closed the connection before its greeting'));
      const timer = setTimeout(() => fail(new Error(`no anvil greeting from ${path} within ${OPEN_TIMEOUT_MS} ms`)), OPEN_TIMEOUT_MS);
      conn.onBytes = (buf, n) => {
        got += buf.toString('latin1', 0, n);
        if (got.length < GREETING.length) return;
        conn.onBytes = () => {};
        socket.off('error', fail);
        socket.off('close', onClose);
        clearTimeout(timer);
        if (got !== GREETING) {
          socket.destroy();
          reject(new Error(`unexpected anvil greeting ${JSON.stringify(got)}`));
          return;
        }
        resolve(conn);
      };
      socket.once('error', fail);
      socket.once('close', onClose);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Opens one anvil connection and waits for the greeting. */
export function openAnvil(path: string): Promise<AnvilConn> {
  return AnvilConn.open(path);
}

/** One request/reply on an idle connection, decoded with the project's codec. For checks, not load. */
export function anvilCall(conn: AnvilConn, request: 'lookup' | 'connect' | 'disconnect', ident: string, timeoutMs = 10_000): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => done(new Error(`anvil ${request} timed out after ${timeoutMs} ms`)), timeoutMs);
    const done = (err: Error | null, value?: Record<string, number>) => {
      clearTimeout(timer);
      conn.onBytes = () => {};
      if (err) reject(err);
      else resolve(value as Record<string, number>);
    };
    conn.onBytes = (buf, n) => {
      got = Buffer.concat([got, buf.subarray(0, n)]);
      if (got.length < 2 || got[got.length - 1] !== LF || got[got.length - 2] !== LF) return;
      try {
        done(null, decodeOne(request, got));
      } catch (err) {
        done(err as Error);
      }
    };
    conn.socket.write(`request=${request}\nident=${ident}\n\n`, 'latin1');
  });
}

function decodeOne(request: 'lookup' | 'connect' | 'disconnect', bytes: Buffer): Record<string, number> {
  let attrs: string[] | null = null;
  new AttrReader({ ...ANVIL_LIMITS, maxAttrs: 16 }, (a) => {
    attrs ??= a;
  }).write(bytes);
  if (attrs === null) throw new Error('incomplete anvil reply');
  return decodeAnvilReply(request, attrs) as Record<string, number>;
}

/** Runs one shape to its deadline (or ident target) and reports what it saw. */
export async function runLoad(opts: RunOptions): Promise<RunResult> {
  const bucketMs = opts.bucketMs ?? 100;
  const opened = await Promise.allSettled(Array.from({ length: opts.clients }, () => AnvilConn.open(opts.socket)));
  const conns = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
  const failed = opened.find((o): o is PromiseRejectedResult => o.status === 'rejected');
  if (failed !== undefined) {
    for (const c of conns) c.close();
    throw failed.reason;
  }
  const shape = opts.shape;
  const hist = new Histogram();
  const timeline: number[] = [];
  const bucketNs = BigInt(bucketMs) * 1_000_000n;
  let stopping = false;
  let requests = 0;
  let errors = 0;
  let firstError: string | null = null;
  let nextAddress = shape.kind === 'fresh' ? shape.firstAddress : 0;
  const lastAddress = shape.kind === 'fresh' ? shape.firstAddress + shape.maxIdents : 0;
  let firstIdent = shape.kind === 'hot' ? shape.ident : '';
  let lastIdent = firstIdent;
  let reachedTarget = false;
  const hotConnect = Buffer.from(`request=connect\nident=${shape.kind === 'hot' ? shape.ident : ''}\n\n`, 'latin1');
  const hotDisconnect = Buffer.from(`request=disconnect\nident=${shape.kind === 'hot' ? shape.ident : ''}\n\n`, 'latin1');

  let finished = 0;
  let allDone!: () => void;
  const allDonePromise = new Promise<void>((resolve) => {
    allDone = resolve;
  });

  const recordError = (msg: string) => {
    errors++;
    firstError ??= msg;
  };

  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();

  // Open-loop pacing: a client with its reply in hand waits here for a token.
  // Tokens are handed out from a setImmediate loop, which comes round every few
  // tens of µs between I/O callbacks: a timer would release a whole
  // millisecond's worth at once and measure the queue that burst makes.
  const waiting: Array<() => void> = [];
  let pacing = opts.ratePerSec !== undefined;
  if (opts.ratePerSec !== undefined) {
    const perMs = opts.ratePerSec / 1000;
    const maxTokens = Math.max(1, perMs * PACE_BURST_MS);
    let tokens = 0;
    let last = performance.now();
    const pace = () => {
      if (!pacing) return;
      const now = performance.now();
      tokens = Math.min(tokens + (now - last) * perMs, maxTokens);
      last = now;
      while (tokens >= 1 && waiting.length > 0) {
        tokens--;
        (waiting.shift() as () => void)();
      }
      setImmediate(pace);
    };
    setImmediate(pace);
  }
  const paced = (send: () => void): void => {
    if (!pacing || stopping) send();
    else waiting.push(send);
  };

  const startClient = (conn: AnvilConn) => {
    const socket = conn.socket;
    let pending: Buffer | null = null;
    let sentAt = 0n;
    /** True while the in-flight request is a connect (its disconnect must follow). */
    let inConnect = false;
    let ident = '';
    let done = false;

    const finish = () => {
      if (done) return;
      done = true;
      if (++finished === conns.length) allDone();
    };

    const sendConnect = () => {
      if (stopping) return finish();
      if (shape.kind === 'hot') {
        inConnect = true;
        sentAt = process.hrtime.bigint();
        socket.write(hotConnect);
        return;
      }
      if (nextAddress >= lastAddress) {
        reachedTarget = true;
        stopping = true;
        return finish();
      }
      ident = `${shape.service}:${ipv4(nextAddress++)}`;
      if (firstIdent === '') firstIdent = ident;
      lastIdent = ident;
      inConnect = true;
      sentAt = process.hrtime.bigint();
      socket.write(`request=connect\nident=${ident}\n\n`, 'latin1');
    };

    const sendDisconnect = () => {
      inConnect = false;
      sentAt = process.hrtime.bigint();
      if (shape.kind === 'hot') socket.write(hotDisconnect);
      else socket.write(`request=disconnect\nident=${ident}\n\n`, 'latin1');
    };

    conn.onBytes = (buf: Buffer, nread: number) => {
      let reply = buf;
      let n = nread;
      if (pending !== null) {
        reply = Buffer.concat([pending, buf.subarray(0, nread)]);
        n = reply.length;
        pending = null;
      }
      if (n < 2 || reply[n - 1] !== LF || reply[n - 2] !== LF) {
        // a reply split across reads: keep a copy, the read buffer is reused
        pending = Buffer.from(reply.subarray(0, n));
        return;
      }
      const now = process.hrtime.bigint();
      hist.recordNs(Number(now - sentAt));
      const b = Number((now - t0) / bucketNs);
      while (timeline.length <= b) timeline.push(0);
      timeline[b] = (timeline[b] as number) + 1;
      requests++;
      if (n < STATUS_OK.length || reply.compare(STATUS_OK, 0, STATUS_OK.length, 0, STATUS_OK.length) !== 0) {
        recordError(`bad reply ${JSON.stringify(reply.toString('latin1', 0, n))}`);
      } else if (requests % SAMPLE_EVERY === 0) {
        try {
          const r = decodeOne(inConnect ? 'connect' : 'disconnect', reply.subarray(0, n));
          if (inConnect && shape.kind === 'fresh' && (r.count !== 1 || r.rate !== 1)) {
            recordError(`new client ${ident} answered count=${r.count} rate=${r.rate}, expected 1 and 1`);
          }
        } catch (err) {
          recordError((err as Error).message);
        }
      }
      if (inConnect) paced(sendDisconnect);
      else paced(sendConnect);
    };
    socket.on('error', (err) => recordError(err.message));
    socket.on('close', () => {
      if (!done) recordError('server closed a client connection during the run');
      finish();
    });
    sendConnect();
  };

  const deadline = setTimeout(() => {
    stopping = true;
    for (const send of waiting.splice(0)) send();
  }, opts.durationMs);
  for (const c of conns) startClient(c);

  let drainTimer: NodeJS.Timeout | undefined;
  const hardStop = new Promise<'stalled'>((resolve) => {
    drainTimer = setTimeout(() => resolve('stalled'), opts.durationMs + DRAIN_TIMEOUT_MS);
  });
  const outcome = await Promise.race([allDonePromise.then(() => 'ok' as const), hardStop]);
  const wallNs = process.hrtime.bigint() - t0;
  const cpu = process.cpuUsage(cpu0);
  clearTimeout(deadline);
  clearTimeout(drainTimer);
  pacing = false;
  for (const c of conns) {
    c.socket.removeAllListeners('close');
    c.close();
  }
  if (outcome === 'stalled') recordError(`server stalled: clients still waiting ${DRAIN_TIMEOUT_MS} ms after the deadline`);

  const wallMs = Number(wallNs) / 1e6;
  const genUs = cpu.user + cpu.system;
  return {
    clients: opts.clients,
    ...(opts.ratePerSec !== undefined ? { ratePerSec: opts.ratePerSec } : {}),
    requests,
    wallMs,
    requestsPerSec: requests / (wallMs / 1000),
    latency: hist.summary(),
    generatorCpuUs: genUs,
    generatorCpuShare: genUs / (wallMs * 1000),
    errors,
    firstError,
    idents: shape.kind === 'fresh' ? nextAddress - shape.firstAddress : 1,
    firstIdent,
    lastIdent,
    reachedTarget,
    bucketMs,
    timeline,
  };
}

/**
 * Requests per second between two points of the run (ms from its start),
 * widened to whole timeline buckets; the last bucket counts only up to the
 * run's end, so a partly filled final bucket does not drag the rate down.
 */
export function rateBetween(r: RunResult, fromMs: number, toMs: number): number {
  const n = r.timeline.length;
  if (n === 0) return 0;
  const a = Math.max(0, Math.min(n - 1, Math.floor(fromMs / r.bucketMs)));
  const b = Math.max(a + 1, Math.min(n, Math.ceil(toMs / r.bucketMs)));
  let sum = 0;
  for (let i = a; i < b; i++) sum += r.timeline[i] as number;
  const spanMs = Math.min(b * r.bucketMs, r.wallMs) - a * r.bucketMs;
  return spanMs > 0 ? sum / (spanMs / 1000) : 0;
}
