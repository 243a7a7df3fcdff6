/**
 * The daemon's side of the nft helper (./nft-helper.ts): started while the
 * daemon is root, before it becomes run_as.user, and used for every nft run
 * after. Requests go one frame each (./helper-frames.ts), with the run's
 * deadline plus HELPER_SLACK_MS for an answer; answers are matched by id, so
 * one that comes too late is dropped.
 *
 * The helper cannot be started again once root is gone: if it exits or
 * breaks the protocol, every later run fails at once, naming why, and the
 * set writer's failures (logged, counted, retried with a backoff up to a
 * minute) show it until Doorman restarts. Doorman's decisions never depended
 * on it. close() ends its standard input, which ends it; a helper that stays
 * is not killed (the daemon, no longer root, may not) but has no one left to
 * serve and goes when its run in hand ends.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { encodeFrame, FrameDecoder, helloSchema, REQUEST_MAX, RESPONSE_MAX, responseSchema, type HelperOptions } from './helper-frames.js';
import type { NftRunner } from './nft-run.js';

/** Starting node and loading the helper takes ~0.1 s; a loaded two-core host was seen to take seconds for a Node start. */
const START_MS = 15_000;
/** Past the nft run's own deadline (the helper kills nft then and answers): the frame's way back and the helper's turn. */
const HELPER_SLACK_MS = 5_000;
/** How long close() waits for the helper to go after its input is closed. */
const CLOSE_MS = 5_000;
/** The helper's standard error kept for messages, and lines logged from it (it writes a line or two before it exits). */
const STDERR_KEEP = 2000;
const STDERR_LINES_LOGGED = 50;

/** The helper program: this directory's nft-helper.js, run by this node. */
export const HELPER_SCRIPT = fileURLToPath(new URL('./nft-helper.js', import.meta.url));

interface Pending {
  resolve(out: string): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class NftHelper {
  private readonly pending = new Map<number, Pending>();
  private readonly decoder = new FrameDecoder(RESPONSE_MAX);
  private lastId = 0;
  private dead: string | null = null;
  private closing = false;
  private stderr = '';
  private line = '';
  private logged = 0;
  private readonly exited: Promise<number | null>;

  private constructor(
    private readonly child: ChildProcessWithoutNullStreams,
    private readonly opts: HelperOptions,
    private readonly log: Logger,
  ) {
    // 'close': the process is gone and its standard error read to the end.
    this.exited = new Promise((resolve) => child.once('close', (code) => resolve(code)));
  }

  /**
   * Starts the helper and waits for its hello. Rejects (an Error saying why,
   * with what the helper printed) when it cannot be started or does not
   * greet in time. `argv` replaces `node nft-helper.js` (tests).
   */
  static start(opts: HelperOptions, log: Logger, argv: readonly string[] = [process.execPath, HELPER_SCRIPT]): Promise<NftHelper> {
    const [file, ...args] = argv as [string, ...string[]];
    const child = spawn(file, [...args, JSON.stringify(opts)], { stdio: ['pipe', 'pipe', 'pipe'], cwd: '/' });
    const helper = new NftHelper(child, opts, log);
    return new Promise((resolve, reject) => {
      let greeted = false;
      const fail = (why: string): void => {
        if (greeted) return;
        greeted = true;
        clearTimeout(timer);
        helper.dead = why;
        child.kill('SIGKILL');
        reject(new Error(why));
      };
      const timer = setTimeout(() => fail(`${argv.join(' ')} did not greet within ${START_MS / 1000} s${helper.tail()}`), START_MS);
      child.on('error', (e: NodeJS.ErrnoException) => fail(`cannot run ${argv.join(' ')}: ${e.code ?? e.message}`));
      child.stdin.on('error', () => undefined);
      child.stderr.setEncoding('utf8').on('data', (d: string) => helper.onStderr(d));
      child.once('close', (code, signal) => {
        // After close() an exit is expected; before the hello it is a failed start.
        if (!greeted) fail(`${argv.join(' ')} exited ${code ?? signal} before it greeted${helper.tail()}`);
        else helper.gone(`the nft helper (pid ${child.pid}) exited ${code ?? signal}${helper.tail()}`);
      });
      child.stdout.on('data', (chunk: Buffer) => {
        let messages: unknown[];
        try {
          messages = helper.decoder.push(chunk);
        } catch (err) {
          if (!greeted) fail(`${argv.join(' ')} broke the protocol: ${(err as Error).message}`);
          else helper.broken(`a frame it sent: ${(err as Error).message}`);
          return;
        }
        for (const m of messages) {
          if (!greeted) {
            if (!helloSchema.safeParse(m).success) {
              fail(`${argv.join(' ')} did not greet as the nft helper`);
              return;
            }
            greeted = true;
            clearTimeout(timer);
            resolve(helper);
          } else helper.answer(m);
        }
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** nft through the helper: the writer's scripts (-f -) and the start-up listing; anything else is not asked. */
  readonly run: NftRunner = (args, input) => {
    if (args.length === 2 && args[0] === '-f' && args[1] === '-') return this.request(input);
    if (args.length === 7 && args.slice(0, 4).join(' ') === '-j -t list set' && input === '') return this.request(`list set ${args.slice(4).join(' ')}\n`);
    return Promise.reject(new Error(`the nft helper runs scripts (nft -f -) and the set listing, not nft ${args.join(' ')}`));
  };

  /** Sends one script; resolves with nft's output, rejects with nft's error, the helper's refusal or its absence. */
  request(script: string): Promise<string> {
    if (this.dead !== null) return Promise.reject(new Error(this.dead));
    const id = (this.lastId = this.lastId >= 2 ** 31 ? 1 : this.lastId + 1);
    const frame = encodeFrame({ id, script });
    if (frame.length - 4 > REQUEST_MAX) {
      return Promise.reject(new Error(`the script is ${frame.length - 4} bytes, more than the nft helper takes (${REQUEST_MAX / 1024 / 1024} MiB)`));
    }
    const wait = this.opts.timeoutMs + HELPER_SLACK_MS;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the nft helper (pid ${this.child.pid}) did not answer within ${wait} ms`));
      }, wait);
      this.pending.set(id, { resolve, reject, timer });
      this.child.stdin.write(frame);
    });
  }

  /** Ends the helper's input and waits (bounded) for it to go; the exit code, or null when it had not gone. */
  async close(): Promise<number | null> {
    this.closing = true;
    this.child.stdin.end();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), CLOSE_MS);
    });
    const code = await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (code !== 'late') return code;
    this.log.warn({ helper_pid: this.child.pid }, `firewall: the nft helper did not end within ${CLOSE_MS / 1000} s of its input closing; it ends when its nft run does`);
    return null;
  }

  private answer(m: unknown): void {
    const r = responseSchema.safeParse(m);
    if (!r.success) {
      this.broken('an answer not of the protocol');
      return;
    }
    const p = this.pending.get(r.data.id);
    // An answer to a request that timed out: its caller has had its error.
    if (p === undefined) return;
    this.pending.delete(r.data.id);
    clearTimeout(p.timer);
    if (r.data.ok) p.resolve(r.data.out);
    else p.reject(new Error(r.data.refused ? `the nft helper refused the script: ${r.data.error}` : r.data.error));
  }

  private broken(what: string): void {
    this.gone(`the nft helper (pid ${this.child.pid}) broke the protocol (${what}); it is no longer used`);
    this.child.stdin.end();
  }

  /** From now on every run fails with `why`. */
  private gone(why: string): void {
    if (this.dead !== null) return;
    this.dead = `${why}; the nftables sets are not written until Doorman restarts`;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error(this.dead));
      this.pending.delete(id);
    }
    if (!this.closing) this.log.error({ code: 'DOORMAN_ERR_FIREWALL_SYNC', helper_pid: this.child.pid }, `firewall: ${this.dead}`);
  }

  private onStderr(d: string): void {
    this.stderr = (this.stderr + d).slice(-STDERR_KEEP);
    const lines = (this.line + d).split('\n');
    this.line = (lines.pop() as string).slice(0, STDERR_KEEP);
    for (const line of lines) {
      if (line.trim() === '' || this.logged >= STDERR_LINES_LOGGED) continue;
      this.logged++;
      this.log.warn({ helper_pid: this.child.pid }, `firewall: nft helper: ${line.slice(0, 1000)}`);
    }
  }

  private tail(): string {
    const last = this.stderr.trim().split('\n').slice(-3).join(' | ');
    return last === '' ? '' : `: ${last}`;
  }
}
