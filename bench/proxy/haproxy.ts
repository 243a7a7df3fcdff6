/**
 * A private HAProxy (Debian's 2.6, /usr/sbin/haproxy) configured as the guard
 * proxy's yardstick, after ../../../shared/notes/haproxy-2.6.md:
 *
 * - tcp mode; one frontend per limit, each with its own stick table of
 *   conn_cur per source address, `track-sc0 src` first and the test after
 *   (tracking first avoids a race between threads; a refused connection
 *   counts until it closes);
 * - over the limit, the connection goes to a Lua TCP service that answers
 *   `421 4.7.0 <host> Too many connections from your address, try again
 *   later` and closes, as Doorman does (`tcp-request connection reject`
 *   would only reset);
 * - the backend server line sends a PROXY v2 header (`send-proxy-v2`);
 * - `noreuseport`, so a stale HAProxy cannot silently share a port; a stats
 *   socket; connect 5 s, client/server 5 min timeouts; no logging (Doorman
 *   runs at log level warn, which logs nothing per connection either); no
 *   splice (HAProxy's default).
 *
 * Run in the foreground (-db): one process, its threads under one pid.
 */
import { spawn, type ChildProcess, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTeardown } from '../anvil/teardown.js';
import { waitForPort } from './ports.js';

export const HAPROXY = '/usr/sbin/haproxy';
const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;

export interface HaproxyOptions {
  /** host:port of the backend's PROXY-header listener. */
  readonly backend: string;
  readonly hostname: string;
  /** Frontends: name, port and connections allowed per source address. */
  readonly frontends: ReadonlyArray<{ readonly name: string; readonly port: number; readonly perAddress: number }>;
  readonly nbthread: number;
  /** global and per-frontend maxconn; HAProxy needs about two descriptors per connection. */
  readonly maxconn: number;
}

export function haproxyVersion(): string {
  try {
    const out = execFileSync(HAPROXY, ['-v'], { encoding: 'utf8', timeout: 5000 });
    return /version (\S+)/.exec(out)?.[1] ?? 'unknown';
  } catch {
    return 'not installed';
  }
}

/** True when haproxy is installed with Lua (the refusal service needs it). */
export function haproxyUsable(): boolean {
  if (!existsSync(HAPROXY)) return false;
  try {
    return /\+LUA\b/.test(execFileSync(HAPROXY, ['-vv'], { encoding: 'utf8', timeout: 5000 }));
  } catch {
    return false;
  }
}

function luaService(hostname: string): string {
  return [
    '-- Answers an over-limit client like a mail server would, then closes.',
    'core.register_service("refuse421", "tcp", function(applet)',
    `  applet:send("421 4.7.0 ${hostname} Too many connections from your address, try again later\\r\\n")`,
    'end)',
    '',
  ].join('\n');
}

export function haproxyConfig(opts: HaproxyOptions, dir: string): string {
  const lines = [
    'global',
    `  nbthread ${opts.nbthread}`,
    '  noreuseport',
    `  maxconn ${opts.maxconn}`,
    `  stats socket ${join(dir, 'admin.sock')} mode 600 level admin`,
    `  lua-load-per-thread ${join(dir, 'refuse421.lua')}`,
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 5m',
    '  timeout server 5m',
  ];
  for (const f of opts.frontends) {
    lines.push(
      `frontend ${f.name}`,
      `  bind 127.0.0.1:${f.port}`,
      `  maxconn ${opts.maxconn}`,
      '  stick-table type ip size 1m expire 10m store conn_cur',
      '  tcp-request connection track-sc0 src',
      `  tcp-request content use-service lua.refuse421 if { sc0_conn_cur gt ${f.perAddress} }`,
      '  default_backend mail',
    );
  }
  lines.push('backend mail', `  server mail ${opts.backend} send-proxy-v2`, '');
  return lines.join('\n');
}

export class HaproxyProcess {
  readonly pid: number;
  readonly dir: string;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private readonly unregister: () => void;

  private constructor(child: ChildProcess, dir: string, unregister: () => void) {
    this.child = child;
    this.pid = child.pid as number;
    this.dir = dir;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    this.unregister = unregister;
  }

  static async start(opts: HaproxyOptions): Promise<HaproxyProcess> {
    const dir = mkdtempSync(join(tmpdir(), 'haproxy-bench-'));
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(join(dir, 'refuse421.lua'), luaService(opts.hostname));
    writeFileSync(cfg, haproxyConfig(opts, dir));
    const child = spawn(HAPROXY, ['-db', '-f', cfg], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid === undefined) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error('could not spawn haproxy');
    }
    const unregister = onTeardown(`haproxy pid ${child.pid}`, () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
    let output = '';
    const keep = (s: string) => {
      output = (output + s).slice(-4000);
    };
    child.stdout?.setEncoding('utf8').on('data', keep);
    child.stderr?.setEncoding('utf8').on('data', keep);
    const h = new HaproxyProcess(child, dir, unregister);
    const probe = new AbortController();
    try {
      await new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`haproxy exited with ${code} before listening:\n${output}`)));
        Promise.all(opts.frontends.map((f) => waitForPort(f.port, READY_TIMEOUT_MS, probe.signal))).then(() => resolve(), reject);
      });
    } catch (err) {
      unregister();
      throw err;
    } finally {
      probe.abort();
    }
    return h;
  }

  /** A stats-socket command's answer, e.g. `show table NAME`. */
  command(cmd: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = connect(join(this.dir, 'admin.sock'));
      let out = '';
      s.setEncoding('utf8');
      s.on('connect', () => s.end(`${cmd}\n`));
      s.on('data', (d: string) => (out += d));
      s.on('end', () => resolve(out));
      s.on('error', reject);
    });
  }

  /** SIGTERM (hard stop), SIGKILL after a timeout. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.exited, new Promise((resolve) => (timer = setTimeout(resolve, STOP_TIMEOUT_MS)))]);
    clearTimeout(timer);
    this.unregister();
  }
}
