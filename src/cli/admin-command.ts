/**
 * What every command that talks to the daemon shares: the options that say
 * where it is (`--config`, `--url`, `--token`, `--timeout`), the exit codes,
 * and turning any failure into one line on stderr and a non-zero exit.
 */
import type { Command } from 'commander';
import { ConfigError } from '../errors.js';
import { AdminClient, AdminError, DEFAULT_TIMEOUT_MS, EXIT } from './admin-client.js';
import { resolveAdminTarget, TOKEN_ENV, type AdminOptions } from './admin-target.js';
import { parseTimeout, parseUrl } from './args.js';
import { outputWidth } from './format.js';

export const EXIT_HELP = `
Exit status: ${EXIT.ok} done; ${EXIT.refused} the daemon refused (bad input, unknown id, wrong token, a guardrail);
${EXIT.usage} bad arguments or configuration; ${EXIT.unreachable} no daemon answered.`;

/** What a command's body gets. */
export interface AdminContext {
  readonly client: AdminClient;
  /** Writes to stdout. */
  readonly print: (text: string) => void;
  /** How wide tables may be. */
  readonly width: number;
}

/** Adds the shared options (after the command's own, so they come last in --help). */
export function withAdminOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', "the daemon's configuration: admin.listen and admin.token (default: ./doorman.yaml if present, else /etc/doorman/doorman.yaml if readable)")
    .option('--url <url>', 'the admin API, instead of admin.listen (e.g. http://127.0.0.1:8025)', parseUrl)
    .option('--token <token>', `the admin token (better: $${TOKEN_ENV}, which ps does not show)`)
    .option('--timeout <duration>', `deadline of each request (default: ${DEFAULT_TIMEOUT_MS / 1000}s)`, parseTimeout)
    .addHelpText('after', EXIT_HELP);
}

/** Runs `body` against the daemon; every failure ends as one stderr line and its exit code. */
export async function runAdmin(opts: AdminOptions, body: (ctx: AdminContext) => Promise<void>): Promise<void> {
  try {
    const target = await resolveAdminTarget(opts);
    const client = new AdminClient({ ...target, timeoutMs: opts.timeout ?? DEFAULT_TIMEOUT_MS });
    await body({ client, print: (s) => void process.stdout.write(s), width: outputWidth() });
  } catch (err) {
    fail(err);
  }
}

/** Reports a failure on stderr and sets the exit code; anything unexpected is rethrown (a bug, with its stack). */
export function fail(err: unknown): void {
  if (err instanceof AdminError) {
    process.stderr.write(`doorman: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else if (err instanceof ConfigError) {
    process.stderr.write(`doorman: invalid configuration\n${err.message}\n`);
    process.exitCode = EXIT.usage;
  } else {
    throw err;
  }
}

/** JSON for scripts: one line, as the API sent it. */
export function json(value: unknown): string {
  return `${JSON.stringify(value)}\n`;
}
