/**
 * One admitted connection of the guard proxy, from the backend connect to the
 * last byte: connect under a deadline, send the PROXY header and whatever the
 * client sent early, then relay both ways with Node's own pipe (backpressure
 * both ways, no copy beyond the socket buffers), half-close passed on in
 * each direction, and a close that happens exactly once and always gives
 * the connection's counts back.
 *
 * The relay does not parse the session. It watches two things only, a byte
 * compare per chunk: whether the client has started TLS (a handshake record
 * after STARTTLS, or an implicit-TLS port), and whether the server's last
 * chunk ended a line. Together they say whether a goodbye can still be
 * written to the client when an operator kicks the session.
 */
import { connect, type Socket } from 'node:net';
import type { Endpoint } from './stream-listener.js';
import type { ConnectionHandle } from '../core/connections.js';
import { lendable, lendReadBuffer } from './read-buffer.js';

/** What the relay needs from its listener. */
export interface RelayHost {
  readonly backend: Endpoint;
  readonly connectTimeoutMs: number;
  /** Called when the backend could not be reached in time; the client has not been answered yet. */
  unreachable(c: Relay, why: string): void;
  /** Called exactly once, when both sides are closed. */
  closed(c: Relay, why: string): void;
  /** The goodbye for a kicked client; null: close without one (implicit TLS). */
  goodbye(text: string): Buffer | null;
}

/** Bytes a client that was told goodbye (or refused) may take to close its side. */
export const LINGER_MS = 5_000;

/**
 * The relay of each socket, for the listeners below. They are plain
 * functions shared by every connection (the socket they fire on is `this`),
 * so a session costs its two sockets and one Relay, not a dozen closures and
 * two pipes' worth of them: with tens of thousands of short sessions a
 * second, what the garbage collector does not have to trace is time saved.
 */
const RELAY = Symbol('doorman.relay');
type RelaySocket = Socket & { [RELAY]?: Relay };

function relayOf(s: Socket): Relay {
  return (s as RelaySocket)[RELAY] as Relay;
}

/**
 * Bytes a direction relays with Node's own reads before it is given a read
 * buffer of its own (./read-buffer.ts): a session's commands and replies stay
 * far below it, a message or an attachment soon passes it.
 */
const BULK_BYTES = 256 * 1024;

/**
 * A bulk direction's read buffer, the most one read takes: 4x Node's own
 * 64 KiB, which in the proxy suite cut CPU per GiB by about a third again
 * (fewer, larger reads and writes); held only while the direction flows.
 */
const LANE_BYTES = 256 * 1024;

/**
 * A read shorter than this into a lane's own buffer says the data is not
 * flowing at bulk speed now (a trickle, the end of a burst): the buffer goes
 * back. So a client cannot hold 256 KiB of ours by sending a byte now and
 * then; only data that keeps arriving in large reads keeps a buffer.
 */
const SHORT_READ = 64 * 1024;

/**
 * Where a lane reads while it has no buffer of its own (after a short read,
 * or a quiet idle sweep), shared by all: every read from here is copied
 * before it is written, so nothing waiting to be written ever points into
 * it. A read that fills it says data flows fast again, and the lane takes a
 * buffer of its own back.
 */
const PARKED = Buffer.allocUnsafeSlow(16 * 1024);

/**
 * Lane buffers given back with nothing waiting to be written from them,
 * for the next lane that needs one: a flow that is parked and taken back
 * often costs no allocation (an mmap and munmap at this size) each time.
 */
const spare: Buffer[] = [];
const MAX_SPARE = 16;

function laneBuffer(): Buffer {
  return spare.pop() ?? Buffer.allocUnsafeSlow(LANE_BYTES);
}

/** A lane buffer nothing will read into or write from any more, kept for the next lane while there is room. */
function keepSpare(b: Buffer): void {
  if (spare.length < MAX_SPARE) spare.push(b);
}

function onClientData(this: Socket, chunk: Buffer): void {
  const r = relayOf(this);
  if (!r.watchClient(chunk)) return;
  const b = r.backendSocket as Socket;
  // Backpressure: the client waits while the backend's buffer is full.
  if (!b.write(chunk)) this.pause();
  if ((r.upBytes += chunk.length) >= BULK_BYTES && r.up === null) r.up = Lane.lend(this, b);
}

function onBackendData(this: Socket, chunk: Buffer): void {
  const r = relayOf(this);
  r.atLineEnd = chunk[chunk.length - 1] === 0x0a;
  if (!r.client.write(chunk)) this.pause();
  if ((r.downBytes += chunk.length) >= BULK_BYTES && r.down === null) r.down = Lane.lend(this, r.client);
}

/** A read into a lane's buffer (`this` is the socket read): relayed as 'data' is, with the same backpressure. */
function onLaneRead(this: Socket, n: number, buffer: Buffer): boolean {
  const r = relayOf(this);
  const up = this === r.client;
  const lane = (up ? r.up : r.down) as Lane;
  const to = lane.to;
  // Kicked or aborted: what still arrives is dropped, as Node's own reads would be unread.
  if (to.destroyed || to.writableEnded) return true;
  const own = buffer !== PARKED;
  let chunk = buffer.subarray(0, n);
  if (!own) {
    chunk = Buffer.from(chunk);
    if (n === PARKED.length) lane.unpark();
  }
  if (up) {
    if (!r.watchClient(chunk)) return false;
  } else r.atLineEnd = chunk[n - 1] === 0x0a;
  // false: over the high-water mark; reading stops until 'drain', which
  // comes once everything queued is out, so by then nothing points into the buffer.
  const ok = to.write(chunk);
  if (own && buffer === lane.buffer) {
    const pending = to.writableLength > 0;
    if (n < SHORT_READ) lane.release(pending);
    // Taken, but not all of it sent yet: the write still points into the
    // buffer, so the next read goes into another (the old one goes with the write).
    else if (ok && pending) lane.buffer = laneBuffer();
  }
  return ok;
}

/** One direction of a bulk session, read into a buffer of its own. */
class Lane {
  /** Where the next read goes: the lane's own buffer, or PARKED. */
  buffer: Buffer = laneBuffer();
  /** Times the lane took a buffer of its own back after giving one up. */
  unparked = 0;
  readonly next = (): Buffer => this.buffer;

  private constructor(
    readonly from: Socket,
    readonly to: Socket,
  ) {}

  /** The lane for reads from `from` into `to`; null where Node cannot lend a read buffer. */
  static lend(from: Socket, to: Socket): Lane | null {
    if (!lendable) return null;
    const lane = new Lane(from, to);
    if (lendReadBuffer(from, lane.buffer, lane.next, onLaneRead)) return lane;
    keepSpare(lane.buffer);
    return null;
  }

  /**
   * After a short read: the next read goes to PARKED, and the buffer is
   * kept for other lanes unless a write from it is still pending.
   */
  release(pending: boolean): void {
    const b = this.buffer;
    this.buffer = PARKED;
    if (!pending) keepSpare(b);
  }

  /** Silent since the last idle sweep: reading moves to PARKED at once. */
  park(): void {
    if (this.buffer === PARKED || this.from.destroyed) return;
    const b = this.buffer;
    this.buffer = PARKED;
    if (lendReadBuffer(this.from, PARKED, this.next, onLaneRead) && this.to.writableLength === 0) keepSpare(b);
  }

  unpark(): void {
    this.buffer = laneBuffer();
    this.unparked++;
  }

  /** Reading into the shared PARKED buffer, its own given back. */
  get parked(): boolean {
    return this.buffer === PARKED;
  }
}

function onBackendDrain(this: Socket): void {
  relayOf(this).client.resume();
}

function onClientDrain(this: Socket): void {
  relayOf(this).backendSocket?.resume();
}

/** The client ended its side: the backend gets the FIN once everything before it is written. */
function onClientEnd(this: Socket): void {
  const r = relayOf(this);
  if (r.closeReason === 'closed') r.closeReason = 'client closed';
  const b = r.backendSocket;
  if (b !== null && !b.destroyed && !b.writableEnded) b.end();
}

/** The backend ended its side: the client gets what is queued, then its FIN. */
function onBackendEnd(this: Socket): void {
  const r = relayOf(this);
  if (!r.client.destroyed && !r.client.writableEnded) r.client.end();
}

/** The backend gone (FIN, reset): the client gets what is queued, then its FIN, and the linger timer. */
function onBackendClose(this: Socket): void {
  const r = relayOf(this);
  if (r.closeReason === 'closed') r.closeReason = 'backend closed';
  r.endClient();
}

function onBackendConnect(this: Socket): void {
  relayOf(this).connected();
}

function onBackendTimeout(this: Socket): void {
  const r = relayOf(this);
  r.fail(`backend did not accept within ${r.connectTimeoutMs} ms`);
}

function onBackendError(this: Socket, err: NodeJS.ErrnoException): void {
  const r = relayOf(this);
  if (this.connecting || this.pending) r.fail(`backend connect failed: ${err.code ?? err.message}`);
  else r.abort(`backend error: ${err.code ?? err.message}`);
}

function onClientError(this: Socket, err: NodeJS.ErrnoException): void {
  relayOf(this).abort(`client error: ${err.code ?? err.message}`);
}

function onClientClose(this: Socket): void {
  relayOf(this).finish();
}

/** Shared by every socket that is to close on an event ('timeout', 'end', 'error'): no closure per socket. */
export function destroySocket(this: Socket): void {
  this.destroy();
}

export class Relay implements ConnectionHandle {
  readonly client: Socket;
  backendSocket: Socket | null = null;
  private readonly host: RelayHost;
  private tls: boolean;
  /** Whether the server's output so far ends a line (or is empty): a goodbye will not split one. */
  atLineEnd = true;
  private done = false;
  private seenClientData = false;
  closeReason = 'closed';
  /** Sent once the backend has accepted: the PROXY header and what the client sent early. */
  private header: Buffer | null = null;
  private early: Buffer | null = null;
  /** Bytes relayed each way with Node's own reads, and the lanes of the directions that carried bulk data. */
  upBytes = 0;
  downBytes = 0;
  up: Lane | null = null;
  down: Lane | null = null;
  /** Activity mark for the listener's idle sweep. */
  idleMark = 0;
  idleSince = 0;
  /** Bytes of the client's socket that were a trusted proxy's PROXY header, not the client's own. */
  headerBytes = 0;
  /** The listener's record of the session: registry id, engine keys held, start, client address. */
  id = '';
  keys: readonly string[] = [];
  startedAt = 0;
  address = '';

  constructor(host: RelayHost, client: Socket, implicitTls: boolean) {
    this.host = host;
    this.client = client;
    this.tls = implicitTls;
  }

  get connectTimeoutMs(): number {
    return this.host.connectTimeoutMs;
  }

  /**
   * Connects the backend, then sends `header` and `early` (bytes the client
   * sent before the relay began) before anything else.
   */
  start(header: Buffer | null, early: Buffer | null): void {
    const e = this.host.backend;
    const client = this.client as RelaySocket;
    const backend: RelaySocket = e.path !== undefined ? connect({ path: e.path, allowHalfOpen: true }) : connect({ host: e.host ?? '127.0.0.1', port: e.port ?? 0, allowHalfOpen: true, noDelay: true });
    this.backendSocket = backend;
    this.header = header;
    this.early = early;
    client[RELAY] = this;
    backend[RELAY] = this;
    backend.setTimeout(this.host.connectTimeoutMs);
    backend.on('timeout', onBackendTimeout);
    backend.on('error', onBackendError);
    client.on('error', onClientError);
    client.on('close', onClientClose);
    backend.on('connect', onBackendConnect);
  }

  /** The backend accepted: header and early bytes first, then both ways. */
  connected(): void {
    if (this.done) return;
    const backend = this.backendSocket as Socket;
    const client = this.client;
    backend.setTimeout(0);
    backend.removeListener('timeout', onBackendTimeout);
    const { header, early } = this;
    this.header = null;
    this.early = null;
    if (header !== null || early !== null) {
      backend.cork();
      if (header !== null) backend.write(header);
      if (early !== null && early.length > 0 && this.watchClient(early)) backend.write(early);
      backend.uncork();
    }
    if (this.done) return;
    client.on('data', onClientData);
    client.on('end', onClientEnd);
    client.on('drain', onClientDrain);
    backend.on('data', onBackendData);
    backend.on('end', onBackendEnd);
    backend.on('drain', onBackendDrain);
    backend.on('close', onBackendClose);
    client.resume();
  }

  /** Looks at what the client sends; false when it must not be relayed (the session is being aborted). */
  watchClient(chunk: Buffer): boolean {
    if (!this.seenClientData) {
      this.seenClientData = true;
      if (looksLikeProxyHeader(chunk)) {
        this.abort('a PROXY header from a client that is not a trusted proxy');
        return false;
      }
    }
    // A TLS handshake record (content type 22, version 3.x) from the client: STARTTLS took effect.
    if (!this.tls && chunk[0] === 0x16 && chunk[1] === 0x03) this.tls = true;
    return true;
  }

  /** The backend could not be reached: the listener answers the client (temporary failure), then the relay closes. */
  fail(why: string): void {
    if (this.done) return;
    this.closeReason = why;
    this.backendSocket?.destroy();
    this.host.unreachable(this, why);
  }

  /** A hard error on either side: both go at once. */
  abort(why: string): void {
    if (this.closeReason === 'closed') this.closeReason = why;
    this.backendSocket?.destroy();
    this.client.destroy();
  }

  /** Ends the client's side after what is queued for it, and closes it for good a little later. */
  endClient(): void {
    const c = this.client;
    if (c.destroyed) return;
    if (!c.writableEnded) c.end();
    // A client that never closes its side would hold the socket: the linger timer ends it.
    c.setTimeout(LINGER_MS);
    c.on('timeout', destroySocket);
  }

  /** The client socket closed: the session is over. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    this.backendSocket?.destroy();
    this.host.closed(this, this.closeReason);
  }

  /** Activity so far, both ways, for the idle sweep. */
  activity(): number {
    return this.client.bytesRead + this.client.bytesWritten;
  }

  /** Silent since the last sweep: bulk directions give their read buffers back. */
  quiet(): void {
    this.up?.park();
    this.down?.park();
  }

  /** One side has sent its FIN and the other has not yet: the session is winding down. */
  halfClosed(): boolean {
    return this.client.readableEnded !== this.client.writableEnded;
  }

  bytesIn(): number {
    return this.client.bytesRead;
  }

  bytesOut(): number {
    return this.client.bytesWritten;
  }

  encrypted(): boolean {
    return this.tls;
  }

  /**
   * Closes the session; a client still in plain text is told `goodbye` first,
   * between the server's lines. `reason` is for the log only.
   */
  kick(reason: string, goodbye = 'Connection closed by the administrator'): void {
    if (this.done) return;
    this.closeReason = reason;
    const backend = this.backendSocket;
    const client = this.client;
    const line = this.tls ? null : this.host.goodbye(goodbye);
    if (backend !== null) {
      backend.removeListener('data', onBackendData);
      backend.removeListener('close', onBackendClose);
      backend.removeListener('end', onBackendEnd);
      backend.destroy();
    }
    client.removeListener('data', onClientData);
    client.removeListener('end', onClientEnd);
    if (line === null || client.destroyed) {
      client.destroy();
      return;
    }
    client.end(this.atLineEnd ? line : Buffer.concat([CRLF, line]));
    // Read and drop what the client still sends, so its FIN comes through.
    client.resume();
    client.setTimeout(LINGER_MS);
    client.on('timeout', destroySocket);
  }
}

const CRLF = Buffer.from('\r\n');

/** The start of a v1 ("PROXY ") or v2 (\r\n\r\n\0\r\nQUIT\n) header: never a client's first words in a mail protocol. */
export function looksLikeProxyHeader(chunk: Buffer): boolean {
  if (chunk.length < 5) return false;
  const a = chunk[0];
  if (a === 0x50) return chunk[1] === 0x52 && chunk[2] === 0x4f && chunk[3] === 0x58 && chunk[4] === 0x59; // "PROXY"
  return a === 0x0d && chunk[1] === 0x0a && chunk[2] === 0x0d && chunk[3] === 0x0a && chunk[4] === 0x00;
}
