/**
 * The nftables set writer against the real nft, in a network namespace this
 * test makes: its loopback interface holding the listener's and the clients'
 * addresses, the README's table and sets with a rule that drops what they
 * hold, and a listener and a connecting client inside, so no packet leaves
 * the namespace. Doorman runs in this process and writes the sets through
 * `ip netns exec NS nft` (firewall.nft.command). A banned address's TCP
 * connect goes unanswered; another address still connects; lifting the ban
 * lets it in again; networks, IPv6, IPv4-mapped forms, CrowdSec's layer, a
 * ban's end through the element's own timeout, and a failure's retry are
 * seen the same way, as connects.
 *
 * Needs root, nft and ip: skipped loudly without them. The namespace is
 * deleted after the tests, whether they pass or not.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { AdminClient } from '../helpers/admin-client.js';
import { memoryLogger } from '../helpers/log.js';
import { Netns, netnsMissing, Prober, RULESET } from '../helpers/nft-netns.js';
import { skipBanner } from '../helpers/skip.js';
import { isolated } from '../helpers/state.js';

const why = netnsMissing();
if (why !== undefined) skipBanner(`${why}: the nftables set tests (test/integration/firewall-nft.test.ts) did not run`);
const skip = why ?? false;

const NS = `doorman-nft-${process.pid}`;
const TOKEN = 'firewall-test-token-0123456789';
/** Client addresses, all on the namespace's loopback interface. */
const ADDRS4 = ['192.0.2.66', '192.0.2.77', '192.0.2.88', '192.0.2.99', '198.51.100.9', '198.51.100.10', '203.0.113.5'];
const ADDRS6 = ['2001:db8::66', '2001:db8::77', '2001:db8:1::9'];

describe('nftables sets in a network namespace', { skip }, () => {
  let dir = '';
  let d: Daemon;
  let api: AdminClient;
  let probe: Prober;
  let lines: Array<Record<string, unknown>>;
  let ns: Netns;
  const cleanups: Array<() => void> = [];
  const nft = (args: readonly string[], input?: string) => ns.nft(args, input);
  const elements = (set: string) => ns.elements(set);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'doorman-nft-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    ns = Netns.create(NS, ADDRS4, ADDRS6);
    // Registered at once: the namespace goes however the rest of the setup or the tests end.
    cleanups.push(() => ns.delete());
    probe = await Prober.start(NS, dir);
    cleanups.push(() => probe.stop());
    const base = isolated(dir);
    const config = parseConfig(
      {
        anvil: { enabled: false },
        ...base,
        admin: { ...base.admin, token: TOKEN },
        exceptions: ['203.0.113.0/28'],
        firewall: { nft: { command: ['ip', 'netns', 'exec', NS, 'nft'] } },
      },
      'firewall-test',
    );
    const ml = memoryLogger();
    lines = ml.lines;
    d = await startDaemon(config, ml.log);
    cleanups.push(() => void d.stop());
    api = new AdminClient(d.adminPort, TOKEN);
  });

  after(async () => {
    await d?.stop();
    for (const f of cleanups.reverse()) {
      try {
        f();
      } catch {
        // The rest still goes.
      }
    }
  });

  const fw = () => d.firewall as NonNullable<Daemon['firewall']>;
  const ban = async (target: string, ttl = '1h') => {
    const r = await api.call('POST', '/api/bans', { target, ttl, reason: 'firewall test' });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    await fw().idle();
  };
  const unban = async (target: string) => {
    assert.equal((await api.call('DELETE', `/api/bans?target=${encodeURIComponent(target)}`)).status, 200);
    await fw().idle();
  };

  test('before any ban every address connects', async () => {
    for (const a of ['192.0.2.66', '192.0.2.77', '2001:db8::66']) assert.equal(await probe.connect(a), 'connected', a);
    assert.equal(fw().status().state, 'in_sync');
  });

  test("an operator's ban drops the address at the firewall, another address still connects, and unban lets it in", async () => {
    await ban('192.0.2.66');
    assert.ok(elements('doorman_v4').has('192.0.2.66'));
    const timeout = elements('doorman_v4').get('192.0.2.66') as number;
    assert.ok(timeout > 3500 && timeout <= 3600, `the element's timeout is the ban's remaining time (${timeout} s)`);
    assert.equal(await probe.connect('192.0.2.66'), 'dropped');
    assert.equal(await probe.connect('192.0.2.77'), 'connected');
    await unban('192.0.2.66');
    assert.equal(elements('doorman_v4').size, 0);
    assert.equal(await probe.connect('192.0.2.66'), 'connected');
  });

  test('a network ban drops every address in it', async () => {
    await ban('198.51.100.0/24');
    assert.ok(elements('doorman_v4').has('198.51.100.0/24'));
    assert.equal(await probe.connect('198.51.100.9'), 'dropped');
    assert.equal(await probe.connect('192.0.2.77'), 'connected');
    await unban('198.51.100.0/24');
    assert.equal(await probe.connect('198.51.100.9'), 'connected');
  });

  test('IPv6: an address and a network in the IPv6 set; an IPv4-mapped ban in the IPv4 set', async () => {
    await ban('2001:db8::66');
    await ban('2001:db8:1::/48');
    await ban('::ffff:192.0.2.88');
    assert.deepEqual([...elements('doorman_v6').keys()].sort(), ['2001:db8:1::/48', '2001:db8::66']);
    assert.ok(elements('doorman_v4').has('192.0.2.88'));
    assert.equal(await probe.connect('2001:db8::66'), 'dropped');
    assert.equal(await probe.connect('2001:db8:1::9'), 'dropped');
    assert.equal(await probe.connect('192.0.2.88'), 'dropped');
    assert.equal(await probe.connect('2001:db8::77'), 'connected');
    for (const t of ['2001:db8::66', '2001:db8:1::/48', '192.0.2.88']) await unban(t);
    assert.equal(await probe.connect('2001:db8::66'), 'connected');
    assert.equal(await probe.connect('192.0.2.88'), 'connected');
  });

  test('an address banned longer inside a banned network: the set holds the network around it, and nft takes every change', async () => {
    d.gate.bans.add('198.51.100.0/24', 3_600_000, 'crowdsec: range', Date.now(), { origin: 'crowdsec' });
    await fw().idle();
    await ban('198.51.100.9', '2h');
    assert.equal(fw().status().state, 'in_sync', JSON.stringify(fw().status()));
    assert.deepEqual([...elements('doorman_v4').keys()], ['198.51.100.0-198.51.100.8', '198.51.100.9', '198.51.100.10-198.51.100.255']);
    assert.equal(await probe.connect('198.51.100.10'), 'dropped');
    assert.equal(await probe.connect('198.51.100.9'), 'dropped');
    // CrowdSec lifts the range: its pieces go, the operator's address stays.
    d.gate.bans.remove('198.51.100.0/24', 'crowdsec');
    await fw().idle();
    assert.deepEqual([...elements('doorman_v4').keys()], ['198.51.100.9']);
    assert.equal(await probe.connect('198.51.100.10'), 'connected');
    assert.equal(await probe.connect('198.51.100.9'), 'dropped');
    await unban('198.51.100.9');
    assert.equal(fw().status().syncs.error, 0, 'no nft run failed');
  });

  test('a network near its end is rewritten around an address banned inside it (the two-run removal), and nft takes it', async () => {
    d.gate.bans.add('198.51.100.0/24', 3000, 'crowdsec: short', Date.now(), { origin: 'crowdsec' });
    await fw().idle();
    await ban('198.51.100.9', '1h');
    assert.equal(fw().status().state, 'in_sync', JSON.stringify(fw().status()));
    assert.deepEqual([...elements('doorman_v4').keys()], ['198.51.100.0-198.51.100.8', '198.51.100.9', '198.51.100.10-198.51.100.255']);
    await sleep(3200);
    assert.deepEqual([...elements('doorman_v4').keys()], ['198.51.100.9'], "the kernel timed the network's pieces out");
    assert.equal(await probe.connect('198.51.100.10'), 'connected');
    assert.equal(await probe.connect('198.51.100.9'), 'dropped');
    await unban('198.51.100.9');
    assert.equal(fw().status().syncs.error, 0);
  });

  test('a set that does not exist stops the start, naming its key', async () => {
    const base = isolated(join(dir, 'second'));
    const config = parseConfig({ anvil: { enabled: false }, ...base, admin: { listen: null }, metrics: { listen: '127.0.0.1:0' }, firewall: { nft: { set_v6: 'nosuch', command: ['ip', 'netns', 'exec', NS, 'nft'] } } }, 'second-test');
    await assert.rejects(startDaemon(config, memoryLogger().log), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'DOORMAN_ERR_FIREWALL_SET');
      assert.match(e.message, /^second-test: firewall\.nft\.set_v6: the set inet filter nosuch cannot be read \(.*No such file or directory.*\); create it with: nft add set inet filter nosuch '\{ type ipv6_addr; flags interval, timeout; \}'/);
      return true;
    });
  });

  test("a ban ends through the element's own timeout, with no nft run from Doorman", async () => {
    await ban('192.0.2.99', '2s');
    assert.equal(await probe.connect('192.0.2.99'), 'dropped');
    const runs = fw().status().syncs.ok;
    await sleep(2200);
    assert.equal(elements('doorman_v4').size, 0, 'the kernel dropped the element');
    assert.equal(await probe.connect('192.0.2.99'), 'connected');
    assert.equal(fw().status().syncs.ok, runs, 'Doorman ran nothing at the end of the ban');
  });

  test("CrowdSec's layer is written too, and a clear of it resyncs the set", async () => {
    const now = Date.now();
    d.gate.bans.add('192.0.2.77', 3_600_000, 'crowdsec: ssh-bf', now, { origin: 'crowdsec' });
    await fw().idle();
    assert.equal(await probe.connect('192.0.2.77'), 'dropped');
    const resyncs = fw().status().resyncs;
    d.gate.bans.clear('crowdsec');
    d.gate.bans.add('192.0.2.66', 3_600_000, 'crowdsec: ssh-bf', now, { origin: 'crowdsec' });
    await fw().idle();
    assert.equal(fw().status().resyncs, resyncs + 1);
    assert.deepEqual([...elements('doorman_v4').keys()], ['192.0.2.66']);
    assert.equal(await probe.connect('192.0.2.77'), 'connected');
    assert.equal(await probe.connect('192.0.2.66'), 'dropped');
    d.gate.bans.clear('crowdsec');
    await fw().idle();
    assert.equal(await probe.connect('192.0.2.66'), 'connected');
  });

  test('a ban overlapping an exception network is never written, and the log says so', async () => {
    // The operator's guardrail refuses it; CrowdSec's layer is not checked by it, the set writer is.
    d.gate.bans.add('203.0.113.0/24', 3_600_000, 'crowdsec: wide', Date.now(), { origin: 'crowdsec' });
    await fw().idle();
    assert.equal(elements('doorman_v4').size, 0);
    assert.equal(await probe.connect('203.0.113.5'), 'connected');
    assert.ok(lines.some((l) => l.level === 40 && String(l.msg).includes('203.0.113.0/24 is not written to the nftables set: it overlaps the exception network 203.0.113.0/28')));
    d.gate.bans.clear('crowdsec');
    await fw().idle();
  });

  test('an nft failure is logged, counted and shown, and a resync after the backoff writes the bans again', async () => {
    // The admin's ruleset goes away under Doorman, and comes back.
    nft(['flush', 'ruleset']);
    await ban('192.0.2.66');
    let s = fw().status();
    assert.equal(s.state, 'failing');
    assert.match(s.last_error?.message ?? '', /No such file or directory/);
    const status = (await api.call('GET', '/api/status')).json as { firewall: { state: string; syncs: { error: number } } };
    assert.equal(status.firewall.state, 'failing');
    assert.ok(status.firewall.syncs.error >= 1);
    const metrics = String((await api.call('GET', '/metrics')).json);
    assert.match(metrics, /doorman_firewall_sync_total\{result="error"\} [1-9]/);
    assert.match(metrics, /doorman_firewall_in_sync 0/);
    assert.ok(lines.some((l) => l.code === 'DOORMAN_ERR_FIREWALL_SYNC'));
    nft(['-f', '-'], RULESET);
    // The retry waits 1 s, then 2 s, …: bounded here by a few of them.
    for (let i = 0; i < 60 && fw().status().state !== 'in_sync'; i++) await sleep(100);
    s = fw().status();
    assert.equal(s.state, 'in_sync', JSON.stringify(s));
    assert.ok(elements('doorman_v4').has('192.0.2.66'), 'the resync wrote the ban made while failing');
    assert.equal(await probe.connect('192.0.2.66'), 'dropped');
    await unban('192.0.2.66');
  });
});
