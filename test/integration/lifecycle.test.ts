/**
 * One close stack for a start that fails half way and for stop(): what was
 * opened is closed, last first, and nothing is left bound or running.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ListenError } from '../../src/errors.js';
import { startDaemon } from '../../src/main.js';
import { memoryLogger } from '../helpers/log.js';
import { stateIn } from '../helpers/state.js';

function occupy(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

test('a start that fails at its last listener closes every part it opened, and the same configuration then starts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-lifecycle-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const taken = await occupy();
  t.after(() => taken.server.close());
  const socket = join(dir, 'anvil');
  const base = {
    anvil: { socket },
    postfix_policy: { listen: ['127.0.0.1:0'] },
    state: stateIn(dir),
    services: { imap: { limits: { connections_per_address: 3 }, proxy: { listen: ['127.0.0.1:0'], backend: '127.0.0.1:1', proxy_protocol: 'v2' } } },
  };
  const { log, lines } = memoryLogger('info');
  await assert.rejects(
    startDaemon(parseConfig({ ...base, admin: { listen: `127.0.0.1:${taken.port}` } }, 'taken.yaml'), log),
    (e: unknown) => e instanceof ListenError && new RegExp(`admin API on 127\\.0\\.0\\.1:${taken.port}`).test(e.message),
  );
  assert.equal(existsSync(socket), false, 'the anvil socket it made is removed');
  assert.deepEqual(lines.filter((l) => /could not close/.test(String(l['msg']))), [], 'every part closed cleanly');

  const d = await startDaemon(parseConfig({ ...base, admin: { listen: '127.0.0.1:0' } }, 'free.yaml'), memoryLogger().log);
  assert.ok(existsSync(socket));
  assert.equal(d.proxies.length, 1);
  await d.stop();
  await d.stop();
  assert.equal(existsSync(socket), false, 'stop() removes it too, once');
});
