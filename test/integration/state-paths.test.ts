/**
 * A state path the daemon cannot prepare — a directory it cannot create, a
 * working directory that is gone — stops `doorman serve` at once with the
 * configuration key, the file and a non-zero exit. Node's recursive mkdir
 * used to spin a core forever on some of these (an ENOENT from a parent that
 * exists: /proc), after "doorman starting" and nothing else.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { DOORMAN_MAIN, startDoorman } from '../helpers/daemon.js';

/** A failure deadline, not a timing assertion: the refusal takes milliseconds; a spinning daemon never exits. */
const EXIT_DEADLINE_MS = 10_000;

/** startDoorman() rejects, the daemon having exited with code 1, saying `message`. */
async function refused(state: object, message: RegExp): Promise<void> {
  await assert.rejects(startDoorman({ state }, { readyTimeoutMs: EXIT_DEADLINE_MS }), (err: Error) => {
    assert.match(err.message, /doorman exited with code 1 before the awaited log line/, err.message);
    // The log is JSON: its quotes arrive escaped.
    assert.match(err.message.replaceAll('\\"', '"'), message);
    return true;
  });
}

test('state.file under a regular file: a configuration error naming the key and the file', async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'doorman-paths-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  await writeFile(join(base, 'plain'), '');
  const file = join(base, 'plain', 'sub', 'state.json');
  await refused({ file }, new RegExp(`doorman\\.yaml: state\\.file: got "${file}", expected a path whose directory Doorman can create for the state file: .*plain exists and is not a directory`));
});

test('state.audit_log whose directory cannot be created (under /proc): an error, not a spinning core', async () => {
  await refused({ audit_log: '/proc/doorman-test/audit.log' }, /doorman\.yaml: state\.audit_log: got "\/proc\/doorman-test\/audit\.log", expected a path whose directory Doorman can create for the audit log: cannot create \/proc\/doorman-test \(ENOENT\)/);
});

test('state.file that is a directory: the key and the reason', async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'doorman-paths-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  await refused({ file: base }, /doorman\.yaml: state\.file: got ".*", expected a readable and writable state file: EISDIR/);
});

test('the working directory removed before the state directory is made: a configuration error, exit 1', async (t) => {
  const base = await mkdtemp(join(tmpdir(), 'doorman-paths-'));
  t.after(() => rm(base, { recursive: true, force: true }));
  const config = join(base, 'doorman.yaml');
  const cwd = join(base, 'gone');
  // Relative state paths (the defaults, ./run/…) are taken from the working directory.
  await writeFile(config, stringify({ admin: { listen: null }, run_as: { allow_root: true } }));
  const { mkdir } = await import('node:fs/promises');
  await mkdir(cwd);
  // The shell enters the directory, removes it, then becomes the daemon: it starts in a directory that no longer exists.
  const child = spawn('/bin/sh', ['-c', 'cd "$1" && rmdir "$1" && shift && exec "$@"', 'sh', cwd, process.execPath, ...DAEMON_NODE_FLAGS, DOORMAN_MAIN, 'serve', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (out += c));
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c))),
    new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), EXIT_DEADLINE_MS))),
  ]);
  clearTimeout(timer);
  if (code === 'hung') child.kill('SIGKILL');
  assert.equal(code, 1, out);
  assert.match(out, /state\.file: got "\.\/run\/state\.json", expected a path Doorman can resolve: the working directory no longer exists/, out);
});
