import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

test('doorman check --offline: country from the bundled database and the decision of each phase, with --json', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-check-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, 'd.yaml');
  writeFileSync(cfg, 'services:\n  imap:\n    countries:\n      connect: { deny: [RU] }\n      auth: { allow: [DE] }\nexceptions: [198.51.100.0/24]\n');
  const run = (...args: string[]) => spawnSync(process.execPath, [CLI, 'check', ...args, '--service', 'imap', '--offline', '--config', cfg, '--json'], { encoding: 'utf8' });
  const ru = JSON.parse(run('77.88.8.8').stdout) as { country: string; phases: Record<string, { action: string; rule: string | null }> };
  assert.equal(ru.country, 'RU');
  assert.equal(ru.phases.connect?.action, 'refuse');
  assert.equal(ru.phases.connect?.rule, 'services.imap.countries.connect');
  const us = JSON.parse(run('8.8.8.8').stdout) as typeof ru;
  assert.equal(us.country, 'US');
  assert.equal(us.phases.connect?.action, 'allow');
  assert.equal(us.phases.auth?.rule, 'services.imap.countries.auth');
  const doc = JSON.parse(run('203.0.113.7').stdout) as typeof ru & { special: string };
  assert.equal(doc.country, null, 'the database would say AU; documentation addresses have no country');
  assert.equal(doc.special, 'documentation');
  assert.equal(doc.phases.auth?.action, 'allow');
  const bad = run('not-an-ip');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /is not an IP address/);
});
