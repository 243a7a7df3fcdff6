/**
 * The systemd unit in contrib/ (the one the Debian package installs) is one
 * systemd accepts, and its hardening is what the README's Security section
 * claims: `systemd-analyze verify` finds nothing, and `systemd-analyze
 * security --offline` rates its exposure 2.4. It was 1.6 while the unit
 * started as the doorman user; starting as root (to make Postfix's
 * private/anvil, see the unit) costs the User= item and the CAP_SETUID,
 * CAP_CHOWN and CAP_DAC_OVERRIDE items, and PrivateMounts= and UMask=0077
 * won part of it back. deb-unit.test.ts checks the drop to doorman.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../helpers/daemon.js';
import { run, skipBanner } from '../helpers/guard.js';

const ANALYZE = '/usr/bin/systemd-analyze';
const UNIT = join(REPO_ROOT, 'contrib', 'doorman.service');
const INSTALLED = '/usr/bin/doorman';

if (!existsSync(ANALYZE)) {
  skipBanner(`${ANALYZE} not found (Debian package systemd)`);
  test('systemd unit', { skip: 'no systemd-analyze' }, () => {});
} else {
  test('contrib/doorman.service: systemd-analyze verify is silent; exposure is rated 2.4 or lower', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'doorman-unit-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const copy = join(dir, 'doorman.service');
    // verify checks that ExecStart's program exists: where the package is not
    // installed, /usr/bin/doorman is the checkout's packaging/doorman.sh, the
    // file the package installs there.
    const text = await readFile(UNIT, 'utf8');
    await writeFile(copy, existsSync(INSTALLED) ? text : text.replace(`ExecStart=${INSTALLED} `, `ExecStart=${join(REPO_ROOT, 'packaging', 'doorman.sh')} `));
    const verify = await run(ANALYZE, ['verify', copy], 30_000);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.equal((verify.stdout + verify.stderr).trim(), '', 'no warnings');
    const security = await run(ANALYZE, ['security', '--offline=yes', copy], 30_000);
    const m = /Overall exposure level for doorman\.service: (\d+\.\d)/.exec(security.stdout + security.stderr);
    assert.ok(m, security.stdout + security.stderr);
    assert.ok(Number(m[1]) <= 2.4, `exposure ${m[1]}`);
  });
}
