/**
 * The catalogue (./errors.ts) against what uses it: every code in the
 * sources is in it, every entry is used, each says what it means, and
 * docs/admin-api.md lists the codes the admin API answers with, at their
 * statuses.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, DoormanError, ERROR_KINDS, ERRORS, errorInfo, httpStatus, isErrorCode, ProtocolError, type ErrorInfo } from './errors.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SRC = join(ROOT, 'src');

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (name.endsWith('.ts') && !/\.test\.ts$/.test(name)) out.push(p);
  }
  return out;
}

const ENTRIES = Object.entries(ERRORS) as Array<[string, ErrorInfo]>;
/** A family's key ends in <status>; the sources write its prefix and a number. */
const FAMILY = '<status>';
const asWritten = (key: string) => (key.endsWith(FAMILY) ? key.slice(0, -FAMILY.length) : key);
const KNOWN = new Set(ENTRIES.map(([k]) => asWritten(k)));

/** The sources without the catalogue's own table, which names every code. */
function text(file: string): string {
  const s = readFileSync(file, 'utf8');
  if (relative(SRC, file) !== 'errors.ts') return s;
  const start = s.indexOf('export const ERRORS = {');
  const end = s.indexOf('\n} as const', start);
  assert.ok(start > 0 && end > start, 'the table is found in errors.ts');
  return s.slice(0, start) + s.slice(end);
}

const FILES = sources(SRC).map((f) => ({ file: relative(SRC, f), text: text(f) }));
/** Codes as string literals: 'DOORMAN_ERR_X', "…", and a template's `DOORMAN_ERR_HTTP_${…}`. */
const LITERAL = /['"`](DOORMAN_ERR_[A-Z0-9_]+)/g;
/** Codes anywhere, comments included; "DOORMAN_ERR_…" names none. */
const MENTION = /DOORMAN_ERR_[A-Z0-9_]+(?=\$\{)|DOORMAN_ERR_[A-Z0-9_]*[A-Z0-9]/g;

test('the scan sees the sources and their codes', () => {
  assert.ok(FILES.length > 100, `${FILES.length} files`);
  const literals = FILES.flatMap((f) => [...f.text.matchAll(LITERAL)]);
  assert.ok(literals.length > 150, `${literals.length} code literals`);
});

test('every code the sources name is in the catalogue', () => {
  const unknown = FILES.flatMap((f) => [...f.text.matchAll(MENTION)].map((m) => m[0]).filter((c) => !KNOWN.has(c) && !isErrorCode(c)).map((c) => `${f.file}: ${c}`));
  assert.deepEqual(unknown, [], 'add these to src/errors.ts, with what they mean');
});

test('every catalogue entry is used: no dead codes', () => {
  const used = new Set(FILES.flatMap((f) => [...f.text.matchAll(LITERAL)].map((m) => m[1])));
  const dead = ENTRIES.map(([k]) => asWritten(k)).filter((c) => !used.has(c));
  assert.deepEqual(dead, [], 'no source throws, logs or answers with these');
});

test('each entry says what it means, in one line, and has a kind; statuses are HTTP error statuses', () => {
  for (const [code, e] of ENTRIES) {
    assert.match(code, /^DOORMAN_ERR_[A-Z0-9_]+(<status>)?$/, code);
    assert.ok(Object.hasOwn(ERROR_KINDS, e.kind), `${code}: kind ${e.kind}`);
    assert.match(e.meaning, /^[A-Za-z].{9,199}\.$/, `${code}: one line, a sentence`);
    if (e.http !== undefined) assert.ok(Number.isInteger(e.http) && e.http >= 400 && e.http <= 599, `${code}: status ${e.http}`);
  }
  for (const [kind, words] of Object.entries(ERROR_KINDS)) {
    assert.ok(words.length > 10, kind);
    assert.ok(ENTRIES.some(([, e]) => e.kind === kind), `kind ${kind} has codes`);
  }
});

test('docs/admin-api.md lists the codes the API answers with, at the catalogue\'s statuses', () => {
  const doc = readFileSync(join(ROOT, 'docs/admin-api.md'), 'utf8');
  const rows = [...doc.matchAll(/^\| (\d{3}) \| `(DOORMAN_ERR_[A-Z0-9_]+)` \|/gm)].map((m) => `${m[2]} ${m[1]}`).sort();
  const http = ENTRIES.filter(([, e]) => e.http !== undefined).map(([k, e]) => `${k} ${e.http}`).sort();
  assert.deepEqual(rows, http, 'the table under "## Errors" and the entries with an http status');
  // Statuses written beside a code elsewhere on the page ("400 `DOORMAN_ERR_REASON`") agree too.
  for (const m of doc.matchAll(/\b(\d{3}) `(DOORMAN_ERR_[A-Z0-9_]+)`/g)) {
    const code = m[2] as string;
    assert.ok(isErrorCode(code), `${code} is not in the catalogue`);
    assert.equal(httpStatus(code), Number(m[1]), m[0]);
  }
  for (const m of doc.matchAll(/DOORMAN_ERR_[A-Z0-9_]*[A-Z0-9]/g)) assert.ok(isErrorCode(m[0]), `${m[0]} is not in the catalogue`);
});

test('errors.ts names every error class, wherever it lives', () => {
  const header = readFileSync(join(SRC, 'errors.ts'), 'utf8').split('\nexport ')[0] as string;
  const classes = FILES.flatMap((f) => [...f.text.matchAll(/\bclass (\w+) extends (?:Error|\w+Error)\b/g)].map((m) => ({ file: f.file, name: m[1] as string })));
  assert.ok(classes.length >= 15, `${classes.length} classes`);
  const missing = classes.filter((c) => !new RegExp(`\\b${c.name}\\b`).test(header) || (c.file !== 'errors.ts' && !header.includes(c.file)));
  assert.deepEqual(missing, [], 'name them (and where they live) at the top of src/errors.ts');
});

test('codes from outside are checked against the catalogue; a family takes a status', () => {
  assert.equal(isErrorCode('DOORMAN_ERR_GUARDRAIL'), true);
  assert.equal(isErrorCode('DOORMAN_ERR_HTTP_502'), true);
  assert.equal(isErrorCode('DOORMAN_ERR_HTTP_'), false);
  assert.equal(isErrorCode('DOORMAN_ERR_HTTP_<status>'), false);
  assert.equal(isErrorCode('DOORMAN_ERR_NOPE'), false);
  assert.equal(isErrorCode('toString'), false);
  assert.equal(errorInfo('DOORMAN_ERR_HTTP_502').kind, 'cli');
  assert.equal(httpStatus('DOORMAN_ERR_GUARDRAIL'), 409);
  assert.equal(httpStatus('DOORMAN_ERR_LISTEN'), null);
});

test('an error carries its code, its class\'s name and the message it was given', () => {
  const e = new ProtocolError('DOORMAN_ERR_ATTR_NUL', 'NUL byte in attribute');
  assert.ok(e instanceof DoormanError && e instanceof Error);
  assert.deepEqual([e.code, e.name, e.message], ['DOORMAN_ERR_ATTR_NUL', 'ProtocolError', 'NUL byte in attribute']);
  const c = new ConfigError([{ file: 'x.yaml', key: 'a.b', value: 1, expected: 'a string' }]);
  assert.deepEqual([c.code, c.message], ['DOORMAN_ERR_CONFIG', 'x.yaml: a.b: got 1, expected a string']);
});
