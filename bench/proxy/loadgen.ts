/**
 * The client side: every workload of the proxy benchmark, over loopback TCP,
 * from one event loop (pinned to CPU 0 with the backend by ./index.ts).
 *
 *   session   connect, read the 220 banner, send QUIT, read 221, close; at
 *             once the next (the note's method: counts may lag the close,
 *             so limits are set far above the client count)
 *   refusal   connect, read until the proxy closes; must be a 421 line
 *   transfer  one connection: SEND n (backend → client) or SINK n (client →
 *             backend) through the proxy, timed from the command to the last byte
 *   openIdle  N connections that each read the banner, then stay open
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Histogram, type LatencySummary } from '../anvil/histogram.js';

const HOST = '127.0.0.1';
/** After an error, a client waits this long before its next try, so a dead target is not a busy loop. */
const ERROR_BACKOFF_MS = 10;
/** In-flight sessions get this long to finish after the run ends; then they are destroyed and counted as stalled. */
const DRAIN_MS = 10_000;
/** A bulk transfer slower than this has stalled. */
const TRANSFER_TIMEOUT_MS = 120_000;
/** Connections opened at once by openIdle: below the listen backlogs (4,096). */
const OPEN_CONCURRENCY = 256;
const OPEN_TIMEOUT_MS = 30_000;
const BULK_CHUNK = Buffer.alloc(1 << 20, 0x79);
/** Where a transfer's client reads: one at a time, so one buffer. */
const READ_BUFFER = Buffer.allocUnsafe(1 << 20);

export type LoopKind = 'session' | 'refusal';

export interface LoopOptions {
  readonly port: number;
  readonly kind: LoopKind;
  readonly clients: number;
  readonly durationMs: number;
  /** Called synchronously when the measured window opens and closes (read /proc here). */
  readonly onStart?: () => void;
  readonly onStop?: () => void;
}

export interface LoopResult {
  readonly kind: LoopKind;
  readonly clients: number;
  /** Sessions (or refusals) completed within the window. */
  readonly count: number;
  readonly wallMs: number;
  readonly perSec: number;
  /** connect() to 221 read (session), or to the proxy's close (refusal). */
  readonly latency: LatencySummary;
  readonly errors: number;
  readonly firstError: string | null;
  /** Sessions still in flight DRAIN_MS after the window closed. */
  readonly stalled: number;
}

/** `clients` loops of session or refusal against 127.0.0.1:port for durationMs. */
export async function runLoop(opts: LoopOptions): Promise<LoopResult> {
  const hist = new Histogram();
  const expect = opts.kind === 'session' ? '220 ' : '421 ';
  const live: Array<Socket | null> = new Array<Socket | null>(opts.clients).fill(null);
  let stopping = false;
  let count = 0;
  let errors = 0;
  let firstError: string | null = null;
  const fail = (msg: string) => {
    errors++;
    firstError ??= msg;
  };

  const client = (i: number) =>
    new Promise<void>((resolve) => {
      const next = () => (stopping ? resolve() : one());
      const one = () => {
        const t0 = process.hrtime.bigint();
        const s = connect({ port: opts.port, host: HOST, noDelay: true });
        live[i] = s;
        let buf = '';
        let step = 0;
        let over = false;
        const end = (err: string | null) => {
          if (over) return;
          over = true;
          live[i] = null;
          if (err !== null) {
            if (!stopping) fail(err);
            s.destroy();
            setTimeout(next, ERROR_BACKOFF_MS);
            return;
          }
          if (!stopping) {
            count++;
            hist.recordNs(Number(process.hrtime.bigint() - t0));
          }
          s.destroy();
          next();
        };
        s.setEncoding('latin1');
        s.on('data', (d: string) => {
          buf += d;
          if (opts.kind === 'refusal') return;
          const nl = buf.indexOf('\n');
          if (nl === -1) return;
          const line = buf.slice(0, nl + 1);
          buf = buf.slice(nl + 1);
          if (step === 0) {
            if (!line.startsWith(expect)) return end(`expected a banner, got ${JSON.stringify(line.slice(0, 80))}`);
            step = 1;
            s.write('QUIT\r\n');
          } else if (line.startsWith('221 ')) end(null);
          else end(`expected 221, got ${JSON.stringify(line.slice(0, 80))}`);
        });
        s.on('error', (e: NodeJS.ErrnoException) => end(`${e.code ?? e.message} (${opts.kind}, step ${step})`));
        s.on('close', () => {
          if (opts.kind === 'session') return end(`closed before 221 (step ${step}): ${JSON.stringify(buf.slice(0, 80))}`);
          if (buf.startsWith(expect) && buf.endsWith('\r\n')) end(null);
          else end(`refusal: expected a 421 line, got ${JSON.stringify(buf.slice(0, 80))}`);
        });
      };
      one();
    });

  opts.onStart?.();
  const t0 = performance.now();
  const done = Promise.all(Array.from({ length: opts.clients }, (_, i) => client(i)));
  await sleep(opts.durationMs);
  stopping = true;
  const wallMs = performance.now() - t0;
  opts.onStop?.();
  let drainTimer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([done.then(() => true), new Promise<boolean>((r) => (drainTimer = setTimeout(() => r(false), DRAIN_MS)))]);
  clearTimeout(drainTimer);
  let stalled = 0;
  if (!drained) {
    for (const s of live) {
      if (s === null) continue;
      stalled++;
      s.destroy();
    }
    await done;
  }
  return { kind: opts.kind, clients: opts.clients, count, wallMs, perSec: (count * 1000) / wallMs, latency: hist.summary(), errors, firstError, stalled };
}

/** A connection that has read the banner; stays open until closed. */
export function openAndReadBanner(port: number, timeoutMs = OPEN_TIMEOUT_MS): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: HOST, noDelay: true });
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no banner within ${timeoutMs} ms`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      if (!buf.includes('\n')) return;
      clearTimeout(t);
      s.removeListener('data', onData);
      if (!buf.startsWith('220 ')) {
        s.destroy();
        reject(new Error(`expected a banner, got ${JSON.stringify(buf.slice(0, 80))}`));
        return;
      }
      s.on('data', () => {});
      resolve(s);
    };
    s.on('data', onData);
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

export interface OpenResult {
  readonly sockets: Socket[];
  readonly errors: number;
  readonly firstError: string | null;
  readonly ms: number;
}

/** Opens n connections (OPEN_CONCURRENCY at a time), each having read the banner. */
export async function openIdle(port: number, n: number): Promise<OpenResult> {
  const sockets: Socket[] = [];
  let errors = 0;
  let firstError: string | null = null;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      next++;
      try {
        sockets.push(await openAndReadBanner(port));
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, n) }, worker));
  return { sockets, errors, firstError, ms: performance.now() - t0 };
}

/** Closes sockets and resolves when all have closed. */
export async function closeAll(sockets: readonly Socket[]): Promise<void> {
  await Promise.all(
    sockets.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.closed) return resolve();
          s.once('close', () => resolve());
          s.destroy();
        }),
    ),
  );
}

export type Direction = 'down' | 'up';

export interface TransferResult {
  readonly direction: Direction;
  readonly bytes: number;
  readonly ms: number;
  readonly bytesPerSec: number;
}

/**
 * One bulk transfer of `bytes` through 127.0.0.1:port: 'down' is backend →
 * client (SEND), 'up' client → backend (SINK, answered once all arrived).
 * `onStart`/`onStop` bracket the timed part. The client reads into one
 * static buffer (`onread`): no allocation and no 'data' event per chunk,
 * which took the generator's direct rate from about 2.0 to 3.3 GiB/s, so
 * that the proxy rather than the sink is what a transfer measures.
 */
export function transfer(port: number, bytes: number, direction: Direction, onStart?: () => void, onStop?: () => void): Promise<TransferResult> {
  return new Promise((resolve, reject) => {
    let text = '';
    let started = false;
    let over = false;
    let t0 = 0;
    let got = 0;
    const end = (err: Error | null) => {
      if (over) return;
      over = true;
      clearTimeout(timer);
      s.destroy();
      if (err !== null) return reject(err);
      const ms = performance.now() - t0;
      onStop?.();
      resolve({ direction, bytes, ms, bytesPerSec: (bytes * 1000) / ms });
    };
    const begin = () => {
      started = true;
      text = '';
      onStart?.();
      t0 = performance.now();
      if (direction === 'down') {
        s.write(`SEND ${bytes}\r\n`);
        return;
      }
      s.write(`SINK ${bytes}\r\n`);
      let left = bytes;
      const pump = () => {
        while (left > 0) {
          const c = left >= BULK_CHUNK.length ? BULK_CHUNK : BULK_CHUNK.subarray(0, left);
          left -= c.length;
          if (!s.write(c)) {
            if (left > 0) s.once('drain', pump);
            return;
          }
        }
      };
      pump();
    };
    /** Always true: never pause reading. */
    const onRead = (n: number): boolean => {
      if (started && direction === 'down') {
        got += n;
        if (got >= bytes) end(null);
        return true;
      }
      // The banner, or SINK's reply: one short line.
      text += READ_BUFFER.toString('latin1', 0, n);
      if (!text.includes('\n')) return true;
      if (!started) {
        if (text.startsWith('220 ')) begin();
        else end(new Error(`expected a banner, got ${JSON.stringify(text.slice(0, 80))}`));
      } else if (text.startsWith('250 ')) end(null);
      else end(new Error(`SINK: ${JSON.stringify(text.slice(0, 80))}`));
      return true;
    };
    const s = connect({ port, host: HOST, noDelay: true, onread: { buffer: READ_BUFFER, callback: onRead } });
    const timer = setTimeout(() => end(new Error(`transfer ${direction} stalled after ${got} bytes`)), TRANSFER_TIMEOUT_MS);
    s.on('error', (e) => end(e));
    s.on('close', () => end(new Error(`transfer ${direction}: closed after ${got} of ${bytes} bytes`)));
  });
}
