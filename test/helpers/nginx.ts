/**
 * A private, throw-away nginx mail proxy for integration tests: its own
 * config, pid file and error log under one temp dir, one `server` per mail
 * protocol on free ports of 127.0.0.1 and ::1, and an `auth_http` URL the
 * test names (its stand-in auth server, or Doorman).
 *
 * Two generations:
 * - '1.22': the host's, Debian 12's `nginx` and `libnginx-mod-mail` packages
 *   (`apt-get install nginx libnginx-mod-mail`; nginx-light and nginx-core
 *   are transitional packages there). The package's postinst starts the
 *   system nginx on port 80 unless policy-rc.d forbids it: stop it
 *   (`/etc/init.d/nginx stop`) if it did.
 * - '1.26': Debian 13's, run in the root of ./debian13.ts from
 *   ROOT/opt/doorman-nginx-1.26, unpacked there without installing it, so the
 *   root's package set stays what other tests expect:
 *     chroot ROOT sh -c 'cd /tmp/d && apt-get download nginx libnginx-mod-mail'
 *     for f in ROOT/tmp/d/*.deb; do dpkg-deb -x $f ROOT/opt/doorman-nginx-1.26; done
 *   (the programs it needs, libssl, libpcre2, zlib and libcrypt, are in the
 *   root already).
 *
 * Facts this relies on, seen with 1.22.1-9+deb12u12 and 1.26.3-3+deb13u10:
 * - `nginx -p DIR/ -c CONF -e LOG` with `daemon off` in CONF runs the master
 *   in the foreground. It binds every listener, then writes its pid file, then
 *   forks its worker; a port taken makes it try the bind five times, 500 ms
 *   apart, and exit with status 1 ("still could not bind()").
 * - The mail module is a dynamic module: `load_module` of its Debian path.
 * - Without an `http` block nginx makes no temp dirs and opens no access log.
 * - SIGTERM is a fast shutdown: the master closes every session and exits
 *   within milliseconds; its worker is in its process group.
 * - For SMTP, nginx talks to the backend itself after the client's AUTH: with
 *   `xclient on` (nginx's default) it sends `XCLIENT ADDR=… LOGIN=… NAME=…`,
 *   which a real Postfix takes only from smtpd_authorized_xclient_hosts; a
 *   stand-in backend that knows no XCLIENT wants `xclient off` (then nginx
 *   sends only EHLO, and the backend never learns the client's address or
 *   login). `proxy_smtp_auth` (off) would make nginx AUTH to the backend.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEBIAN13_ROOT, debian13Unavailable, inRoot } from './debian13.js';
import { connectWithin, freePorts, ipv6LoopbackWorks } from './net.js';

export type NginxGeneration = '1.22' | '1.26';
export const NGINX_GENERATIONS: readonly NginxGeneration[] = ['1.22', '1.26'];

interface GenerationFacts {
  readonly label: string;
  /** The root nginx runs in; '' for the host. */
  readonly root: string;
  /** Paths as nginx sees them. */
  readonly binary: string;
  readonly mailModule: string;
}

export const NGINX_GENERATION: Readonly<Record<NginxGeneration, GenerationFacts>> = Object.freeze({
  '1.22': { label: 'nginx 1.22 (host)', root: '', binary: '/usr/sbin/nginx', mailModule: '/usr/lib/nginx/modules/ngx_mail_module.so' },
  '1.26': {
    label: 'nginx 1.26 (Debian 13 root)',
    root: DEBIAN13_ROOT,
    binary: '/opt/doorman-nginx-1.26/usr/sbin/nginx',
    mailModule: '/opt/doorman-nginx-1.26/usr/lib/nginx/modules/ngx_mail_module.so',
  },
});

/** How long nginx gets to accept on every port after it was started. */
const START_TIMEOUT_MS = 10_000;
/** How long the master gets to exit after SIGTERM before its process group is SIGKILLed. */
const STOP_TIMEOUT_MS = 5_000;
/** A port picked as free can be taken before nginx binds it; try a few others. */
const PORT_ATTEMPTS = 5;

/** Why nginx `generation` with its mail module cannot run here, or undefined when it can. */
export function nginxUnavailableReason(generation: NginxGeneration = '1.22'): string | undefined {
  const { root, label, binary, mailModule } = NGINX_GENERATION[generation];
  if (root !== '') {
    const why = debian13Unavailable([binary, mailModule]);
    return why === undefined ? undefined : `${label}: ${why} (see test/helpers/nginx.ts for how to unpack it there)`;
  }
  if (!existsSync(binary)) return `${label}: nginx is not installed (apt-get install nginx libnginx-mod-mail)`;
  if (!existsSync(mailModule)) return `${label}: nginx's mail module is not installed (apt-get install libnginx-mod-mail)`;
  return undefined;
}

/** `nginx -v` of `generation`, e.g. "1.22.1". */
export function nginxVersion(generation: NginxGeneration = '1.22'): string {
  const { root, binary } = NGINX_GENERATION[generation];
  const [cmd, args] = inRoot(root, [binary, '-v']);
  // nginx -v writes to stderr.
  const r = spawnSync(cmd, args, { encoding: 'latin1', timeout: 10_000 });
  return /nginx\/([0-9.]+)/.exec(`${r.stderr}${r.stdout}`)?.[1] ?? 'unknown';
}

export type MailProtocol = 'imap' | 'pop3' | 'smtp';

export interface NginxMailServer {
  readonly protocol: MailProtocol;
  /** imap_auth, pop3_auth or smtp_auth; default plain and login (pop3: plain, i.e. USER/PASS). */
  readonly auth?: readonly string[];
  /** SMTP only: nginx's `xclient` (see the header). Default off, for stand-in backends. */
  readonly xclient?: boolean;
  /** More directives for this server block, each without its ";". */
  readonly directives?: readonly string[];
}

export interface NginxMailOptions {
  readonly generation?: NginxGeneration;
  /** The auth_http URL, e.g. http://127.0.0.1:PORT/auth. */
  readonly authHttp: string;
  readonly servers: readonly NginxMailServer[];
  /** auth_http_timeout; nginx's default is 60 s, too long for a test. */
  readonly authHttpTimeoutSec?: number;
  /** auth_http_header lines. */
  readonly authHttpHeaders?: Readonly<Record<string, string>>;
  /** proxy_pass_error_message: show the client the backend's own refusal (default on). */
  readonly passErrorMessage?: boolean;
  /** More directives for the mail block, each without its ";". */
  readonly directives?: readonly string[];
}

export interface NginxMailInstance {
  readonly generation: NginxGeneration;
  readonly label: string;
  readonly dir: string;
  /** Where every server listens: 127.0.0.1, and ::1 where IPv6 loopback works. */
  readonly addresses: readonly string[];
  /** One port per server, in the order of `servers`. */
  readonly ports: readonly number[];
  /** The port of the first server speaking `protocol`. */
  port(protocol: MailProtocol): number;
  /** The error log so far (level info: logins, refusals, errors). */
  errorLog(): string;
  /** Stops nginx (SIGTERM, then SIGKILL to its process group after a bounded wait) and removes the dir. Idempotent. */
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) killGroup(c);
});

/** SIGKILL to the master's process group: the master and its worker. */
function killGroup(c: ChildProcess): void {
  if (c.pid === undefined) return;
  try {
    process.kill(-c.pid, 'SIGKILL');
  } catch {
    // gone
  }
}

function mailConf(o: NginxMailOptions, at: (p: string) => string, dir: string, ports: readonly number[], addresses: readonly string[]): string {
  const { mailModule } = NGINX_GENERATION[o.generation ?? '1.22'];
  const servers = o.servers.map((s, i) => {
    const listen = addresses.map((a) => `    listen ${a.includes(':') ? `[${a}]` : a}:${ports[i]};`);
    const auth = s.auth ?? (s.protocol === 'pop3' ? ['plain'] : ['plain', 'login']);
    const lines = [...listen, `    protocol ${s.protocol};`, '    proxy on;', `    ${s.protocol}_auth ${auth.join(' ')};`];
    if (s.protocol === 'smtp') lines.push(`    xclient ${s.xclient === true ? 'on' : 'off'};`);
    for (const d of s.directives ?? []) lines.push(`    ${d};`);
    return `  server {\n${lines.join('\n')}\n  }`;
  });
  const headers = Object.entries(o.authHttpHeaders ?? {}).map(([k, v]) => `  auth_http_header ${k} "${v}";`);
  return [
    `load_module ${mailModule};`,
    'daemon off;',
    'master_process on;',
    'worker_processes 1;',
    `pid ${at(join(dir, 'nginx.pid'))};`,
    `error_log ${at(join(dir, 'error.log'))} info;`,
    'events { worker_connections 256; }',
    'mail {',
    '  server_name mx.doorman.test;',
    `  auth_http ${o.authHttp};`,
    `  auth_http_timeout ${o.authHttpTimeoutSec ?? 5}s;`,
    ...headers,
    `  proxy_pass_error_message ${o.passErrorMessage === false ? 'off' : 'on'};`,
    ...(o.directives ?? []).map((d) => `  ${d};`),
    ...servers,
    '}',
    '',
  ].join('\n');
}

/** Writes the config, starts nginx in the foreground and waits until every port accepts. */
export async function startNginxMail(o: NginxMailOptions): Promise<NginxMailInstance> {
  const generation = o.generation ?? '1.22';
  const why = nginxUnavailableReason(generation);
  if (why !== undefined) throw new Error(`startNginxMail: ${why}`);
  const { root, binary, label } = NGINX_GENERATION[generation];
  const dir = await mkdtemp(join(root === '' ? tmpdir() : `${root}/tmp`, 'ngx-'));
  // nginx's worker runs as nobody when the master is root; it opens nothing in here, but let it look.
  await chmod(dir, 0o755);
  const at = (p: string): string => (root === '' ? p : p.slice(root.length));
  const logPath = join(dir, 'error.log');
  const readLog = (): string => {
    try {
      return readFileSync(logPath, 'latin1');
    } catch {
      return '';
    }
  };
  const addresses = (await ipv6LoopbackWorks()) ? ['127.0.0.1', '::1'] : ['127.0.0.1'];
  try {
    for (let attempt = 1; ; attempt++) {
      const ports = await freePorts(o.servers.length, addresses);
      const conf = join(dir, 'nginx.conf');
      await writeFile(conf, mailConf(o, at, dir, ports, addresses));
      // A fresh log each attempt: the last attempt's "Address already in use" must not make this one look the same.
      await writeFile(logPath, '');
      const [cmd, args] = inRoot(root, [binary, '-p', `${at(dir)}/`, '-c', at(conf), '-e', at(logPath)]);
      // detached: the master leads a process group of its own, so stop() can SIGKILL it with its worker.
      const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr?.setEncoding('latin1').on('data', (d: string) => (stderr += d));
      live.add(child);
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.once('exit', () => live.delete(child));
      try {
        await waitServing(child, exited, join(dir, 'nginx.pid'), ports, addresses);
      } catch (err) {
        await stopChild(child, exited);
        const log = readLog();
        if (attempt < PORT_ATTEMPTS && /Address already in use/.test(log + stderr)) continue;
        throw new Error(`${label}: ${(err as Error).message}\n--- stderr ---\n${stderr}\n--- error.log ---\n${log}`);
      }
      let stopping: Promise<void> | undefined;
      return {
        generation,
        label,
        dir,
        addresses,
        ports,
        port(protocol) {
          const i = o.servers.findIndex((s) => s.protocol === protocol);
          if (i < 0) throw new Error(`no ${protocol} server in this nginx`);
          return ports[i] as number;
        },
        errorLog: readLog,
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

/**
 * nginx writes its pid file only after it has bound every listener, so the
 * file naming our child comes first: a connect alone could reach whoever
 * took a port while nginx was still retrying the bind (5 times, 500 ms apart).
 */
async function waitServing(child: ChildProcess, exited: Promise<void>, pidFile: string, ports: readonly number[], addresses: readonly string[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let gone = false;
  void exited.then(() => (gone = true));
  const check = (what: string): void => {
    if (gone) throw new Error(`nginx exited (status ${child.exitCode ?? child.signalCode}) before ${what}`);
    if (Date.now() > deadline) throw new Error(`nginx not ready after ${START_TIMEOUT_MS} ms: ${what}`);
  };
  const pidWritten = (): boolean => {
    try {
      return readFileSync(pidFile, 'latin1').trim() === String(child.pid);
    } catch {
      return false;
    }
  };
  while (!pidWritten()) {
    check('it wrote its pid file');
    await sleep(25);
  }
  for (const port of ports) {
    for (const host of addresses) {
      for (;;) {
        check(`it served ${host}:${port}`);
        try {
          (await connectWithin(host, port, 500, 'nginx ready check')).destroy();
          break;
        } catch {
          await sleep(50);
        }
      }
    }
  }
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    child.kill('SIGTERM');
  } catch {
    // gone
  }
  // On SIGTERM the master waits for its worker to exit; only a master that hangs gets SIGKILL, with its group.
  const late = sleep(STOP_TIMEOUT_MS, true, { ref: false });
  if (await Promise.race([exited.then(() => false), late])) {
    killGroup(child);
    await exited;
  }
}
