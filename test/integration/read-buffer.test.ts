/**
 * Lending a read buffer to a socket a server accepted (src/listeners/read-buffer.ts),
 * over real loopback sockets. This Node must support it: the relay's bulk
 * speed depends on it, so a Node upgrade that loses the internals it uses
 * fails here rather than silently relaying at two thirds of the speed.
 */
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { lendable, lendReadBuffer } from '../../src/listeners/read-buffer.js';

async function pair(onAccept: (s: Socket) => void): Promise<{ server: Server; client: Socket }> {
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, onAccept);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const client = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
  return { server, client };
}

test('this Node can lend a read buffer to a socket that already exists', () => {
  assert.equal(lendable, true);
});

test('an accepted socket switched in mid-stream: every byte, in order, through the lent buffers; pause, resume, bytesRead and end as before', async () => {
  const first = Buffer.alloc(64 * 1024);
  let second: Buffer | null = null;
  const parts: Buffer[] = [];
  let reads = 0;
  let viaData = 0;
  let foreignBuffer = false;
  let paused = false;
  const done = new Promise<{ bytesRead: number }>((resolve) => {
    void pair((s) => {
      s.on('data', (d: Buffer) => {
        viaData += d.length;
        parts.push(Buffer.from(d));
        // Lend on the first chunk, as the relay does once a session turns bulk.
        if (viaData === d.length) {
          const next = () => (second ?? first);
          assert.equal(
            lendReadBuffer(s, first, next, function (this: Socket, n, buffer) {
              assert.equal(this, s);
              if (buffer !== first && buffer !== second) foreignBuffer = true;
              parts.push(Buffer.from(buffer.subarray(0, n)));
              reads++;
              // Move to a second buffer after a few reads, as the relay does when a write is pending.
              if (reads === 3) second = Buffer.alloc(16 * 1024);
              if (reads === 5) {
                paused = true;
                setTimeout(() => {
                  paused = false;
                  this.resume();
                }, 50);
                return false;
              }
              assert.equal(paused, false, 'a read while paused');
              return true;
            }),
            true,
          );
        }
      });
      s.on('end', () => {
        resolve({ bytesRead: s.bytesRead });
        s.end();
      });
      s.resume();
    }).then(async ({ server, client }) => {
      client.write('hello');
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 200; i++) client.write(Buffer.alloc(50_000, i & 0xff));
      client.end();
      client.resume();
      client.on('close', () => server.close());
    });
  });
  const { bytesRead } = await done;
  const all = Buffer.concat(parts);
  const expected = Buffer.concat([Buffer.from('hello'), ...Array.from({ length: 200 }, (_, i) => Buffer.alloc(50_000, i & 0xff))]);
  assert.equal(viaData, 5, "only the bytes before the switch came as 'data'");
  assert.ok(reads > 5, `${reads} reads into the lent buffers`);
  assert.equal(foreignBuffer, false, 'every read went into a buffer we lent');
  assert.equal(all.length, expected.length);
  assert.ok(all.equals(expected), 'the bytes arrived in order');
  assert.equal(bytesRead, expected.length);
});

test('a socket without a handle is not lent a buffer', () => {
  const s = connect({ port: 1, host: '127.0.0.1' });
  s.on('error', () => {});
  s.destroy();
  assert.equal(
    lendReadBuffer(s, Buffer.alloc(16), () => Buffer.alloc(16), () => true),
    false,
  );
});
