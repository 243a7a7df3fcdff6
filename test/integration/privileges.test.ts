/**
 * Least privilege on a real daemon process (the test must run as root, as
 * CI does): with run_as the daemon binds as root, then runs as the user with
 * only its group, and still writes its state; as root without run_as it
 * refuses to run; and no secret from the configuration reaches the log.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { doorman, show } from '../helpers/cli.js';
import { startDoorman } from '../helpers/daemon.js';
import { skipBanner } from '../helpers/guard.js';

const root = typeof process.getuid === 'function' && process.getuid() === 0;
const NOBODY = 65534;

function ids(pid: number): { uid: string; gid: string; groups: string } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(status)?.[1]?.trim() ?? '';
  return { uid: field('Uid'), gid: field('Gid'), groups: field('Groups') };
}

if (!root) {
  skipBanner('privilege tests need root (CI runs as root)');
  test('privileges', { skip: 'not root' }, () => {});
} else {
  test('run_as: binds as root, then runs as nobody:nogroup and still writes its state', async () => {
    // The daemon's own temp dir is root's (0700): the state lives where the user can reach it, as /var/lib/doorman would be.
    const base = await mkdtemp(join(tmpdir(), 'doorman-priv-'));
    await chmod(base, 0o755);
    const stateDir = join(base, 'state');
    await assert.rejects(
      startDoorman({ run_as: { user: 'nobody', group: NOBODY } }),
      /state\.file: user 65534 cannot write .*\/run \(EACCES\)/,
      'a state directory the user cannot reach is refused at start',
    );
    const d = await startDoorman({ run_as: { user: 'nobody', group: NOBODY, allow_root: false }, state: { file: join(stateDir, 'state.json'), audit_log: join(stateDir, 'audit.log') } });
    try {
      await d.waitForLog((l) => l['msg'] === 'root given up: running as an unprivileged user');
      const pid = d.proc.pid as number;
      assert.deepEqual(ids(pid), { uid: `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`, gid: `${NOBODY}\t${NOBODY}\t${NOBODY}\t${NOBODY}`, groups: String(NOBODY) });
      const line = await d.waitForLog((l) => String(l['msg']).startsWith('admin API'));
      const url = /(http:\/\/\S+?)\/?$/.exec(String(line['msg']))?.[1] ?? '';
      const r = await fetch(`${url}/api/bans`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ target: '192.0.2.7', ttl: '1h', reason: 'privilege test' }) });
      assert.equal(r.status, 200, await r.text());
      const state = join(stateDir, 'state.json');
      assert.equal(statSync(state).uid, NOBODY, 'the state file was written by the unprivileged user');
      assert.match(readFileSync(state, 'utf8'), /192\.0\.2\.7/);
    } finally {
      await d.stop();
      await rm(base, { recursive: true, force: true });
    }
  });

  test('UNIX sockets get the owner, group and mode configured: anvil and the policy service', async (t) => {
    const base = await mkdtemp(join(tmpdir(), 'doorman-sock-'));
    t.after(() => rm(base, { recursive: true, force: true }));
    const anvil = join(base, 'anvil');
    const policy = join(base, 'policy');
    const d = await startDoorman({
      anvil: { enabled: true, socket: anvil, socket_mode: '0660', owner: 'nobody', group: NOBODY },
      postfix_policy: { listen: [policy], socket_mode: '0600', owner: NOBODY, group: 'nogroup' },
    });
    try {
      for (const [path, mode] of [[anvil, 0o660], [policy, 0o600]] as const) {
        const st = statSync(path);
        assert.ok(st.isSocket(), path);
        assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [NOBODY, NOBODY, mode], path);
      }
    } finally {
      await d.stop();
    }
  });

  test('as root without run_as.user the daemon refuses to run, naming the key', async () => {
    await assert.rejects(startDoorman({ run_as: { allow_root: false } }), /run_as\.user: started as root without a user to run as/);
  });

  test('config check refuses what serve refuses: root without run_as.user, an unknown user, run_as.user root; same words, exit 2', async (t) => {
    const base = await mkdtemp(join(tmpdir(), 'doorman-check-'));
    t.after(() => rm(base, { recursive: true, force: true }));
    const cases: [object, RegExp][] = [
      [{}, /run_as\.user: started as root without a user to run as/],
      [{ user: 'doorman-no-such-user-x' }, /run_as: .*doorman-no-such-user-x/],
      [{ user: 'root' }, /run_as\.user is root; name an unprivileged user/],
    ];
    for (const [i, [runAs, message]] of cases.entries()) {
      const file = join(base, `doorman-${i}.yaml`);
      await writeFile(file, stringify({ admin: { listen: null }, metrics: { listen: '127.0.0.1:0' }, run_as: runAs, state: { file: join(base, `s${i}.json`), audit_log: join(base, `a${i}.log`) } }));
      const check = await doorman(['config', 'check', '--config', file]);
      assert.equal(check.code, 2, show(check));
      assert.match(check.stderr, message, show(check));
      const serve = await doorman(['serve', '--config', file]);
      assert.notEqual(serve.code, 0, show(serve));
      // The very sentence config check printed is in serve's refusal.
      const sentence = check.stderr.split('\n')[1] ?? '';
      assert.ok(sentence.length > 0 && serve.stdout.replaceAll('\\"', '"').includes(sentence), `serve did not say ${JSON.stringify(sentence)}:\n${show(serve)}`);
    }
    const allowed = join(base, 'allowed.yaml');
    await writeFile(allowed, stringify({ run_as: { allow_root: true } }));
    const ok = await doorman(['config', 'check', '--config', allowed]);
    assert.equal(ok.code, 0, show(ok));
  });

  test('secrets in the configuration never reach the log', async () => {
    const secrets = { token: 'admin-token-3f9a1c2e7b', api_key: 'dovecot-key-8e2d4b6a', password: 'basic-pass-5c7e9a1b' };
    const d = await startDoorman({
      admin: { listen: '127.0.0.1:0', token: secrets.token },
      dovecot_policy: { listen: '127.0.0.1:0', api_key: secrets.api_key, basic: { user: 'dovecot', password: secrets.password } },
      log: { level: 'trace' },
    });
    try {
      const line = await d.waitForLog((l) => String(l['msg']).startsWith('admin API'));
      const url = /(http:\/\/\S+?)\/?$/.exec(String(line['msg']))?.[1] ?? '';
      // Wrong and right tokens, so auth paths log what they log.
      await fetch(`${url}/api/status`, { headers: { authorization: 'Bearer wrong-token-000000000' } });
      await fetch(`${url}/api/status`, { headers: { authorization: `Bearer ${secrets.token}` } });
      await fetch(`${url}/?token=${secrets.token}`);
      d.proc.kill('SIGHUP');
      await d.waitForLog((l) => l['msg'] === 'configuration reloaded');
      const out = d.output();
      for (const s of Object.values(secrets)) assert.ok(!out.includes(s), `"${s}" appears in the log:\n${out}`);
    } finally {
      await d.stop();
    }
  });
}
