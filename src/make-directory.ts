/**
 * Creating a directory and its missing parents, one level at a time, with a
 * bound. Node's own `mkdir(p, { recursive: true })` (20.x) retries forever
 * when the kernel answers ENOENT for a parent that exists — a directory
 * under /proc or /sys, or one removed while we create it — spinning a core
 * with no error. Here every component is tried once, from the root down, so
 * the work is bounded by the path's depth and every failure is thrown with
 * the directory that failed.
 */
import { mkdirSync, statSync } from 'node:fs';
import { resolve, sep } from 'node:path';

/** Makes `dir` and any missing parents (like `mkdir -p`); throws the first failure, naming the directory. */
export function makeDirectory(dir: string, mode = 0o755): void {
  // resolve() reads the working directory: if that was removed, this throws ENOENT (uv_cwd) rather than guessing.
  const abs = resolve(dir);
  if (isDirectory(abs)) return;
  const parts = abs.split(sep).filter((p) => p !== '');
  let at = '';
  for (const part of parts) {
    at = `${at}${sep}${part}`;
    try {
      mkdirSync(at, { mode });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EEXIST' && isDirectory(at)) continue;
      if (e.code === 'EEXIST') throw errno('ENOTDIR', `${at} exists and is not a directory`, at);
      throw errno(e.code ?? 'EIO', `cannot create ${at} (${e.code ?? e.message})`, at);
    }
  }
  // Made, yet not a directory now (removed or replaced meanwhile): fail rather than try again.
  if (!isDirectory(abs)) throw errno('ENOENT', `${abs} vanished as it was created`, abs);
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function errno(code: string, message: string, path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code, path });
}
