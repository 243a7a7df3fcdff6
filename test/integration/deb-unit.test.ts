/**
 * The installed Debian package's unit serves Postfix's private/anvil.
 *
 * Runs what systemd would run: the unit's own ExecStart, as root, inside the
 * unit's CapabilityBoundingSet, NoNewPrivileges and UMask (setpriv and sh
 * stand in for systemd, which is not PID 1 here), on the packaged
 * /etc/doorman/doorman.yaml with only the paths moved: the anvil socket into
 * a private Postfix's queue (whose private/ is the real drwx------ postfix),
 * the state into a temporary directory. Its run_as and the socket's owner,
 * group and mode are the package's. smtpd's 4th session must be refused on
 * Doorman's counts, and the daemon must run as doorman with no capability.
 *
 * Needs root, the host's Postfix (3.7) and the package installed
 * (`npm run deb`, then `apt-get install ./doorman_*.deb`; .ci/run does both):
 * it skips loudly otherwise. The Debian 13 Postfix is not used here: its
 * postfix user is the Debian 13 root's, not the host's that the packaged
 * owner names.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { resolveGid, resolveUid } from '../../src/listeners/unix-ids.js';
import { AnvilTestClient } from '../helpers/anvil-client.js';
import { startDoorman } from '../helpers/daemon.js';
import { postfixUnavailableReason, prepareQueueDir, startPostfix } from '../helpers/postfix.js';
import { skipBanner } from '../helpers/skip.js';
import { setprivBounding, unitSettings } from '../helpers/systemd-unit.js';
import { SmtpTestClient } from '../helpers/smtp.js';
import { until } from '../helpers/guard.js';

const UNIT = '/lib/systemd/system/doorman.service';
const PACKAGED_CONFIG = '/etc/doorman/doorman.yaml';
const SETPRIV = '/usr/bin/setpriv';
const HOSTNAME = 'doorman-test.localdomain';

function unavailable(): string | undefined {
  const postfix = postfixUnavailableReason('3.7');
  if (postfix !== undefined) return postfix;
  if (!existsSync(UNIT) || !existsSync('/usr/bin/doorman')) {
    return 'the doorman Debian package is not installed (npm run deb, then apt-get install ./doorman_*.deb; .ci/run does both)';
  }
  if (!existsSync(SETPRIV)) return `${SETPRIV} not found (Debian package util-linux)`;
  return undefined;
}

function one(settings: Map<string, string[]>, key: string): string {
  const v = settings.get(key);
  assert.ok(v !== undefined && v.length === 1, `${UNIT}: exactly one ${key}= expected, got ${JSON.stringify(v)}`);
  return v[0] as string;
}


const SKIP = unavailable();
if (SKIP !== undefined) skipBanner(`${SKIP}; the packaged unit's Postfix test did not run`);

test('the packaged unit, on the packaged configuration, serves a real private/anvil as doorman: smtpd refuses the 4th session', { skip: SKIP ?? false }, async (t) => {
  const cleanups: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  });

  const unit = unitSettings(readFileSync(UNIT, 'utf8'));
  const execStart = one(unit, 'ExecStart').split(/\s+/);
  assert.deepEqual(execStart, ['/usr/bin/doorman', 'serve', '--config', PACKAGED_CONFIG], 'the unit starts the packaged command on the packaged configuration');
  assert.equal(unit.get('User'), undefined, 'the unit starts as root and leaves the drop to run_as');
  const caps = one(unit, 'CapabilityBoundingSet').split(/\s+/);
  const umask = one(unit, 'UMask');
  assert.equal(one(unit, 'NoNewPrivileges'), 'yes');

  const packaged = parse(readFileSync(PACKAGED_CONFIG, 'utf8')) as Record<string, Record<string, unknown>>;
  const runAs = packaged['run_as'] as { user: string; group: string };
  const anvil = packaged['anvil'] as Record<string, unknown>;
  assert.equal(anvil['socket'], '/var/spool/postfix/private/anvil', 'Debian\'s queue_directory, where smtpd looks for anvil');
  assert.equal(runAs.user, 'doorman');

  const dirs = await prepareQueueDir('3.7');
  cleanups.push(() => dirs.remove());
  const dirMode = (await stat(dirs.privateDir)).mode & 0o777;
  assert.equal(dirMode, 0o700, 'private/ is drwx------ as Postfix makes it');
  assert.equal((await stat(dirs.privateDir)).uid, resolveUid('postfix'));

  // The state directory is Doorman's own (dropPrivileges hands it to run_as.user).
  const stateDir = await mkdtemp(join(tmpdir(), 'doorman-pkg-state-'));
  cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
  await chown(stateDir, 0, 0);

  const config = {
    ...packaged,
    log: { level: 'info', format: 'json' },
    anvil: { ...anvil, socket: dirs.anvilSocket },
    state: { file: join(stateDir, 'state.json'), audit_log: join(stateDir, 'audit.log') },
    admin: { listen: '127.0.0.1:0' },
  };
  const bounding = setprivBounding(caps);
  const doorman = await startDoorman(config, {
    command: (configPath) => [
      SETPRIV, '--bounding-set', bounding, '--no-new-privs', '--',
      '/bin/sh', '-c', `umask ${umask} && exec "$@"`, 'sh',
      ...execStart.map((a) => (a === PACKAGED_CONFIG ? configPath : a)),
    ],
  });
  cleanups.push(() => doorman.stop());

  const dropped = await doorman.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('root given up'));
  assert.equal(dropped['user'], 'doorman');
  const status = readFileSync(`/proc/${doorman.proc.pid}/status`, 'utf8');
  const uid = resolveUid('doorman');
  assert.match(status, new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'), 'runs as doorman, real, effective, saved and fs');
  assert.match(status, /^CapEff:\s+0+$/m, 'holds no capability');
  assert.match(status, /^CapPrm:\s+0+$/m, 'and cannot get one back');

  const sock = await stat(dirs.anvilSocket);
  assert.ok(sock.isSocket());
  assert.equal(sock.uid, resolveUid(anvil['owner'] as string));
  assert.equal(sock.gid, resolveGid(anvil['group'] as string));
  assert.equal(sock.mode & 0o777, parseInt(anvil['socket_mode'] as string, 8));

  const postfix = await startPostfix({ ownAnvil: false, mainCf: { smtpd_client_connection_count_limit: '3' }, dirs });
  cleanups.push(() => postfix.stop());
  const probe = await AnvilTestClient.open(dirs.anvilSocket);
  cleanups.push(() => probe.close());
  const ident = postfix.ident('127.0.0.1');
  const sessions: SmtpTestClient[] = [];
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
  });
  for (let i = 1; i <= 3; i++) {
    const s = await SmtpTestClient.open('127.0.0.1', postfix.port, undefined, '127.0.0.1');
    sessions.push(s);
    assert.equal(s.greeting.code, 220, `session ${i}: ${s.greeting.lines.join(' | ')}`);
  }
  await until(`Doorman's count for ${ident}`, () => probe.request('lookup', ident), (r) => r.count === 3);
  const fourth = await SmtpTestClient.open('127.0.0.1', postfix.port, undefined, '127.0.0.1');
  sessions.push(fourth);
  assert.equal(fourth.greeting.code, 421, `4th session: ${fourth.greeting.lines.join(' | ')}`);
  assert.equal(fourth.greeting.text, `4.7.0 ${HOSTNAME} Error: too many connections from 127.0.0.1`);

  for (const s of sessions.slice(0, 3)) assert.equal((await s.close())?.code, 221);
  await until('the count after every QUIT', () => probe.request('lookup', ident), (r) => r.count === 0);
  await probe.close();
  await postfix.stop();
  assert.equal(await doorman.stop(), 0, `a clean exit on SIGTERM; output:\n${doorman.output()}`);
});
