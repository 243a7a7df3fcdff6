/**
 * A private, throw-away Postfix instance for integration tests: its own
 * config, queue and log under one temp dir, smtpd on a free loopback port,
 * and (unless `ownAnvil`) no anvil of its own, so smtpd talks to whatever
 * listens on `$queue_directory/private/anvil` — Doorman, in these tests.
 *
 * Needs root and Debian's postfix package (3.7 seen). Facts this relies on,
 * checked on Debian 12 with postfix 3.7.11:
 * - `data_directory` must belong to `postfix` or master cannot take its lock.
 * - `postfix start` (master -w) returns only after master has bound the smtpd
 *   port, and fails if the port is taken.
 * - A `queue/private` made beforehand (owner postfix, 0700) is kept as is, so a
 *   daemon can listen on `private/anvil` before Postfix starts; postfix-script
 *   does not complain about a root-owned socket there.
 * - `postfix stop` SIGTERMs master, which takes its children (smtpd) down;
 *   the script then polls once a second, so stop() sends the signal itself.
 * - main.cf written less than about two seconds ago makes every postfix
 *   command pause up to ~2 s, so the config's mtime is set in the past.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectWithin } from './net.js';
import { SmtpTestClient } from './smtp.js';

export const POSTFIX_COMMAND = '/usr/sbin/postfix';
export const SMTPD_PROGRAM = '/usr/lib/postfix/sbin/smtpd';
/** How long Postfix gets to accept SMTP after `postfix start` returned. */
const START_TIMEOUT_MS = 10_000;
/** How long master gets to exit after `postfix stop` before it is SIGKILLed with its children. */
const STOP_TIMEOUT_MS = 10_000;
/** A postfix command that takes longer than this is hung. */
const COMMAND_TIMEOUT_MS = 20_000;
/** A port picked as free can be taken before master binds it; try a few others. */
const PORT_ATTEMPTS = 5;

/** True when this machine has the Postfix programs the tests drive. */
export function postfixAvailable(): boolean {
  return existsSync(POSTFIX_COMMAND) && existsSync(SMTPD_PROGRAM);
}

/** The paths of one instance. */
export interface PostfixDirs {
  /** The temp dir holding everything below. */
  readonly dir: string;
  readonly etcDir: string;
  readonly queueDir: string;
  readonly dataDir: string;
  /** `queueDir/private`: owner postfix, mode 0700, exists before Postfix starts. */
  readonly privateDir: string;
  /** `queueDir/private/anvil`: where smtpd looks for anvil. */
  readonly anvilSocket: string;
  readonly maillogPath: string;
  /** Removes the whole dir (stop Postfix first). Idempotent. */
  remove(): Promise<void>;
}

/**
 * Makes an instance's dirs, including `queue/private`, so a daemon can listen
 * on `anvilSocket` before Postfix starts. Pass the result to startPostfix();
 * the caller then owns the dir and removes it with `remove()`.
 */
export async function prepareQueueDir(): Promise<PostfixDirs> {
  // Short on purpose: a UNIX socket path must fit in 108 bytes.
  const dir = await mkdtemp(join(tmpdir(), 'pf-'));
  // mkdtemp makes it 0700; smtpd runs as postfix and must reach queue/ below it.
  await chmod(dir, 0o755);
  const { uid, gid } = postfixIds();
  const etcDir = join(dir, 'etc');
  const queueDir = join(dir, 'queue');
  const dataDir = join(dir, 'data');
  const privateDir = join(queueDir, 'private');
  await mkdir(etcDir, { mode: 0o755 });
  await mkdir(queueDir, { mode: 0o755 });
  await mkdir(dataDir, { mode: 0o755 });
  await chown(dataDir, uid, gid);
  await mkdir(privateDir, { mode: 0o700 });
  await chmod(privateDir, 0o700);
  await chown(privateDir, uid, gid);
  let removed = false;
  return {
    dir,
    etcDir,
    queueDir,
    dataDir,
    privateDir,
    anvilSocket: join(privateDir, 'anvil'),
    maillogPath: join(dir, 'maillog'),
    async remove() {
      if (removed) return;
      removed = true;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface PostfixOptions {
  /** Run Postfix's own anvil (adds the `anvil` line to master.cf). */
  ownAnvil: boolean;
  /** Extra or overriding main.cf settings. */
  mainCf?: Record<string, string>;
  /** Dirs from prepareQueueDir(); without them startPostfix makes (and stop() removes) its own. */
  dirs?: PostfixDirs;
  /**
   * How to tell Postfix is up: 'greeting' (default) opens one SMTP session,
   * reads a 220 and QUITs — that session goes through anvil, so it shows up in
   * anvil's counters and statistics; 'tcp' only checks the port accepts (an
   * smtpd behind `smtpd_upstream_proxy_protocol` greets only after a PROXY header).
   */
  readyCheck?: 'greeting' | 'tcp';
}

export interface PostfixInstance {
  readonly dir: string;
  readonly port: number;
  readonly queueDir: string;
  /** `queueDir/private/anvil`. */
  readonly anvilSocket: string;
  /** master.cf's service name, the SERVICE half of smtpd's anvil ident: `127.0.0.1:PORT`. */
  readonly service: string;
  readonly dirs: PostfixDirs;
  /** The instance's log so far ('' before the first line). */
  maillog(): string;
  /**
   * Stops Postfix and waits until master is gone (SIGKILLs it and its children
   * after a bounded wait). Removes the dir only if startPostfix made it.
   * Idempotent; never throws.
   */
  stop(): Promise<void>;
}

/** The settings every instance gets; `mainCf` may override them. */
export function baseMainCf(dirs: PostfixDirs): Record<string, string> {
  return {
    queue_directory: dirs.queueDir,
    data_directory: dirs.dataDir,
    mail_owner: 'postfix',
    inet_interfaces: '127.0.0.1',
    inet_protocols: 'ipv4',
    maillog_file: dirs.maillogPath,
    maillog_file_prefixes: `/var, /dev/stdout, ${dirs.dir}`,
    myhostname: 'doorman-test.localdomain',
    mydestination: '',
    alias_maps: '',
    alias_database: '',
    compatibility_level: '3.6',
    // Loopback is exempt by default ($mynetworks); the tests' client is loopback.
    smtpd_client_event_limit_exceptions: '',
  };
}

function masterCf(port: number, ownAnvil: boolean): string {
  const lines = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'cleanup unix n - n - 0 cleanup',
    'rewrite unix - - n - - trivial-rewrite',
    'proxymap unix - - n - - proxymap',
    'postlog unix-dgram n - n - 1 postlogd',
  ];
  if (ownAnvil) lines.push('anvil unix - - n - 1 anvil');
  return lines.join('\n') + '\n';
}

/** Writes the config, checks it, starts Postfix and waits until smtpd answers. */
export async function startPostfix(opts: PostfixOptions): Promise<PostfixInstance> {
  const ownsDirs = opts.dirs === undefined;
  const dirs = opts.dirs ?? (await prepareQueueDir());
  const mainCf = { ...baseMainCf(dirs), ...opts.mainCf };
  const etc = dirs.etcDir;
  const readLog = (): string => {
    try {
      return readFileSync(dirs.maillogPath, 'latin1');
    } catch {
      return '';
    }
  };
  try {
    await writeFile(
      join(etc, 'main.cf'),
      Object.entries(mainCf)
        .map(([k, v]) => `${k} = ${v}\n`)
        .join(''),
    );
    let port = 0;
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      await writeFile(join(etc, 'master.cf'), masterCf(port, opts.ownAnvil));
      await backdate(etc);
      if (attempt === 1) {
        const check = await postfix(etc, 'check');
        if (check.code !== 0) {
          const why = check.output || (await postfixOnTty(etc, 'check'));
          throw new Error(`postfix check failed (exit ${check.code}):\n${why}\n--- maillog ---\n${readLog()}`);
        }
      }
      const start = await postfix(etc, 'start');
      if (start.code === 0) {
        // master binds with SO_REUSEPORT: a second Postfix that picked the
        // same port starts fine and shares it. Make sure the port is ours alone.
        if (listenerCount(port) === 1) break;
        await makeInstance(dirs, port, false, readLog).stop();
        if (attempt < PORT_ATTEMPTS) continue;
        throw new Error(`port ${port} is shared with another listener after ${attempt} attempts`);
      }
      const log = readLog();
      if (attempt < PORT_ATTEMPTS && /address already in use/i.test(start.output + log)) continue;
      const why = start.output || (await postfixOnTty(etc, 'start'));
      throw new Error(`postfix start failed (exit ${start.code}):\n${why}\n--- maillog ---\n${log}`);
    }
    const instance = makeInstance(dirs, port, ownsDirs, readLog);
    live.add(instance);
    try {
      await waitUntilServing(port, opts.readyCheck ?? 'greeting', readLog);
    } catch (err) {
      await instance.stop();
      throw err;
    }
    return instance;
  } catch (err) {
    if (ownsDirs) await dirs.remove();
    throw err;
  }
}

/**
 * Postfix pauses (300 ms at a time, about 2 s in all) before reading a main.cf
 * changed within the last second or two, to let an editor finish writing it;
 * a config written by a test a moment ago is finished.
 */
async function backdate(etc: string): Promise<void> {
  const past = new Date(Date.now() - 60_000);
  for (const f of ['main.cf', 'master.cf']) await utimes(join(etc, f), past, past);
}

interface LiveInstance extends PostfixInstance {
  /** Synchronous last resort for process exit. */
  killNow(): void;
}

/** Instances not yet stopped; killed if the test process exits without stopping them. */
const live = new Set<LiveInstance>();
process.once('exit', () => {
  for (const p of live) p.killNow();
});

function makeInstance(dirs: PostfixDirs, port: number, ownsDirs: boolean, readLog: () => string): LiveInstance {
  let stopping: Promise<void> | undefined;
  let lastLog = '';
  const pidFile = join(dirs.queueDir, 'pid', 'master.pid');
  const instance: LiveInstance = {
    dir: dirs.dir,
    port,
    queueDir: dirs.queueDir,
    anvilSocket: dirs.anvilSocket,
    service: `127.0.0.1:${port}`,
    dirs,
    maillog: () => (stopping ? readLog() || lastLog : readLog()),
    stop() {
      stopping ??= (async () => {
        const pid = await masterPid(pidFile);
        if (pid !== undefined && alive(pid)) {
          // What `postfix stop` does (postfix-script: kill `sed 1q pid/master.pid`),
          // minus its one-second sleep between polls: master SIGTERMs its
          // children and exits within milliseconds.
          try {
            process.kill(pid, 'SIGTERM');
          } catch {
            // gone already
          }
          if (!(await waitGone(pid, STOP_TIMEOUT_MS))) {
            killGroup(pid);
            await waitGone(pid, 2000);
          }
        } else {
          const res = await postfix(dirs.etcDir, 'stop');
          if (res.code !== 0 && !/not running/.test(res.output)) {
            process.stderr.write(`postfix stop (${dirs.dir}) exit ${res.code}: ${res.output}\n`);
          }
        }
        live.delete(instance);
        lastLog = readLog();
        if (ownsDirs) await dirs.remove();
      })();
      return stopping;
    },
    killNow() {
      try {
        const pid = Number(readFileSync(pidFile, 'latin1').trim());
        if (pid > 0) killGroup(pid);
      } catch {
        // not running
      }
      if (ownsDirs) rmSync(dirs.dir, { recursive: true, force: true });
    },
  };
  return instance;
}

/** master is a session leader (setsid), so -pid reaches smtpd and the rest. */
function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
}

async function masterPid(pidFile: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(pidFile, 'latin1')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** A zombie counts as gone: whoever inherited master may be slow to reap it. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The state letter follows the parenthesised command name.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function waitGone(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}

async function waitUntilServing(port: number, how: 'greeting' | 'tcp', readLog: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    try {
      if (how === 'tcp') {
        // Only the accept: smtpd behind smtpd_upstream_proxy_protocol waits
        // (smtpd_upstream_proxy_timeout, 5 s) for a PROXY header before it greets.
        (await connectWithin('127.0.0.1', port, Math.max(500, deadline - Date.now()), 'postfix ready check')).destroy();
        return;
      }
      const c = await SmtpTestClient.open('127.0.0.1', port, Math.max(500, deadline - Date.now()));
      const g = c.greeting;
      await c.close();
      if (g.code === 220) return;
      last = `greeting ${g.lines.join(' | ')}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(100);
  }
  throw new Error(`postfix on 127.0.0.1:${port} not serving after ${START_TIMEOUT_MS} ms (${last})\n--- maillog ---\n${readLog()}`);
}

/** A loopback port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = srv.address();
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  if (addr === null || typeof addr === 'string') throw new Error('no port from listen(0)');
  return addr.port;
}

/** Runs `postfix -c ETC VERB`; never rejects on a non-zero exit. */
function postfix(etc: string, verb: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      POSTFIX_COMMAND,
      ['-c', etc, verb],
      { timeout: COMMAND_TIMEOUT_MS, encoding: 'latin1', env: { ...process.env, MAIL_CONFIG: etc } },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        const output = [stdout, stderr, err && typeof err.code !== 'number' ? String(err) : '']
          .filter((s) => s)
          .join('\n');
        resolve({ code, output });
      },
    );
  });
}

/**
 * Runs a postfix command again with a pseudo-terminal on stderr. postfix(1)
 * sends its fatal messages to syslog (absent here) and to stderr only when
 * stderr is a TTY, so a failing `postfix check` in a test says nothing
 * otherwise. `script` (util-linux, essential on Debian) provides the TTY.
 */
function postfixOnTty(etc: string, verb: string): Promise<string> {
  const quote = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;
  const cmd = [POSTFIX_COMMAND, '-c', etc, verb].map(quote).join(' ');
  return new Promise((resolve) => {
    execFile('script', ['-qec', cmd, '/dev/null'], { timeout: COMMAND_TIMEOUT_MS, encoding: 'latin1' }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`.replace(/\r/g, '').trim();
      resolve(out || `(no message from postfix even on a TTY${err ? `: ${err.message}` : ''})`);
    });
  });
}

/** How many TCP sockets listen on 127.0.0.1:port (from /proc/net/tcp: local address in hex, state 0A). */
function listenerCount(port: number): number {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const line of readFileSync('/proc/net/tcp', 'latin1').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '0A') n++;
  }
  return n;
}

let ids: { uid: number; gid: number } | undefined;
function postfixIds(): { uid: number; gid: number } {
  if (!ids) {
    const uid = Number(execFileSync('id', ['-u', 'postfix'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postfix'], { encoding: 'utf8' }).trim());
    ids = { uid, gid };
  }
  return ids;
}
