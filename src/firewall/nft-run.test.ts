/**
 * Where nft runs: in the daemon, or in the helper when the daemon is root
 * and will become run_as.user. The helper here is the real program, with a
 * shell script for nft (./nft-helper.test.ts has the protocol's details).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pino from 'pino';
import { BanList } from '../core/bans.js';
import { FirewallError } from '../errors.js';
import { holdsNetAdmin, openNft, useNftHelper, type NftOpenOptions } from './nft-run.js';
import { NftSetWriter } from './nft-set.js';

const dir = mkdtempSync(join(tmpdir(), 'doorman-nft-run-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const FAKE = join(dir, 'fake-nft.sh');
// Lists good sets; for a script, says which process ran it: the helper's pid is its parent's.
writeFileSync(
  FAKE,
  `input=$(cat)
case "$*" in
  *list*set*doorman_v4*) printf '{"nftables": [{"set": {"type": "ipv4_addr", "flags": ["interval", "timeout"]}}]}';;
  *list*set*doorman_v6*) printf '{"nftables": [{"set": {"type": "ipv6_addr", "flags": ["interval", "timeout"]}}]}';;
  *) printf 'ran by %s: %s' "$PPID" "$input";;
esac
`,
);
const names = { table: 'inet filter', v4: 'doorman_v4', v6: 'doorman_v6' };
const base: NftOpenOptions = { names, command: ['/bin/sh', FAKE], timeoutMs: 5000, source: '/etc/doorman/doorman.yaml', runAsUser: 'doorman', uid: 0, log: pino({ level: 'silent' }) };

test('the helper is used exactly when the daemon is root now and has run_as.user to become', () => {
  assert.equal(useNftHelper('doorman', 0), true);
  assert.equal(useNftHelper(110, 0), true, 'run_as.user given as a number');
  assert.equal(useNftHelper(null, 0), false, 'root kept (run_as.allow_root): nft runs in the daemon, which keeps its capabilities');
  assert.equal(useNftHelper('doorman', 1000), false, 'started as a user (systemd User= with the capability): nothing is dropped');
  assert.equal(useNftHelper('doorman', undefined), false, 'no uids (not POSIX)');
});

test('direct: nft runs in the daemon itself, and there is no helper to close', async () => {
  const nft = await openNft({ ...base, uid: 1000 });
  assert.equal(nft.via, 'direct');
  assert.equal(nft.helperPid, null);
  assert.equal(await nft.run(['-f', '-'], 'x\n'), `ran by ${process.pid}: x`);
  await nft.close();
});

test('through the helper: the set writer checks and fills the sets by it, and closing ends it', async () => {
  const nft = await openNft(base);
  assert.equal(nft.via, 'helper');
  assert.ok(nft.helperPid !== null && nft.helperPid !== process.pid);
  const bans = new BanList();
  bans.add('192.0.2.1', 60_000, 'r', 1_000_000);
  const scripts: string[] = [];
  const run = async (args: readonly string[], input: string) => {
    const out = await nft.run(args, input);
    if (input !== '') scripts.push(out);
    return out;
  };
  const w = await NftSetWriter.open(
    { names, command: base.command, batchDelayMs: 20, timeoutMs: 5000, source: base.source },
    { bans, exceptions: () => [], clock: { now: () => 1_000_000 }, log: base.log, run, timers: { set: () => 0, clear: () => undefined } },
  );
  assert.equal(w.status().state, 'in_sync');
  assert.deepEqual(scripts, [`ran by ${nft.helperPid}: flush set inet filter doorman_v4\nflush set inet filter doorman_v6\nadd element inet filter doorman_v4 { 192.0.2.1 timeout 1m }`]);
  await w.close();
  await nft.close();
  assert.throws(() => process.kill(nft.helperPid as number, 0), { code: 'ESRCH' }, 'the helper is gone');
});

test('a helper that cannot start stops the start with an error naming firewall.nft', async () => {
  await assert.rejects(openNft({ ...base, helperArgv: ['/nonexistent/node', 'nft-helper.js'] }), (e: FirewallError) => {
    assert.ok(e instanceof FirewallError);
    assert.equal(e.code, 'DOORMAN_ERR_FIREWALL_SET');
    assert.equal(e.message, '/etc/doorman/doorman.yaml: firewall.nft: the nft helper, which writes the sets once Doorman has become run_as.user (doorman), did not start: cannot run /nonexistent/node nft-helper.js: ENOENT');
    return true;
  });
});

test('CAP_NET_ADMIN is read from the effective set of /proc/PID/status', () => {
  const file = join(dir, 'status');
  const status = (eff: string) => writeFileSync(file, `Name:\tnode\nCapInh:\t0000000000000000\nCapPrm:\t${eff}\nCapEff:\t${eff}\nCapBnd:\t${eff}\n`);
  status('00000000000014c3'); // the unit's set (chown, dac_override, setgid, setuid, net_bind_service) plus net_admin
  assert.equal(holdsNetAdmin(file), true);
  status('00000000000004c3'); // the unit's set alone
  assert.equal(holdsNetAdmin(file), false);
  status('0000000000000000');
  assert.equal(holdsNetAdmin(file), false);
  assert.equal(holdsNetAdmin(join(dir, 'none')), null);
  assert.equal(typeof holdsNetAdmin(), process.platform === 'linux' ? 'boolean' : 'object');
});
