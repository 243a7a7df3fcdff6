/**
 * A private, throw-away HAProxy for integration tests, run in the foreground
 * (`-db`) on a config of the test's own in a temp dir, with its log on
 * stdout, a stats socket in the dir, and free ports on 127.0.0.1 (and ::1
 * where IPv6 loopback works). The system service is not used: the package's
 * own /etc/haproxy/haproxy.cfg binds no port, and nothing here touches it.
 *
 * Two generations:
 * - '2.6': the host's, Debian 12's haproxy (/usr/sbin/haproxy, built with Lua).
 * - '3.0': Debian 13's, run in the root of ./debian13.ts from
 *   ROOT/opt/doorman-haproxy-3.0, where scripts/debian13-extras.sh unpacks
 *   it without installing it, with the two libraries the root lacks
 *   (libjemalloc2, libopentracing-c-wrapper0t64 and its libopentracing1):
 *   `chroot ROOT env LD_LIBRARY_PATH=/opt/doorman-haproxy-3.0/usr/lib/TRIPLET
 *   /opt/doorman-haproxy-3.0/usr/sbin/haproxy …`. Its dir is made inside the
 *   root (host path ROOT/tmp/haproxy-xxx, HAProxy's /tmp/haproxy-xxx); the
 *   files name paths as HAProxy sees them (HaproxyLayout.at).
 *
 * renderContribConfig() turns the shipped contrib/haproxy/ files into a
 * config for this instance: the same frontends, rules, SPOE agent and Lua
 * service, with loopback ports and paths in the temp dir instead of Debian's.
 * Each replacement must match what the shipped file says, so a test notices
 * when the file drifts from what it renders.
 *
 * Facts this relies on, seen with 2.6.12-1+deb12u4 and again with
 * 3.0.11-1+deb13u4:
 * - With -db, HAProxy binds every listener and the stats socket before it
 *   serves; the socket answering `show info` means the listeners are bound.
 *   A port taken fails the start ("cannot bind socket"), exit status 1.
 * - `log stdout format raw` writes each log line to stdout, no syslog.
 * - SIGTERM is a hard stop: every session closed, exit within milliseconds.
 *   chroot(8) and env(1) exec HAProxy, so the child's pid is HAProxy's.
 * - A server with `check` starts UP and is marked DOWN after its first
 *   failed check (`rise`/`fall` default 2 and 3).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { REPO_ROOT } from './daemon.js';
import { DEBIAN13_ROOT, debian13Unavailable, ensureProc, inRoot } from './debian13.js';
import { freePorts, ipv6LoopbackWorks } from './net.js';

/** The host's HAProxy (generation '2.6'). */
export const HAPROXY_COMMAND = '/usr/sbin/haproxy';
export const CONTRIB_HAPROXY = join(REPO_ROOT, 'contrib', 'haproxy');

export type HaproxyGeneration = '2.6' | '3.0';
/** Every generation a HAProxy suite runs against, host first. */
export const HAPROXY_GENERATIONS: readonly HaproxyGeneration[] = ['2.6', '3.0'];

interface HaproxyGenerationFacts {
  readonly label: string;
  /** The root HAProxy runs in; '' for the host. */
  readonly root: string;
  /** Where scripts/debian13-extras.sh unpacked it, as HAProxy sees it; '' for the host's package. */
  readonly opt: string;
  /** The program, as HAProxy sees it. */
  readonly binary: string;
}

const OPT_30 = '/opt/doorman-haproxy-3.0';
export const HAPROXY_GENERATION: Readonly<Record<HaproxyGeneration, HaproxyGenerationFacts>> = Object.freeze({
  '2.6': { label: 'HAProxy 2.6 (host)', root: '', opt: '', binary: HAPROXY_COMMAND },
  '3.0': { label: 'HAProxy 3.0 (Debian 13 root)', root: DEBIAN13_ROOT, opt: OPT_30, binary: `${OPT_30}/usr/sbin/haproxy` },
});

/**
 * The environment HAProxy of `generation` runs with: for the unpacked 3.0,
 * LD_LIBRARY_PATH naming its library dir (usr/lib/x86_64-linux-gnu on amd64;
 * the triplet is read from the tree rather than guessed from the machine).
 */
function haproxyEnv(generation: HaproxyGeneration): NodeJS.ProcessEnv {
  const { root, opt } = HAPROXY_GENERATION[generation];
  if (opt === '') return process.env;
  let dirs: string[] = [];
  try {
    dirs = readdirSync(`${root}${opt}/usr/lib`).filter((d) => /-linux-/.test(d)).map((d) => `${opt}/usr/lib/${d}`);
  } catch {
    // not unpacked: haproxyUnavailableReason says so
  }
  return { ...process.env, LD_LIBRARY_PATH: dirs.join(':') };
}

/** [command, args] that run HAProxy of `generation` with `args`. */
function haproxyArgv(generation: HaproxyGeneration, args: readonly string[]): [string, string[]] {
  const { root, binary } = HAPROXY_GENERATION[generation];
  return inRoot(root, [binary, ...args]);
}

/** How long HAProxy gets to answer on its stats socket after it was started. */
const START_TIMEOUT_MS = 10_000;
/** How long it gets to exit after SIGTERM before SIGKILL. */
const STOP_TIMEOUT_MS = 5_000;
/** A port picked as free can be taken before HAProxy binds it; try a few others. */
const PORT_ATTEMPTS = 5;

const vv = new Map<HaproxyGeneration, string | null>();
function buildInfo(generation: HaproxyGeneration): string | null {
  let info = vv.get(generation);
  if (info === undefined) {
    const [cmd, args] = haproxyArgv(generation, ['-vv']);
    try {
      info = execFileSync(cmd, args, { encoding: 'latin1', timeout: 10_000, env: haproxyEnv(generation), stdio: ['ignore', 'pipe', 'pipe'] });
    } catch {
      info = null;
    }
    vv.set(generation, info);
  }
  return info;
}

/** Why the private HAProxy of `generation` cannot run here, or undefined when it can. */
export function haproxyUnavailableReason(generation: HaproxyGeneration = '2.6'): string | undefined {
  const { label, root, binary } = HAPROXY_GENERATION[generation];
  if (root !== '') {
    const why = debian13Unavailable([binary]);
    if (why !== undefined) return `${label}: ${why} (scripts/debian13-extras.sh unpacks it there; .ci/run runs it)`;
  } else if (!existsSync(binary)) {
    return `${label}: haproxy is not installed (apt-get install haproxy)`;
  }
  const info = buildInfo(generation);
  if (info === null) return `${label}: ${binary} -vv failed`;
  if (!/\+LUA\b/.test(info)) return `${label}: haproxy is built without Lua, which the refusal service needs (Debian's package has it)`;
  return undefined;
}

/** `haproxy -v`'s version, e.g. "2.6.12-1+deb12u4". */
export function haproxyVersion(generation: HaproxyGeneration = '2.6'): string {
  return /HAProxy version (\S+)/.exec(buildInfo(generation) ?? '')?.[1] ?? 'unknown';
}

/** Where the instance's frontends listen, and the dir its files are in. */
export interface HaproxyLayout {
  /** The dir, as the host sees it. */
  readonly dir: string;
  /** A path under `dir` as HAProxy sees it (the same on the host; without the root for 3.0): what its files must name. */
  at(hostPath: string): string;
  /** One port per frontend, in the order asked for. */
  readonly ports: readonly number[];
  /** 127.0.0.1, and ::1 where IPv6 loopback works. */
  readonly addresses: readonly string[];
}

export interface HaproxyOptions {
  /** Default '2.6', the host's. */
  readonly generation?: HaproxyGeneration;
  /** Frontend ports wanted. */
  readonly frontends: number;
  /** The files to write in the dir ("haproxy.cfg" is the config), given where things are. */
  readonly files: (layout: HaproxyLayout) => Readonly<Record<string, string>>;
  /** `backend/server` pairs to wait for until HAProxy's checks find them UP. */
  readonly waitUp?: readonly string[];
}

export interface HaproxyInstance extends HaproxyLayout {
  readonly generation: HaproxyGeneration;
  readonly pid: number;
  /** Everything HAProxy logged so far (stdout: its log; stderr: its alerts and warnings). */
  log(): string;
  /** A stats-socket command's answer, e.g. `show servers state`. */
  command(cmd: string): Promise<string>;
  /** The operational state of a server: 0 stopped, 1 starting, 2 running (UP), 3 stopping. */
  serverState(backend: string, server: string): Promise<number | null>;
  /** SIGTERM, SIGKILL after a bounded wait; removes the dir. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function statsCommand(socket: string, cmd: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let out = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer to "${cmd}" within ${timeoutMs} ms`));
    }, timeoutMs);
    s.setEncoding('latin1');
    s.on('connect', () => s.end(`${cmd}\n`));
    s.on('data', (d: string) => (out += d));
    s.on('end', () => {
      clearTimeout(t);
      resolve(out);
    });
    s.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

/** Writes the files, starts HAProxy in the foreground, waits until it serves (and the servers asked for are UP). */
export async function startHaproxy(o: HaproxyOptions): Promise<HaproxyInstance> {
  const generation = o.generation ?? '2.6';
  const why = haproxyUnavailableReason(generation);
  if (why !== undefined) throw new Error(`startHaproxy: ${why}`);
  const { root, label } = HAPROXY_GENERATION[generation];
  if (root !== '') ensureProc(root);
  const dir = await mkdtemp(join(root === '' ? tmpdir() : `${root}/tmp`, 'haproxy-'));
  const at = (p: string): string => (root === '' ? p : p.slice(root.length));
  const addresses = (await ipv6LoopbackWorks()) ? ['127.0.0.1', '::1'] : ['127.0.0.1'];
  // The host reaches the socket by its host path.
  const socket = join(dir, 'admin.sock');
  try {
    for (let attempt = 1; ; attempt++) {
      const ports = await freePorts(o.frontends, addresses);
      const layout = { dir, at, ports, addresses };
      for (const [name, text] of Object.entries(o.files(layout))) await writeFile(join(dir, name), text);
      const [cmd, args] = haproxyArgv(generation, ['-db', '-f', at(join(dir, 'haproxy.cfg'))]);
      const child = spawn(cmd, args, { cwd: dir, env: haproxyEnv(generation), stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      child.stdout?.setEncoding('latin1').on('data', (d: string) => (output += d));
      child.stderr?.setEncoding('latin1').on('data', (d: string) => (output += d));
      live.add(child);
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.once('exit', () => live.delete(child));
      const instance: HaproxyInstance = {
        ...layout,
        generation,
        pid: child.pid ?? 0,
        log: () => output,
        command: (cmd) => statsCommand(socket, cmd),
        async serverState(backend, server) {
          // show servers state: "be_id be_name srv_id srv_name srv_addr srv_op_state ..."
          const text = await statsCommand(socket, `show servers state ${backend}`);
          for (const line of text.split('\n')) {
            const f = line.split(' ');
            if (f[1] === backend && f[3] === server) return Number(f[5]);
          }
          return null;
        },
        stop: () => Promise.resolve(),
      };
      try {
        await waitServing(instance, child, exited, o.waitUp ?? []);
      } catch (err) {
        await stopChild(child, exited);
        if (attempt < PORT_ATTEMPTS && /cannot bind socket|Address already in use/.test(output)) continue;
        throw new Error(`${label}: ${(err as Error).message}\n--- output ---\n${output}`);
      }
      let stopping: Promise<void> | undefined;
      return {
        ...instance,
        stop() {
          stopping ??= (async () => {
            await stopChild(child, exited);
            await rm(dir, { recursive: true, force: true });
          })();
          return stopping;
        },
      };
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

async function waitServing(h: HaproxyInstance, child: ChildProcess, exited: Promise<void>, waitUp: readonly string[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let gone = false;
  void exited.then(() => (gone = true));
  const check = (what: string): void => {
    if (gone) throw new Error(`haproxy exited (status ${child.exitCode ?? child.signalCode}) before ${what}`);
    if (Date.now() > deadline) throw new Error(`haproxy not ready after ${START_TIMEOUT_MS} ms: ${what}`);
  };
  for (;;) {
    check('its stats socket answered');
    try {
      if (/^Pid: /m.test(await h.command('show info'))) break;
    } catch {
      // not yet
    }
    await sleep(25);
  }
  for (const pair of waitUp) {
    const [backend, server] = pair.split('/') as [string, string];
    while ((await h.serverState(backend, server)) !== 2) {
      check(`${pair} was UP`);
      await sleep(50);
    }
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const late = sleep(STOP_TIMEOUT_MS, true, { ref: false });
  if (await Promise.race([exited.then(() => false), late])) {
    child.kill('SIGKILL');
    await exited;
  }
}

// The shipped configuration, rendered for a private instance.

export interface ContribRender {
  /** The instance's dir and ports: frontends smtp, pop3, imap get ports[0], [1], [2]. */
  readonly layout: HaproxyLayout;
  /** host:port of the mail servers behind each frontend. */
  readonly postfix: string;
  readonly pop3: string;
  readonly imap: string;
  /** host:port of Doorman's SPOE agent. */
  readonly agent: string;
  /** Uncomment the shipped fail-closed lines. */
  readonly failClosed?: boolean;
  /** Replaces the hostname of the shipped fail-closed SMTP line. */
  readonly hostname?: string;
  /** Keep the shipped check intervals (2 s, 500 ms while failing); by default 200 ms and 100 ms, so tests see Doorman go quickly. */
  readonly shippedChecks?: boolean;
}

/** Replaces `from` (a string that must occur exactly `times` times) or fails, naming the file. */
function replaceExactly(file: string, text: string, from: string | RegExp, to: string, times = 1): string {
  const re = typeof from === 'string' ? new RegExp(from.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g') : new RegExp(from.source, from.flags.includes('g') ? from.flags : `${from.flags}g`);
  const found = text.match(re)?.length ?? 0;
  if (found !== times) throw new Error(`contrib/haproxy/${file}: expected ${times} of ${String(from)}, found ${found}: the shipped file changed, update test/helpers/haproxy.ts`);
  return text.replace(re, to);
}

/** The shipped haproxy.cfg, doorman-spoe.conf and doorman.lua, with Debian's paths and ports replaced by the instance's. */
export function renderContribConfig(r: ContribRender): Record<string, string> {
  const { dir, at, ports, addresses } = r.layout;
  const read = (name: string) => readFileSync(join(CONTRIB_HAPROXY, name), 'utf8');
  let cfg = read('haproxy.cfg');
  const f = 'haproxy.cfg';
  // Foreground, unprivileged, logging to stdout (HAProxy's own log is what the tests read).
  cfg = replaceExactly(f, cfg, /^ {4}log \/dev\/log local0$/m, '    log stdout format raw local0 info');
  for (const line of [/^ {4}chroot .*\n/m, /^ {4}user haproxy\n/m, /^ {4}group haproxy\n/m, /^ {4}daemon\n/m]) cfg = replaceExactly(f, cfg, line, '');
  cfg = replaceExactly(f, cfg, '/run/haproxy/admin.sock', at(join(dir, 'admin.sock')));
  cfg = replaceExactly(f, cfg, '    stats timeout 30s\n', '    stats timeout 30s\n    noreuseport\n');
  cfg = replaceExactly(f, cfg, '/etc/haproxy/doorman.lua', at(join(dir, 'doorman.lua')));
  cfg = replaceExactly(f, cfg, '/etc/haproxy/doorman-spoe.conf', at(join(dir, 'doorman-spoe.conf')), 3);
  const binds = (port: number) => addresses.map((a) => `    bind ${a}:${port}`).join('\n');
  cfg = replaceExactly(f, cfg, '    bind :::25 v4v6', binds(ports[0] as number));
  cfg = replaceExactly(f, cfg, '    bind :::110 v4v6', binds(ports[1] as number));
  cfg = replaceExactly(f, cfg, '    bind :::143 v4v6', binds(ports[2] as number));
  cfg = replaceExactly(f, cfg, 'server postfix 127.0.0.1:10025 ', `server postfix ${r.postfix} `);
  cfg = replaceExactly(f, cfg, 'server dovecot 127.0.0.1:10110 ', `server dovecot ${r.pop3} `);
  cfg = replaceExactly(f, cfg, 'server dovecot 127.0.0.1:10143 ', `server dovecot ${r.imap} `);
  cfg = replaceExactly(f, cfg, 'server doorman 127.0.0.1:12345 ', `server doorman ${r.agent} `);
  // Checks every 200 ms rather than 2 s, so a test sees Doorman go and come back quickly.
  if (r.shippedChecks !== true) cfg = replaceExactly(f, cfg, ' check inter 2s fastinter 500ms', ' check inter 200ms fastinter 100ms');
  if (r.failClosed === true) cfg = replaceExactly(f, cfg, /^ {4}#tcp-request content /gm, '    tcp-request content ', 6);
  if (r.hostname !== undefined) cfg = replaceExactly(f, cfg, 'mx.example.org', r.hostname);
  return { 'haproxy.cfg': cfg, 'doorman-spoe.conf': read('doorman-spoe.conf'), 'doorman.lua': read('doorman.lua') };
}
