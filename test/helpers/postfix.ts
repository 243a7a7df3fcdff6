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
 *
 * Two generations: '3.7' is the host's (Debian 12), '3.10' Debian 13's in the
 * root scripts/debian13-root.sh builds (see ./debian13.ts), run as `chroot
 * ROOT postfix -c /tmp/pf-xxx/etc start`. With postfix 3.10.13-0+deb13u1 the
 * facts above that the tests exercise held again (start returns once bound, a
 * pre-made queue/private with a root-owned socket is kept, SIGTERM to master
 * stops it all); the data_directory and fresh-main.cf ones were not tried
 * again, the helper just does the same for 3.10. For 3.10 the instance dir is made
 * inside the root (host path ROOT/tmp/pf-xxx, Postfix's /tmp/pf-xxx),
 * main.cf names the paths as Postfix sees them, and queue/private and
 * data_directory belong to the root's postfix uid.
 *
 * Both generations listen on 127.0.0.1 and [::1] (when ::1 works here) with
 * one master.cf service `PORT inet … smtpd`, so the service name — the
 * SERVICE in smtpd's anvil idents and in `for service` log lines — is the
 * bare port number for both families. What differs, seen here:
 * - 3.10 (3.8+) sends anvil an address range: with the stock
 *   smtpd_client_ipv6_prefix_length of 84, a client on ::1 is `PORT:::/84`;
 *   3.7 sends `PORT:::1`. IPv4 (stock prefix 32) is `PORT:127.0.0.1` in both.
 *   See anvilIdent().
 * - Both refuse the session over smtpd_client_connection_count_limit with
 *   `421 4.7.0 HOST Error: too many connections from ::1` (the address, not
 *   the range) and log `Connection concurrency limit exceeded: N from
 *   NAME[::1] for service PORT`. NAME comes from the /etc/hosts smtpd sees:
 *   the root's names ::1 `localhost`; this host's /etc/hosts may not (then
 *   `unknown`).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { createServer, isIPv6 } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEBIAN13_ROOT, debian13Unavailable, ensureProc, idsIn, inRoot } from './debian13.js';
import { connectWithin, freePorts, ipv6LoopbackWorks } from './net.js';
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

/** '3.7': the host's Postfix (Debian 12); '3.10': Debian 13's, in the chroot. */
export type PostfixGeneration = '3.7' | '3.10';
/** Every generation a Postfix suite runs against, host first. */
export const POSTFIX_GENERATIONS: readonly PostfixGeneration[] = ['3.7', '3.10'];

/** What one generation is and what it says, where the two differ. */
export interface PostfixGenerationFacts {
  readonly generation: PostfixGeneration;
  /** For test titles and messages. */
  readonly label: string;
  /** The root the programs run in; '' for the host. */
  readonly root: string;
  /** The main.cf compatibility_level the helper writes. */
  readonly compatibilityLevel: string;
  /**
   * Whether smtpd sends anvil address ranges (`SERVICE:ADDR/LEN`, Postfix
   * 3.8+) with the stock prefix lengths of 32 (IPv4) and 84 (IPv6), rather
   * than whole addresses.
   */
  readonly anvilRanges: boolean;
}

export const POSTFIX_GENERATION: Readonly<Record<PostfixGeneration, PostfixGenerationFacts>> = Object.freeze({
  '3.7': { generation: '3.7', label: 'Postfix 3.7 (host)', root: '', compatibilityLevel: '3.6', anvilRanges: false },
  '3.10': { generation: '3.10', label: 'Postfix 3.10 (Debian 13 root)', root: DEBIAN13_ROOT, compatibilityLevel: '3.10', anvilRanges: true },
});

/** smtpd's stock smtpd_client_ipv4_prefix_length and _ipv6_prefix_length (3.8+). */
const STOCK_PREFIX = { ipv4: 32, ipv6: 84 };

/**
 * The anvil ident smtpd of `generation` sends for a client at `address` with
 * the stock prefix lengths: `SERVICE:ADDRESS` (3.7, and IPv4 in 3.10), or
 * the network with host bits zeroed and `/LEN` appended (IPv6 in 3.10:
 * `::1` is `SERVICE:::/84`).
 */
export function anvilIdent(generation: PostfixGeneration, service: string, address: string): string {
  if (!POSTFIX_GENERATION[generation].anvilRanges || !isIPv6(address)) return `${service}:${address}`;
  return `${service}:${ipv6Network(address, STOCK_PREFIX.ipv6)}/${STOCK_PREFIX.ipv6}`;
}

/** `address` with all but the first `bits` bits zeroed, in the compressed form Postfix prints. */
function ipv6Network(address: string, bits: number): string {
  const [head = '', tail] = address.split('::');
  const part = (s: string | undefined): number[] => (s ? s.split(':').map((h) => parseInt(h, 16)) : []);
  const h = part(head);
  const t = part(tail);
  const groups = tail === undefined ? h : [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  const masked = groups.map((g, i) => {
    const keep = Math.max(0, Math.min(16, bits - 16 * i));
    return keep === 0 ? 0 : g & (0xffff << (16 - keep)) & 0xffff;
  });
  // The longest run of two or more zero groups becomes `::` (RFC 5952).
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && masked[j] === 0) j++;
    if (j - i > best.len) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = masked.map((g) => g.toString(16));
  if (best.len < 2) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}

/** Why Postfix `generation` cannot run here, or undefined when it can. */
export function postfixUnavailableReason(generation: PostfixGeneration = '3.7'): string | undefined {
  const { root, label } = POSTFIX_GENERATION[generation];
  if (root !== '') {
    const why = debian13Unavailable([POSTFIX_COMMAND, SMTPD_PROGRAM]);
    return why === undefined ? undefined : `${label}: ${why}`;
  }
  if (!existsSync(POSTFIX_COMMAND) || !existsSync(SMTPD_PROGRAM)) return `${label}: postfix is not installed (apt-get install postfix)`;
  if (process.getuid?.() !== 0) return `${label}: the private Postfix needs root`;
  return undefined;
}

/** True when this machine has the Postfix programs the tests drive (the host's by default). */
export function postfixAvailable(generation: PostfixGeneration = '3.7'): boolean {
  return postfixUnavailableReason(generation) === undefined;
}

/** The paths of one instance, as the host sees them (see serverPath()). */
export interface PostfixDirs {
  readonly generation: PostfixGeneration;
  /** The root Postfix runs in ('' for the host); every path below starts with it. */
  readonly root: string;
  /** A host path as Postfix sees it: without the root. */
  serverPath(hostPath: string): string;
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
export async function prepareQueueDir(generation: PostfixGeneration = '3.7'): Promise<PostfixDirs> {
  const { root } = POSTFIX_GENERATION[generation];
  // Short on purpose: a UNIX socket path must fit in 108 bytes.
  const dir = await mkdtemp(join(root === '' ? tmpdir() : `${root}/tmp`, 'pf-'));
  // mkdtemp makes it 0700; smtpd runs as postfix and must reach queue/ below it.
  await chmod(dir, 0o755);
  const { uid, gid } = postfixIds(root);
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
    generation,
    root,
    serverPath: (p) => {
      if (!p.startsWith(`${root}/`)) throw new Error(`${p} is not inside the root ${root}`);
      return p.slice(root.length);
    },
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
  /** Which Postfix; default '3.7' (the host's). Must match `dirs` when both are given. */
  generation?: PostfixGeneration;
  /** Run Postfix's own anvil (adds the `anvil` line to master.cf). */
  ownAnvil: boolean;
  /** Extra or overriding main.cf settings. */
  mainCf?: Record<string, string>;
  /**
   * smtpd's port, when the caller must know it (and so the service name)
   * before Postfix starts, e.g. to name the service in Doorman's config.
   * Pick it free on 127.0.0.1 and ::1 (freePorts in ./net.ts); a port taken
   * meanwhile fails the start instead of trying another. Default: a free one.
   */
  port?: number;
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
  readonly generation: PostfixGeneration;
  readonly facts: PostfixGenerationFacts;
  readonly dir: string;
  /** smtpd's port on every one of `addresses`. */
  readonly port: number;
  /** Where smtpd listens: 127.0.0.1, and ::1 where IPv6 loopback works. */
  readonly addresses: readonly string[];
  readonly queueDir: string;
  /** `queueDir/private/anvil`. */
  readonly anvilSocket: string;
  /** master.cf's service name, the SERVICE half of smtpd's anvil ident: the port, e.g. `41234`. */
  readonly service: string;
  /** smtpd's anvil ident for a client at `address` (see anvilIdent()). */
  ident(address: string): string;
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
export function baseMainCf(dirs: PostfixDirs, addresses: readonly string[] = ['127.0.0.1']): Record<string, string> {
  const at = dirs.serverPath;
  return {
    queue_directory: at(dirs.queueDir),
    data_directory: at(dirs.dataDir),
    mail_owner: 'postfix',
    inet_interfaces: addresses.map((a) => (isIPv6(a) ? `[${a}]` : a)).join(', '),
    inet_protocols: addresses.some((a) => isIPv6(a)) ? 'all' : 'ipv4',
    maillog_file: at(dirs.maillogPath),
    maillog_file_prefixes: `/var, /dev/stdout, ${at(dirs.dir)}`,
    myhostname: 'doorman-test.localdomain',
    mydestination: '',
    alias_maps: '',
    alias_database: '',
    compatibility_level: POSTFIX_GENERATION[dirs.generation].compatibilityLevel,
    // Loopback is exempt by default ($mynetworks); the tests' client is loopback.
    smtpd_client_event_limit_exceptions: '',
  };
}

function masterCf(port: number, ownAnvil: boolean): string {
  const lines = [
    // A bare port: smtpd listens on every inet_interfaces address under one service name.
    `${port} inet n - n - - smtpd`,
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
  const generation = opts.generation ?? opts.dirs?.generation ?? '3.7';
  if (opts.dirs && opts.dirs.generation !== generation) {
    throw new Error(`startPostfix: dirs are for Postfix ${opts.dirs.generation}, not ${generation}`);
  }
  const why = postfixUnavailableReason(generation);
  if (why !== undefined) throw new Error(`startPostfix: ${why}`);
  if (POSTFIX_GENERATION[generation].root !== '') ensureProc(POSTFIX_GENERATION[generation].root);
  const ownsDirs = opts.dirs === undefined;
  const dirs = opts.dirs ?? (await prepareQueueDir(generation));
  const addresses = (await ipv6LoopbackWorks()) ? ['127.0.0.1', '::1'] : ['127.0.0.1'];
  const mainCf = { ...baseMainCf(dirs, addresses), ...opts.mainCf };
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
      [port] = opts.port !== undefined ? [opts.port] : ((await freePorts(1, addresses)) as [number]);
      await writeFile(join(etc, 'master.cf'), masterCf(port, opts.ownAnvil));
      await backdate(etc);
      if (attempt === 1) {
        const check = await postfix(dirs, 'check');
        if (check.code !== 0) {
          const why = check.output || (await postfixOnTty(dirs, 'check'));
          throw new Error(`postfix check failed (exit ${check.code}):\n${why}\n--- maillog ---\n${readLog()}`);
        }
      }
      const start = await postfix(dirs, 'start');
      if (start.code === 0) {
        // master binds with SO_REUSEPORT: a second Postfix that picked the
        // same port starts fine and shares it. Make sure the port is ours alone.
        if (addresses.every((a) => listenerCount(a, port) === 1)) break;
        await makeInstance(dirs, port, addresses, false, readLog).stop();
        if (opts.port === undefined && attempt < PORT_ATTEMPTS) continue;
        throw new Error(`port ${port} is shared with another listener after ${attempt} attempts`);
      }
      const log = readLog();
      if (opts.port === undefined && attempt < PORT_ATTEMPTS && /address already in use/i.test(start.output + log)) continue;
      const why = start.output || (await postfixOnTty(dirs, 'start'));
      throw new Error(`postfix start failed (exit ${start.code}):\n${why}\n--- maillog ---\n${log}`);
    }
    const instance = makeInstance(dirs, port, addresses, ownsDirs, readLog);
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

function makeInstance(dirs: PostfixDirs, port: number, addresses: readonly string[], ownsDirs: boolean, readLog: () => string): LiveInstance {
  let stopping: Promise<void> | undefined;
  let lastLog = '';
  const pidFile = join(dirs.queueDir, 'pid', 'master.pid');
  const service = String(port);
  const instance: LiveInstance = {
    generation: dirs.generation,
    facts: POSTFIX_GENERATION[dirs.generation],
    dir: dirs.dir,
    port,
    addresses,
    queueDir: dirs.queueDir,
    anvilSocket: dirs.anvilSocket,
    service,
    ident: (address) => anvilIdent(dirs.generation, service, address),
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
          const res = await postfix(dirs, 'stop');
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

/** Runs `postfix -c ETC VERB` (in the instance's root); never rejects on a non-zero exit. */
function postfix(dirs: PostfixDirs, verb: string): Promise<{ code: number; output: string }> {
  const etc = dirs.serverPath(dirs.etcDir);
  const [cmd, args] = inRoot(dirs.root, [POSTFIX_COMMAND, '-c', etc, verb]);
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
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
function postfixOnTty(dirs: PostfixDirs, verb: string): Promise<string> {
  const quote = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;
  const [program, args] = inRoot(dirs.root, [POSTFIX_COMMAND, '-c', dirs.serverPath(dirs.etcDir), verb]);
  const cmd = [program, ...args].map(quote).join(' ');
  return new Promise((resolve) => {
    execFile('script', ['-qec', cmd, '/dev/null'], { timeout: COMMAND_TIMEOUT_MS, encoding: 'latin1' }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`.replace(/\r/g, '').trim();
      resolve(out || `(no message from postfix even on a TTY${err ? `: ${err.message}` : ''})`);
    });
  });
}

/**
 * How many TCP sockets listen on 127.0.0.1:port or [::1]:port (from
 * /proc/net/tcp and tcp6: local address in hex as the kernel stores it, state 0A).
 */
function listenerCount(address: string, port: number): number {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const v6 = isIPv6(address);
  if (address !== (v6 ? '::1' : '127.0.0.1')) throw new Error(`listenerCount: only loopback, not ${address}`);
  const local = `${v6 ? '00000000000000000000000001000000' : '0100007F'}:${hexPort}`;
  let n = 0;
  for (const line of readFileSync(v6 ? '/proc/net/tcp6' : '/proc/net/tcp', 'latin1').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[3] === '0A') n++;
  }
  return n;
}

/** The postfix user's uid and group's gid in `root`'s passwd and group files ('' for the host's). */
function postfixIds(root: string): { uid: number; gid: number } {
  return idsIn(root, 'postfix', 'postfix');
}
