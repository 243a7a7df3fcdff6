import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { memoryLogger } from '../../test/helpers/log.js';
import { serviceSchema } from '../config/rules-schema.js';
import { BanList } from '../core/bans.js';
import { FakeClock } from '../core/clock.js';
import type { Refusal } from '../core/decision.js';
import { Gatekeeper } from '../core/gate.js';
import { Rules } from '../core/rules.js';
import { ControlInputError } from '../errors.js';
import type { FleetAnswers, FleetBus } from '../fleet/bus.js';
import { RefusalLog } from '../observability/refusal-log.js';
import { MemoryStore } from '../store/memory.js';
import { slidingWindow } from '../store/rate.js';
import { WhyDesk, type NodeWhy } from './why.js';

function parts(t: TestContext) {
  const clock = new FakeClock();
  const rules = Rules.compile({ services: { imap: serviceSchema.parse({ limits: { connections_per_address: 1 } }) }, exceptions: [], overrides: [] }, 't');
  const store = new MemoryStore({ rate: slidingWindow(60_000), maxEntries: 100 });
  const gate = Gatekeeper.open({ store, rules, bans: new BanList(), clock, log: memoryLogger().log, rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  t.after(() => gate.stop());
  return { clock, gate, refusals: new RefusalLog(clock) };
}

const limit: Refusal = { temporary: true, cause: 'connections_per_address', rule: 'services.imap.limits.connections_per_address', reason: '2 connections', retryAfterSec: 60, limit: 1, count: 2, key: '192.0.2.9' };

/** A bus whose other nodes answer `others`; this node's handler answers for itself, as the real bus does. */
function fakeFleet(others: Record<string, unknown>, missing: string[] = []): { bus: FleetBus; asked: unknown[] } {
  let handler: ((args: unknown) => unknown) | null = null;
  const asked: unknown[] = [];
  const bus = {
    handle: (_op: string, h: (args: unknown) => unknown) => (handler = h),
    ask: async (_op: string, args: unknown): Promise<FleetAnswers<unknown>> => {
      asked.push(args);
      const answers = new Map<string, unknown>([['a', await (handler as (a: unknown) => unknown)(args)]]);
      for (const [n, v] of Object.entries(others)) answers.set(n, v);
      return { answers, missing };
    },
  } as unknown as FleetBus;
  return { bus, asked };
}

test('why, one node: its record and its bans covering the address (networks too), canonical address', async (t) => {
  const { clock, gate, refusals } = parts(t);
  const desk = new WhyDesk({ node: 'a', gate, refusals, clock, fleet: null });
  refusals.record({ service: 'imap', address: '2001:db8::9', country: null, rule: limit.rule, reason: limit.reason, by: 'proxy', refusal: limit });
  gate.bans.add('2001:db8::/64', 60_000, 'net', clock.now(), { origin: 'crowdsec' });
  gate.bans.add('2001:db8:1::/64', 60_000, 'elsewhere', clock.now());
  const w = await desk.ask('2001:DB8:0::9');
  assert.equal(w.address, '2001:db8::9');
  assert.deepEqual(w.refusals.map((r) => [r.node, r.rule, r.count, r.limit]), [['a', limit.rule, 2, 1]]);
  assert.deepEqual(w.bans.map((b) => [b.target, b.layer, b.lift.command]), [['2001:db8::/64', 'crowdsec', 'cscli decisions delete --range 2001:db8::/64']]);
  await assert.rejects(desk.ask('2001:db8::/64'), (e: unknown) => e instanceof ControlInputError && e.code === 'DOORMAN_ERR_ADDRESS');
});

test('why, a fleet: every node asked, answers checked, merged newest first; a bad answer is a missing node, not a crash', async (ctx) => {
  const { clock, gate, refusals } = parts(ctx);
  refusals.record({ service: 'imap', address: '192.0.2.9', country: null, rule: limit.rule, reason: limit.reason, by: 'proxy', refusal: limit });
  gate.bans.add('192.0.2.9', 60_000, 'fleet ban', clock.now());
  const t = clock.now();
  const ban = { target: '192.0.2.9', layer: 'local', origin: 'operator', strike: 1, until: t + 60_000, nodes: ['b'], reason: 'fleet ban', createdAt: t, lift: { command: 'doorman unban 192.0.2.9', how: 'x' } };
  const fromB: NodeWhy = {
    refusals: [{ node: 'b', first: t + 5, last: t + 5, times: 1, service: 'pop3', by: 'dovecot', country: null, rule: 'bans', cause: 'ban', reason: 'banned', temporary: true, count: null, limit: null, key: '192.0.2.9', retryAfterSec: 60, until: t + 60_000, inForce: true, ban: { target: '192.0.2.9', layer: 'local', origin: 'operator', strike: 1, until: t + 60_000 }, lift: { command: 'doorman unban 192.0.2.9', how: 'x' } }],
    bans: [ban as NodeWhy['bans'][number]],
  };
  const { bus, asked } = fakeFleet({ b: { ...fromB, newer_field: 1 }, c: { error: 'no handler for why' }, d: { refusals: [{ node: 'd' }], bans: [] } }, ['e']);
  const desk = new WhyDesk({ node: 'a', gate, refusals, clock, fleet: bus });
  const w = await desk.ask('192.0.2.9');
  assert.deepEqual(asked, [{ address: '192.0.2.9' }]);
  assert.deepEqual(w.refusals.map((r) => [r.node, r.by]), [['b', 'dovecot'], ['a', 'proxy']], 'newest first, each naming its node');
  assert.deepEqual(w.bans.map((b) => [b.target, b.nodes]), [['192.0.2.9', ['a', 'b']]], "the fleet's local ban once, held by both");
  assert.deepEqual([...w.missing].sort(), ['c', 'd', 'e'], 'an error, an unreadable answer and no answer are all missing');
});
