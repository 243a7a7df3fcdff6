/**
 * The systemd unit in contrib/ is one systemd accepts, and its hardening is
 * what the README's SECURITY section claims: `systemd-analyze verify` finds
 * nothing, and `systemd-analyze security --offline` rates its exposure low.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/daemon.js';
import { run, skipBanner } from '../helpers/guard.js';

const ANALYZE = '/usr/bin/systemd-analyze';
const UNIT = join(REPO_ROOT, 'contrib', 'doorman.service');

if (!existsSync(ANALYZE)) {
  skipBanner(`${ANALYZE} not found (Debian package systemd)`);
  test('systemd unit', { skip: 'no systemd-analyze' }, () => {});
} else {
  test('contrib/doorman.service: systemd-analyze verify is silent; exposure is rated 2.0 or lower', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'doorman-unit-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const copy = join(dir, 'doorman.service');
    await copyFile(UNIT, copy);
    const verify = await run(ANALYZE, ['verify', copy], 30_000);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.equal((verify.stdout + verify.stderr).trim(), '', 'no warnings');
    const security = await run(ANALYZE, ['security', '--offline=yes', copy], 30_000);
    const m = /Overall exposure level for doorman\.service: (\d+\.\d)/.exec(security.stdout + security.stderr);
    assert.ok(m, security.stdout + security.stderr);
    assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]}`);
  });
}
