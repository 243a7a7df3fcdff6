import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FleetBus } from '../fleet/bus.js';
import { serveFleet, serveWhy, type KickArgs } from './fleet-rpc.js';

/** A bus that records handlers, so a test can call them as another node would. */
function fakeBus(): { bus: FleetBus; call(op: string, args: unknown): unknown } {
  const handlers = new Map<string, (args: unknown) => unknown>();
  const bus = { handle: (op: string, h: (args: unknown) => unknown) => handlers.set(op, h) } as unknown as FleetBus;
  return { bus, call: (op, args) => (handlers.get(op) as (a: unknown) => unknown)(args) };
}

test('fleet requests are checked against their schemas before anything runs', () => {
  const seen: unknown[] = [];
  const { bus, call } = fakeBus();
  serveFleet(bus, {
    connections: (filter, limit) => seen.push(['connections', filter, limit]),
    connection: (id) => seen.push(['connection', id]),
    kick: (a: KickArgs) => seen.push(['kick', a]),
  });
  call('connections', { filter: { address: '192.0.2.0/24' }, limit: 10 });
  call('connection', { id: 'c1' });
  call('kick', { target: '192.0.2.7', reason: 'flood' });
  assert.deepEqual(seen, [
    ['connections', { address: '192.0.2.0/24' }, 10],
    ['connection', 'c1'],
    ['kick', { target: '192.0.2.7', reason: 'flood' }],
  ]);
  for (const [op, args, why] of [
    ['connections', { filter: {}, limit: 0 }, /limit/],
    ['connections', { filter: { address: 7 }, limit: 1 }, /filter\.address/],
    ['connections', null, /args/],
    ['connection', {}, /id/],
    ['kick', { target: '192.0.2.7' }, /reason/],
    ['kick', { target: '192.0.2.7', reason: 'x', extra: true }, /bad request/],
    ['kick', { target: 'x'.repeat(501), reason: 'x' }, /target/],
  ] as const) {
    assert.throws(() => call(op, args), (e: unknown) => e instanceof Error && e.message.startsWith(`fleet ${op}: bad request`) && why.test(e.message), `${op} ${JSON.stringify(args).slice(0, 60)}`);
  }
  assert.equal(seen.length, 3, 'nothing ran for a bad request');
});

test('a fleet `why` question is checked before it is answered', () => {
  const seen: string[] = [];
  const { bus, call } = fakeBus();
  serveWhy(bus, (address) => seen.push(address));
  call('why', { address: '192.0.2.7' });
  for (const args of [{}, { address: '' }, { address: 'x'.repeat(65) }, { address: '192.0.2.7', more: 1 }, null]) {
    assert.throws(() => call('why', args), /^Error: fleet why: bad request/, JSON.stringify(args));
  }
  assert.deepEqual(seen, ['192.0.2.7']);
});
