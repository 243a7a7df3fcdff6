import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DECISION_BUCKETS, DecisionLatency, NO_TIMER, timed } from './latency.js';

/** The value of one series in exposition text, or undefined. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** A latency histogram on a clock the test moves; rewind() puts it back to 0, so a time is exactly the advance. */
function setup() {
  let ms = 0;
  const l = new DecisionLatency(() => ms);
  return { l, advance: (by: number) => (ms += by), rewind: () => (ms = 0) };
}

test('latency: each time lands in the first bucket whose bound holds it (le is inclusive); buckets are cumulative; sum and count', () => {
  const { l, advance, rewind } = setup();
  const t = l.timer('policy');
  // ms: 0.01 (under 25 µs), exactly 0.025 (on the first bound), 0.3, 4.9, 5 (on the alert's bound), 5.1, 100, 2000 (past every bound).
  const times = [0.01, 0.025, 0.3, 4.9, 5, 5.1, 100, 2000];
  for (const ms of times) {
    rewind();
    const s = t.start();
    advance(ms);
    t.stop(s);
  }
  const text = l.text();
  const bucket = (le: string) => value(text, `doorman_decision_seconds_bucket{le="${le}",front="policy"}`);
  assert.equal(bucket('0.000025'), 2, '10 µs and exactly 25 µs');
  assert.equal(bucket('0.00005'), 2);
  assert.equal(bucket('0.00025'), 2);
  assert.equal(bucket('0.0005'), 3, '300 µs');
  assert.equal(bucket('0.005'), 5, '4.9 ms and exactly 5 ms');
  assert.equal(bucket('0.01'), 6, '5.1 ms');
  assert.equal(bucket('0.1'), 7, '100 ms');
  assert.equal(bucket('+Inf'), 8, '2 s');
  assert.equal(value(text, 'doorman_decision_seconds_count{front="policy"}'), 8);
  const sum = value(text, 'doorman_decision_seconds_sum{front="policy"}') ?? NaN;
  assert.ok(Math.abs(sum - times.reduce((a, b) => a + b) / 1000) < 1e-9, String(sum));
  const buckets = text.split('\n').filter((x) => x.startsWith('doorman_decision_seconds_bucket{'));
  assert.equal(buckets.length, DECISION_BUCKETS.length + 1, 'every bound and +Inf');
  assert.match(text, /^# HELP doorman_decision_seconds .+\n# TYPE doorman_decision_seconds histogram$/m);
});

test('latency: fronts are kept apart; a timer per front, made once', () => {
  const { l, advance } = setup();
  const a = l.timer('anvil');
  assert.equal(l.timer('anvil'), a);
  const p = l.timer('proxy');
  const s = a.start();
  advance(1);
  a.stop(s);
  const text = l.text();
  assert.equal(value(text, 'doorman_decision_seconds_count{front="anvil"}'), 1);
  assert.equal(value(text, 'doorman_decision_seconds_count{front="proxy"}'), 0);
  assert.notEqual(p, a);
  assert.equal(new DecisionLatency().text(), '', 'no front, no text');
});

test('latency: timed() stops at once for a value, at settlement for a promise, rejected or not', async () => {
  const { l, advance } = setup();
  const t = l.timer('anvil');
  const count = () => value(l.text(), 'doorman_decision_seconds_count{front="anvil"}');
  assert.equal(timed(t, t.start(), 'x'), 'x');
  assert.equal(count(), 1);
  let resolve!: (v: string) => void;
  const pending = timed(t, t.start(), new Promise<string>((r) => (resolve = r)));
  advance(3);
  assert.equal(count(), 1, 'not before the answer');
  resolve('y');
  assert.equal(await pending, 'y');
  assert.equal(count(), 2);
  assert.equal(value(l.text(), 'doorman_decision_seconds_bucket{le="0.0025",front="anvil"}'), 1, 'the wait is in the time');
  await assert.rejects(timed(t, t.start(), Promise.reject(new Error('store down'))) as Promise<string>, /store down/);
  assert.equal(count(), 3, 'a failure is answered too, so it is timed');
  assert.equal(timed(NO_TIMER, NO_TIMER.start(), 7), 7);
});
