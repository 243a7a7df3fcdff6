/**
 * Crowds of misbehaving clients for the slow-client tests: sockets that
 * connect and say nothing, and slowloris clients that dribble a request one
 * byte at a time and never finish it. Each socket remembers when it opened,
 * when its first byte went out and when it closed, so a test can tell which
 * deadline cut it and whether a cap refused it at once.
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type Target = { readonly port: number; readonly host?: string } | { readonly path: string };

export interface Loiterer {
  readonly socket: Socket;
  readonly openedAt: number;
  /** When the first slowloris byte was written; null for a silent client. */
  firstByteAt: number | null;
  closedAt: number | null;
  /** What the server sent, up to 256 bytes (a greeting, a refusal line). */
  received: string;
  readonly closed: Promise<void>;
}

/** Connections opened at once: enough to be quick, few enough for the listen backlog (Node's default 511). */
const BATCH = 200;

function openOne(target: Target, localAddress?: string): Promise<Loiterer> {
  const socket = 'path' in target ? connect(target.path) : connect({ port: target.port, host: target.host ?? '127.0.0.1', localAddress });
  socket.setEncoding('latin1');
  let resolveClosed: () => void = () => {};
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const l: Loiterer = { socket, openedAt: 0, firstByteAt: null, closedAt: null, received: '', closed };
  socket.on('data', (d: string) => {
    if (l.received.length < 256) l.received += d.slice(0, 256 - l.received.length);
  });
  socket.on('error', () => {});
  socket.once('close', () => {
    l.closedAt = Date.now();
    resolveClosed();
  });
  return new Promise((resolve, reject) => {
    socket.once('connect', () => {
      (l as { openedAt: number }).openedAt = Date.now();
      resolve(l);
    });
    socket.once('error', reject);
  });
}

/**
 * A UNIX socket's backlog (511) fills at once when hundreds connect in one
 * tick to a server in this same process, and connect fails with EAGAIN
 * rather than waiting as TCP does; smtpd retries then, and so do we.
 */
async function openRetrying(target: Target, localAddress?: string): Promise<Loiterer> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await openOne(target, localAddress);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || attempt >= 100) throw err;
      await sleep(10);
    }
  }
}

/** Opens `n` connections that say nothing, BATCH at a time. */
export async function openSilent(target: Target, n: number, localAddress?: (i: number) => string): Promise<Loiterer[]> {
  const out: Loiterer[] = [];
  for (let i = 0; i < n; i += BATCH) {
    const batch: Array<Promise<Loiterer>> = [];
    for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push(openRetrying(target, localAddress?.(j)));
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

/**
 * Starts writing `payload` to every socket, one byte per `everyMs` each (one
 * timer for all), never the last byte, so no request is ever complete.
 * Returns a function that stops the dribble.
 */
export function dribble(clients: readonly Loiterer[], payload: string, everyMs = 1000): () => void {
  let i = 0;
  const tick = () => {
    if (i >= payload.length - 1) return;
    const byte = payload[i++] as string;
    const now = Date.now();
    for (const c of clients) {
      if (c.closedAt !== null || c.socket.destroyed) continue;
      c.firstByteAt ??= now;
      c.socket.write(byte);
    }
  };
  tick();
  const timer = setInterval(tick, everyMs);
  return () => clearInterval(timer);
}

/** Resolves when every socket has closed; rejects naming how many are still open after `timeoutMs`. */
export async function allClosed(clients: readonly Loiterer[], timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (clients.some((c) => c.closedAt === null)) {
    if (Date.now() > deadline) {
      const open = clients.filter((c) => c.closedAt === null).length;
      throw new Error(`${what}: ${open} of ${clients.length} still open after ${timeoutMs} ms`);
    }
    await sleep(20);
  }
}

export function stillOpen(clients: readonly Loiterer[]): number {
  return clients.filter((c) => c.closedAt === null).length;
}

/** Smallest and largest of `f` over the clients, for the deadline assertions. */
export function span(clients: readonly Loiterer[], f: (c: Loiterer) => number): { min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (const c of clients) {
    const v = f(c);
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { min, max };
}

export function destroyAll(clients: readonly Loiterer[]): void {
  for (const c of clients) c.socket.destroy();
}

/** Runs `f` and returns how long it took, in ms. */
export async function timed<T>(f: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const t0 = performance.now();
  const value = await f();
  return { value, ms: performance.now() - t0 };
}
