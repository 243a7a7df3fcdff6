import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from './node-flags.js';

const root = new URL('../../../', import.meta.url);

test('the shebang and npm start carry the daemon node flags and environment', () => {
  const shebang = readFileSync(new URL('src/cli/main.ts', root), 'utf8').split('\n')[0] as string;
  const start = (JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> }).scripts.start as string;
  for (const flag of DAEMON_NODE_FLAGS) {
    assert.ok(shebang.startsWith('#!/usr/bin/env -S ') && shebang.includes(` node ${flag}`), `shebang ${shebang} lacks ${flag}`);
    assert.ok(start.includes(`node ${flag}`), `npm start "${start}" lacks ${flag}`);
  }
  const env = Object.entries(DAEMON_ENV).map(([k, v]) => `${k}=${v}`).join(' ');
  assert.ok(shebang.startsWith(`#!/usr/bin/env -S ${env} node `), `shebang ${shebang} lacks ${env}`);
  assert.ok(start.startsWith(`${env} node `), `npm start "${start}" lacks ${env}`);
});

test('the Debian package\'s /usr/bin/doorman carries them too', () => {
  const wrapper = readFileSync(new URL('packaging/doorman.sh', root), 'utf8');
  const exec = wrapper.split('\n').find((l) => l.startsWith('exec ')) ?? '';
  for (const flag of DAEMON_NODE_FLAGS) assert.ok(exec.includes(`/bin/node" ${flag} `), `packaging/doorman.sh: "${exec}" lacks ${flag}`);
  for (const [k, v] of Object.entries(DAEMON_ENV)) {
    assert.ok(wrapper.includes(`${k}=\${${k}:-${v}}`) && wrapper.includes(`export ${k}`), `packaging/doorman.sh does not set ${k}=${v}`);
  }
});
