/**
 * The Debian 13 root that scripts/debian13-root.sh builds: Postfix 3.10 and
 * Dovecot 2.4 run in it with `chroot ROOT PROGRAM …`, beside the host's
 * Debian 12 Postfix 3.7 and Dovecot 2.3.
 *
 * Facts this relies on, seen on a Debian 12 host with the root built here
 * (postfix 3.10.13-0+deb13u1, dovecot 1:2.4.1+dfsg1-6+deb13u7):
 * - chroot changes only the file system: servers in the root share the host's
 *   network (they listen on the host's 127.0.0.1 and ::1) and its pid space
 *   (the host signals them by the pids in their pid files).
 * - A file the server sees as /tmp/x is ROOT/tmp/x on the host.
 * - The root's users have their own uids, different from the host's (its
 *   postfix is 100, the host's 102 — which is dovenull in the root), so
 *   ownership is taken from ROOT/etc/passwd and ROOT/etc/group.
 * - Dovecot and Postfix want /proc; the root is built without it mounted.
 *   ensureProc() mounts it once and leaves it mounted: test files run in
 *   parallel processes and one must not unmount it under another.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

/** Where scripts/debian13-root.sh puts the root (same default, same variable). */
export const DEBIAN13_ROOT = (process.env['DOORMAN_DEBIAN13_ROOT'] ?? '/var/cache/doorman/debian13').replace(/\/+$/, '');
/** Written by the script only when the root is complete. */
const STAMP = `${DEBIAN13_ROOT}/.doorman-stamp`;

/** Why the Debian 13 root cannot be used here, or undefined when it can. */
export function debian13Unavailable(programs: readonly string[]): string | undefined {
  if (process.getuid?.() !== 0) return 'the Debian 13 root needs root (chroot, mount)';
  if (!existsSync(STAMP)) {
    return `no complete Debian 13 root at ${DEBIAN13_ROOT} (run scripts/debian13-root.sh; .ci/run does)`;
  }
  const missing = programs.filter((p) => !existsSync(DEBIAN13_ROOT + p));
  if (missing.length > 0) return `the Debian 13 root at ${DEBIAN13_ROOT} lacks ${missing.join(', ')}`;
  return undefined;
}

/** The package versions the script recorded, e.g. `postfix 3.10.13-0+deb13u1`. */
export function debian13Versions(): string {
  try {
    return readFileSync(STAMP, 'utf8').trim();
  } catch {
    return '(no stamp)';
  }
}

let procMounted = false;
/**
 * Mounts proc at ROOT/proc unless it is mounted already. Under flock(1), so
 * two test processes starting at once do not mount it twice; never unmounted
 * (see the header).
 */
export function ensureProc(root: string): void {
  if (procMounted) return;
  execFileSync(
    'flock',
    [`${root}/run/doorman-mount-proc.lock`, 'sh', '-c', 'mountpoint -q "$1" || mount -t proc proc "$1"', 'mount-proc', `${root}/proc`],
    { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 },
  );
  procMounted = true;
}

/**
 * The uid of `user` and gid of `group` in ROOT/etc/passwd and ROOT/etc/group
 * (root '' is the host).
 */
export function idsIn(root: string, user: string, group: string): { uid: number; gid: number } {
  const field = (file: string, name: string): number => {
    const line = readFileSync(`${root}${file}`, 'utf8').split('\n').find((l) => l.startsWith(`${name}:`));
    const id = Number(line?.split(':')[2]);
    if (!line || !Number.isInteger(id)) throw new Error(`no ${name} in ${root}${file}`);
    return id;
  };
  return { uid: field('/etc/passwd', user), gid: field('/etc/group', group) };
}

/** The program and arguments that run `argv` in `root` ('' is the host: `argv` as is). */
export function inRoot(root: string, argv: readonly string[]): [string, string[]] {
  return root === '' ? [argv[0]!, argv.slice(1)] : ['chroot', [root, ...argv]];
}
