/**
 * Claiming a UNIX socket path safely: a stale socket file left by a crash is
 * replaced, a live one (someone is accepting on it) is an error that says so,
 * and anything that is not a socket is never deleted.
 */
import { chmodSync, chownSync, lstatSync, unlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { ListenError } from '../errors.js';
import { makeDirectory } from '../make-directory.js';

/** How long a probe of an existing socket may take before we call it stale. */
const PROBE_TIMEOUT_MS = 1000;

function probe(path: string): Promise<'live' | 'stale'> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (r: 'live' | 'stale') => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    const t = setTimeout(() => done('stale'), PROBE_TIMEOUT_MS);
    s.once('connect', () => done('live'));
    s.once('error', () => done('stale'));
  });
}

/** Makes the parent directory and removes a stale socket at `path`. */
export async function prepareSocketPath(path: string): Promise<{ replacedStale: boolean }> {
  makeDirectory(dirname(path), 0o755);
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return { replacedStale: false };
  }
  if (!st.isSocket()) {
    throw new ListenError('DOORMAN_ERR_SOCKET_PATH', `${path} exists and is not a socket; refusing to replace it`);
  }
  if ((await probe(path)) === 'live') {
    throw new ListenError('DOORMAN_ERR_SOCKET_IN_USE', `${path}: another process is already listening on this socket (another Doorman?)`);
  }
  unlinkSync(path);
  return { replacedStale: true };
}

/** Sets mode and, when given, owner and group of a socket we just bound. */
export function setSocketAccess(path: string, mode: number, uid: number | null, gid: number | null): void {
  chmodSync(path, mode);
  if (uid !== null || gid !== null) chownSync(path, uid ?? -1, gid ?? -1);
}

/** Removes our socket file at shutdown, if it is still a socket. */
export function removeSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // already gone
  }
}
