import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BanList } from '../core/bans.js';
import { parseNetwork, type Network } from '../core/networks.js';
import { SetPlan, type Batch, type SetNames } from './set-plan.js';

const NAMES = { table: 'inet filter', v4: 'doorman_v4', v6: 'doorman_v6' };
const T0 = 1_000_000;

function setup(exceptions: Network[] = [], names: SetNames = NAMES) {
  const bans = new BanList();
  const plan = new SetPlan(names, () => exceptions);
  bans.onChange((c) => plan.change(c));
  /** The next batch, settled as `ok`. */
  const step = (now = T0, ok = true): Batch | null => {
    const b = plan.next(now, () => bans.list(now));
    plan.settle(ok);
    return b;
  };
  return { bans, plan, step };
}

const lines = (b: Batch | null) => (b?.script ?? '').trim().split('\n').filter((l) => l !== '');

test('the first batch is a resync: both sets flushed, every ban in force added, in one script', () => {
  const { bans, step } = setup();
  bans.add('192.0.2.1', 60_000, 'r', T0);
  bans.add('2001:db8::/32', 3_600_000, 'r', T0, { origin: 'crowdsec' });
  bans.add('::ffff:198.51.100.7', 1500, 'r', T0, { origin: 'auto' });
  const b = step(T0 + 500);
  assert.equal(b?.resync, true);
  assert.deepEqual(lines(b), [
    'flush set inet filter doorman_v4',
    'flush set inet filter doorman_v6',
    'add element inet filter doorman_v4 { 192.0.2.1 timeout 59s500ms, 198.51.100.7 timeout 1s }',
    'add element inet filter doorman_v6 { 2001:db8::/32 timeout 59m59s500ms }',
  ]);
  assert.equal(step(T0 + 600), null, 'nothing more to do');
});

test('changes after a resync are written as a difference: an add, then an unban', () => {
  const { bans, step } = setup();
  step();
  bans.add('192.0.2.1', 60_000, 'r', T0);
  bans.add('2001:db8::5', 60_000, 'r', T0);
  assert.deepEqual(lines(step()), ['add element inet filter doorman_v4 { 192.0.2.1 timeout 1m }', 'add element inet filter doorman_v6 { 2001:db8::5 timeout 1m }']);
  bans.remove('192.0.2.1');
  const b = step(T0 + 1000);
  assert.deepEqual(lines(b), ['delete element inet filter doorman_v4 { 192.0.2.1 }']);
  assert.equal(b?.pre, '', 'far from its end: a plain delete is safe');
});

test('a longer ban on the same target replaces the element with the new timeout', () => {
  const { bans, step } = setup();
  step();
  bans.add('192.0.2.1', 60_000, 'r', T0);
  step();
  bans.add('192.0.2.1', 120_000, 'r', T0 + 10_000, { origin: 'auto', strike: 2 });
  assert.deepEqual(lines(step(T0 + 10_000)), ['delete element inet filter doorman_v4 { 192.0.2.1 }', 'add element inet filter doorman_v4 { 192.0.2.1 timeout 2m }']);
});

test('an address banned inside a banned network: the network is rewritten around it, and back', () => {
  const { bans, step } = setup();
  step();
  bans.add('10.0.0.0/8', 60_000, 'r', T0, { origin: 'crowdsec' });
  assert.deepEqual(lines(step()), ['add element inet filter doorman_v4 { 10.0.0.0/8 timeout 1m }']);
  bans.add('10.1.2.3', 120_000, 'r', T0);
  assert.deepEqual(lines(step()), [
    'delete element inet filter doorman_v4 { 10.0.0.0/8 }',
    'add element inet filter doorman_v4 { 10.0.0.0-10.1.2.2 timeout 1m, 10.1.2.3 timeout 2m, 10.1.2.4-10.255.255.255 timeout 1m }',
  ]);
  bans.remove('10.1.2.3');
  const back = lines(step());
  assert.equal(back.filter((l) => l.startsWith('delete')).length, 3);
  assert.equal(back[back.length - 1], 'add element inet filter doorman_v4 { 10.0.0.0/8 timeout 1m }');
  // The network lifted: everything of it goes.
  bans.remove('10.0.0.0/8', 'crowdsec');
  assert.deepEqual(lines(step()), ['delete element inet filter doorman_v4 { 10.0.0.0/8 }']);
});

test('a network banned over written addresses takes them in', () => {
  const { bans, step } = setup();
  step();
  bans.add('10.1.2.3', 60_000, 'r', T0);
  step();
  bans.add('10.1.0.0/16', 120_000, 'r', T0);
  assert.deepEqual(lines(step()), ['delete element inet filter doorman_v4 { 10.1.2.3 }', 'add element inet filter doorman_v4 { 10.1.0.0/16 timeout 2m }']);
});

test('changes are batched: many changes before a batch are one script, and cancelling ones write nothing', () => {
  const { bans, step } = setup();
  step();
  for (let i = 1; i <= 50; i++) bans.add(`192.0.2.${i}`, 60_000, 'r', T0, { origin: 'auto' });
  const b = step();
  assert.equal(lines(b).length, 1);
  assert.equal(b?.added, 50);
  bans.add('198.51.100.1', 60_000, 'r', T0);
  bans.remove('198.51.100.1');
  const none = step();
  assert.equal(none?.script, '', 'an add and its removal in one batch: nothing to write');
});

test('a clear asks for a resync, which flushes and writes the list now in force', () => {
  const { bans, step } = setup();
  bans.add('192.0.2.1', 60_000, 'r', T0, { origin: 'crowdsec' });
  bans.add('192.0.2.2', 60_000, 'r', T0);
  step();
  bans.clear('crowdsec');
  bans.add('203.0.113.9', 60_000, 'r', T0, { origin: 'crowdsec' });
  const b = step();
  assert.equal(b?.resync, true);
  assert.deepEqual(lines(b), ['flush set inet filter doorman_v4', 'flush set inet filter doorman_v6', 'add element inet filter doorman_v4 { 192.0.2.2 timeout 1m, 203.0.113.9 timeout 1m }']);
});

test('a failed batch makes the next one a resync, and nothing it held counts as written', () => {
  const { bans, plan, step } = setup();
  step();
  bans.add('192.0.2.1', 60_000, 'r', T0);
  step(T0, false);
  assert.equal(plan.dirty, true);
  const b = step(T0 + 1000);
  assert.equal(b?.resync, true);
  assert.match(b?.script ?? '', /192\.0\.2\.1 timeout 59s/);
});

test('guardrail: loopback and exception networks are never written, and each is reported once', () => {
  const { bans, step } = setup([parseNetwork('192.0.2.0/24'), parseNetwork('2001:db8:1::/48')]);
  bans.add('127.0.0.1', 60_000, 'r', T0);
  bans.add('::1', 60_000, 'r', T0);
  bans.add('::ffff:127.0.0.2', 60_000, 'r', T0, { origin: 'crowdsec' });
  bans.add('192.0.0.0/16', 60_000, 'r', T0, { origin: 'crowdsec' });
  bans.add('2001:db8::/32', 60_000, 'r', T0);
  bans.add('198.51.100.1', 60_000, 'r', T0);
  const b = step();
  assert.deepEqual(lines(b).filter((l) => l.startsWith('add')), ['add element inet filter doorman_v4 { 198.51.100.1 timeout 1m }']);
  assert.deepEqual(
    b?.withheld.map((w) => `${w.target}: ${w.why}`),
    ['127.0.0.1: it covers loopback', '::1: it covers loopback', '127.0.0.2: it covers loopback', '192.0.0.0/16: it overlaps the exception network 192.0.2.0/24', '2001:db8::/32: it overlaps the exception network 2001:db8:1::/48'],
  );
  bans.add('10.9.9.9', 60_000, 'r', T0);
  assert.deepEqual(step()?.withheld, [], 'told once');
});

test('a family without a set is not written', () => {
  const { bans, step } = setup([], { ...NAMES, v6: null });
  bans.add('2001:db8::1', 60_000, 'r', T0);
  bans.add('192.0.2.1', 60_000, 'r', T0);
  assert.deepEqual(lines(step()), ['flush set inet filter doorman_v4', 'add element inet filter doorman_v4 { 192.0.2.1 timeout 1m }']);
  bans.add('2001:db8::2', 60_000, 'r', T0);
  assert.equal(step(), null);
});

test('an element that may be timing out is removed in a run of its own, by an add and a delete that cannot fail', () => {
  const { bans, step } = setup();
  step();
  bans.add('10.0.0.0/8', 10_000, 'r', T0);
  step();
  // Later, when the kernel may or may not have timed it out yet (its timeout began when nft ran): an address inside is banned.
  bans.add('10.1.2.3', 60_000, 'r', T0 + 20_000);
  const b = step(T0 + 20_000);
  assert.deepEqual(lines({ script: b?.pre ?? '' } as Batch), ['add element inet filter doorman_v4 { 10.0.0.0/8 timeout 1s }', 'delete element inet filter doorman_v4 { 10.0.0.0/8 }']);
  // nft 1.0.6 refuses that pair and an overlapping add in one transaction: the add is in the next run.
  assert.deepEqual(lines(b), ['add element inet filter doorman_v4 { 10.1.2.3 timeout 1m }']);
});

test('an element long past its end is forgotten, with no delete', () => {
  const { bans, step } = setup();
  step();
  bans.add('10.0.0.0/8', 10_000, 'r', T0);
  step();
  bans.add('10.1.2.3', 60_000, 'r', T0 + 60_000);
  const b = step(T0 + 60_000);
  assert.equal(b?.pre, '');
  assert.deepEqual(lines(b), ['add element inet filter doorman_v4 { 10.1.2.3 timeout 1m }']);
});

test('the plan refuses a second batch before the first is settled', () => {
  const { plan, bans } = setup();
  assert.ok(plan.next(T0, () => bans.list(T0)));
  assert.throws(() => plan.next(T0, () => bans.list(T0)));
});
