/**
 * One run of nft: `COMMAND… ARGS…` with a script on its standard input, a
 * deadline, and its output capped. One run per batch rather than a
 * long-lived `nft -i`: measured with nft 1.0.6 on a set of 50,000 elements,
 * each command costs the same ~0.45 s either way (nft reads the set's
 * elements into its cache for the overlap check before every command, in
 * `-i` too), while `-i` reports no outcome per command (an error is a line
 * on stderr, the exit status 0) and a process that hangs or dies would take
 * every later batch with it. With an empty set a run costs ~4 ms.
 *
 * Where nft runs (openNft): in the daemon itself, or, when the daemon
 * started as root and becomes run_as.user once its sockets are bound, in
 * the nft helper it starts before that (./nft-helper-client.ts), since
 * writing a set takes CAP_NET_ADMIN and the drop takes every capability.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { FirewallError } from '../errors.js';
import { NftHelper } from './nft-helper-client.js';
import type { SetNames } from './set-plan.js';

/** What nft prints on failure is a few lines; a set listed with -t is one. */
const OUTPUT_MAX = 256 * 1024;

/** Runs `command` (argv, e.g. ["nft"] or ["ip", "netns", "exec", "NS", "nft"]) with `args`; resolves with stdout. */
export type NftRunner = (args: readonly string[], input: string) => Promise<string>;

export function nftRunner(command: readonly string[], timeoutMs: number): NftRunner {
  return (args, input) =>
    new Promise((resolve, reject) => {
      const [file, ...pre] = command as [string, ...string[]];
      const child = spawn(file, [...pre, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      let done = false;
      const finish = (e: Error | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (e === null) resolve(out);
        else reject(e);
      };
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish(new Error(`${command.join(' ')}: no answer in ${timeoutMs} ms; killed`));
      }, timeoutMs);
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (out.length < OUTPUT_MAX) out += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        if (err.length < OUTPUT_MAX) err += d;
      });
      child.on('error', (e: NodeJS.ErrnoException) => finish(new Error(`cannot run ${command.join(' ')}: ${e.code ?? e.message}`)));
      child.on('close', (code, signal) => {
        if (code === 0) finish(null);
        else finish(new Error(`${command.join(' ')} ${args.join(' ')} exited ${code ?? signal}: ${firstLines(err)}`));
      });
      // A child that exits before reading everything (a syntax error) closes the pipe under us.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input);
    });
}

/** nft's error: the message and the offending line, without the caret lines, on one line. */
function firstLines(s: string): string {
  const lines = s.split('\n').filter((l) => l.trim() !== '' && !/^\s*\^+\s*$/.test(l));
  const text = lines.slice(0, 4).join(' | ');
  return text.length > 600 ? `${text.slice(0, 600)}…` : text || '(nothing on stderr)';
}

/** Whether nft must run in the helper: root now, and run_as.user to become once the sockets are bound. */
export function useNftHelper(runAsUser: string | number | null, uid: number | undefined): boolean {
  return runAsUser !== null && uid === 0;
}

export interface NftOpenOptions {
  readonly names: SetNames;
  readonly command: readonly string[];
  readonly timeoutMs: number;
  /** The configuration file, for start-up errors. */
  readonly source: string;
  /** run_as.user, and the uid the daemon runs as now (process.getuid()). */
  readonly runAsUser: string | number | null;
  readonly uid: number | undefined;
  readonly log: Logger;
  /** The helper's program instead of `node nft-helper.js` (tests). */
  readonly helperArgv?: readonly string[];
}

export interface OpenedNft {
  readonly run: NftRunner;
  readonly via: 'direct' | 'helper';
  /** The helper's pid; null when nft runs directly. */
  readonly helperPid: number | null;
  /** Ends the helper (nothing to do for direct runs). */
  close(): Promise<void>;
}

/**
 * nft for the set writer: run directly, or through the helper started now,
 * as root (useNftHelper). Throws FirewallError naming firewall.nft when the
 * helper cannot start.
 */
export async function openNft(o: NftOpenOptions): Promise<OpenedNft> {
  if (!useNftHelper(o.runAsUser, o.uid)) {
    return { run: nftRunner(o.command, o.timeoutMs), via: 'direct', helperPid: null, close: async () => undefined };
  }
  let helper: NftHelper;
  try {
    helper = await NftHelper.start({ table: o.names.table, v4: o.names.v4, v6: o.names.v6, command: [...o.command], timeoutMs: o.timeoutMs }, o.log, o.helperArgv);
  } catch (err) {
    throw new FirewallError(
      'DOORMAN_ERR_FIREWALL_SET',
      `${o.source}: firewall.nft: the nft helper, which writes the sets once Doorman has become run_as.user (${o.runAsUser}), did not start: ${(err as Error).message}`,
    );
  }
  return {
    run: helper.run,
    via: 'helper',
    helperPid: helper.pid ?? null,
    close: async () => {
      await helper.close();
    },
  };
}

/** CAP_NET_ADMIN's bit in the capability masks of /proc/PID/status (linux/capability.h). */
const CAP_NET_ADMIN = 12n;

/**
 * Whether this process holds CAP_NET_ADMIN now (its effective set); null
 * when that cannot be read (not Linux). Before the drop, the helper is
 * started with the daemon's own capabilities, so this answers for both.
 */
export function holdsNetAdmin(status = '/proc/self/status'): boolean | null {
  let text: string;
  try {
    text = readFileSync(status, 'utf8');
  } catch {
    return null;
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  return m === null ? null : ((BigInt(`0x${m[1]}`) >> CAP_NET_ADMIN) & 1n) === 1n;
}
