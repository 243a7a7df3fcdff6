/**
 * Least privilege. Started as root (to bind port 25 or 143, or to create
 * sockets in Postfix's private directory), Doorman gives root up once every
 * listener is bound: it hands the state directory and files to `run_as.user`,
 * then sets the groups, the group and the user, in that order (a process
 * that has dropped its user can no longer change its groups). Root without
 * `run_as.user` is refused unless `run_as.allow_root` says so; the embedded
 * defaults (loopback and a local socket only, for trying Doorman out) only
 * warn. Not root: nothing to drop, and nothing changes.
 */
import { chown } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { EMBEDDED_DEFAULTS, type Config } from './config/load.js';
import { PrivilegeError } from './errors.js';
import { primaryGid, resolveGid, resolveUid } from './listeners/unix-ids.js';
import { accessSync, constants } from 'node:fs';

/** Gives a path to uid:gid; one that does not exist yet is left for the user to create. */
async function hand(path: string, uid: number, gid: number): Promise<void> {
  try {
    await chown(path, uid, gid);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * What run_as means for a process started as `uid`: the user and group to
 * become, or null to stay as it is. Throws PrivilegeError when the
 * configuration cannot run that way (root without run_as.user, an unknown
 * user or group, run_as.user root). Reads only the configuration and the
 * user database, so `doorman config check` runs it too and refuses exactly
 * what `doorman serve` would, in the same words.
 */
export function checkRunAs(config: Config, uid: number): { uid: number; gid: number } | null {
  if (uid !== 0) return null;
  const r = config.run_as;
  if (r.user === null) {
    if (r.allow_root || config.source === EMBEDDED_DEFAULTS) return null;
    throw new PrivilegeError('DOORMAN_ERR_ROOT', `${config.source}: run_as.user: started as root without a user to run as; set run_as.user (e.g. doorman) or, to keep root, run_as.allow_root: true`);
  }
  let target: number;
  let gid: number;
  try {
    target = resolveUid(r.user);
    gid = r.group === null ? primaryGid(target) : resolveGid(r.group);
  } catch (err) {
    throw new PrivilegeError('DOORMAN_ERR_RUN_AS', `${config.source}: run_as: ${(err as Error).message}`);
  }
  if (target === 0) throw new PrivilegeError('DOORMAN_ERR_RUN_AS', `${config.source}: run_as.user is root; name an unprivileged user`);
  return { uid: target, gid };
}

/**
 * Drops root as configured; returns what was done, for the log. Throws
 * PrivilegeError when root must not be kept or cannot be dropped.
 */
export async function dropPrivileges(config: Config, log: Logger): Promise<{ uid: number; gid: number } | null> {
  const { getuid, getgid, setuid, setgid, setgroups } = process;
  // Not POSIX (Windows): no users to drop to.
  if (getuid === undefined || getgid === undefined || setuid === undefined || setgid === undefined || setgroups === undefined) return null;
  if (getuid() !== 0) return null;
  const target = checkRunAs(config, 0);
  if (target === null) {
    if (config.run_as.allow_root) log.warn('running as root (run_as.allow_root: true); set run_as.user to drop root once the sockets are bound');
    else log.warn('running as root on the embedded defaults; a configuration file must set run_as.user (or run_as.allow_root: true)');
    return null;
  }
  const { uid, gid } = target;
  // The state file is replaced by rename, so its directory must be the user's; the audit log is already open.
  for (const path of [dirname(config.state.file), config.state.file, config.state.audit_log]) await hand(path, uid, gid);
  setgroups([gid]);
  setgid(gid);
  setuid(uid);
  if (getuid() !== uid || getgid() !== gid) throw new PrivilegeError('DOORMAN_ERR_RUN_AS', `could not become ${uid}:${gid}`);
  // Better refused now than at the first ban: every directory above the state must let the user through.
  const dir = dirname(config.state.file);
  try {
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new PrivilegeError('DOORMAN_ERR_RUN_AS', `${config.source}: state.file: user ${uid} cannot write ${resolve(dir)} (${(err as NodeJS.ErrnoException).code}); give the user a state directory it can reach, e.g. /var/lib/doorman`);
  }
  try {
    setuid(0);
  } catch {
    // expected: root cannot be taken back
    return { uid, gid };
  }
  throw new PrivilegeError('DOORMAN_ERR_RUN_AS', 'root could be taken back after dropping it');
}
