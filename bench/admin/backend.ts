/**
 * The admin benchmark's backend, run as its own process (node
 * dist/bench/admin/backend.js) so its sockets count against its own
 * open-files limit, not the generator's: it takes the proxy's PROXY v2
 * header, greets with one line, and then holds the connection silently.
 * Prints `port N` once listening.
 */
import { createServer } from 'node:net';

/** The v2 signature and fixed part: 16 bytes, then the address block's length. */
const V2_FIXED = 16;

const server = createServer((s) => {
  s.on('error', () => s.destroy());
  let buf = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    if (buf.length < V2_FIXED) return;
    const need = V2_FIXED + buf.readUInt16BE(14);
    if (buf.length < need) return;
    s.off('data', onData);
    s.write('* OK bench\r\n');
  };
  s.on('data', onData);
});
server.maxConnections = 100_000;
server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
  process.stdout.write(`port ${(server.address() as { port: number }).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
