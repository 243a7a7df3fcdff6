/**
 * Resolves user and group names for socket ownership. Node has no getpwnam(),
 * so we read /etc/passwd and /etc/group, which is what NSS "files" does; a
 * numeric id is taken as it is.
 */
import { readFileSync } from 'node:fs';
import { ListenError } from '../errors.js';

function lookup(file: string, name: string, what: string): number {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ListenError('DOORMAN_ERR_ID_LOOKUP', `cannot read ${file} to resolve ${what} "${name}": ${String(err)}`);
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined && /^\d+$/.test(f[2])) return Number(f[2]);
  }
  throw new ListenError('DOORMAN_ERR_ID_LOOKUP', `no ${what} named "${name}" in ${file}`);
}

export function resolveUid(v: string | number): number {
  return typeof v === 'number' ? v : /^\d+$/.test(v) ? Number(v) : lookup('/etc/passwd', v, 'user');
}

export function resolveGid(v: string | number): number {
  return typeof v === 'number' ? v : /^\d+$/.test(v) ? Number(v) : lookup('/etc/group', v, 'group');
}
