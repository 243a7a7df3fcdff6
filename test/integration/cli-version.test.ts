import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { doorman, show } from '../helpers/cli.js';
import { REPO_ROOT } from '../helpers/daemon.js';

const VERSION = (JSON.parse(readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as { version: string }).version;

for (const flag of ['--version', '-V']) {
  test(`doorman ${flag} prints package.json's version, nothing else, and exits 0`, async () => {
    const r = await doorman([flag]);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, `${VERSION}\n`, show(r));
    assert.equal(r.stderr, '', show(r));
  });
}
