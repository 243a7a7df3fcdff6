/**
 * A private, throw-away Dovecot (2.3 or 2.4) for integration tests: its own config,
 * base_dir, state_dir, passwd-file, mail dirs and log under one temp dir, and
 * four inet listeners on free loopback ports — IMAP and POP3, each once plain
 * and once with `haproxy = yes` (PROXY v1/v2 header required, trusted from
 * loopback). Optionally it asks an auth policy server (auth_policy_server_url).
 *
 * Needs root and Debian's dovecot-imapd and dovecot-pop3d (2.3.19.1 seen).
 * Facts this relies on, checked on Debian 12 (see also
 * /work/shared/notes/dovecot-2.3.md):
 * - `dovecot -c FILE` binds every listener before it daemonizes: a taken port
 *   makes it exit 89 at once with `listen(::1, PORT) failed: Address already
 *   in use` on stderr. It does not use SO_REUSEPORT unless asked.
 * - The daemon writes base_dir/master.pid after `dovecot` returned, so the pid
 *   is polled for. The master calls setsid(): every process of the instance
 *   has session id (and process group) = the master's pid.
 * - A dir of more than 78 characters breaks unix socket paths; mkdtemp under
 *   /tmp gives 14.
 * - The dir may stay 0700 (mkdtemp's mode): auth runs as root, and imap/pop3
 *   chroot into DIR/mail before dropping to nobody.
 * - Unlike Postfix, Dovecot does not pause on a freshly written config: from
 *   `dovecot -c` to the IMAP greeting takes a few milliseconds.
 * - Stopping is the slow part, see stopSession().
 *
 * Two generations: '2.3' is the host's (Debian 12), '2.4' Debian 13's 2.4.1 in
 * the root scripts/debian13-root.sh builds (see ./debian13.ts), run as
 * `chroot ROOT dovecot -c /tmp/dc-xxx/dovecot.conf`. The facts above were
 * seen again with 2.4 (1:2.4.1+dfsg1-6+deb13u7) — exit 89 and `service(
 * imap-login): listen(::1, PORT) failed: Address already in use` on a taken
 * port, master.pid written late, one session for all processes with the log
 * process titled `dovecot-<instance_name>/log`, a 0700 dir, milliseconds to
 * greet, stop() in tens of milliseconds — except the 78-character limit,
 * which was not tried again. The dir is made inside the root (host path
 * ROOT/tmp/dc-xxx, Dovecot's /tmp/dc-xxx: the limit counts Dovecot's path)
 * and mail dirs belong to the root's nobody.
 * 2.4 reads a different config dialect, written by dovecot24Conf(): it must
 * start with dovecot_config_version and dovecot_storage_version;
 * auth_allow_cleartext replaces disable_plaintext_auth, mail_driver and
 * mail_path replace mail_location, `passdb passwd-file { passwd_file_path }`
 * and `userdb static { fields { … } }` (with %{user}) replace driver/args,
 * and the policy timeout is `auth_policy { http_client_request_absolute_timeout }`;
 * the flat auth_policy_* settings used here are still accepted (doveconf -n
 * folds them into the auth_policy block). What a client or the log sees
 * differently is in DOVECOT_GENERATION.
 */
import { execFile, spawn } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEBIAN13_ROOT, debian13Unavailable, ensureProc, idsIn, inRoot } from './debian13.js';
import { ImapTestClient } from './mail-clients.js';
import { freePorts, ipv6LoopbackWorks } from './net.js';

export const DOVECOT_COMMAND = '/usr/sbin/dovecot';
export const DOVECONF_COMMAND = '/usr/bin/doveconf';
const LOGIN_PROGRAMS = ['/usr/lib/dovecot/imap-login', '/usr/lib/dovecot/pop3-login'];
/** unix socket paths below the dir must fit in 108 bytes; 79 failed in practice. */
const MAX_DIR_LENGTH = 78;
/** How long Dovecot gets to greet on the IMAP port after `dovecot` returned (it takes milliseconds). */
const START_TIMEOUT_MS = 10_000;
/** How long the instance gets to go away after SIGTERM before it is SIGKILLed. */
const STOP_TIMEOUT_MS = 10_000;
/** A doveconf or dovecot command that takes longer than this is hung. */
const COMMAND_TIMEOUT_MS = 10_000;
/** A port picked as free can be taken before Dovecot binds it; try a few others. */
const PORT_ATTEMPTS = 5;
/** How long the log file must stay unchanged before stop() kills the log process (see stopSession). */
const LOG_QUIET_MS = 30;
/** The nonce the policy tests' pwhash values are computed with. */
export const POLICY_HASH_NONCE = 'doorman-test-nonce';
export const DEFAULT_USERS: Readonly<Record<string, string>> = Object.freeze({ alice: 'secret', bob: 'secret' });

/** '2.3': the host's Dovecot (Debian 12); '2.4': Debian 13's, in the chroot. */
export type DovecotGeneration = '2.3' | '2.4';
/** Every generation a Dovecot suite runs against, host first. */
export const DOVECOT_GENERATIONS: readonly DovecotGeneration[] = ['2.3', '2.4'];

/** What one generation is, and what clients and the log see where the two differ (all seen here). */
export interface DovecotGenerationFacts {
  readonly generation: DovecotGeneration;
  /** For test titles and messages. */
  readonly label: string;
  /** The root the programs run in; '' for the host. */
  readonly root: string;
  /** The end of the IMAP greeting (`* OK [CAPABILITY …] TEXT`) and the POP3 one (`+OK TEXT`). */
  readonly greeting: string;
  /** What login processes log for a login: `imap-login: Info: LOGIN user=<alice>, …`. */
  readonly loginLog: string;
  /** Whether a login through a trusted PROXY hop is logged `secured` (2.3: only direct loopback ones). */
  readonly proxiedLoginSecured: boolean;
  /**
   * What imap-login logs for a connection closed before any AUTH:
   * `imap-login: Info: TEXT Connection closed (no auth attempts in 0 secs)…, rip=…`.
   */
  readonly closedBeforeAuthLog: string;
  /**
   * The fields an auth policy request carries beyond 2.3's (device_id, login,
   * protocol, pwhash, remote, session_id, tls; a report adds success and
   * policy_reject). 2.4 adds fail_type: '' in every allow request and in the
   * report of a login that succeeded, `credentials` in the report after a
   * wrong password, `policy` after a policy refusal.
   */
  policyFields(failType: '' | 'credentials' | 'policy'): Record<string, unknown>;
  /** How the auth process's log line starts when the policy server refused (`PREFIX` + `Authentication failure due to policy server refusal: MSG`). */
  policyRefusalLog(user: string, remote: string, session: string): string;
}

export const DOVECOT_GENERATION: Readonly<Record<DovecotGeneration, DovecotGenerationFacts>> = Object.freeze({
  '2.3': {
    generation: '2.3',
    label: 'Dovecot 2.3 (host)',
    root: '',
    greeting: 'Dovecot (Debian) ready.',
    loginLog: 'Login:',
    proxiedLoginSecured: false,
    closedBeforeAuthLog: 'Disconnected:',
    policyFields: () => ({}),
    policyRefusalLog: (user, remote, session) => `auth: Info: policy(${user},${remote},<${session}>): `,
  },
  '2.4': {
    generation: '2.4',
    label: 'Dovecot 2.4 (Debian 13 root)',
    root: DEBIAN13_ROOT,
    greeting: 'Dovecot ready.',
    loginLog: 'Logged in:',
    proxiedLoginSecured: true,
    closedBeforeAuthLog: 'Login aborted:',
    policyFields: (failType) => ({ fail_type: failType }),
    policyRefusalLog: (user, remote, session) => `auth(${user},${remote},sasl:plain)<${session}>: Info: policy: `,
  },
});

/** Why Dovecot `generation` cannot run here, or undefined when it can. */
export function dovecotUnavailableReason(generation: DovecotGeneration = '2.3'): string | undefined {
  const { root, label } = DOVECOT_GENERATION[generation];
  const programs = [DOVECOT_COMMAND, DOVECONF_COMMAND, ...LOGIN_PROGRAMS];
  if (root !== '') {
    const why = debian13Unavailable(programs);
    return why === undefined ? undefined : `${label}: ${why}`;
  }
  const missing = programs.filter((p) => !existsSync(p));
  if (missing.length > 0) {
    return `${label}: Dovecot is not installed (missing ${missing.join(', ')}; apt-get install dovecot-imapd dovecot-pop3d)`;
  }
  if (process.getuid?.() !== 0) return `${label}: the private Dovecot needs root (auth runs as root, mail processes chroot)`;
  return undefined;
}

/** True when this machine can run a private Dovecot of `generation` (the host's by default). */
export function dovecotAvailable(generation: DovecotGeneration = '2.3'): boolean {
  return dovecotUnavailableReason(generation) === undefined;
}

export interface DovecotOptions {
  /** Which Dovecot; default '2.3' (the host's). */
  generation?: DovecotGeneration;
  /** auth_policy_server_url; without it no policy server is asked and the flags below are ignored. */
  policyUrl?: string;
  /** auth_policy_server_api_header, e.g. `Authorization: Bearer t0ken` (a value without a colon is sent as X-API-Key). */
  policyApiHeader?: string;
  /** auth_policy_reject_on_fail (Dovecot's default: no, i.e. fail open). */
  policyRejectOnFail?: boolean;
  /** auth_policy_check_before_auth (default yes). */
  checkBeforeAuth?: boolean;
  /** auth_policy_check_after_auth (default yes). */
  checkAfterAuth?: boolean;
  /** auth_policy_report_after_auth (default yes). */
  reportAfterAuth?: boolean;
  /** auth_policy_server_timeout_msecs; in 2.4 auth_policy { http_client_request_absolute_timeout } (Dovecot's default: 2 s). */
  policyTimeoutMs?: number;
  /** Users and plain passwords for the passwd-file; default alice:secret and bob:secret. */
  users?: Record<string, string>;
  /**
   * auth_failure_delay; default '0' here (Dovecot's is 2 s). Even with 0 a
   * failure is answered up to 0.5 s late: auth flushes delayed failures on a
   * 500 ms timer. Anvil's penalty for repeated failures from one IP (IPv6: one
   * /48) comes on top, whatever this says.
   */
  authFailureDelay?: string;
  /** Appended to the generated config; a setting repeated here overrides the one above. */
  extraConf?: string;
}

export interface DovecotPorts {
  /** Plain IMAP. */
  readonly imap: number;
  /** IMAP behind `haproxy = yes`: a PROXY v1/v2 header must come first. */
  readonly imapProxy: number;
  readonly pop3: number;
  readonly pop3Proxy: number;
}

export interface DovecotInstance {
  readonly generation: DovecotGeneration;
  readonly facts: DovecotGenerationFacts;
  /** The temp dir holding config, run and state dirs, passwd-file, mail and log (as the host sees it). */
  readonly dir: string;
  readonly confPath: string;
  /** Listening on 127.0.0.1 and, where it works, on ::1 too. */
  readonly ports: DovecotPorts;
  /** The addresses the listeners are bound to (`::1` only if IPv6 loopback works here). */
  readonly addresses: readonly string[];
  /** The master's pid, which is also the session id of every process of the instance. */
  readonly pid: number;
  /** The log so far (all levels go to one file); after stop(), the log as it was at the end. */
  log(): string;
  /**
   * Resolves with the log line(s) holding the first match of `re` in the log
   * (from character offset `from`, e.g. an earlier `log().length`); rejects
   * with the whole log after `timeoutMs`.
   */
  waitForLog(re: RegExp, timeoutMs?: number, from?: number): Promise<string>;
  /**
   * Stops the instance and waits until none of its processes is left (zombies
   * count as gone), SIGKILLing what is still there after 10 s; removes the dir.
   * Idempotent; never throws.
   */
  stop(): Promise<void>;
}

/** Writes the config, checks it with doveconf, starts Dovecot and waits for the IMAP greeting. */
export async function startDovecot(opts: DovecotOptions = {}): Promise<DovecotInstance> {
  const generation = opts.generation ?? '2.3';
  const { root } = DOVECOT_GENERATION[generation];
  const why = dovecotUnavailableReason(generation);
  if (why !== undefined) throw new Error(`startDovecot: ${why}`);
  if (root !== '') ensureProc(root);
  const users = opts.users ?? DEFAULT_USERS;
  checkConfInputs(opts, users);
  // mkdtemp adds `/dc-` and six characters; in the root, Dovecot sees /tmp/dc-xxxxxx.
  const dir = await mkdtemp(root !== '' ? `${root}/tmp/dc-` : join(tmpdir().length <= MAX_DIR_LENGTH - 10 ? tmpdir() : '/tmp', 'dc-'));
  /** A host path as Dovecot sees it. */
  const at = (p: string): string => p.slice(root.length);
  const confPath = join(dir, 'dovecot.conf');
  const logPath = join(dir, 'dovecot.log');
  const readLog = (): string => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };
  try {
    if (at(dir).length > MAX_DIR_LENGTH) throw new Error(`Dovecot dir ${at(dir)} is longer than ${MAX_DIR_LENGTH} characters`);
    await writeFile(join(dir, 'passwd'), Object.entries(users).map(([u, p]) => `${u}:{PLAIN}${p}\n`).join(''), { mode: 0o600 });
    const { uid, gid } = idsIn(root, 'nobody', 'nogroup');
    await mkdir(join(dir, 'mail'), { mode: 0o755 });
    for (const user of Object.keys(users)) {
      await mkdir(join(dir, 'mail', user), { mode: 0o700 });
      await chown(join(dir, 'mail', user), uid, gid);
    }
    const addresses = (await ipv6LoopbackWorks()) ? ['127.0.0.1', '::1'] : ['127.0.0.1'];
    const instanceName = `doorman-${dir.slice(dir.lastIndexOf('-') + 1)}`;
    let ports: DovecotPorts | undefined;
    for (let attempt = 1; ports === undefined; attempt++) {
      const [imap, imapProxy, pop3, pop3Proxy] = await freePorts(4, addresses);
      const candidate = { imap: imap!, imapProxy: imapProxy!, pop3: pop3!, pop3Proxy: pop3Proxy! };
      const input = { dir: at(dir), logPath: at(logPath), instanceName, addresses, ports: candidate, opts };
      const conf = generation === '2.3' ? dovecot23Conf(input) : dovecot24Conf(input);
      await writeFile(confPath, conf);
      if (attempt === 1) {
        const check = await run(...inRoot(root, [DOVECONF_COMMAND, '-c', at(confPath), '-n']));
        if (check.code !== 0) {
          throw new Error(`doveconf -c ${confPath} -n failed (exit ${check.code}):\n${check.output}\n--- dovecot.conf ---\n${conf}`);
        }
      }
      const start = await startDaemon(root, at(confPath), join(dir, 'dovecot.start.out'));
      if (start.code === 0) ports = candidate;
      else if (attempt < PORT_ATTEMPTS && /address already in use/i.test(start.output)) continue;
      else throw new Error(`dovecot -c ${confPath} failed (exit ${start.code}):\n${start.output}\n--- log ---\n${readLog()}`);
    }
    const pid = await waitForPid(join(dir, 'run', 'master.pid'), readLog);
    const instance = makeInstance({ generation, dir, confPath, ports, addresses, pid, readLog });
    live.add(instance);
    watchSignals();
    try {
      await waitForGreeting(ports.imap, readLog);
    } catch (err) {
      await instance.stop();
      throw err;
    }
    return instance;
  } catch (err) {
    killSessionNow(await readPid(join(dir, 'run', 'master.pid')));
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

interface ConfInput {
  dir: string;
  logPath: string;
  instanceName: string;
  addresses: readonly string[];
  ports: DovecotPorts;
  opts: DovecotOptions;
}

/** The policy settings both generations accept as flat settings; the timeout is left to the caller. */
function policyLines(opts: DovecotOptions): string[] {
  const yn = (v: boolean | undefined, dflt: boolean): string => ((v ?? dflt) ? 'yes' : 'no');
  if (!opts.policyUrl) return [];
  return [
    `auth_policy_server_url = ${opts.policyUrl}`,
    opts.policyApiHeader !== undefined ? `auth_policy_server_api_header = ${opts.policyApiHeader}` : '',
    `auth_policy_reject_on_fail = ${yn(opts.policyRejectOnFail, false)}`,
    `auth_policy_check_before_auth = ${yn(opts.checkBeforeAuth, true)}`,
    `auth_policy_check_after_auth = ${yn(opts.checkAfterAuth, true)}`,
    `auth_policy_report_after_auth = ${yn(opts.reportAfterAuth, true)}`,
  ].filter((l) => l !== '');
}

/** The service blocks with the four inet listeners, the same in both dialects. */
function serviceLines(ports: DovecotPorts): string[] {
  const listener = (name: string, port: number, haproxy: boolean): string =>
    `  inet_listener ${name} {\n    port = ${port}\n${haproxy ? '    haproxy = yes\n' : ''}  }`;
  return [
    // The auth process must read the passwd-file inside the 0700 dir.
    'service auth {',
    '  user = root',
    '}',
    'service imap-login {',
    listener('imap', ports.imap, false),
    listener('imap_haproxy', ports.imapProxy, true),
    listener('imaps', 0, false),
    '}',
    'service pop3-login {',
    listener('pop3', ports.pop3, false),
    listener('pop3_haproxy', ports.pop3Proxy, true),
    listener('pop3s', 0, false),
    '}',
  ];
}

/** Settings whose name and meaning are the same in 2.3 and 2.4. */
function commonLines({ dir, logPath, instanceName, addresses, opts }: ConfInput): string[] {
  return [
    `base_dir = ${dir}/run`,
    `state_dir = ${dir}/state`,
    `instance_name = ${instanceName}`,
    'protocols = imap pop3',
    `listen = ${addresses.join(', ')}`,
    'ssl = no',
    'auth_mechanisms = plain login',
    'auth_verbose = yes',
    `auth_failure_delay = ${opts.authFailureDelay ?? '0'}`,
    `log_path = ${logPath}`,
    'default_internal_user = dovecot',
    'default_login_user = dovenull',
    'haproxy_trusted_networks = 127.0.0.0/8 ::1',
    // Dovecot's default of 10 per user and IP would cap tests that open many sessions.
    'mail_max_userip_connections = 1000',
    `valid_chroot_dirs = ${dir}/mail`,
    `auth_policy_hash_nonce = ${POLICY_HASH_NONCE}`,
  ];
}

/** Dovecot 2.4's dialect (see the header); paths are Dovecot's own. */
function dovecot24Conf(input: ConfInput): string {
  const { dir, opts } = input;
  return [
    '# Written by test/helpers/dovecot.ts for one test run.',
    // 2.4 refuses a config whose first setting is anything else.
    'dovecot_config_version = 2.4.1',
    'dovecot_storage_version = 2.4.1',
    ...commonLines(input),
    'auth_allow_cleartext = yes',
    'mail_driver = maildir',
    'mail_path = ~/Maildir',
    ...policyLines(opts),
    ...(opts.policyUrl && opts.policyTimeoutMs !== undefined
      ? ['auth_policy {', `  http_client_request_absolute_timeout = ${opts.policyTimeoutMs}ms`, '}']
      : []),
    'passdb passwd-file {',
    `  passwd_file_path = ${dir}/passwd`,
    '}',
    'userdb static {',
    '  fields {',
    '    uid = nobody',
    '    gid = nogroup',
    // The `/./` makes imap and pop3 chroot into DIR/mail, as in 2.3.
    `    home = ${dir}/mail/./%{user}`,
    '  }',
    '}',
    ...serviceLines(input.ports),
    opts.extraConf ?? '',
    '',
  ].join('\n');
}

/** Dovecot 2.3's dialect; paths are Dovecot's own. */
function dovecot23Conf(input: ConfInput): string {
  const { dir, opts } = input;
  return [
    '# Written by test/helpers/dovecot.ts for one test run.',
    ...commonLines(input),
    'disable_plaintext_auth = no',
    'mail_location = maildir:~/Maildir',
    ...policyLines(opts),
    ...(opts.policyUrl && opts.policyTimeoutMs !== undefined ? [`auth_policy_server_timeout_msecs = ${opts.policyTimeoutMs}`] : []),
    'passdb {',
    '  driver = passwd-file',
    `  args = scheme=PLAIN ${dir}/passwd`,
    '}',
    'userdb {',
    '  driver = static',
    // The `/./` makes imap and pop3 chroot into DIR/mail, so nobody never needs to traverse the 0700 dir.
    `  args = uid=nobody gid=nogroup home=${dir}/mail/./%u`,
    '}',
    ...serviceLines(input.ports),
    opts.extraConf ?? '',
    '',
  ].join('\n');
}

/** Refuses input that would break the config or passwd-file quietly. */
function checkConfInputs(opts: DovecotOptions, users: Record<string, string>): void {
  const oneLine = { policyUrl: opts.policyUrl, policyApiHeader: opts.policyApiHeader, authFailureDelay: opts.authFailureDelay };
  for (const [k, v] of Object.entries(oneLine)) {
    if (v !== undefined && /[\r\n]/.test(v)) throw new Error(`startDovecot: ${k} must be one line`);
  }
  if (opts.policyTimeoutMs !== undefined && !(Number.isInteger(opts.policyTimeoutMs) && opts.policyTimeoutMs >= 0)) {
    throw new Error(`startDovecot: policyTimeoutMs must be a non-negative integer, not ${opts.policyTimeoutMs}`);
  }
  if (Object.keys(users).length === 0) throw new Error('startDovecot: at least one user is needed');
  for (const [user, pass] of Object.entries(users)) {
    // The name becomes a mail dir under DIR/mail.
    if (!/^[A-Za-z0-9._+-]+$/.test(user) || user === '.' || user === '..') {
      throw new Error(`startDovecot: bad user name ${JSON.stringify(user)}`);
    }
    if (/[:\r\n\0]/.test(pass)) throw new Error(`startDovecot: the password of ${user} must not hold ':', CR, LF or NUL`);
  }
}

interface LiveInstance extends DovecotInstance {
  /** Synchronous last resort for process exit. */
  killNow(): void;
}

/**
 * Instances not yet stopped; killed if the test process exits without
 * stopping them, or is told to stop by a signal: node --test's runner SIGTERMs
 * a test file's process (e.g. when its own output pipe breaks), and with no
 * listener that skips 'exit' hooks and would leave a root Dovecot behind.
 */
const live = new Set<LiveInstance>();
const EXIT_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
process.once('exit', killAllLive);

function killAllLive(): void {
  for (const d of live) d.killNow();
}

/** Kills every instance, then lets the signal do what it would have done without us. */
function onExitSignal(sig: NodeJS.Signals): void {
  killAllLive();
  unwatchSignals();
  if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
}

/** The signal listeners exist only while an instance is live, so they change nothing otherwise. */
function watchSignals(): void {
  if (live.size === 1) for (const s of EXIT_SIGNALS) process.on(s, onExitSignal);
}

function unwatchSignals(): void {
  for (const s of EXIT_SIGNALS) process.removeListener(s, onExitSignal);
}

interface InstanceInput {
  generation: DovecotGeneration;
  dir: string;
  confPath: string;
  ports: DovecotPorts;
  addresses: readonly string[];
  pid: number;
  readLog: () => string;
}

function makeInstance({ generation, dir, confPath, ports, addresses, pid, readLog }: InstanceInput): LiveInstance {
  let stopping: Promise<void> | undefined;
  let lastLog = '';
  const logPath = join(dir, 'dovecot.log');
  const log = (): string => (stopping ? readLog() || lastLog : readLog());
  const instance: LiveInstance = {
    generation,
    facts: DOVECOT_GENERATION[generation],
    dir,
    confPath,
    ports,
    addresses,
    pid,
    log,
    async waitForLog(re, timeoutMs = 5000, from = 0) {
      const once = new RegExp(re.source, re.flags.replace(/[gy]/g, ''));
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const text = log();
        const m = once.exec(text.slice(from));
        if (m) {
          const at = from + m.index;
          const start = text.lastIndexOf('\n', at - 1) + 1;
          const nl = text.indexOf('\n', at + Math.max(m[0].length - 1, 0));
          return text.slice(start, nl === -1 ? text.length : nl);
        }
        if (Date.now() > deadline) throw new Error(`no Dovecot log line matching ${re} within ${timeoutMs} ms\n--- log ---\n${text}`);
        await sleep(20);
      }
    },
    stop() {
      stopping ??= (async () => {
        try {
          const left = await stopSession(pid, () => fileSize(logPath));
          if (left.length > 0) process.stderr.write(`dovecot (${dir}): still there after SIGKILL: ${left.join(', ')}\n`);
        } catch (err) {
          process.stderr.write(`dovecot (${dir}) stop: ${(err as Error).message}\n`);
        }
        live.delete(instance);
        if (live.size === 0) unwatchSignals();
        lastLog = readLog();
        await rm(dir, { recursive: true, force: true });
      })();
      return stopping;
    },
    killNow() {
      live.delete(instance);
      killSessionNow(pid);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return instance;
}

/**
 * Stops every process of the session `sid` (the master's pid). Returns the
 * descriptions of processes still alive at the end (normally none).
 *
 * SIGTERM to the master alone takes at least 1.1 s: after its children exit
 * (within milliseconds) the master SIGQUITs the ones still there — always its
 * log process, which outlives the rest on purpose — and then sleeps a fixed
 * 1000 ms (services_monitor_wait_and_kill). Worse, a logged-in imap process
 * was seen to stay 10 s after the master had gone, and a login process with
 * an unfinished PROXY handshake 5 s. So this SIGTERMs the master and every
 * other process at once (what the master itself does to its children on a
 * reload), and once only the master and the log process are left and the log
 * file has stopped growing, SIGKILLs those two: the master has nothing left to
 * do but sleep and remove its pid file, which goes with the dir anyway.
 */
async function stopSession(sid: number, logSize: () => number): Promise<string[]> {
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  const termed = new Set<number>();
  let size = logSize();
  let quietSince = Date.now();
  for (;;) {
    const procs = sessionProcesses(sid);
    if (procs.length === 0) return [];
    if (Date.now() > deadline) break;
    for (const p of procs) {
      if (p.role !== 'log' && !termed.has(p.pid)) {
        termed.add(p.pid);
        signal(p.pid, 'SIGTERM');
      }
    }
    const now = Date.now();
    const s = logSize();
    if (s !== size || procs.some((p) => p.role === 'other')) {
      size = s;
      quietSince = now;
    } else if (now - quietSince >= LOG_QUIET_MS) {
      for (const p of procs) signal(p.pid, 'SIGKILL');
    }
    await sleep(5);
  }
  killSessionNow(sid);
  const hardDeadline = Date.now() + 2000;
  while (sessionProcesses(sid).length > 0 && Date.now() < hardDeadline) await sleep(20);
  return sessionProcesses(sid).map((p) => `${p.pid} ${p.cmdline}`);
}

interface SessionProcess {
  pid: number;
  role: 'master' | 'log' | 'other';
  cmdline: string;
}

/** The non-zombie processes whose session id is `sid` (from /proc/PID/stat: state, ppid, pgrp, session follow the name). */
export function sessionProcesses(sid: number): SessionProcess[] {
  const out: SessionProcess[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (f[0] === 'Z' || Number(f[3]) !== sid) continue;
    const pid = Number(name);
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1').replace(/\0+$/, '').replace(/\0/g, ' ');
    } catch {
      // exited meanwhile
    }
    // Children are titled `dovecot-<instance_name>/<service>`.
    out.push({ pid, cmdline, role: pid === sid ? 'master' : cmdline.endsWith('/log') ? 'log' : 'other' });
  }
  return out;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

/** SIGKILLs the master's process group (every Dovecot process shares it). Synchronous, for exit hooks. */
function killSessionNow(pid: number | undefined): void {
  if (pid === undefined) return;
  signal(-pid, 'SIGKILL');
  for (const p of sessionProcesses(pid)) signal(p.pid, 'SIGKILL');
}

async function readPid(pidFile: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(pidFile, 'latin1')).trim());
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The daemon writes master.pid a moment after `dovecot` has returned. */
async function waitForPid(pidFile: string, readLog: () => string): Promise<number> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    const pid = await readPid(pidFile);
    if (pid !== undefined) return pid;
    if (Date.now() > deadline) {
      throw new Error(`no ${pidFile} ${START_TIMEOUT_MS} ms after dovecot started\n--- log ---\n${readLog()}`);
    }
    await sleep(5);
  }
}

async function waitForGreeting(port: number, readLog: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const c = await ImapTestClient.open('127.0.0.1', port, { timeoutMs: Math.max(500, deadline - Date.now()) });
      const greeting = c.greeting;
      await c.close();
      if (greeting.startsWith('* OK')) return;
      last = `greeting ${JSON.stringify(greeting)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await sleep(20);
  }
  throw new Error(`Dovecot on 127.0.0.1:${port} not greeting after ${START_TIMEOUT_MS} ms (${last})\n--- log ---\n${readLog()}`);
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return -1;
  }
}

/**
 * Runs `dovecot -c CONF`, which binds the listeners, forks the daemon and
 * exits. Its output goes to a file, not a pipe: the daemon keeps the inherited
 * stdout/stderr pipe open, so execFile would wait for its timeout every time.
 */
async function startDaemon(root: string, confPath: string, outPath: string): Promise<{ code: number; output: string }> {
  const fd = openSync(outPath, 'w');
  let code: number;
  try {
    code = await new Promise<number>((resolve) => {
      const child = spawn(...inRoot(root, [DOVECOT_COMMAND, '-c', confPath]), { stdio: ['ignore', fd, fd] });
      const t = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
      child.once('error', (err) => {
        clearTimeout(t);
        appendFileSync(outPath, `\nspawn ${DOVECOT_COMMAND}: ${err.message}`);
        resolve(-1);
      });
      child.once('exit', (exitCode, sig) => {
        clearTimeout(t);
        if (sig) appendFileSync(outPath, `\n${DOVECOT_COMMAND} killed by ${sig}`);
        resolve(exitCode ?? -1);
      });
    });
  } finally {
    closeSync(fd);
  }
  return { code, output: readFileSync(outPath, 'utf8').trim() };
}

/** Runs a command; never rejects on a non-zero exit. */
function run(cmd: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: COMMAND_TIMEOUT_MS, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      const output = [stdout, stderr, err && typeof err.code !== 'number' ? String(err) : ''].filter((s) => s).join('\n');
      resolve({ code, output: output.trim() });
    });
  });
}
