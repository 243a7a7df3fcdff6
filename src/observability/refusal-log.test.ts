import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../core/clock.js';
import type { Ban } from '../core/bans.js';
import type { Refusal } from '../core/decision.js';
import { DoorEventBus, type RefusalEvent } from '../core/events.js';
import { decisionRecorder } from './decisions.js';
import { MAX_ADDRESSES, PER_ADDRESS, RefusalLog } from './refusal-log.js';
import { memoryLogger } from '../../test/helpers/log.js';

const MIN = 60_000;

function limit(count: number, rule = 'services.imap.limits.connections_per_address'): Refusal {
  return { temporary: true, cause: 'connections_per_address', rule, reason: `${count} connections, over the limit of 2`, retryAfterSec: 60, limit: 2, count, key: '192.0.2.1' };
}

function event(address: string, refusal: Refusal, by = 'proxy', service = 'imap'): RefusalEvent {
  return { service, address, country: null, rule: refusal.rule, reason: refusal.reason, by, refusal };
}

test('refusal log: newest first; a run of like refusals folds into one record with the latest counts', () => {
  const clock = new FakeClock();
  const log = new RefusalLog(clock);
  log.record(event('192.0.2.1', limit(3)));
  clock.advance(1000);
  log.record(event('192.0.2.1', limit(4)));
  clock.advance(1000);
  const country: Refusal = { temporary: false, cause: 'country', rule: 'services.imap.countries.connect', reason: 'country RU …', retryAfterSec: 0 };
  log.record(event('192.0.2.1', country));
  clock.advance(1000);
  // The same rule from another front-end is another record: the front-end is part of the answer.
  log.record(event('192.0.2.1', country, 'dovecot'));
  const r = log.recent('192.0.2.1');
  assert.deepEqual(
    r.map((x) => [x.by, x.refusal.rule, x.times]),
    [
      ['dovecot', 'services.imap.countries.connect', 1],
      ['proxy', 'services.imap.countries.connect', 1],
      ['proxy', 'services.imap.limits.connections_per_address', 2],
    ],
  );
  const run = r[2];
  assert.equal(run?.refusal.count, 4, 'the latest counts of the run');
  assert.equal((run?.last ?? 0) - (run?.first ?? 0), 1000, 'first and last refusal of the run');
  assert.deepEqual(log.recent('192.0.2.2'), [], 'an address never refused has nothing');
});

test('refusal log: at most PER_ADDRESS different refusals per address, the oldest going first', () => {
  const clock = new FakeClock();
  const log = new RefusalLog(clock, { perAddress: 3 });
  for (let i = 0; i < 5; i++) {
    log.record(event('192.0.2.1', limit(3, `rule${i}`)));
    clock.advance(10);
  }
  assert.deepEqual(log.recent('192.0.2.1').map((x) => x.refusal.rule), ['rule4', 'rule3', 'rule2']);
  assert.equal(PER_ADDRESS, 8, 'the README states the default');
});

test('refusal log: at most maxAddresses addresses; past it the stalest tenth goes, an address refused again stays', () => {
  const clock = new FakeClock();
  const log = new RefusalLog(clock, { maxAddresses: 100 });
  for (let i = 0; i < 100; i++) log.record(event(`10.0.0.${i}`, limit(3)));
  // 10.0.0.0 is refused again: it is now the freshest, not the stalest.
  log.record(event('10.0.0.0', limit(5)));
  log.record(event('10.0.1.0', limit(3)));
  assert.ok(log.size <= 100, `bounded: ${log.size}`);
  assert.equal(log.size, 90, 'a tenth went at once, so eviction is not paid on every refusal');
  assert.equal(log.recent('10.0.0.0')[0]?.refusal.count, 5, 'refused again: kept');
  assert.deepEqual(log.recent('10.0.0.1'), [], 'the stalest went');
  assert.deepEqual(log.recent('10.0.0.11'), [], 'eleven went: 10.0.0.1 to 10.0.0.11');
  assert.equal(log.recent('10.0.0.12').length, 1, 'the fresher ones stay');
  // A flood from ten times as many addresses never holds more than the cap.
  for (let i = 0; i < 1000; i++) log.record(event(`10.1.${i >> 8}.${i & 255}`, limit(3)));
  assert.ok(log.size <= 100, `bounded under a flood: ${log.size}`);
  assert.equal(log.recent('10.1.3.231').length, 1, 'the latest of the flood is there');
  assert.equal(MAX_ADDRESSES, 4096, 'the README states the default');
});

test('refusal log: records older than maxAgeMs are not shown, and a refusal after that starts a new record', () => {
  const clock = new FakeClock();
  const log = new RefusalLog(clock, { maxAgeMs: 60 * MIN });
  log.record(event('192.0.2.1', limit(3)));
  clock.advance(61 * MIN);
  assert.deepEqual(log.recent('192.0.2.1'), []);
  log.record(event('192.0.2.1', limit(7)));
  const r = log.recent('192.0.2.1');
  assert.equal(r.length, 1);
  assert.equal(r[0]?.times, 1, 'not folded into the stale record');
});

test('refusal log, fed by the decision recorder: refusals are recorded, allowed decisions emit nothing at all', () => {
  const clock = new FakeClock();
  const bus = new DoorEventBus();
  const log = new RefusalLog(clock);
  let events = 0;
  bus.on('refusal', log.onRefusal);
  bus.on('refusal', () => events++);
  const { log: logger } = memoryLogger();
  const record = decisionRecorder(logger, bus, { by: 'policy', refused: 'refused', dryRun: 'dry-run' });
  record({ action: 'allow', refusal: null, dryRun: [], exempt: null, country: null }, 'smtp', '192.0.2.7', {});
  assert.equal(events, 0, 'an allowed decision makes no event');
  assert.equal(log.size, 0);
  const r = limit(3);
  record({ action: 'refuse', refusal: r, dryRun: [], exempt: null, country: 'DE' }, 'smtp', '192.0.2.7', {});
  const got = log.recent('192.0.2.7');
  assert.equal(got.length, 1);
  assert.equal(got[0]?.by, 'policy');
  assert.equal(got[0]?.service, 'smtp');
  assert.equal(got[0]?.country, 'DE');
  assert.equal(got[0]?.refusal, r, 'the refusal itself, not a copy');
});

test('refusal log: a ban refusal folds into the last only for the same ban; another ban (another layer, a new strike) is a new record', () => {
  const clock = new FakeClock();
  const log = new RefusalLog(clock);
  const now = clock.now();
  const local: Ban = { target: '192.0.2.1', until: now + 600_000, reason: 'r', createdAt: now, origin: 'operator', strike: 1 };
  const ban = (b: Ban): Refusal => ({ temporary: true, cause: 'ban', rule: 'bans', reason: 'banned', retryAfterSec: 600, key: b.target, ban: b });
  log.record(event('192.0.2.1', ban(local)));
  // The same ban, re-added as a new object (a fleet's state applied again): the same record.
  log.record(event('192.0.2.1', ban({ ...local, createdAt: now + 5 })));
  log.record(event('192.0.2.1', ban({ ...local, target: '192.0.2.0/24', origin: 'crowdsec' })));
  log.record(event('192.0.2.1', ban({ ...local, until: now + 7_200_000, strike: 2 })));
  assert.deepEqual(
    log.recent('192.0.2.1').map((r) => [r.refusal.ban?.origin, r.refusal.ban?.strike, r.times]),
    [
      ['operator', 2, 1],
      ['crowdsec', 1, 1],
      ['operator', 1, 2],
    ],
  );
});
