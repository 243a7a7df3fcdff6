import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DAEMON_NODE_FLAGS } from './node-flags.js';

const root = new URL('../../../', import.meta.url);

test('the shebang and npm start carry the daemon node flags', () => {
  const shebang = readFileSync(new URL('src/cli/main.ts', root), 'utf8').split('\n')[0] as string;
  const start = (JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as { scripts: Record<string, string> }).scripts.start as string;
  for (const flag of DAEMON_NODE_FLAGS) {
    assert.ok(shebang.startsWith('#!/usr/bin/env -S node ') && shebang.includes(flag), `shebang ${shebang} lacks ${flag}`);
    assert.ok(start.startsWith('node ') && start.includes(flag), `npm start "${start}" lacks ${flag}`);
  }
});
