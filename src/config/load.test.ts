import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../errors.js';
import { loadConfig, parseConfigText } from './load.js';

function issues(text: string) {
  try {
    parseConfigText(text, '/etc/doorman/doorman.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.code, 'DOORMAN_ERR_CONFIG');
    return e;
  }
  assert.fail('expected a ConfigError');
}

test('an empty file gives the embedded defaults, frozen', () => {
  const c = parseConfigText('', 'x.yaml');
  assert.equal(c.engine.rate_time_unit, 60_000);
  assert.equal(c.engine.status_update_time, 600_000);
  assert.equal(c.engine.max_entries, 1_000_000);
  assert.equal(c.engine.rate_algorithm, 'sliding-window');
  assert.equal(c.anvil.socket, './run/anvil');
  assert.equal(c.anvil.socket_mode, '0666');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.anvil));
  assert.throws(() => {
    (c.anvil as { socket: string }).socket = '/tmp/x';
  }, TypeError);
});

test('durations accept units and plain seconds', () => {
  const c = parseConfigText('engine:\n  rate_time_unit: 2m\n  status_update_time: 30\nanvil:\n  request_timeout: 250ms\n', 'x');
  assert.equal(c.engine.rate_time_unit, 120_000);
  assert.equal(c.engine.status_update_time, 30_000);
  assert.equal(c.anvil.request_timeout, 250);
});

test('every error names the file, the key, the value and what was expected', () => {
  const e = issues('engine:\n  rate_time_unit: soon\n  max_entries: 0\nanvil:\n  socket_mode: 666\n  sockett: /x\nlog:\n  format: xml\n');
  const lines = e.message.split('\n');
  assert.equal(lines.length, 5, e.message);
  for (const l of lines) assert.match(l, /^\/etc\/doorman\/doorman\.yaml: \S+: got .+, expected .+/);
  assert.ok(lines.some((l) => l.includes('engine.rate_time_unit: got "soon", expected a duration')));
  assert.ok(lines.some((l) => l.includes('engine.max_entries: got 0, expected an integer from 1 to')));
  assert.ok(lines.some((l) => l.includes('anvil.socket_mode: got 666, expected a quoted octal mode')));
  assert.ok(lines.some((l) => l.includes('anvil.sockett: got "/x", expected no such key; known keys here: enabled, socket,')));
  assert.ok(lines.some((l) => l.includes('log.format: got "xml", expected one of: auto, json, pretty')));
  assert.deepEqual(
    e.issues.map((i) => i.key).sort(),
    ['anvil.socket_mode', 'anvil.sockett', 'engine.max_entries', 'engine.rate_time_unit', 'log.format'],
  );
});

test('YAML syntax errors and wrong shapes are config errors with a position', () => {
  assert.match(issues('engine: {\n').message, /doorman\.yaml:\d+:\d+: .*expected valid YAML/);
  assert.match(issues('- a\n').message, /expected a mapping of sections/);
  assert.match(issues('engine: 5\n').message, /engine: got 5, expected a mapping of engine settings/);
  assert.match(issues('engine:\n  max_entries: 1\nengine:\n  max_entries: 2\n').message, /valid YAML/);
});

test('loadConfig: a named file must exist; its path is the source', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-cfg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  assert.throws(() => loadConfig(join(dir, 'missing.yaml')), /missing\.yaml: \(top level\): got \(missing\), expected a readable YAML file \(ENOENT\)/);
  const f = join(dir, 'd.yaml');
  writeFileSync(f, 'anvil:\n  enabled: false\n');
  const c = loadConfig(f);
  assert.equal(c.source, f);
  assert.equal(c.anvil.enabled, false);
});

test('doorman.example.yaml lists exactly the defaults', async () => {
  const { fileURLToPath } = await import('node:url');
  const example = fileURLToPath(new URL('../../../doorman.example.yaml', import.meta.url));
  const { source: _a, ...fromFile } = loadConfig(example);
  const { source: _b, ...defaults } = parseConfigText('', 'x');
  assert.deepEqual(fromFile, defaults);
});
