/**
 * Loading a build's modules by path, for the instruction benchmarks, which
 * drive this checkout's build or an older one (BENCH_OTHER) through the
 * same script: a module that moved is looked for at each of its paths.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Mod = Record<string, any>;

/** `root`/dist/src/`path`, imported. */
export async function load(root: string, path: string): Promise<Mod> {
  return (await import(pathToFileURL(join(root, 'dist', 'src', path)).href)) as Mod;
}

/** The first of `paths` that the build has (core/rate.js became store/rate.js). */
export async function loadMoved(root: string, ...paths: string[]): Promise<Mod> {
  for (const path of paths) {
    try {
      return await load(root, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    }
  }
  throw new Error(`none of ${paths.join(', ')} in ${root}/dist/src`);
}
