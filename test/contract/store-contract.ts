/**
 * The counter-store contract: what the engine may rely on from any store.
 * Every store (memory, Redis) runs these same tests through its own
 * *.test.ts file, driven by one controllable clock. A differential property
 * test then runs random operation sequences on a store and on the memory
 * store side by side and requires the same answer to every call, so a fleet
 * judges exactly as one host would.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BOOKKEEPING_PREFIX, RATE_METRICS, type RateMetric } from '../../src/core/metrics.js';
import { fixedWindow, slidingWindow, type RateAlgorithm } from '../../src/store/rate.js';
import { MemoryStore } from '../../src/store/memory.js';
import type { CounterStore } from '../../src/core/ports.js';

export interface StoreMaker {
  readonly name: string;
  /** A fresh, empty store counting with `rate`. */
  make(rate: RateAlgorithm): Promise<CounterStore>;
}

const UNIT = 60_000;
const T0 = Date.UTC(2026, 10, 23, 10, 0, 0);

const countOf = async (s: CounterStore, key: string, now: number) => (await s.read(key, now))?.count ?? 0;

export function storeContract(maker: StoreMaker): void {
  const make = (rate: RateAlgorithm = slidingWindow(UNIT)) => maker.make(rate);

  test(`${maker.name}: acquire counts connections per key; release gives back only what the owner holds`, async () => {
    const s = await make();
    const a = s.createOwner('a');
    const b = s.createOwner('b');
    assert.equal((await s.acquire('imap:192.0.2.1', a, T0)).count, 1);
    assert.equal((await s.acquire('imap:192.0.2.1', a, T0)).count, 2);
    const third = await s.acquire('imap:192.0.2.1', b, T0);
    assert.deepEqual(third, { count: 3, rate: 3, tracked: true });
    assert.equal(a.held, 2);
    assert.equal(await s.release('imap:192.0.2.1', b, T0), 2);
    assert.equal(await s.release('imap:192.0.2.1', b, T0), 2, 'b holds nothing more: no change');
    assert.equal(await s.release('imap:192.0.2.9', b, T0), 0, 'an unknown key');
    assert.equal(await countOf(s, 'imap:192.0.2.1', T0), 2);
    assert.equal((await s.read('imap:192.0.2.1', T0))?.rates.conn, 3, 'the rate keeps what was released');
    await s.close();
  });

  test(`${maker.name}: acquireMany and releaseMany take and give back each key once`, async () => {
    const s = await make();
    const o = s.createOwner('proxy');
    const r = await s.acquireMany(['imap:192.0.2.1', 'imap:192.0.2.0/24'], o, T0);
    assert.deepEqual(r.map((x) => x.count), [1, 1]);
    const r2 = await s.acquireMany(['imap:192.0.2.2', 'imap:192.0.2.0/24'], o, T0);
    assert.deepEqual(r2.map((x) => x.count), [1, 2]);
    assert.equal(o.held, 4);
    assert.deepEqual(await s.releaseMany(['imap:192.0.2.1', 'imap:192.0.2.0/24'], o, T0), [0, 1]);
    assert.equal(await countOf(s, 'imap:192.0.2.0/24', T0), 1);
    assert.equal(o.held, 2);
    await s.close();
  });

  test(`${maker.name}: releaseOwner gives back everything an owner holds, and only that`, async () => {
    const s = await make();
    const gone = s.createOwner('anvil');
    const stays = s.createOwner('anvil');
    for (let i = 0; i < 5; i++) await s.acquire('smtp:192.0.2.7', gone, T0);
    await s.acquire('smtp:192.0.2.8', gone, T0);
    await s.acquire('smtp:192.0.2.7', stays, T0);
    assert.equal(await s.releaseOwner(gone, T0), 6);
    assert.equal(gone.held, 0);
    assert.equal(await countOf(s, 'smtp:192.0.2.7', T0), 1);
    assert.equal(await countOf(s, 'smtp:192.0.2.8', T0), 0);
    await s.close();
  });

  test(`${maker.name}: an event from a holder that never connected registers its connection once`, async () => {
    const s = await make();
    const o = s.createOwner('smtpd');
    assert.deepEqual(await s.hit('smtp:192.0.2.9', 'mail', T0, o), { rate: 1, count: 1, tracked: true });
    assert.equal((await s.hit('smtp:192.0.2.9', 'mail', T0, o)).count, 1);
    assert.equal((await s.read('smtp:192.0.2.9', T0))?.rates.conn, 1);
    assert.equal((await s.hit('smtp:192.0.2.10', 'rcpt', T0)).count, 0, 'no holder: nothing registered');
    await s.close();
  });

  test(`${maker.name}: sliding window: the previous window still weighs right after a boundary`, async () => {
    const s = await make();
    for (let i = 0; i < 10; i++) await s.hit('smtp:k', 'rcpt', T0);
    assert.equal((await s.read('smtp:k', T0 + UNIT / 2))?.rates.rcpt, 10);
    assert.equal((await s.hit('smtp:k', 'rcpt', T0 + UNIT))?.rate, 1 + Math.floor((10 * (UNIT - 1)) / UNIT));
    assert.equal((await s.read('smtp:k', T0 + UNIT + UNIT / 2))?.rates.rcpt, 1 + Math.floor((10 * (UNIT / 2 - 1)) / UNIT));
    assert.equal((await s.read('smtp:k', T0 + 3 * UNIT))?.rates.rcpt ?? 0, 0);
    await s.close();
  });

  test(`${maker.name}: fixed window: anvil's whole-second windows`, async () => {
    const s = await make(fixedWindow(UNIT));
    for (let i = 0; i < 4; i++) await s.hit('smtp:k', 'auth', T0 + 500);
    assert.equal((await s.read('smtp:k', T0 + UNIT + 999))?.rates.auth, 4, 'start + unit < now: not yet');
    assert.equal((await s.hit('smtp:k', 'auth', T0 + UNIT + 1000)).rate, 1, 'a new window');
    await s.close();
  });

  test(`${maker.name}: touchMember keeps a window of members`, async () => {
    const s = await make();
    const day = 86_400_000;
    assert.deepEqual(await s.touchMember('logins:imap:ann', 'DE', T0, day), { size: 1, added: true });
    assert.deepEqual(await s.touchMember('logins:imap:ann', 'DE', T0 + 1, day), { size: 1, added: false });
    assert.deepEqual(await s.touchMember('logins:imap:ann', 'FR', T0 + 2, day), { size: 2, added: true });
    assert.deepEqual(await s.touchMember('logins:imap:ann', 'US', T0 + day + 1, day), { size: 2, added: true }, 'DE (last at T0+1) is a day old');
    await s.close();
  });

  test(`${maker.name}: members reads a touchMember set without changing it`, async () => {
    const s = await make();
    const hour = 3_600_000;
    assert.deepEqual(await s.members('~good:imap:192.0.2.1', 'ann', T0, hour), { size: 0, has: false }, 'no set yet');
    await s.touchMember('~good:imap:192.0.2.1', 'ann', T0, hour);
    await s.touchMember('~good:imap:192.0.2.1', 'bob', T0 + 10, hour);
    assert.deepEqual(await s.members('~good:imap:192.0.2.1', 'ann', T0 + 20, hour), { size: 2, has: true });
    assert.deepEqual(await s.members('~good:imap:192.0.2.1', 'eve', T0 + 20, hour), { size: 2, has: false });
    assert.deepEqual(await s.members('~good:imap:192.0.2.1', null, T0 + 20, hour), { size: 2, has: false });
    assert.deepEqual(await s.members('~good:imap:192.0.2.1', 'ann', T0 + hour, hour), { size: 1, has: false }, 'ann (at T0) is an hour old; bob is not');
    assert.deepEqual(await s.members('~good:imap:192.0.2.1', 'bob', T0 + 20, hour), { size: 2, has: true }, 'reading changed nothing');
    await s.close();
  });

  test(`${maker.name}: top lists the busiest keys under a prefix`, async () => {
    const s = await make();
    const o = s.createOwner('o');
    for (let i = 1; i <= 5; i++) for (let j = 0; j < i; j++) await s.acquire(`imap:198.51.100.${i}`, o, T0);
    await s.acquire('smtp:198.51.100.9', o, T0);
    const top = await s.top('imap:', 'count', 3, T0, 1000);
    assert.deepEqual(top.items.map((x) => [x.key, x.snapshot.count]), [['imap:198.51.100.5', 5], ['imap:198.51.100.4', 4], ['imap:198.51.100.3', 3]]);
    assert.equal(top.complete, true);
    // The gate's bookkeeping keys are counted but never listed, under any prefix.
    for (let i = 0; i < 9; i++) await s.hit(`${BOOKKEEPING_PREFIX}authfail:imap:198.51.100.1:ann:h${i}`, 'authfail', T0);
    for (let i = 0; i < 9; i++) await s.hit('imap:198.51.100.2', 'authfail', T0);
    const byFailures = await s.top('', 'authfail', 5, T0, 1000);
    assert.deepEqual(byFailures.items.map((x) => x.key), ['imap:198.51.100.2']);
    assert.equal((await s.read(`${BOOKKEEPING_PREFIX}authfail:imap:198.51.100.1:ann:h0`, T0))?.rates.authfail, 1, 'yet counted');
    await s.close();
  });

  test(`${maker.name}: gives the same answers as the memory store for any sequence of calls`, async () => {
    for (const rate of [slidingWindow(UNIT), fixedWindow(UNIT)]) {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 60 }), async (ops) => {
          const s = await maker.make(rate);
          const m = new MemoryStore({ rate, maxEntries: 10_000 });
          const so = [s.createOwner('a'), s.createOwner('b')];
          const mo = [m.createOwner('a'), m.createOwner('b')];
          let now = T0;
          try {
            for (const op of ops) {
              now += op.advance;
              const key = `smtp:192.0.2.${op.key}`;
              const [got, want] =
                op.kind === 'acquire'
                  ? [await s.acquire(key, so[op.owner]!, now), m.acquire(key, mo[op.owner]!, now)]
                  : op.kind === 'release'
                    ? [await s.release(key, so[op.owner]!, now), m.release(key, mo[op.owner]!, now)]
                    : op.kind === 'hit'
                      ? [await s.hit(key, op.metric, now, op.holder ? so[op.owner] : undefined), m.hit(key, op.metric, now, op.holder ? mo[op.owner] : undefined)]
                      : [(await s.read(key, now)) ?? 'none', m.read(key, now) ?? 'none'];
              // A key the memory store swept reads as unknown there and as zeros in Redis: both "nothing".
              assert.deepEqual(normal(got), normal(want), `${op.kind} ${key} at +${now - T0} ms (${rate.name})`);
            }
          } finally {
            await s.close();
          }
        }),
        { numRuns: Number(process.env.CONTRACT_RUNS ?? 40) },
      );
    }
  });
}

type Op =
  | { kind: 'acquire' | 'release' | 'read'; key: number; owner: 0 | 1; advance: number }
  | { kind: 'hit'; key: number; owner: 0 | 1; advance: number; metric: RateMetric; holder: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom('acquire' as const, 'release' as const, 'read' as const), key: fc.integer({ min: 1, max: 3 }), owner: fc.constantFrom(0 as const, 1 as const), advance: advanceArb() }),
  fc.record({ kind: fc.constant('hit' as const), key: fc.integer({ min: 1, max: 3 }), owner: fc.constantFrom(0 as const, 1 as const), advance: advanceArb(), metric: fc.constantFrom(...RATE_METRICS), holder: fc.boolean() }),
);

/** Mostly small steps, sometimes across one or several windows. */
function advanceArb(): fc.Arbitrary<number> {
  return fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 3_000 }) }, { weight: 2, arbitrary: fc.integer({ min: 20_000, max: 70_000 }) }, { weight: 1, arbitrary: fc.integer({ min: 100_000, max: 200_000 }) });
}

function normal(v: unknown): unknown {
  if (v === 'none') return { count: 0, rates: { conn: 0, mail: 0, rcpt: 0, newtls: 0, auth: 0, authfail: 0, tlstr: 0 } };
  return v;
}
