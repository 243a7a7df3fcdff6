/**
 * firewall.nft as the packaged unit runs Doorman: root inside the unit's
 * capability bounding set, no new privileges, its UMask, then the drop to
 * run_as.user once the sockets are bound (setpriv and sh stand in for
 * systemd, which is not PID 1 here, as in deb-unit.test.ts). The daemon is
 * this checkout's build (dist/), started as the packaged /usr/bin/doorman
 * starts it (this node, the daemon's flags, dist/src/cli/main.js serve), in
 * a network namespace the test makes (test/helpers/nft-netns.ts), with the
 * plain `nft` command.
 *
 * With the README's drop-in (the unit's bounding set plus CAP_NET_ADMIN): a
 * ban made with `doorman ban` after the drop lands in the set, through the
 * root helper, and the banned address's connect inside the namespace is
 * dropped while another's is answered; the daemon holds no capability, the
 * helper is its root child, and it leaves with the daemon, whether stopped
 * or killed. Without the drop-in the start fails, naming firewall.nft and
 * CAP_NET_ADMIN. systemd-analyze shows that the drop-in adds to the unit's
 * bounding set and address families rather than replacing them.
 *
 * RestrictAddressFamilies= and the system-call filter cannot be reproduced
 * without systemd; the unit test of nft-set.ts covers the message for a
 * refused netlink socket.
 *
 * Needs root, nft, ip and setpriv (and systemd-analyze for its test):
 * skipped loudly without them.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { chown } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DAEMON_NODE_FLAGS } from '../../src/cli/node-flags.js';
import { resolveUid } from '../../src/listeners/unix-ids.js';
import { DOORMAN_MAIN, REPO_ROOT, startDoorman, type DoormanProcess } from '../helpers/daemon.js';
import { waitUntil } from '../helpers/guard.js';
import { Netns, netnsMissing, Prober } from '../helpers/nft-netns.js';
import { skipBanner } from '../helpers/skip.js';
import { boundingSet, setprivBounding, unitSettings } from '../helpers/systemd-unit.js';

const UNIT = join(REPO_ROOT, 'contrib', 'doorman.service');
const README = join(REPO_ROOT, 'README.md');
const SETPRIV = '/usr/bin/setpriv';
const ANALYZE = '/usr/bin/systemd-analyze';
/** An unprivileged user every Debian system has; the package's own doorman user may not exist here. */
const RUN_AS = 'nobody';
const NS = `doorman-nftu-${process.pid}`;
const BANNED = '192.0.2.66';
const OTHER = '192.0.2.77';

function missing(): string | undefined {
  const ns = netnsMissing();
  if (ns !== undefined) return ns;
  if (!existsSync(SETPRIV)) return `${SETPRIV} not found (Debian package util-linux)`;
  try {
    resolveUid(RUN_AS);
  } catch {
    return `no user ${RUN_AS}`;
  }
  return undefined;
}
const why = missing();
if (why !== undefined) skipBanner(`${why}: the nft helper under the unit's privileges (test/integration/firewall-run-as.test.ts) did not run`);

/** The drop-in README's "Firewall sets" tells the admin to add with systemctl edit. */
function readmeDropIn(): string {
  const text = readFileSync(README, 'utf8');
  const section = text.slice(text.indexOf('## Firewall sets'), text.indexOf('\n## ', text.indexOf('## Firewall sets') + 1));
  const m = /```ini\n([\s\S]*?)```/.exec(section);
  assert.ok(m, 'README, "Firewall sets": an ini block with the drop-in');
  return (m[1] as string).replace(/^ {2}/gm, '');
}

/** A process's uids, effective capabilities and parent, from /proc. */
function proc(pid: number): { uid: number; capEff: bigint; ppid: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => (new RegExp(`^${k}:\\s+(.+)$`, 'm').exec(s)?.[1] ?? '').trim();
  return { uid: Number(field('Uid').split(/\s+/)[0]), capEff: BigInt(`0x${field('CapEff')}`), ppid: Number(field('PPid')) };
}
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};
/** The capability mask of names (linux/capability.h numbers). */
const CAP_BITS: Record<string, number> = { CAP_CHOWN: 0, CAP_DAC_OVERRIDE: 1, CAP_SETGID: 6, CAP_SETUID: 7, CAP_NET_BIND_SERVICE: 10, CAP_NET_ADMIN: 12 };
const mask = (caps: readonly string[]) => caps.reduce((m, c) => m | (1n << BigInt(CAP_BITS[c] as number)), 0n);

describe('the nft helper under the packaged unit\'s privileges, in a network namespace', { skip: why ?? false }, () => {
  let dir = '';
  let ns: Netns;
  let probe: Prober;
  const cleanups: Array<() => unknown> = [];
  const unit = unitSettings(readFileSync(UNIT, 'utf8'));
  const umask = (unit.get('UMask') ?? ['0022'])[0] as string;
  const shipped = boundingSet(unit);
  const withDropIn = boundingSet(unit, unitSettings(readmeDropIn()));

  before(async () => {
    assert.equal(unit.get('NoNewPrivileges')?.[0], 'yes');
    assert.ok(!shipped.includes('CAP_NET_ADMIN'), 'the shipped unit keeps CAP_NET_ADMIN out');
    assert.deepEqual(withDropIn, [...shipped, 'CAP_NET_ADMIN'], "the README's drop-in adds CAP_NET_ADMIN and nothing else");
    dir = mkdtempSync(join(tmpdir(), 'doorman-nftu-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    ns = Netns.create(NS, [BANNED, OTHER], []);
    cleanups.push(() => ns.delete());
    probe = await Prober.start(NS, dir);
    cleanups.push(() => probe.stop());
  });

  after(async () => {
    for (const f of cleanups.reverse()) {
      try {
        await f();
      } catch {
        // The rest still goes.
      }
    }
  });

  /** Starts the daemon as the unit would, inside the namespace, with `caps` as its bounding set. */
  const start = async (name: string, caps: readonly string[]): Promise<DoormanProcess> => {
    // The state directory is root's at first, right under /tmp; dropPrivileges hands it to run_as.user.
    const state = mkdtempSync(join(tmpdir(), `doorman-nftu-${name}-`));
    cleanups.push(() => rmSync(state, { recursive: true, force: true }));
    await chown(state, 0, 0);
    const config = {
      log: { level: 'info', format: 'json' },
      anvil: { enabled: false },
      state: { file: join(state, 'state.json'), audit_log: join(state, 'audit.log') },
      admin: { listen: '127.0.0.1:0' },
      run_as: { user: RUN_AS },
      firewall: { nft: {} },
    };
    const d = await startDoorman(config, {
      command: (configPath) => [
        'ip', 'netns', 'exec', NS,
        SETPRIV, '--bounding-set', setprivBounding(caps), '--no-new-privs', '--',
        '/bin/sh', '-c', `umask ${umask} && exec "$@"`, 'sh',
        process.execPath, ...DAEMON_NODE_FLAGS, DOORMAN_MAIN, 'serve', '--config', configPath,
      ],
    });
    cleanups.push(() => d.stop('SIGKILL'));
    return d;
  };

  /** `doorman ARGS --url …` inside the namespace, as an admin would run it on the host. */
  const cli = (d: DoormanProcess, args: readonly string[]): string => {
    const port = d.logs().find((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('admin API'))?.['port'];
    assert.ok(typeof port === 'number', 'the admin port is logged');
    const r = spawnSync('ip', ['netns', 'exec', NS, process.execPath, DOORMAN_MAIN, ...args, '--url', `http://127.0.0.1:${port}`], { encoding: 'utf8' });
    assert.equal(r.status, 0, `doorman ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const inSet = () => ns.elements('doorman_v4').has(BANNED);

  test("with the README's drop-in: a ban made after the drop lands in the set through the root helper, and the banned address's connect is dropped", async () => {
    const d = await start('with', withDropIn);
    const dropped = await d.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('root given up'));
    assert.equal(dropped['user'], RUN_AS);
    const fw = await d.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('firewall: bans are written'));
    assert.equal(fw['nft'], 'helper');
    const pid = d.proc.pid as number;
    const helperPid = fw['helper_pid'] as number;
    const daemon = proc(pid);
    assert.equal(daemon.uid, resolveUid(RUN_AS), 'the daemon runs as run_as.user');
    assert.equal(daemon.capEff, 0n, 'and holds no capability');
    const helper = proc(helperPid);
    assert.equal(helper.ppid, pid, "the helper is the daemon's child");
    assert.equal(helper.uid, 0, 'it stayed root');
    assert.equal(helper.capEff, mask(withDropIn), "with the unit's bounding set and CAP_NET_ADMIN, no more");

    assert.equal(await probe.connect(BANNED), 'connected', 'before the ban');
    assert.match(cli(d, ['ban', BANNED, '--ttl', '1h', '--reason', 'after the drop']), new RegExp(BANNED.replace(/\./g, '\\.')));
    await waitUntil(`${BANNED} in the set`, inSet, 10_000);
    const timeout = ns.elements('doorman_v4').get(BANNED) as number;
    assert.ok(timeout > 3500 && timeout <= 3600, `the element's timeout is the ban's remaining time (${timeout} s)`);
    assert.equal(await probe.connect(BANNED), 'dropped');
    assert.equal(await probe.connect(OTHER), 'connected');

    cli(d, ['unban', BANNED]);
    await waitUntil(`${BANNED} out of the set`, () => !inSet(), 10_000);
    assert.equal(await probe.connect(BANNED), 'connected');
    assert.ok(!d.logs().some((l) => l['code'] === 'DOORMAN_ERR_FIREWALL_SYNC'), 'no nft run failed');

    assert.equal(await d.stop(), 0, `a clean exit on SIGTERM; output:\n${d.output()}`);
    await waitUntil('the helper gone with the daemon', () => !alive(helperPid), 5000);
  });

  test('a daemon killed outright takes its helper with it: the helper leaves when its input closes', async () => {
    const d = await start('killed', withDropIn);
    const fw = await d.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('firewall: bans are written'));
    const helperPid = fw['helper_pid'] as number;
    await d.waitForLog((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('root given up'));
    assert.ok(alive(helperPid));
    assert.equal(await d.stop('SIGKILL'), null);
    await waitUntil('the helper gone after the daemon was killed', () => !alive(helperPid), 5000);
  });

  test("with the unit's bounding set as shipped, the start fails naming firewall.nft and CAP_NET_ADMIN", async () => {
    const err = await start('without', shipped).then(
      () => null,
      (e: Error) => e,
    );
    assert.ok(err !== null, 'the daemon did not start');
    assert.match(err.message, /exited with code 1/);
    assert.match(err.message, /"code":"DOORMAN_ERR_FIREWALL_SET"/);
    assert.match(err.message, /firewall\.nft: nft may not read or write the sets: Doorman runs without CAP_NET_ADMIN \(.*Operation not permitted.*\); give it the capability \(the packaged unit: a drop-in, systemctl edit doorman: CapabilityBoundingSet=CAP_NET_ADMIN/);
    assert.doesNotMatch(err.message, /root given up/, 'it stopped before the drop');
  });
});

const noAnalyze = !existsSync(ANALYZE);
if (noAnalyze) skipBanner(`${ANALYZE} not found (Debian package systemd): the drop-in's merge was not checked`);

test("systemd adds the README's drop-in to the unit's bounding set and address families, rather than replacing them", { skip: noAnalyze ? 'no systemd-analyze' : false }, () => {
  const root = mkdtempSync(join(tmpdir(), 'doorman-dropin-'));
  try {
    const system = join(root, 'etc', 'systemd', 'system');
    mkdirSync(join(system, 'doorman.service.d'), { recursive: true });
    writeFileSync(join(system, 'doorman.service'), readFileSync(UNIT, 'utf8'));
    const analyze = () => {
      const r = spawnSync(ANALYZE, ['security', '--offline=yes', `--root=${root}`, '--json=short', 'doorman.service'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const items = JSON.parse(r.stdout) as Array<{ name: string; set: boolean }>;
      const restricted = (name: string) => {
        const i = items.find((x) => x.name === name);
        assert.ok(i, name);
        return i.set;
      };
      const text = spawnSync(ANALYZE, ['security', '--offline=yes', `--root=${root}`, 'doorman.service'], { encoding: 'utf8' });
      const level = Number(/Overall exposure level for doorman\.service: (\d+\.\d)/.exec(text.stdout + text.stderr)?.[1]);
      return { restricted, level };
    };
    const before = analyze();
    assert.equal(before.restricted('CapabilityBoundingSet=~CAP_NET_ADMIN'), true);
    assert.equal(before.restricted('RestrictAddressFamilies=~AF_NETLINK'), true);
    writeFileSync(join(system, 'doorman.service.d', 'override.conf'), readmeDropIn());
    const after = analyze();
    assert.equal(after.restricted('CapabilityBoundingSet=~CAP_NET_ADMIN'), false, 'CAP_NET_ADMIN is in the bounding set');
    assert.equal(after.restricted('CapabilityBoundingSet=~CAP_SET(UID|GID|PCAP)'), false, 'and the unit\'s own are still there (merged, not replaced)');
    assert.equal(after.restricted('CapabilityBoundingSet=~CAP_NET_(BIND_SERVICE|BROADCAST|RAW)'), false);
    assert.equal(after.restricted('CapabilityBoundingSet=~CAP_SYS_ADMIN'), true, 'nothing else came in');
    assert.equal(after.restricted('RestrictAddressFamilies=~AF_NETLINK'), false, 'netlink is allowed');
    assert.equal(after.restricted('RestrictAddressFamilies=~AF_UNIX'), false, 'and UNIX and IP still are (merged)');
    assert.equal(after.restricted('RestrictAddressFamilies=~AF_(INET|INET6)'), false);
    assert.equal(after.restricted('RestrictAddressFamilies=~AF_PACKET'), true, 'the rest stay refused');
    assert.equal(before.level, 2.4);
    assert.equal(after.level, 2.7, 'the exposure the README states');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
