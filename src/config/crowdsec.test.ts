import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadApiKey } from '../crowdsec/open.js';
import { ConfigError, DoormanError } from '../errors.js';
import { parseConfigText } from './load.js';
import { restartOnlyChanges } from './reload.js';

const FILE = '/etc/doorman/doorman.yaml';

function issues(text: string): string {
  try {
    parseConfigText(text, FILE);
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    return e.message;
  }
  assert.fail('expected a ConfigError');
}

test('crowdsec: off by default, with its defaults', () => {
  assert.deepEqual(parseConfigText('', 'x').crowdsec, {
    lapi_url: null,
    api_key: null,
    api_key_file: null,
    poll_interval: 10_000,
    request_timeout: 30_000,
    max_response_bytes: 64 * 1024 * 1024,
    origins: [],
    scenarios_containing: [],
    scenarios_not_containing: [],
    signals_log: null,
  });
});

test('crowdsec: each mistake names the key and what was expected', () => {
  assert.match(issues('crowdsec: { lapi_url: http://127.0.0.1:8080 }'), /crowdsec\.api_key_file: got null, expected a file holding the bouncer key/);
  assert.match(issues('crowdsec: { lapi_url: http://127.0.0.1:8080, api_key: 0123456789abcdef, api_key_file: /k }'), /crowdsec\.api_key_file: .*either crowdsec\.api_key or crowdsec\.api_key_file/);
  assert.match(issues('crowdsec: { lapi_url: 127.0.0.1:8080, api_key: 0123456789abcdef }'), /crowdsec\.lapi_url: got "127\.0\.0\.1:8080", expected an http:\/\/ or https:\/\/ URL/);
  assert.match(issues('crowdsec: { lapi_url: "http://u:p@127.0.0.1:8080", api_key: 0123456789abcdef }'), /crowdsec\.lapi_url: .*no user/);
  assert.match(issues('crowdsec: { poll_interval: 100ms }'), /crowdsec\.poll_interval: .*at least 1s/);
  assert.match(issues('crowdsec: { origins: ["crowdsec,cscli"] }'), /crowdsec\.origins\.0: .*without commas/);
  assert.match(issues('crowdsec: { max_response_bytes: 10 }'), /crowdsec\.max_response_bytes: .*an integer from 1024/);
});

test('crowdsec: a bouncer key that is wrong is named, never shown', () => {
  const m = issues('crowdsec: { lapi_url: http://127.0.0.1:8080, api_key: sh0rtSecret }');
  assert.match(m, /crowdsec\.api_key: got "\(a secret, not shown\)", expected a bouncer key of at least 16 characters/);
  assert.equal(m.includes('sh0rtSecret'), false);
});

test('crowdsec: the key file is read once, its first line; an empty or missing file is an error naming it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-cskey-'));
  try {
    const f = join(dir, 'key');
    writeFileSync(f, '0123456789abcdef0123\nsecond line\n');
    const c = parseConfigText(`crowdsec: { lapi_url: "http://127.0.0.1:8080", api_key_file: "${f}" }`, FILE).crowdsec;
    assert.equal(loadApiKey(c), '0123456789abcdef0123');
    writeFileSync(f, '\n');
    assert.throws(() => loadApiKey(c), (e: unknown) => e instanceof DoormanError && e.code === 'DOORMAN_ERR_CROWDSEC_KEY_FILE' && e.message.includes(f));
    rmSync(f);
    assert.throws(() => loadApiKey(c), /ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('crowdsec: a reload that changes it needs a restart', () => {
  const a = parseConfigText('', FILE);
  const b = parseConfigText('crowdsec: { signals_log: /tmp/x }', FILE);
  assert.deepEqual(restartOnlyChanges(a, b), ['crowdsec']);
});
