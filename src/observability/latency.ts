/**
 * How long each front-end takes from a complete request to its answer, as a
 * Prometheus histogram:
 *
 *   doorman_decision_seconds_bucket{front,le}, _sum{front}, _count{front}
 *
 * front is anvil, policy, dovecot, proxy or spoe (HAProxy's SPOE agent): one
 * series set per front-end the configuration enables.
 *
 * A decision takes microseconds, and anvil answers every smtpd connect, so
 * recording one must cost little beside it. prom-client's Histogram.observe
 * hashes its label object and makes a closure on every call; here each front
 * has its own counts in a Float64Array, and a record is two clock reads
 * (performance.now(), a number, where hrtime.bigint() allocates a BigInt), a
 * scan of a few bounds and two adds. The text is made at scrape. Front-ends
 * get a DecisionTimer and never see this module's exposition.
 */
import { performance } from 'node:perf_hooks';
import type { Awaitable } from '../core/awaitable.js';

export type Front = 'anvil' | 'policy' | 'dovecot' | 'proxy' | 'nginx' | 'spoe';

/**
 * Upper bounds in seconds, 25 µs to 100 ms. An in-memory decision takes
 * 5-50 µs and a Redis round trip a few hundred µs, so the low buckets are
 * dense; 5 ms is where the "decisions slow" alert looks; past 100 ms
 * something is wrong, and +Inf says how often.
 */
export const DECISION_BUCKETS: readonly number[] = [0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];

const NAME = 'doorman_decision_seconds';

/** What a front-end times its answers with. */
export interface DecisionTimer {
  /** A start mark, for stop(). */
  start(): number;
  /** Records the time since `started`. */
  stop(started: number): void;
}

/** For front-ends built without metrics (unit tests): records nothing. */
export const NO_TIMER: DecisionTimer = { start: () => 0, stop: () => undefined };

/**
 * Stops `timer` when `v` is there: at once for a value, at settlement for a
 * promise (a networked store's answer, or its failure, which is answered too).
 */
export function timed<T>(timer: DecisionTimer, started: number, v: Awaitable<T>): Awaitable<T> {
  if (v instanceof Promise) return v.finally(() => timer.stop(started));
  timer.stop(started);
  return v;
}

/** Milliseconds from an arbitrary origin. */
export type Now = () => number;

const monotonic: Now = () => performance.now();

class FrontTimer implements DecisionTimer {
  private readonly bounds = Float64Array.from(DECISION_BUCKETS);
  /** Per bucket, not cumulative; the last is past every bound (+Inf). */
  readonly counts = new Float64Array(DECISION_BUCKETS.length + 1);
  sum = 0;
  private readonly now: Now;

  constructor(now: Now) {
    this.now = now;
  }

  start(): number {
    return this.now();
  }

  stop(started: number): void {
    const s = (this.now() - started) / 1000;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && s > (b[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += s;
  }
}

export class DecisionLatency {
  private readonly fronts = new Map<Front, FrontTimer>();
  private readonly now: Now;

  /** `now`: the clock, in ms (tests give their own). */
  constructor(now: Now = monotonic) {
    this.now = now;
  }

  /** The front's timer, made on first ask: its series exist from then on (at 0), so a rate() over a quiet front is 0, not absent. */
  timer(front: Front): DecisionTimer {
    let t = this.fronts.get(front);
    if (t === undefined) {
      t = new FrontTimer(this.now);
      this.fronts.set(front, t);
    }
    return t;
  }

  /** The histogram in Prometheus text format; empty when no front asked for a timer. */
  text(): string {
    if (this.fronts.size === 0) return '';
    const lines = [`# HELP ${NAME} Time from a complete request to its answer, per front-end (anvil, policy, dovecot, proxy, spoe)`, `# TYPE ${NAME} histogram`];
    for (const [front, t] of this.fronts) {
      let cumulative = 0;
      for (let i = 0; i < t.counts.length; i++) {
        cumulative += t.counts[i] as number;
        const le = i < DECISION_BUCKETS.length ? String(DECISION_BUCKETS[i]) : '+Inf';
        lines.push(`${NAME}_bucket{le="${le}",front="${front}"} ${cumulative}`);
      }
      lines.push(`${NAME}_sum{front="${front}"} ${t.sum}`, `${NAME}_count{front="${front}"} ${cumulative}`);
    }
    return `${lines.join('\n')}\n`;
  }
}
