/**
 * The soak's stand-in IMAP server, in the soak's own process: takes the
 * proxy's PROXY header, greets, answers `tag NOOP` and `tag LOGOUT` (then
 * closes), and ends its side when the client does. Unlike
 * test/helpers/fake-backend.ts it keeps no session once closed, so ten
 * minutes of sessions cost it nothing.
 */
import { createServer } from 'node:net';
import { ProxyHeaderParser } from '../../src/protocols/proxy-protocol.js';

export const GREETING = '* OK soak backend ready\r\n';

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
      line += chunk.toString('latin1');
      let nl: number;
      while ((nl = line.indexOf('\n')) !== -1) {
        const [tag = '*', cmd = ''] = line.slice(0, nl).trim().split(' ');
        line = line.slice(nl + 1);
        if (cmd.toUpperCase() === 'LOGOUT') {
          s.end(`* BYE logging out\r\n${tag} OK LOGOUT completed\r\n`);
          return;
        }
        s.write(cmd.toUpperCase() === 'NOOP' ? `${tag} OK NOOP completed\r\n` : `${tag} BAD unknown command\r\n`);
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
