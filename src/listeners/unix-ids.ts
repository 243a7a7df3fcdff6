/**
 * Resolves user and group names for socket ownership. Node has no getpwnam(),
 * so we read /etc/passwd and /etc/group, which is what NSS "files" does; a
 * numeric id is taken as it is.
 */
import { readFileSync } from 'node:fs';
import { ListenError } from '../errors.js';

/** The entries of a passwd-format file, each split into its fields. */
function entries(file: string, why: string): string[][] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ListenError('DOORMAN_ERR_ID_LOOKUP', `cannot read ${file} to resolve ${why}: ${String(err)}`);
  }
  return text.split('\n').map((line) => line.split(':'));
}

const isId = (v: string | undefined): v is string => v !== undefined && /^\d+$/.test(v);

function lookup(file: string, name: string, what: string): number {
  for (const f of entries(file, `${what} "${name}"`)) {
    if (f[0] === name && isId(f[2])) return Number(f[2]);
  }
  throw new ListenError('DOORMAN_ERR_ID_LOOKUP', `no ${what} named "${name}" in ${file}`);
}

/** The primary group of user `uid`, from /etc/passwd. */
export function primaryGid(uid: number): number {
  for (const f of entries('/etc/passwd', `the group of user ${uid}`)) {
    if (f[2] === String(uid) && isId(f[3])) return Number(f[3]);
  }
  throw new ListenError('DOORMAN_ERR_ID_LOOKUP', `user ${uid} has no entry in /etc/passwd to take its group from`);
}

export function resolveUid(v: string | number): number {
  return typeof v === 'number' ? v : /^\d+$/.test(v) ? Number(v) : lookup('/etc/passwd', v, 'user');
}

export function resolveGid(v: string | number): number {
  return typeof v === 'number' ? v : /^\d+$/.test(v) ? Number(v) : lookup('/etc/group', v, 'group');
}
