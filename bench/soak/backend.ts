/**
 * The soak's stand-in IMAP server, in the soak's own process: takes the
 * proxy's PROXY header, greets, answers `tag NOOP` and `tag LOGOUT` (then
 * closes), sends `tag FETCH n` bytes of bulkPattern(n) as a literal, takes
 * `tag APPEND n` and the n bytes after the line and answers with their
 * SHA-256, and ends its side when the client does. Unlike
 * test/helpers/fake-backend.ts it keeps no session once closed, so ten
 * minutes of sessions cost it nothing.
 */
import { createHash, type Hash } from 'node:crypto';
import { createServer } from 'node:net';
import { ProxyHeaderParser } from '../../src/protocols/proxy-protocol.js';

export const GREETING = '* OK soak backend ready\r\n';

/** The most a FETCH or APPEND of the soak moves: past it, the line is not ours. */
const MAX_BULK = 256 * 1024 * 1024;

const patterns = new Map<number, Buffer>();

/** n bytes that depend on n and on each byte's position: a lost, doubled or swapped chunk shows. */
export function bulkPattern(n: number): Buffer {
  const known = patterns.get(n);
  if (known !== undefined) return known;
  const b = Buffer.allocUnsafe(n);
  let x = n >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  // The soak uses a handful of sizes; the cap only guards against surprises.
  if (patterns.size < 16) patterns.set(n, b);
  return b;
}

export interface SoakBackend {
  readonly port: number;
  /** Sessions open now. */
  open(): number;
  /** Sessions accepted so far. */
  total(): number;
  close(): Promise<void>;
}

export async function startSoakBackend(): Promise<SoakBackend> {
  const live = new Set<import('node:net').Socket>();
  let total = 0;
  const server = createServer({ allowHalfOpen: true }, (s) => {
    total++;
    live.add(s);
    s.once('close', () => live.delete(s));
    s.on('error', () => s.destroy());
    s.on('end', () => s.end());
    const parser = new ProxyHeaderParser();
    let headerDone = false;
    let line = '';
    let append: { tag: string; left: number; hash: Hash } | null = null;
    s.on('data', (chunk: Buffer) => {
      if (!headerDone) {
        let r;
        try {
          r = parser.write(chunk);
        } catch {
          s.destroy();
          return;
        }
        if (!r.done) return;
        headerDone = true;
        s.write(GREETING);
        chunk = r.rest;
      }
      // An APPEND's bytes: hashed as they come, the rest of the chunk is lines again.
      if (append !== null) {
        const take = Math.min(append.left, chunk.length);
        append.hash.update(chunk.subarray(0, take));
        append.left -= take;
        chunk = chunk.subarray(take);
        if (append.left > 0) return;
        s.write(`${append.tag} OK APPEND ${append.hash.digest('hex')} completed\r\n`);
        append = null;
      }
      line += chunk.toString('latin1');
      let nl: number;
      while ((nl = line.indexOf('\n')) !== -1) {
        const [tag = '*', cmd = '', arg = ''] = line.slice(0, nl).trim().split(' ');
        line = line.slice(nl + 1);
        const verb = cmd.toUpperCase();
        const n = Number(arg);
        if (verb === 'LOGOUT') {
          s.end(`* BYE logging out\r\n${tag} OK LOGOUT completed\r\n`);
          return;
        }
        if ((verb === 'FETCH' || verb === 'APPEND') && !(Number.isInteger(n) && n > 0 && n <= MAX_BULK)) {
          s.destroy();
          return;
        }
        if (verb === 'FETCH') {
          s.write(`* 1 FETCH (BODY[] {${n}}\r\n`);
          s.write(bulkPattern(n));
          s.write(`)\r\n${tag} OK FETCH completed\r\n`);
        } else if (verb === 'APPEND') {
          append = { tag, left: n, hash: createHash('sha256') };
          const rest = Buffer.from(line, 'latin1');
          line = '';
          const take = Math.min(n, rest.length);
          append.hash.update(rest.subarray(0, take));
          append.left -= take;
          line = rest.subarray(take).toString('latin1');
          if (append.left === 0) {
            s.write(`${tag} OK APPEND ${append.hash.digest('hex')} completed\r\n`);
            append = null;
          } else return;
        } else s.write(verb === 'NOOP' ? `${tag} OK NOOP completed\r\n` : `${tag} BAD unknown command\r\n`);
      }
      // A line longer than any command the soak sends: not ours.
      if (line.length > 1024) s.destroy();
    });
  });
  server.maxConnections = 100_000;
  await new Promise<void>((resolve) => server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, resolve));
  return {
    port: (server.address() as { port: number }).port,
    open: () => live.size,
    total: () => total,
    close: async () => {
      for (const s of live) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
