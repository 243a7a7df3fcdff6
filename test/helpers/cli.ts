/**
 * Runs the built `doorman` command as a child process, asynchronously: the
 * daemon under test, or a stand-in server, may live in the test's own
 * process and must keep answering while the command waits.
 */
import { execFile } from 'node:child_process';
import { DOORMAN_MAIN } from './daemon.js';

export interface CliResult {
  /** The exit code; null when killed by the deadline. */
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Past this the command is hung: its own request deadline is 10 s by default
 * (tests set shorter ones), and loading the command takes about half a
 * second of CPU, which a loaded 2-core machine can stretch many times.
 */
const CLI_TIMEOUT_MS = 30_000;

/**
 * `doorman ARGS…` with a clean environment for the CLI: no DOORMAN_TOKEN or
 * COLUMNS from the caller's shell unless `env` sets them. Never rejects on a
 * non-zero exit; the test judges it.
 */
export function doorman(args: readonly string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['DOORMAN_TOKEN'];
  delete env['COLUMNS'];
  Object.assign(env, opts.env);
  return new Promise((resolve) => {
    execFile(process.execPath, [DOORMAN_MAIN, ...args], { env, cwd: opts.cwd, timeout: CLI_TIMEOUT_MS, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A failure message with everything the command printed. */
export function show(r: CliResult): string {
  return `exit ${r.code}\n--- stdout ---\n${r.stdout}--- stderr ---\n${r.stderr}`;
}
