import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { BanList } from '../core/bans.js';
import { FirewallError } from '../errors.js';
import { NftSetWriter, parseSetListing, type NftSetOptions, type Timers } from './nft-set.js';

const OPTS: NftSetOptions = { names: { table: 'inet filter', v4: 'doorman_v4', v6: 'doorman_v6' }, command: ['nft'], batchDelayMs: 20, timeoutMs: 5000, source: '/etc/doorman/doorman.yaml' };
const listing = (type: string, flags: string[]) => JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6' } }, { set: { family: 'inet', name: 'x', table: 'filter', type, handle: 2, flags } }] });

/** Timers fired by hand: no test waits on a clock. */
function handTimers() {
  const due: Array<{ f: () => void; ms: number; h: number }> = [];
  let n = 0;
  const timers: Timers = {
    set: (f, ms) => {
      due.push({ f, ms, h: ++n });
      return n;
    },
    clear: (h) => {
      const i = due.findIndex((d) => d.h === h);
      if (i >= 0) due.splice(i, 1);
    },
  };
  const fire = (): number => {
    const d = due.shift();
    assert.ok(d, 'a timer is due');
    d.f();
    return d.ms;
  };
  return { timers, due, fire };
}

/** An nft that lists good sets and records, or fails, every script. */
function fakeNft() {
  const scripts: string[] = [];
  let fail: string | null = null;
  let hold: Promise<void> | null = null;
  const run = async (args: readonly string[], input: string): Promise<string> => {
    if (args.includes('list')) return listing(args.includes('doorman_v4') ? 'ipv4_addr' : 'ipv6_addr', ['interval', 'timeout']);
    scripts.push(input);
    if (hold !== null) await hold;
    if (fail !== null) throw new Error(fail);
    return '';
  };
  return {
    run,
    scripts,
    failWith: (m: string | null) => {
      fail = m;
    },
    holdUntil: (p: Promise<void> | null) => {
      hold = p;
    },
  };
}

async function open(bans = new BanList()) {
  const t = handTimers();
  const nft = fakeNft();
  const now = { t: 1_000_000 };
  const w = await NftSetWriter.open(OPTS, { bans, exceptions: () => [], clock: { now: () => now.t }, log: pino({ level: 'silent' }), run: nft.run, timers: t.timers });
  return { w, t, nft, bans, now };
}

test('open checks the sets and resyncs them at once', async () => {
  const bans = new BanList();
  bans.add('192.0.2.1', 60_000, 'r', 1_000_000);
  const { w, nft } = await open(bans);
  assert.equal(nft.scripts.length, 1);
  assert.match(nft.scripts[0] as string, /^flush set inet filter doorman_v4\nflush set inet filter doorman_v6\nadd element inet filter doorman_v4 \{ 192\.0\.2\.1 timeout 1m \}\n$/);
  assert.equal(w.status().state, 'in_sync');
  assert.equal(w.status().resyncs, 1);
});

test('changes are coalesced: one timer, one nft run for many bans', async () => {
  const { w, t, nft, bans } = await open();
  for (let i = 1; i <= 20; i++) bans.add(`198.51.100.${i}`, 60_000, 'r', 1_000_000, { origin: 'auto' });
  assert.equal(t.due.length, 1, 'one batch timer for twenty changes');
  assert.equal(t.fire(), OPTS.batchDelayMs);
  await w.idle();
  assert.equal(nft.scripts.length, 2);
  assert.equal((nft.scripts[1] as string).split('\n').filter(Boolean).length, 1, 'one add element line');
  assert.equal(w.status().syncs.ok, 2);
});

test('a ban never waits for nft: changes while nft runs make the next batch, after it', async () => {
  const { w, t, nft, bans } = await open();
  let release = (): void => undefined;
  nft.holdUntil(new Promise((r) => (release = r)));
  bans.add('192.0.2.1', 60_000, 'r', 1_000_000);
  t.fire();
  // nft is out; more bans come, synchronously, and no second run starts.
  bans.add('192.0.2.2', 60_000, 'r', 1_000_000);
  assert.equal(bans.get('192.0.2.2')?.target, '192.0.2.2');
  assert.equal(t.due.length, 0, 'no batch while one runs');
  assert.equal(w.status().state, 'pending');
  nft.holdUntil(null);
  release();
  await new Promise((r) => setImmediate(r));
  assert.equal(t.due.length, 1, 'the next batch is scheduled once the run is back');
  t.fire();
  await w.idle();
  assert.match(nft.scripts[2] as string, /192\.0\.2\.2/);
  assert.doesNotMatch(nft.scripts[2] as string, /192\.0\.2\.1 /);
});

test('a failure is counted, shown, and retried by a resync with a doubling backoff, never at once', async () => {
  const { w, t, nft, bans } = await open();
  nft.failWith('Error: Could not process rule: No such file or directory');
  bans.add('192.0.2.1', 60_000, 'r', 1_000_000);
  t.fire();
  await w.idle();
  let s = w.status();
  assert.equal(s.state, 'failing');
  assert.deepEqual(s.syncs, { ok: 1, error: 1 });
  assert.match(s.last_error?.message ?? '', /No such file/);
  assert.ok(s.next_retry !== null);
  // More changes while failing schedule nothing: the retry covers them.
  bans.add('192.0.2.2', 60_000, 'r', 1_000_000);
  assert.equal(t.due.length, 1);
  assert.equal(t.fire(), 1000);
  await w.idle();
  assert.equal(t.fire(), 2000);
  await w.idle();
  assert.equal(t.fire(), 4000);
  await w.idle();
  nft.failWith(null);
  assert.equal(t.fire(), 8000);
  await w.idle();
  s = w.status();
  assert.equal(s.state, 'in_sync');
  assert.equal(s.syncs.error, 4);
  assert.equal(t.due.length, 0, 'nothing more to do');
  const last = nft.scripts[nft.scripts.length - 1] as string;
  assert.match(last, /^flush set/, 'the retry is a full resync');
  // Neighbours ending together are one element.
  assert.match(last, /192\.0\.2\.1-192\.0\.2\.2 timeout 1m/);
});

test('the backoff stops doubling at 60 s', async () => {
  const { w, t, nft, bans } = await open();
  nft.failWith('boom');
  bans.add('192.0.2.1', 60_000, 'r', 1_000_000);
  t.fire();
  await w.idle();
  const waits: number[] = [];
  for (let i = 0; i < 8; i++) {
    waits.push(t.fire());
    await w.idle();
  }
  assert.deepEqual(waits, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
});

test('close stops following the bans and leaves nothing scheduled', async () => {
  const { w, t, nft, bans } = await open();
  bans.add('192.0.2.1', 60_000, 'r', 1_000_000);
  await w.close();
  assert.equal(t.due.length, 0);
  bans.add('192.0.2.2', 60_000, 'r', 1_000_000);
  assert.equal(t.due.length, 0);
  assert.equal(nft.scripts.length, 1);
});

test('the start check names the key of a set that is missing or made wrong', async () => {
  const base = { bans: new BanList(), exceptions: () => [], clock: { now: () => 0 }, log: pino({ level: 'silent' }), timers: handTimers().timers };
  const missing = async (args: readonly string[]): Promise<string> => {
    if (args.includes('doorman_v6')) throw new Error('nft -j -t list set inet filter doorman_v6 exited 1: Error: No such file or directory');
    return listing('ipv4_addr', ['interval', 'timeout']);
  };
  await assert.rejects(NftSetWriter.open(OPTS, { ...base, run: missing }), (e: FirewallError) => {
    assert.equal(e.code, 'DOORMAN_ERR_FIREWALL_SET');
    assert.match(e.message, /^\/etc\/doorman\/doorman\.yaml: firewall\.nft\.set_v6: the set inet filter doorman_v6 cannot be read .*nft add set inet filter doorman_v6 '\{ type ipv6_addr; flags interval, timeout; \}'/);
    return true;
  });
  const noInterval = async (): Promise<string> => listing('ipv4_addr', ['timeout']);
  await assert.rejects(NftSetWriter.open(OPTS, { ...base, run: noInterval }), /firewall\.nft\.set_v4: the set inet filter doorman_v4 has no flag interval; delete it and create it again/);
  const wrongType = async (): Promise<string> => listing('ipv6_addr', ['interval', 'timeout']);
  await assert.rejects(NftSetWriter.open(OPTS, { ...base, run: wrongType }), /firewall\.nft\.set_v4: .* has type ipv6_addr, not ipv4_addr/);
  const noNft = async (): Promise<string> => {
    throw new Error('cannot run nft: ENOENT');
  };
  await assert.rejects(NftSetWriter.open(OPTS, { ...base, run: noNft }), /firewall\.nft\.command: cannot run nft: ENOENT/);
});

test('refused by the kernel without CAP_NET_ADMIN, or kept from netlink, the start says what to give Doorman, naming firewall.nft', async () => {
  const base = { bans: new BanList(), exceptions: () => [], clock: { now: () => 0 }, log: pino({ level: 'silent' }), timers: handTimers().timers };
  // What nft 1.0.6 prints when the capability is missing (seen under setpriv without net_admin).
  const eperm = async (): Promise<string> => {
    throw new Error('nft -j -t list set inet filter doorman_v4 exited 1: Operation not permitted (you must be root) | netlink: Error: cache initialization failed: Operation not permitted');
  };
  await assert.rejects(NftSetWriter.open(OPTS, { ...base, run: eperm, netAdmin: () => false }), (e: FirewallError) => {
    assert.equal(e.code, 'DOORMAN_ERR_FIREWALL_SET');
    assert.match(e.message, /^\/etc\/doorman\/doorman\.yaml: firewall\.nft: nft may not read or write the sets: Doorman runs without CAP_NET_ADMIN \(.*Operation not permitted.*\); give it the capability \(the packaged unit: a drop-in, systemctl edit doorman: CapabilityBoundingSet=CAP_NET_ADMIN and RestrictAddressFamilies=AF_NETLINK; see the README, "Firewall sets"\)$/);
    return true;
  });
  // With the capability held, the kernel's refusal is about something else: the set's own message stays.
  await assert.rejects(NftSetWriter.open(OPTS, { ...base, run: eperm, netAdmin: () => true }), /firewall\.nft\.set_v4: the set inet filter doorman_v4 cannot be read/);
  await assert.rejects(NftSetWriter.open(OPTS, { ...base, run: eperm, netAdmin: () => null }), /firewall\.nft\.set_v4: the set inet filter doorman_v4 cannot be read/);
  // libnftables' words when socket(AF_NETLINK) is refused, as RestrictAddressFamilies= refuses it.
  const noNetlink = async (): Promise<string> => {
    throw new Error('nft -j -t list set inet filter doorman_v4 exited 1: mnl.c:67: Unable to initialize Netlink socket: Address family not supported by protocol');
  };
  await assert.rejects(NftSetWriter.open(OPTS, { ...base, run: noNetlink, netAdmin: () => true }), /\/etc\/doorman\/doorman\.yaml: firewall\.nft: nft cannot open a netlink socket \(.*\); allow AF_NETLINK \(the packaged unit: a drop-in, .*RestrictAddressFamilies=AF_NETLINK/);
});

test("nft's JSON listing is read strictly", () => {
  assert.deepEqual(parseSetListing(listing('ipv4_addr', ['interval', 'timeout'])), { type: 'ipv4_addr', flags: ['interval', 'timeout'] });
  assert.deepEqual(parseSetListing(listing('ipv4_addr', [])), { type: 'ipv4_addr', flags: [] });
  assert.equal(parseSetListing('not json'), null);
  assert.equal(parseSetListing('{"nftables": [{"metainfo": {}}]}'), null);
  assert.equal(parseSetListing('{"nftables": [{"set": {"type": 5}}]}'), null);
  assert.deepEqual(parseSetListing(JSON.stringify({ nftables: [{ set: { type: ['ipv4_addr', 'inet_service'], flags: ['interval'] } }] })), { type: 'ipv4_addr . inet_service', flags: ['interval'] });
});
