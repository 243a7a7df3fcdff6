/**
 * The logger factory: JSON lines by default, a readable form on a terminal
 * (format auto) or when asked (format pretty).
 */
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type PinoPretty from 'pino-pretty';

/** pino-pretty is loaded only for a terminal or `format: pretty`: a daemon logging JSON never pays its ~60 ms. */
const load = createRequire(import.meta.url);

export interface LogOptions {
  readonly level: string;
  readonly format: 'auto' | 'json' | 'pretty';
}

export function createLogger(opts: LogOptions, stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stdout): Logger {
  const usePretty = opts.format === 'pretty' || (opts.format === 'auto' && stream.isTTY === true);
  const base = { level: opts.level, base: { pid: process.pid }, redact: ['token', 'password', '*.token', '*.password'] };
  if (usePretty) {
    const pretty = load('pino-pretty') as typeof PinoPretty;
    return pino(base, pretty({ destination: stream, sync: true, translateTime: 'SYS:standard', ignore: 'pid,hostname' }));
  }
  return pino(base, pino.destination({ dest: (stream as { fd?: number }).fd ?? 1, sync: true }));
}
