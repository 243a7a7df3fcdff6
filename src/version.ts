/**
 * Doorman's version: the `version` of the package.json this code was
 * installed with, read at run time rather than compiled in, so that an
 * installed package (npm pack, npm install -g) names its own release.
 */
import { readFileSync } from 'node:fs';

/** dist/src/version.js → package.json two levels up, in a checkout and in an installed package alike. */
const PACKAGE_JSON = new URL('../../package.json', import.meta.url);

let cached: string | undefined;

/** The package's version, or 'unknown' when package.json cannot be read (a copied dist/ without it). */
export function packageVersion(): string {
  if (cached === undefined) {
    try {
      const v = (JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version?: unknown }).version;
      cached = typeof v === 'string' && v !== '' ? v : 'unknown';
    } catch {
      cached = 'unknown';
    }
  }
  return cached;
}
