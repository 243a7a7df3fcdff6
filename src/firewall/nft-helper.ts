/**
 * The nft helper: a child process the daemon starts while it is still root
 * (./nft-helper-client.ts), before it becomes run_as.user, so that the sets
 * can still be written once the daemon holds no capability. It stays root
 * and runs nft for the daemon, and nothing else:
 *
 *   node dist/src/firewall/nft-helper.js '{"table":…,"v4":…,"v6":…,"command":[…],"timeoutMs":…}'
 *
 * The options are fixed at start, by root; the daemon then sends scripts on
 * standard input and reads answers on standard output, in the frames of
 * ./helper-frames.ts. Each script is checked against ./nft-script.ts's
 * whitelist (the writer's add, delete and flush on the configured table and
 * sets, and the start-up listing); one that passes is run by the configured
 * command with its deadline (./nft-run.ts), one that does not is answered
 * with the reason and never reaches nft. Requests are served one at a time,
 * and standard input is not read meanwhile, so what waits is bounded by the
 * pipe.
 *
 * It ends when its standard input ends (the daemon stopped or died: the pipe
 * closes with the process) once the run in hand is answered, dropping any
 * request queued behind it; and at once on a protocol error (a frame over
 * the cap, not JSON, not a request, or a frame begun and not finished within
 * FRAME_MS), saying why on standard error with exit code 2. SIGTERM, SIGINT
 * and SIGHUP are the daemon's business: systemd's stop and a terminal's ^C
 * signal the whole group, and a helper that left at once would have the
 * daemon report it gone while it shuts down; the daemon closes it as it
 * stops. It sets no timer but those and nft's deadline, so an idle helper
 * sleeps in a read.
 */
import { fileURLToPath } from 'node:url';
import { realpathSync } from 'node:fs';
import { encodeFrame, ERROR_MAX, FrameDecoder, HELLO, helperOptionsSchema, REQUEST_MAX, requestSchema, VERSION, type HelperOptions, type HelperRequest } from './helper-frames.js';
import { nftRunner, type NftRunner } from './nft-run.js';
import { checkScript } from './nft-script.js';

/**
 * The daemon writes a frame in one write and the helper reads as fast as it
 * comes; a frame begun and not finished in this time means a daemon stuck
 * mid-write, and a helper that waits on it would wait for ever.
 */
const FRAME_MS = 30_000;

export interface HelperIo {
  readonly input: NodeJS.ReadableStream & { pause(): unknown; resume(): unknown };
  write(frame: Buffer): void;
  /** A line for standard error. */
  warn(line: string): void;
  exit(code: number): void;
}

/** Serves requests on `io` until the input ends; `run` is nft (a fake in tests). */
export function serveHelper(opts: HelperOptions, io: HelperIo, run: NftRunner = nftRunner(opts.command, opts.timeoutMs)): { stop(): void } {
  const names = { table: opts.table, v4: opts.v4, v6: opts.v6 };
  const decoder = new FrameDecoder(REQUEST_MAX);
  const queue: HelperRequest[] = [];
  let busy = false;
  let ending = false;
  let frameTimer: NodeJS.Timeout | null = null;

  const fatal = (why: string): void => {
    io.warn(`doorman nft helper: ${why}; exiting`);
    io.exit(2);
  };
  const watchFrame = (): void => {
    if (frameTimer !== null) clearTimeout(frameTimer);
    frameTimer = null;
    if (!busy && decoder.partial) frameTimer = setTimeout(() => fatal(`a frame begun and not finished in ${FRAME_MS / 1000} s`), FRAME_MS);
  };

  const next = async (): Promise<void> => {
    if (busy) return;
    const req = queue.shift();
    if (req === undefined) {
      if (ending) io.exit(0);
      io.input.resume();
      watchFrame();
      return;
    }
    busy = true;
    io.input.pause();
    watchFrame();
    const check = checkScript(req.script, names);
    let answer: unknown;
    if (!check.ok) answer = { id: req.id, ok: false, error: check.error.slice(0, ERROR_MAX), refused: true };
    else {
      try {
        const out = check.kind === 'list' ? await run(check.args, '') : await run(['-f', '-'], req.script);
        answer = { id: req.id, ok: true, out };
      } catch (err) {
        answer = { id: req.id, ok: false, error: (err as Error).message.slice(0, ERROR_MAX), refused: false };
      }
    }
    io.write(encodeFrame(answer));
    busy = false;
    void next();
  };

  io.input.on('data', (chunk: Buffer) => {
    let messages: unknown[];
    try {
      messages = decoder.push(chunk);
    } catch (err) {
      fatal(`protocol error: ${(err as Error).message}`);
      return;
    }
    for (const m of messages) {
      const req = requestSchema.safeParse(m);
      if (!req.success) {
        fatal('protocol error: a frame that is not a request {id, script}');
        return;
      }
      queue.push(req.data);
    }
    watchFrame();
    void next();
  });
  // Requests still queued are dropped: no one is left to read their answers.
  const stop = (): void => {
    ending = true;
    queue.length = 0;
    if (!busy) io.exit(0);
  };
  io.input.on('end', stop);
  io.input.on('error', stop);
  io.write(encodeFrame({ hello: HELLO, version: VERSION, pid: process.pid }));
  return { stop };
}

function main(): void {
  const parsed = (() => {
    try {
      return helperOptionsSchema.safeParse(JSON.parse(process.argv[2] ?? ''));
    } catch {
      return null;
    }
  })();
  if (parsed === null || !parsed.success) {
    process.stderr.write('doorman nft helper: started without its options (one JSON word: table, v4, v6, command, timeoutMs); the daemon starts it\n');
    process.exit(2);
  }
  // The group's signals are for the daemon, which ends the helper by closing its input (see the top).
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => undefined);
  // The daemon gone, a write fails: nothing left to serve.
  process.stdout.on('error', () => process.exit(0));
  serveHelper(parsed.data, {
    input: process.stdin,
    write: (frame) => process.stdout.write(frame),
    warn: (line) => process.stderr.write(`${line}\n`),
    exit: (code) => process.exit(code),
  });
}

/** Run as a program, not imported (tests import serveHelper). */
function isMain(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) main();
