/**
 * The import rules of ARCHITECTURE.md, checked on the sources: a file that
 * breaks one fails this test with its name and the import.
 *
 * - src/core/ imports only src/core/, src/errors.ts, Node's built-ins and
 *   pino's types (test files aside: they may wire a real store).
 * - src/protocols/ (the I/O-free codecs) imports only itself, src/core/,
 *   src/errors.ts and Node's built-ins: no sockets, HTTP, configuration or
 *   store.
 * - Nothing outside src/core/ imports the Engine: the Gatekeeper is the door.
 * - src/store/ and src/config/ import nothing that speaks to the network on
 *   the daemon's behalf (listeners, http, control, cli).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from './helpers/daemon.js';

const SRC = join(REPO_ROOT, 'src');

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

interface Import {
  readonly file: string;
  readonly spec: string;
  readonly typeOnly: boolean;
  /** For a relative import: the target, relative to src/ ("core/gate.ts"). */
  readonly target: string | null;
}

const IMPORT = /(?:^|\n)\s*(import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  const out: Import[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = (m[3] ?? m[4]) as string;
    const target = spec.startsWith('.') ? relative(SRC, resolve(dirname(file), spec)).replace(/\.js$/, '.ts') : null;
    out.push({ file: relative(SRC, file), spec, typeOnly: m[2] !== undefined, target });
  }
  return out;
}

const ALL = sources(SRC).flatMap(importsOf);
const isTest = (f: string) => /\.(test|fuzz\.test)\.ts$/.test(f);
const under = (f: string, dir: string) => f.startsWith(`${dir}/`);
const show = (bad: readonly Import[]) => bad.map((i) => `${i.file} imports '${i.spec}'`).join('\n');

test('the scan sees the imports it checks', () => {
  assert.ok(ALL.length > 300, `${ALL.length} imports`);
  assert.ok(ALL.some((i) => i.file === 'core/gate.ts' && i.target === 'core/engine.ts'), 'the gate imports the engine');
});

test('src/core imports only the core, errors.ts, Node and pino\'s types', () => {
  const bad = ALL.filter((i) => under(i.file, 'core') && !isTest(i.file)).filter((i) => {
    if (i.target !== null) return !(under(i.target, 'core') || i.target === 'errors.ts');
    if (i.spec.startsWith('node:')) return false;
    return !(i.spec === 'pino' && i.typeOnly);
  });
  assert.deepEqual(bad, [], show(bad));
});

test('src/protocols (codecs) import only codecs, the core, errors.ts and Node', () => {
  const bad = ALL.filter((i) => under(i.file, 'protocols') && !isTest(i.file)).filter((i) =>
    i.target !== null ? !(under(i.target, 'protocols') || under(i.target, 'core') || i.target === 'errors.ts') : !i.spec.startsWith('node:'),
  );
  assert.deepEqual(bad, [], show(bad));
});

test('nothing outside src/core imports the Engine: the Gatekeeper is the core\'s door', () => {
  const bad = ALL.filter((i) => !under(i.file, 'core') && i.target === 'core/engine.ts');
  assert.deepEqual(bad, [], show(bad));
});

test('the store and the configuration import no listener, HTTP, control or CLI code', () => {
  const above = ['listeners', 'http', 'control', 'cli'];
  const bad = ALL.filter((i) => (under(i.file, 'store') || under(i.file, 'config')) && i.target !== null && above.some((d) => under(i.target as string, d)));
  assert.deepEqual(bad, [], show(bad));
});
