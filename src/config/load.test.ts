import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../errors.js';
import { clientConfigPath, loadConfig, parseConfigText } from './load.js';

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

test('country codes: assigned ISO 3166-1 alpha-2 codes (and XK), any case in, capitals kept; others refused, named', () => {
  const c = parseConfigText('services:\n  imap:\n    countries:\n      connect: { deny: [ru, Kp, XK] }\n', 't');
  assert.deepEqual(c.services['imap']?.countries.connect?.deny, ['RU', 'KP', 'XK']);
  const e = issues('services:\n  imap:\n    countries:\n      connect: { deny: [RU, XX] }\n      auth: { allow: [de, eu] }\n');
  assert.deepEqual(e.message.split('\n'), [
    '/etc/doorman/doorman.yaml: services.imap.countries.connect.deny.1: got "XX", expected an ISO 3166-1 alpha-2 country code (officially assigned, or XK for Kosovo) such as DE',
    '/etc/doorman/doorman.yaml: services.imap.countries.auth.allow.1: got "eu", expected an ISO 3166-1 alpha-2 country code (officially assigned, or XK for Kosovo) such as DE',
  ]);
});

test('a service proxy: defaults, and errors that name the key', () => {
  const c = parseConfigText('services:\n  imap:\n    proxy:\n      listen: ["0.0.0.0:143"]\n      backend: 127.0.0.1:10143\n      proxy_protocol: v2\n', 'x');
  const p = c.services.imap?.proxy;
  assert.equal(p?.max_connections, 10_000);
  assert.equal(p?.connect_timeout, 5_000);
  assert.equal(p?.idle_timeout, 35 * 60_000);
  assert.deepEqual(p?.accept_proxy_from, []);
  assert.equal(p?.texts.too_many, null);
  const bad = issues(
    'services:\n  imap:\n    proxy:\n      listen: ["0.0.0.0"]\n      backend: nowhere\n      accept_proxy_from: ["10.0.0.0/33"]\n      texts: { too_many: "two\\nlines" }\n',
  );
  const keys = bad.issues.map((i) => i.key).sort();
  assert.deepEqual(keys, ['services.imap.proxy.backend', 'services.imap.proxy.listen.0', 'services.imap.proxy.proxy_protocol', 'services.imap.proxy.texts.too_many']);
  assert.match(bad.message, /\/etc\/doorman\/doorman\.yaml/);
  const net = issues('services:\n  imap:\n    proxy: { listen: ["0.0.0.0:143"], backend: "127.0.0.1:1", proxy_protocol: none, accept_proxy_from: ["10.0.0.0/33"] }\n');
  assert.deepEqual(net.issues.map((i) => i.key), ['services.imap.proxy.accept_proxy_from.0']);
  const twice = issues(
    'services:\n  imap:\n    proxy: { listen: ["0.0.0.0:143"], backend: "127.0.0.1:1", proxy_protocol: none }\n  pop3:\n    proxy: { listen: ["0.0.0.0:143"], backend: "127.0.0.1:2", proxy_protocol: none }\n',
  );
  assert.deepEqual(twice.issues.map((i) => [i.key, i.expected]), [['services.pop3.proxy.listen.0', 'an address no other proxy listens on (services.imap.proxy.listen.0 has it)']]);
});

test('admin: loopback by default; beyond loopback only with a token', () => {
  assert.equal(parseConfigText('', 'x').admin.listen, '127.0.0.1:8025');
  assert.equal(parseConfigText('admin: { listen: "[::1]:9000" }', 'x').admin.listen, '[::1]:9000');
  const open = issues('admin: { listen: "0.0.0.0:8025" }\n');
  assert.deepEqual(open.issues.map((i) => i.key), ['admin.listen']);
  assert.match(open.message, /unless admin\.token or admin\.token_file is set/);
  assert.equal(parseConfigText('admin: { listen: "0.0.0.0:8025", token: "0123456789abcdef0123" }', 'x').admin.token, '0123456789abcdef0123');
  assert.deepEqual(issues('admin: { token: "short" }').issues.map((i) => i.key), ['admin.token']);
});

test('metrics: off its own listener by default; any host:port without a token; not an address another listener has', () => {
  assert.equal(parseConfigText('', 'x').metrics.listen, null);
  assert.equal(parseConfigText('metrics: { listen: "0.0.0.0:9525" }', 'x').metrics.listen, '0.0.0.0:9525', 'Prometheus sends no token: no token is asked for');
  assert.equal(parseConfigText('metrics: { listen: "[::1]:9525" }', 'x').metrics.listen, '[::1]:9525');
  const bad = issues('metrics: { listen: 9525 }\n');
  assert.deepEqual(bad.issues.map((i) => [i.key, i.expected]), [['metrics.listen', 'host:port such as 127.0.0.1:9525, or null']]);
  assert.match(bad.message, /\/etc\/doorman\/doorman\.yaml/);
  assert.deepEqual(issues('metrics: { port: 9525 }\n').issues.map((i) => [i.key, i.expected]), [['metrics.port', 'no such key; known keys here: listen']]);
  const clash = issues('metrics: { listen: "127.0.0.1:8025" }\n');
  assert.deepEqual(clash.issues.map((i) => [i.key, i.expected]), [['metrics.listen', 'an address of its own (admin.listen has it)']]);
  const dovecot = issues('admin: { listen: null }\nmetrics: { listen: "127.0.0.1:8026" }\ndovecot_policy: { listen: "127.0.0.1:8026", api_key: "0123456789" }\n');
  assert.deepEqual(dovecot.issues.map((i) => i.key), ['metrics.listen']);
  assert.equal(parseConfigText('admin: { listen: "127.0.0.1:0" }\nmetrics: { listen: "127.0.0.1:0" }', 'x').metrics.listen, '127.0.0.1:0', 'port 0 is a port each');
});

test('YAML tags that make sets, dates or binary are refused, naming the key, not read as empty mappings', () => {
  assert.throws(() => parseConfigText('engine: !!set {a}', 'x.yaml'), /x\.yaml: engine: got "a YAML set", expected a plain mapping/);
  assert.throws(() => parseConfigText('log: {level: !!timestamp 2001-12-14}', 'x.yaml'), /x\.yaml: log\.level: got "a YAML timestamp"/);
});

test('commands other than serve fall back to the package\'s configuration file when this user may read it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'doorman-packaged-'));
  try {
    const packaged = join(dir, 'doorman.yaml');
    assert.equal(clientConfigPath(undefined, packaged), undefined, 'none there: the embedded defaults');
    await writeFile(packaged, 'admin: { listen: 127.0.0.1:9999 }\n');
    assert.equal(clientConfigPath(undefined, packaged), packaged);
    assert.equal(clientConfigPath('given.yaml', packaged), 'given.yaml', '--config wins');
    if (process.getuid?.() !== 0) {
      await chmod(packaged, 0o000);
      assert.equal(clientConfigPath(undefined, packaged), undefined, 'unreadable: the embedded defaults');
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
