/**
 * A private Postfix instance whose only job is to run Postfix's own anvil(8)
 * for the benchmark: its own config, queue and data dirs in a temp dir, an
 * smtpd on a free loopback port (master.cf needs one service that listens; the
 * benchmark never talks to it), anvil and postlogd. Nothing of the system's
 * Postfix is touched.
 *
 * The anvil socket is $queue_directory/private/anvil; master forks the anvil
 * process on the first connection, so `anvilPid()` is only known after that.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { childrenNamed, isAlive } from './proc.js';
import { onTeardown } from './teardown.js';

/** `postfix start` and `stop` return within seconds; more means something is wrong. */
const COMMAND_TIMEOUT_MS = 60_000;
const MASTER_PID_TIMEOUT_MS = 20_000;
const MASTER_EXIT_TIMEOUT_MS = 15_000;

export interface PostfixOptions {
  readonly rateTimeUnit: string;
}

export class PostfixInstance {
  readonly dir: string;
  readonly socket: string;
  readonly masterPid: number;
  private readonly unregister: () => void;

  private constructor(dir: string, masterPid: number) {
    this.dir = dir;
    this.socket = join(dir, 'queue', 'private', 'anvil');
    this.masterPid = masterPid;
    this.unregister = onTeardown(`postfix ${dir}`, () => stopSync(dir, masterPid));
  }

  static async start(opts: PostfixOptions): Promise<PostfixInstance> {
    const dir = mkdtempSync(join(tmpdir(), 'postfix-bench-'));
    // Postfix daemons run as the postfix user and must reach the queue through this dir.
    chmodSync(dir, 0o755);
    for (const d of ['etc', 'queue', 'data']) mkdirSync(join(dir, d), { mode: 0o755 });
    try {
      execFileSync('chown', ['postfix', join(dir, 'data')], { stdio: 'pipe', timeout: COMMAND_TIMEOUT_MS });
      const port = await freePort();
      writeFileSync(
        join(dir, 'etc', 'main.cf'),
        [
          `queue_directory = ${dir}/queue`,
          `data_directory = ${dir}/data`,
          'mail_owner = postfix',
          'inet_interfaces = 127.0.0.1',
          'inet_protocols = ipv4',
          `maillog_file = ${dir}/maillog`,
          `maillog_file_prefixes = /var, /dev/stdout, ${dir}`,
          'alias_maps =',
          'alias_database =',
          'mydestination =',
          'compatibility_level = 3.6',
          `anvil_rate_time_unit = ${opts.rateTimeUnit}`,
          '',
        ].join('\n'),
      );
      writeFileSync(
        join(dir, 'etc', 'master.cf'),
        [
          `127.0.0.1:${port} inet n - n - - smtpd`,
          'anvil unix - - n - 1 anvil',
          'postlog unix-dgram n - n - 1 postlogd',
          '',
        ].join('\n'),
      );
      const r = spawnSync('postfix', ['-c', join(dir, 'etc'), 'start'], { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
      if (r.status !== 0) throw new Error(`postfix start exited ${r.status}: ${r.stderr}${r.stdout}${readLog(dir)}`);
      const masterPid = await waitForMasterPid(dir);
      return new PostfixInstance(dir, masterPid);
    } catch (err) {
      stopSync(dir, null);
      throw err;
    }
  }

  /** The anvil process master forked, or null before the first connection. */
  anvilPid(): number | null {
    const pids = childrenNamed(this.masterPid, 'anvil');
    return pids.length === 1 ? (pids[0] as number) : null;
  }

  /** `postfix stop`, wait for master to exit, remove the temp dir. */
  stop(): void {
    this.unregister();
  }

  maillog(): string {
    return readLog(this.dir);
  }
}

function readLog(dir: string): string {
  try {
    return readFileSync(join(dir, 'maillog'), 'utf8');
  } catch {
    return '';
  }
}

function stopSync(dir: string, masterPid: number | null): void {
  spawnSync('postfix', ['-c', join(dir, 'etc'), 'stop'], { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS });
  const pid = masterPid ?? readMasterPid(dir);
  if (pid !== null) {
    const until = Date.now() + MASTER_EXIT_TIMEOUT_MS;
    while (isAlive(pid) && Date.now() < until) sleepSync(100);
    if (isAlive(pid)) {
      // master did not go: kill it and whatever it forked
      for (const child of [...childrenNamed(pid, 'anvil'), ...childrenNamed(pid, 'postlogd'), ...childrenNamed(pid, 'smtpd')]) {
        try {
          process.kill(child, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/** Teardown must be synchronous (it also runs from process 'exit'). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function readMasterPid(dir: string): number | null {
  const file = join(dir, 'queue', 'pid', 'master.pid');
  if (!existsSync(file)) return null;
  const pid = Number(readFileSync(file, 'latin1').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

async function waitForMasterPid(dir: string): Promise<number> {
  const until = Date.now() + MASTER_PID_TIMEOUT_MS;
  while (Date.now() < until) {
    const pid = readMasterPid(dir);
    if (pid !== null && isAlive(pid) && existsSync(join(dir, 'queue', 'private', 'anvil'))) return pid;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`postfix master did not come up within ${MASTER_PID_TIMEOUT_MS} ms${readLog(dir)}`);
}

/** A loopback TCP port free right now, for master.cf's one smtpd line. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}
