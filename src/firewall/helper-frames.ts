/**
 * The wire between the daemon and its nft helper (./nft-helper.ts), with no
 * I/O. Both ways a frame is a 4-byte big-endian length N, then N bytes of
 * UTF-8 JSON, one message:
 *
 *   helper → daemon, once, first:  {"hello":"doorman-nft-helper","version":1,"pid":P}
 *   daemon → helper:               {"id":I,"script":"add element …\n"}
 *   helper → daemon, per request:  {"id":I,"ok":true,"out":"…"}
 *                                  {"id":I,"ok":false,"error":"…","refused":true|false}
 *
 * I is a positive integer the daemon picks; the helper answers requests in
 * the order they came. A frame longer than its direction's cap, of length 0,
 * not JSON or not of the schema is a protocol error: the reader stops
 * (the helper exits, the daemon stops using the helper).
 */
import { z } from 'zod';

/**
 * A request carries a whole resync: every ban in force, one element each
 * (about 35 bytes, at most about 110 for an IPv6 range with a long
 * timeout). 64 MiB holds more than half a million elements at the worst,
 * well past the tens of thousands a CrowdSec list brings.
 */
export const REQUEST_MAX = 64 * 1024 * 1024;
/** nft's output is capped at 256 Ki characters (./nft-run.ts); JSON escaping at most doubles it, UTF-8 at most triples a character. */
export const RESPONSE_MAX = 2 * 1024 * 1024;
/** An error in an answer: nft's first lines (./nft-run.ts keeps 600 characters) or the whitelist's reason. */
export const ERROR_MAX = 4096;

export const HELLO = 'doorman-nft-helper';
export const VERSION = 1;

export const requestSchema = z.strictObject({
  id: z.number().int().min(1).max(2 ** 31),
  script: z.string(),
});
export type HelperRequest = z.output<typeof requestSchema>;

export const helloSchema = z.strictObject({
  hello: z.literal(HELLO),
  version: z.literal(VERSION),
  pid: z.number().int().min(1),
});

export const responseSchema = z.union([
  z.strictObject({ id: z.number().int().min(1), ok: z.literal(true), out: z.string() }),
  z.strictObject({ id: z.number().int().min(1), ok: z.literal(false), error: z.string().max(ERROR_MAX), refused: z.boolean() }),
]);
export type HelperResponse = z.output<typeof responseSchema>;

/** What the daemon tells the helper at its start (one argv word of JSON), and nothing later can change. */
export const helperOptionsSchema = z.strictObject({
  table: z.string().regex(/^[a-z0-9]+ [A-Za-z_][A-Za-z0-9_]{0,63}$/),
  v4: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/).nullable(),
  v6: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/).nullable(),
  command: z.array(z.string().min(1)).min(1).max(16),
  timeoutMs: z.number().int().min(1).max(3_600_000),
});
export type HelperOptions = z.output<typeof helperOptionsSchema>;

export function encodeFrame(message: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(message), 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(body.length, 0);
  return Buffer.concat([head, body]);
}

/**
 * Splits a byte stream into frames and parses each as JSON. push() returns
 * the messages completed by the chunk, and throws an Error saying why on a
 * length of 0 or past `max` or a body that is not JSON (nothing else);
 * after a throw the decoder is spent. A frame's body is joined once, when
 * its last byte is in.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  constructor(private readonly max: number) {}

  /** Whether part of a frame is waiting for the rest. */
  get partial(): boolean {
    return this.buffered > 0;
  }

  push(chunk: Buffer): unknown[] {
    if (this.failed) throw new Error('the stream was already broken');
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: unknown[] = [];
    for (;;) {
      if (this.buffered < 4) return out;
      const len = this.headerLength();
      if (len === 0 || len > this.max) return this.fail(`a frame of ${len} bytes (allowed: 1 to ${this.max})`);
      if (this.buffered < 4 + len) return out;
      const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
      const body = all.subarray(4, 4 + len);
      const rest = all.subarray(4 + len);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      let message: unknown;
      try {
        message = JSON.parse(body.toString('utf8'));
      } catch {
        return this.fail(`a frame of ${len} bytes that is not JSON`);
      }
      out.push(message);
    }
  }

  private headerLength(): number {
    let first = this.chunks[0] as Buffer;
    if (first.length < 4) {
      first = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [first];
    }
    return first.readUInt32BE(0);
  }

  private fail(why: string): never {
    this.failed = true;
    this.chunks = [];
    this.buffered = 0;
    throw new Error(why);
  }
}
