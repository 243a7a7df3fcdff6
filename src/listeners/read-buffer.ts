/**
 * Reading a socket into a buffer of our own instead of a fresh one per read.
 *
 * By default Node allocates a new 64 KiB buffer for every read from a
 * socket. A relay that moves hundreds of MiB a second through them pays for
 * it three times: the allocation, the garbage collections that the buffers'
 * external memory sets off, and, most of all, the kernel copying each read
 * into memory that is not in the CPU's cache. A buffer that is read into
 * again and again stays in cache (the proxy suite measured bulk relaying at
 * about a third of the CPU per GiB; see BENCHMARKS.md).
 *
 * Node offers this as `onread`, but only for sockets it connects itself, and
 * only from the moment they are created. A relay needs it for the sockets a
 * server accepts too, and only once a session turns out to carry bulk data:
 * 64 KiB per idle session would cost 640 MB for 10,000 of them. So this
 * module does what `onread` does, on a socket that already exists: it sets
 * the socket's three read hooks (the same fields `onread` sets) and tells the
 * socket's handle to read into the buffer (`useUserBuffer`, what Node calls
 * when `onread` is given). The hooks are found by name on a probe socket;
 * where a Node version no longer has them, `lendable` is false and callers
 * keep Node's own reads (read-buffer.test.ts fails then, so an upgrade that
 * loses the speed does not go unnoticed).
 *
 * While a socket reads into a lent buffer: no 'data' events; `onRead` is
 * called (with the socket as `this`) for each read; returning false stops
 * reading until `socket.resume()`; after each read, `next()` names the
 * buffer for the following read (it may swap buffers that way); 'end',
 * 'close', `pause()`, `resume()` and `bytesRead` work as before. The handle
 * keeps a pointer into the buffer: whoever lends it must not let bytes still
 * waiting to be written from it be overwritten by the next read.
 */
import { Socket } from 'node:net';

/** Called after each read with the bytes read into `buffer`; false stops reading. */
export type OnLentRead = (this: Socket, n: number, buffer: Buffer) => boolean;

interface Hooks {
  readonly buffer: symbol;
  readonly next: symbol;
  readonly onRead: symbol;
}

interface UserBufferHandle {
  useUserBuffer(buffer: Buffer): unknown;
}

function findHooks(): Hooks | null {
  const probe = new Socket();
  try {
    const byName = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]));
    const buffer = byName.get('kBuffer');
    const next = byName.get('kBufferGen');
    const onRead = byName.get('kBufferCb');
    return buffer !== undefined && next !== undefined && onRead !== undefined ? { buffer, next, onRead } : null;
  } finally {
    probe.destroy();
  }
}

const HOOKS = findHooks();

/** Whether this Node lets a socket that exists be read into a lent buffer. */
export const lendable = HOOKS !== null;

function handleOf(s: Socket): UserBufferHandle | null {
  const h = (s as unknown as { _handle?: Partial<UserBufferHandle> | null })._handle;
  return h !== null && h !== undefined && typeof h.useUserBuffer === 'function' ? (h as UserBufferHandle) : null;
}

/**
 * From the next read on, reads `s` into `buffer` (then into whatever `next`
 * returns) and hands each read to `onRead`. May be called again on a socket
 * already lent a buffer, to move it to another one at once (each call adds
 * a small listener to the handle, freed with it: call it now and then, not
 * per read; `next` is the way to swap per read). False when it cannot be
 * done (this Node, or a socket without a handle): `s` reads as before.
 */
export function lendReadBuffer(s: Socket, buffer: Buffer, next: () => Buffer, onRead: OnLentRead): boolean {
  if (HOOKS === null || s.destroyed) return false;
  const h = handleOf(s);
  if (h === null) return false;
  try {
    h.useUserBuffer(buffer);
  } catch {
    // Nothing was switched: the socket reads as before.
    return false;
  }
  // Set in the same turn, before any read can come: from here on Node hands reads to onRead.
  const fields = s as unknown as Record<symbol, unknown>;
  fields[HOOKS.buffer] = buffer;
  fields[HOOKS.next] = next;
  fields[HOOKS.onRead] = onRead;
  return true;
}
