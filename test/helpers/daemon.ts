/**
 * Runs the compiled daemon (`dist/src/cli/main.js serve`) as a child process
 * for integration tests: writes the given config as YAML into a temp dir,
 * collects stdout and stderr, parses the JSON log lines, and waits for
 * `doorman ready`. Every wait is bounded; a daemon that dies or never gets
 * ready fails the test with everything it printed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';

/** dist/test/helpers/daemon.js → the repository root, three levels up. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const DOORMAN_MAIN = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

/**
 * A start costs about 0.7 s of CPU before `doorman ready` (loading fastify,
 * zod and the rest, and fastify compiling its route schemas; Node 20 has no
 * compile cache). On a 2-core machine running two test files at once beside a
 * CPU hog, a child gets a small share of a core, and 10 s was seen to run out
 * (issue 17). This bounds a failure; it measures nothing.
 */
const READY_TIMEOUT_MS = 30_000;
/** Shutdown closes clients and dumps statistics; past this the daemon is hung and gets SIGKILL. */
const STOP_TIMEOUT_MS = 5_000;
/** Output kept for error messages; a chatty daemon at debug level must not grow a test without bound. */
const MAX_OUTPUT_LINES = 20_000;

export type LogLine = Record<string, unknown>;

export interface DoormanOptions {
  /** How long to wait for `doorman ready` (default 10 s). */
  readyTimeoutMs?: number;
  /** Extra environment for the child. */
  env?: NodeJS.ProcessEnv;
  /** Extra arguments after `serve --config FILE`. */
  args?: string[];
  /** The command's main file (default DOORMAN_MAIN, this checkout's build): an installed package's, say. */
  main?: string;
  /**
   * The whole command line instead of `node FLAGS main serve --config FILE`,
   * given the config file's path: a unit's ExecStart, say. `main` is then unused.
   */
  command?: (configPath: string) => readonly string[];
}

export interface DoormanProcess {
  readonly proc: ChildProcess;
  /** The temp dir holding the config (removed by stop()). */
  readonly dir: string;
  readonly configPath: string;
  /** Every JSON log line so far, parsed. */
  logs(): LogLine[];
  /** Everything printed so far, stderr lines prefixed with `stderr: `. */
  output(): string;
  /** The first log line (past or future) that matches; rejects on timeout or exit, with the output. */
  waitForLog(pred: (line: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Resolves with the exit code (null if killed by a signal) once the process is gone. */
  readonly exited: Promise<number | null>;
  /**
   * Sends `signal`, waits (bounded) for the exit, SIGKILLs if needed, removes
   * the temp dir and resolves with the exit code (null after a kill).
   * Idempotent: later calls return the first call's result.
   */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Children not yet reaped; SIGKILLed if the test process exits first. */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** Starts Doorman with `config` and waits until it logs `doorman ready`. */
export async function startDoorman(config: object, opts: DoormanOptions = {}): Promise<DoormanProcess> {
  const main = opts.main ?? DOORMAN_MAIN;
  if (opts.command === undefined && !existsSync(main)) throw new Error(`${main} not found: run \`npx tsc -b\` first`);
  const dir = await mkdtemp(join(tmpdir(), 'doorman-'));
  const configPath = join(dir, 'doorman.yaml');
  // An admin port of its own, unless the test sets one: tests run side by side.
  // Tests run as root in CI: a test daemon may stay root unless the test says otherwise.
  await writeFile(configPath, stringify({ admin: { listen: '127.0.0.1:0' }, run_as: { allow_root: true }, ...config }));

  const argv = opts.command?.(configPath) ?? [process.execPath, ...DAEMON_NODE_FLAGS, main, 'serve', '--config', configPath, ...(opts.args ?? [])];
  const proc = spawn(argv[0] as string, argv.slice(1), {
    cwd: dir,
    env: { ...process.env, ...DAEMON_ENV, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(proc);

  const lines: string[] = [];
  const logs: LogLine[] = [];
  const watchers = new Set<(line: LogLine | null) => void>();
  let exitCode: number | null | undefined;
  let exitDesc = '';

  const onLine = (stream: 'stdout' | 'stderr', line: string): void => {
    if (lines.length < MAX_OUTPUT_LINES) lines.push(stream === 'stderr' ? `stderr: ${line}` : line);
    if (stream !== 'stdout' || !line.startsWith('{')) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      return;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return;
    const entry = parsed as LogLine;
    if (logs.length < MAX_OUTPUT_LINES) logs.push(entry);
    for (const w of [...watchers]) w(entry);
  };
  splitLines(proc.stdout, (l) => onLine('stdout', l));
  splitLines(proc.stderr, (l) => onLine('stderr', l));

  // 'close' comes after both pipes ended, so output() is complete by then.
  const exited = new Promise<number | null>((resolve) => {
    proc.once('close', (code, signal) => {
      live.delete(proc);
      exitCode = code;
      exitDesc = code === null ? `killed by ${signal}` : `exited with code ${code}`;
      for (const w of [...watchers]) w(null);
      resolve(code);
    });
  });
  proc.once('error', (err) => {
    lines.push(`spawn error: ${err.message}`);
  });

  const output = (): string => lines.join('\n');

  const waitForLog = (pred: (line: LogLine) => boolean, timeoutMs = 5000): Promise<LogLine> => {
    const found = logs.find(pred);
    if (found) return Promise.resolve(found);
    if (exitCode !== undefined) {
      return Promise.reject(new Error(`doorman ${exitDesc} before the awaited log line; output:\n${output()}`));
    }
    return new Promise<LogLine>((resolve, reject) => {
      const watcher = (line: LogLine | null): void => {
        if (line === null) {
          done();
          reject(new Error(`doorman ${exitDesc} before the awaited log line; output:\n${output()}`));
        } else if (pred(line)) {
          done();
          resolve(line);
        }
      };
      const t = setTimeout(() => {
        done();
        reject(new Error(`awaited log line not seen within ${timeoutMs} ms; output:\n${output()}`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(t);
        watchers.delete(watcher);
      };
      watchers.add(watcher);
    });
  };

  let stopping: Promise<number | null> | undefined;
  const stop = (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    stopping ??= (async () => {
      if (exitCode === undefined) {
        proc.kill(signal);
        let t: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([
          exited.then(() => false),
          new Promise<boolean>((resolve) => {
            t = setTimeout(() => resolve(true), STOP_TIMEOUT_MS);
          }),
        ]);
        clearTimeout(t);
        if (timedOut) {
          lines.push(`(test helper: no exit ${STOP_TIMEOUT_MS} ms after ${signal}; sending SIGKILL)`);
          proc.kill('SIGKILL');
        }
      }
      const code = await exited;
      await rm(dir, { recursive: true, force: true });
      return code;
    })();
    return stopping;
  };

  const daemon: DoormanProcess = {
    proc,
    dir,
    configPath,
    logs: () => [...logs],
    output,
    waitForLog,
    exited,
    stop,
  };

  try {
    await waitForLog((l) => l['msg'] === 'doorman ready', opts.readyTimeoutMs ?? READY_TIMEOUT_MS);
  } catch (err) {
    await stop('SIGKILL');
    throw new Error(`doorman did not get ready: ${(err as Error).message}`);
  }
  return daemon;
}

/** Calls `onLine` for every complete line of `stream` (and a final unterminated one). */
function splitLines(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  if (!stream) return;
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      onLine(buf.slice(0, nl).replace(/\r$/, ''));
      buf = buf.slice(nl + 1);
    }
  });
  stream.on('end', () => {
    if (buf) onLine(buf);
    buf = '';
  });
}
