import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../errors.js';
import { parseConfigText } from './load.js';
import { restartOnlyChanges } from './reload.js';

const FILE = '/etc/doorman/doorman.yaml';

function issues(text: string): ConfigError {
  try {
    parseConfigText(text, FILE);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e;
  }
  assert.fail('expected a ConfigError');
}

test('haproxy_spoe: off by default, with its defaults', () => {
  const s = parseConfigText('', 'x').haproxy_spoe;
  assert.deepEqual(s, {
    listen: [],
    message: 'doorman-client',
    hostname: null,
    max_clients: 1000,
    request_timeout: 10_000,
    idle_timeout: 600_000,
    decision_timeout: 500,
    max_frame_size: 16380,
    max_in_flight: 256,
  });
  const on = parseConfigText('haproxy_spoe: { listen: ["127.0.0.1:12345", "[::1]:12345"], message: doorman.v1, hostname: mx.example.org }\n', 'x').haproxy_spoe;
  assert.deepEqual([on.listen, on.message, on.hostname], [['127.0.0.1:12345', '[::1]:12345'], 'doorman.v1', 'mx.example.org']);
});

test('haproxy_spoe: every bad key is named with the file and what was expected', () => {
  const e = issues(
    'haproxy_spoe:\n  listen: ["12345"]\n  message: "two words"\n  max_frame_size: 100\n  max_in_flight: 0\n  idle_timeout: soon\n  var_prefix: doorman\n',
  );
  const byKey = Object.fromEntries(e.issues.map((i) => [i.key, i.expected]));
  assert.deepEqual(Object.keys(byKey).sort(), [
    'haproxy_spoe.idle_timeout',
    'haproxy_spoe.listen.0',
    'haproxy_spoe.max_frame_size',
    'haproxy_spoe.max_in_flight',
    'haproxy_spoe.message',
    'haproxy_spoe.var_prefix',
  ]);
  assert.equal(byKey['haproxy_spoe.max_frame_size'], 'an integer from 256 to 65532');
  assert.match(byKey['haproxy_spoe.listen.0'] ?? '', /host:port/);
  assert.match(byKey['haproxy_spoe.var_prefix'] ?? '', /^no such key; known keys here: listen, message, hostname/);
  assert.ok(e.message.split('\n').every((l) => l.startsWith(`${FILE}: haproxy_spoe.`)), e.message);
  assert.match(issues('haproxy_spoe: 5\n').message, /haproxy_spoe: got 5, expected a mapping of haproxy_spoe settings/);
});

test('haproxy_spoe needs a restart to change', () => {
  const a = parseConfigText('', 'x');
  const b = parseConfigText('haproxy_spoe: { listen: ["127.0.0.1:12345"] }\n', 'x');
  assert.deepEqual(restartOnlyChanges(a, b), ['haproxy_spoe']);
  assert.deepEqual(restartOnlyChanges(b, parseConfigText('haproxy_spoe: { listen: ["127.0.0.1:12345"] }\n', 'x')), []);
});
