import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig, type Config } from '../config/load.js';
import { AdminError, EXIT } from './admin-client.js';
import { listenUrl, resolveAdminTarget } from './admin-target.js';

const TOKEN = 'config-token-0123456789';

/** A loader that hands out `config` and counts its calls. */
function loader(admin: object, source = '/etc/doorman.yaml') {
  const calls: Array<string | undefined> = [];
  const config = parseConfig({ admin }, source);
  return { calls, load: (p: string | undefined): Config => (calls.push(p), config) };
}

test('listenUrl: host:port as a URL; wildcards reached on loopback; port 0 refused', () => {
  assert.equal(listenUrl('127.0.0.1:8025'), 'http://127.0.0.1:8025');
  assert.equal(listenUrl('[::1]:8025'), 'http://[::1]:8025');
  assert.equal(listenUrl('0.0.0.0:8025'), 'http://127.0.0.1:8025');
  assert.equal(listenUrl('[::]:8025'), 'http://[::1]:8025');
  assert.equal(listenUrl('localhost:8025'), 'http://localhost:8025');
  assert.throws(() => listenUrl('127.0.0.1:0', 'in /x.yaml'), (e: unknown) => e instanceof AdminError && e.exitCode === EXIT.usage && /127\.0\.0\.1:0 in \/x\.yaml, a port chosen at start: pass --url/.test(e.message));
});

test('the URL and token from the configuration', async () => {
  const l = loader({ listen: '127.0.0.1:9025', token: TOKEN });
  const t = await resolveAdminTarget({ config: '/etc/doorman.yaml' }, {}, l.load);
  assert.deepEqual(t, { url: 'http://127.0.0.1:9025', urlSource: 'admin.listen is 127.0.0.1:9025 in /etc/doorman.yaml', token: TOKEN, tokenSource: 'admin.token in /etc/doorman.yaml' });
  assert.deepEqual(l.calls, ['/etc/doorman.yaml']);
});

test('the token: --token, then $DOORMAN_TOKEN (when not empty), then the configuration', async () => {
  const l = loader({ listen: '127.0.0.1:9025', token: TOKEN });
  assert.deepEqual(Object.values(await resolveAdminTarget({ token: 'flag-token' }, { DOORMAN_TOKEN: 'env-token' }, l.load)).slice(2), ['flag-token', '--token']);
  assert.deepEqual(Object.values(await resolveAdminTarget({}, { DOORMAN_TOKEN: 'env-token' }, l.load)).slice(2), ['env-token', '$DOORMAN_TOKEN']);
  assert.deepEqual(Object.values(await resolveAdminTarget({}, { DOORMAN_TOKEN: '' }, l.load)).slice(2), [TOKEN, 'admin.token in /etc/doorman.yaml']);
});

test('admin.token_file: its first line; unreadable or empty is a usage error naming the file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-target-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'token');
  writeFileSync(file, `${TOKEN}\nignored\n`);
  const r = await resolveAdminTarget({}, {}, loader({ listen: '127.0.0.1:9025', token_file: file }).load);
  assert.deepEqual([r.token, r.tokenSource], [TOKEN, `admin.token_file ${file}`]);
  writeFileSync(file, '\n');
  await assert.rejects(resolveAdminTarget({}, {}, loader({ listen: '127.0.0.1:9025', token_file: file }).load), /is empty/);
  const missing = join(dir, 'missing');
  await assert.rejects(resolveAdminTarget({}, {}, loader({ listen: '127.0.0.1:9025', token_file: missing }).load), (e: unknown) => e instanceof AdminError && e.exitCode === EXIT.usage && e.message.includes(`cannot read admin.token_file ${missing} (ENOENT)`));
  // A token from elsewhere means the file is never read.
  assert.equal((await resolveAdminTarget({}, { DOORMAN_TOKEN: 'env-token' }, loader({ listen: '127.0.0.1:9025', token_file: missing }).load)).token, 'env-token');
});

test('--url alone reads no configuration and sends no configured token; with --config it does', async () => {
  const l = loader({ listen: '127.0.0.1:9025', token: TOKEN });
  const alone = await resolveAdminTarget({ url: 'http://10.0.0.1:8025' }, {}, l.load);
  assert.deepEqual(alone, { url: 'http://10.0.0.1:8025', urlSource: 'the URL was given with --url', token: null, tokenSource: null });
  assert.equal(l.calls.length, 0);
  const withConfig = await resolveAdminTarget({ url: 'http://10.0.0.1:8025', config: 'd.yaml' }, {}, l.load);
  assert.equal(withConfig.token, TOKEN);
});

test('admin API off, or the embedded defaults: said so', async () => {
  await assert.rejects(resolveAdminTarget({}, {}, loader({ listen: null }).load), (e: unknown) => e instanceof AdminError && e.exitCode === EXIT.usage && /the admin API is off \(admin\.listen is null in \/etc\/doorman\.yaml\)/.test(e.message));
  const d = await resolveAdminTarget({}, {}, loader({}, '(embedded defaults)').load);
  assert.deepEqual([d.url, d.urlSource], ['http://127.0.0.1:8025', 'admin.listen is 127.0.0.1:8025 (the default: no ./doorman.yaml here, no readable /etc/doorman/doorman.yaml and no --config)']);
});
