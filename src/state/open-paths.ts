/**
 * The run-time state's two paths, `state.file` and `state.audit_log`, made
 * ready at start: their directories created, then the files opened. Any
 * failure stops the start with a ConfigError naming the configuration file,
 * the key and the path, like every other configuration error.
 */
import { dirname } from 'node:path';
import { ConfigError } from '../errors.js';
import { makeDirectory } from '../make-directory.js';

export type StatePathKey = 'state.file' | 'state.audit_log';

/**
 * Creates the directory of `path` (the value of `key` in `source`) and runs
 * `open`; turns a failure of either into a ConfigError. A ConfigError from
 * `open` (a damaged state file) passes through as it is.
 */
export async function openStatePath<T>(source: string, key: StatePathKey, path: string, open: (path: string) => Promise<T>): Promise<T> {
  const what = key === 'state.file' ? 'the state file' : 'the audit log';
  try {
    makeDirectory(dirname(path));
  } catch (err) {
    throw new ConfigError([{ file: source, key, value: path, expected: `a path whose directory Doorman can create for ${what}: ${describe(err)}` }]);
  }
  try {
    return await open(path);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError([{ file: source, key, value: path, expected: `a readable and writable ${what.replace('the ', '')}: ${describe(err)}` }]);
  }
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT' && e.syscall === 'uv_cwd') return 'the working directory no longer exists (ENOENT); use absolute paths or start from an existing directory';
  return e.message;
}
