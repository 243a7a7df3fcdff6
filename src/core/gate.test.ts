import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryLogger } from '../../test/helpers/log.js';
import { serviceSchema } from '../config/rules-schema.js';
import { MemoryStore } from '../store/memory.js';
import { BanList } from './bans.js';
import { FakeClock } from './clock.js';
import { Engine } from './engine.js';
import { Gatekeeper } from './gate.js';
import { slidingWindow } from './rate.js';
import { Rules } from './rules.js';

function gate(services: Record<string, unknown>) {
  const clock = new FakeClock();
  const rate = slidingWindow(60_000);
  const engine = new Engine(new MemoryStore({ rate, maxEntries: 1000 }), clock, memoryLogger().log, { rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  const rules = Rules.compile({ services: Object.fromEntries(Object.entries(services).map(([k, v]) => [k, serviceSchema.parse(v)])), exceptions: [], overrides: [] }, 't');
  const countries: Record<string, string> = { '8.8.8.8': 'US', '77.88.8.8': 'RU' };
  return { clock, g: new Gatekeeper(engine, rules, new BanList(), { country: (ip) => countries[ip] ?? null }, clock, 60_000) };
}

const sync = <T>(v: T | Promise<T>): T => {
  assert.ok(!(v instanceof Promise), 'the memory store answers synchronously');
  return v as T;
};

test('an AUTH-failure ban lasts auth_failure_ban, then lifts', () => {
  const { clock, g } = gate({ imap: { limits: { auth_failure_rate: 2 }, auth_failure_ban: '5m' } });
  for (const h of ['a1', 'a2']) assert.equal(sync(g.authFailed('imap', '8.8.8.8', 'alice', h)), null);
  const ban = sync(g.authFailed('imap', '8.8.8.8', 'alice', 'a3'));
  assert.equal(ban?.reason, '3 AUTH failures in 60s, over the limit of 2');
  assert.equal(sync(g.authAttempt('imap', '8.8.8.8')).refusal?.rule, 'bans');
  clock.advance(4 * 60_000);
  assert.equal(sync(g.authAttempt('imap', '8.8.8.8')).refusal?.retryAfterSec, 60);
  clock.advance(60_001);
  assert.equal(sync(g.authAttempt('imap', '8.8.8.8')).action, 'allow', 'ban over, and the failure rate has decayed');
});

test('the same wrong password counts once per window, again after it', () => {
  const { clock, g } = gate({ imap: { limits: { auth_failure_rate: 1 } } });
  for (let i = 0; i < 5; i++) assert.equal(sync(g.authFailed('imap', '8.8.8.8', 'bob', 'same')), null);
  clock.advance(3 * 60_000);
  assert.equal(sync(g.authFailed('imap', '8.8.8.8', 'bob', 'same')), null, 'once more after the window: 1 failure, not over 1');
  assert.notEqual(sync(g.authFailed('imap', '8.8.8.8', 'bob', 'other')), null, 'a second distinct password within the window is');
});

test('recipient rate slides: refused at the limit, allowed again as the window passes', () => {
  const { clock, g } = gate({ smtp: { limits: { recipient_rate: 3 } } });
  for (let i = 0; i < 3; i++) assert.equal(sync(g.event('smtp', '8.8.8.8', 'rcpt')).action, 'allow');
  assert.equal(sync(g.event('smtp', '8.8.8.8', 'rcpt')).action, 'refuse');
  clock.advance(60_000 + 45_000);
  assert.equal(sync(g.event('smtp', '8.8.8.8', 'rcpt')).action, 'allow', 'a quarter of the old window still counts: floor(4 * 0.25) + 1 = 2');
});

test('countries per login are remembered for the window only', () => {
  const { clock, g } = gate({ imap: { max_countries_per_login: { countries: 1, window: '1h', action: 'refuse' } } });
  assert.equal(sync(g.authSucceeded('imap', '8.8.8.8', 'carol')).action, 'allow');
  assert.equal(sync(g.authSucceeded('imap', '77.88.8.8', 'carol')).action, 'refuse');
  clock.advance(3_600_000);
  assert.equal(sync(g.authSucceeded('imap', '77.88.8.8', 'carol')).action, 'allow', 'the US login is an hour old');
});
