/**
 * The guard proxy's relay (src/listeners/relay.ts) carrying bulk data both
 * ways at once over real loopback sockets, with readers on both ends that
 * stall now and then: each direction moves to a read buffer of its own
 * (a lane), writes that cannot finish at once send the next read into a
 * new buffer, a quiet session gives its buffers back (parks) and takes new
 * ones when data flows again, and no byte is lost, doubled or reordered.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { Relay, type RelayHost } from '../../src/listeners/relay.js';

/** Deterministic, position-dependent bytes: a lost, doubled or swapped chunk changes the hash. */
function pattern(seed: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Reads everything `s` sends, pausing for a few ms every so often, and hashes it. */
class Sink {
  private readonly hash = createHash('sha256');
  bytes = 0;
  private nextStall: number;
  constructor(
    readonly s: Socket,
    private readonly stallEvery: number,
  ) {
    this.nextStall = stallEvery;
    s.on('data', (d: Buffer) => {
      this.hash.update(d);
      this.bytes += d.length;
      if (this.bytes >= this.nextStall) {
        this.nextStall += this.stallEvery;
        s.pause();
        setTimeout(() => s.resume(), 3);
      }
    });
  }
  async until(bytes: number): Promise<void> {
    const t0 = Date.now();
    while (this.bytes < bytes) {
      if (Date.now() - t0 > 20_000) throw new Error(`only ${this.bytes} of ${bytes} bytes arrived`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  digest(): string {
    return this.hash.copy().digest('hex');
  }
}

async function send(s: Socket, data: Buffer, piece = 1 << 20): Promise<void> {
  for (let off = 0; off < data.length; off += piece) {
    if (!s.write(data.subarray(off, off + piece))) await new Promise((r) => s.once('drain', r));
  }
}

const sha = (...parts: Buffer[]) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

interface Setup {
  readonly client: Socket;
  readonly backend: Socket;
  readonly r: Relay;
  readonly closed: string[];
  close(): void;
}

/** A relay between a real client and a real backend, both on loopback. */
async function setup(): Promise<Setup> {
  let backendSide: Socket | null = null;
  const backendServer = createServer({ allowHalfOpen: true }, (s) => {
    backendSide = s;
  });
  const backendPort = await listen(backendServer);
  const closed: string[] = [];
  const host: RelayHost = {
    backend: { host: '127.0.0.1', port: backendPort },
    connectTimeoutMs: 5000,
    unreachable: (_c, why) => assert.fail(`backend unreachable: ${why}`),
    closed: (_c, why) => closed.push(why),
    goodbye: () => null,
  };
  let relay: Relay | null = null;
  const front = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (s) => {
    relay = new Relay(host, s, false);
    relay.start(null, null);
  });
  const frontPort = await listen(front);
  const client = connect(frontPort, '127.0.0.1');
  await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
  for (let i = 0; backendSide === null; i++) {
    assert.ok(i < 1000, 'the relay connected the backend');
    await new Promise((r) => setTimeout(r, 5));
  }
  return {
    client,
    backend: backendSide as Socket,
    r: relay as unknown as Relay,
    closed,
    close() {
      client.destroy();
      (backendSide as Socket | null)?.destroy();
      front.close();
      backendServer.close();
    },
  };
}

test('bulk both ways at once through lanes, partial writes, parking and unparking: every byte in order', async () => {
  const { client, backend, r, closed, close } = await setup();

  // Stalling readers on both ends: the relay's writes often cannot finish at once.
  const atBackend = new Sink(backend, 3 << 20);
  const atClient = new Sink(client, 2 << 20);
  const up = pattern(1, 24 << 20);
  const down = pattern(2, 24 << 20);
  await Promise.all([send(client, up), send(backend, down)]);
  await Promise.all([atBackend.until(up.length), atClient.until(down.length)]);
  assert.equal(atBackend.digest(), sha(up), 'client → backend intact');
  assert.equal(atClient.digest(), sha(down), 'backend → client intact');
  assert.ok(r.up !== null && r.down !== null, 'both directions moved to lanes');

  // Quiet: the buffers go back; then a burst each way takes new ones.
  r.quiet();
  assert.equal(r.up?.parked, true);
  assert.equal(r.down?.parked, true);
  const [upBefore, downBefore] = [r.up?.unparked ?? 0, r.down?.unparked ?? 0];
  const up2 = pattern(3, 3 << 20);
  const down2 = pattern(4, 3 << 20);
  await Promise.all([send(client, up2, 1 << 16), send(backend, down2, 1 << 16)]);
  await Promise.all([atBackend.until(up.length + up2.length), atClient.until(down.length + down2.length)]);
  assert.equal(atBackend.digest(), sha(up, up2), 'client → backend intact across parking');
  assert.equal(atClient.digest(), sha(down, down2), 'backend → client intact across parking');
  assert.ok((r.down?.unparked ?? 0) > downBefore, 'a burst took the backend → client lane out of the parking buffer');
  assert.ok((r.up?.unparked ?? 0) > upBefore, 'and the client → backend lane');

  // A trickle after bulk: short reads give the buffers back without waiting for a sweep.
  const drip = pattern(9, 64 * 100);
  for (let i = 0; i < 100; i++) {
    client.write(drip.subarray(i * 64, (i + 1) * 64));
    backend.write(drip.subarray(i * 64, (i + 1) * 64));
    if (i % 10 === 9) await new Promise((res) => setTimeout(res, 5));
  }
  await Promise.all([atBackend.until(up.length + up2.length + drip.length), atClient.until(down.length + down2.length + drip.length)]);
  assert.equal(r.up?.parked, true, 'a trickling client holds no buffer of ours');
  assert.equal(r.down?.parked, true, 'nor a trickling backend');
  assert.equal(atBackend.digest(), sha(up, up2, drip), 'client → backend intact through the trickle');
  assert.equal(atClient.digest(), sha(down, down2, drip), 'backend → client intact through the trickle');

  // Half-closes pass through; the relay closes once.
  const clientClosed = new Promise((resolve) => client.once('close', resolve));
  backend.on('end', () => backend.end());
  client.on('end', () => client.end());
  client.end();
  await clientClosed;
  for (let i = 0; closed.length === 0; i++) {
    assert.ok(i < 1000, 'the relay reported its close');
    await new Promise((res) => setTimeout(res, 5));
  }
  assert.equal(closed.length, 1);
  close();
});

/** A relay whose backend → client direction has carried a MiB and moved to a lane; the client reads without stalling. */
async function downLane(seed: number): Promise<Setup & { atClient: Sink; first: Buffer }> {
  const s = await setup();
  const atClient = new Sink(s.client, 1 << 30);
  const first = pattern(seed, 1 << 20);
  await send(s.backend, first);
  await atClient.until(first.length);
  assert.ok(s.r.down !== null, 'the backend → client direction moved to a lane');
  return { ...s, atClient, first };
}

test('a write taken but not yet sent (under the high-water mark): the next read goes into a new buffer', async () => {
  const { backend, r, close, atClient, first } = await downLane(5);
  // Stand in for a socket whose kernel buffer took all but a little: each
  // write is accepted (true) and still pending, holding the chunk as Node does.
  const to = r.client as Socket & { write: (chunk: Buffer) => boolean };
  const held: Buffer[] = [];
  let pending = 0;
  Object.defineProperty(to, 'writableLength', { configurable: true, get: () => pending });
  const realWrite = to.write;
  to.write = (chunk: Buffer) => {
    held.push(chunk);
    pending += chunk.length;
    return true;
  };
  const second = pattern(6, 2 << 20);
  await send(backend, second, 1 << 16);
  // Then short reads (pieces apart in time): the lane gives its buffer up
  // while a write from it is held, and takes one back when PARKED fills.
  const third = pattern(10, 40 * 20_000);
  for (let off = 0; off < third.length; off += 20_000) {
    backend.write(third.subarray(off, off + 20_000));
    await new Promise((res) => setTimeout(res, 2));
  }
  const total = second.length + third.length;
  for (let i = 0; pending < total; i++) {
    assert.ok(i < 4000, `${pending} of ${total} bytes reached the relay`);
    await new Promise((res) => setTimeout(res, 5));
  }
  assert.ok((r.down?.unparked ?? 0) > 0, 'the lane gave its buffer up and took one back');
  assert.ok(held.length > 1, `${held.length} writes held`);
  // Now let them out, as the kernel would once the client reads.
  delete (to as unknown as Record<string, unknown>).writableLength;
  to.write = realWrite;
  for (const h of held) to.write(h);
  await atClient.until(first.length + total);
  assert.equal(atClient.digest(), sha(first, second, third), 'no held write was overwritten by a later read');
  close();
});

test('backpressure in a lane: a client that reads nothing holds the backend back, and no read piles up in the relay', async () => {
  const { client, backend, r, close, atClient, first } = await downLane(7);
  client.pause();
  const rest = pattern(8, 64 << 20);
  let written = 0;
  const sending = (async () => {
    for (let off = 0; off < rest.length; off += 1 << 20) {
      written += 1 << 20;
      if (!backend.write(rest.subarray(off, off + (1 << 20)))) await new Promise((res) => backend.once('drain', res));
    }
  })();
  // A few drains' worth of time: without backpressure the relay would take it all.
  await new Promise((res) => setTimeout(res, 400));
  const queued = (r.client as Socket).writableLength;
  assert.ok(written < rest.length / 2, `the backend was held back (${written} bytes written)`);
  assert.ok(queued <= 512 * 1024, `the relay holds ${queued} bytes for the client, at most a read or two`);
  client.resume();
  await sending;
  await atClient.until(first.length + rest.length);
  assert.equal(atClient.digest(), sha(first, rest));
  close();
});
