import assert from 'node:assert/strict';
import { test } from 'node:test';
import { configCodec } from '../../test/fuzz/config.js';
import { runCodec } from '../../test/fuzz/harness.js';
import { ConfigError } from '../errors.js';
import { parseConfig, parseConfigText } from './load.js';

// The same properties `npm run fuzz` runs a million times (test/fuzz/config.ts).
test('fuzz: any text or object gives a Config or a ConfigError naming the file', async () => {
  await runCodec(configCodec, { numRuns: 400 });
});

const FILE = '/etc/doorman/doorman.yaml';

function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
    assert.ok(e.message.startsWith(FILE), e.message);
    return e;
  }
  assert.fail('expected a ConfigError');
}

test('regression (found by fuzzing): YAML that fails only when built into data is a ConfigError, not yaml\'s own Error', () => {
  // An alias before its anchor: a ReferenceError from yaml's toJS.
  assert.match(configError(() => parseConfigText('engine: *nowhere\n', FILE)).message, /expected valid YAML \(Unresolved alias/);
  // YAML 1.1 merge keys of a scalar: a plain Error.
  assert.match(configError(() => parseConfigText('%YAML 1.1\n---\nengine:\n  <<: 5\n', FILE)).message, /expected valid YAML \(Merge sources/);
  // An alias bomb: yaml's ReferenceError, not a config.
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...['b', 'c', 'd'].map((k, i) => `${k}: &${k} [${Array(10).fill(`*${'abc'[i]}`).join(', ')}]`)].join('\n');
  assert.match(configError(() => parseConfigText(bomb, FILE)).message, /expected valid YAML \(Excessive alias count/);
});

test('regression (found by fuzzing): a value that contains itself is a ConfigError, not a TypeError from JSON.stringify', () => {
  const e = configError(() => parseConfigText('engine: &a\n  x: *a\n', FILE));
  assert.deepEqual(e.issues.map((i) => i.key), ['engine.x']);
  assert.match(e.message, /expected a value that does not contain itself/);
  const o: Record<string, unknown> = { services: {} };
  (o['services'] as Record<string, unknown>)['imap'] = o;
  assert.deepEqual(configError(() => parseConfig(o, FILE)).issues.map((i) => i.key), ['services.imap']);
});
