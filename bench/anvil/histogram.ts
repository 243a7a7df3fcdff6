/**
 * A latency histogram: 1 µs buckets below FINE_US, 100 µs buckets from there
 * to MAX_US (a stalled Postfix anvil answers in hundreds of ms); anything
 * slower lands in the last bucket and is still seen by `max`. Recording is
 * one array increment, so it costs the generator nothing measurable.
 */

/** 10 ms: the range where sub-millisecond aims are judged gets 1 µs resolution. */
const FINE_US = 10_000;
const COARSE_STEP_US = 100;
/** 10 s: a round trip slower than this means the run has stalled, and only `max` matters. */
const MAX_US = 10_000_000;
const BUCKETS = FINE_US + (MAX_US - FINE_US) / COARSE_STEP_US + 1;

function bucketOf(us: number): number {
  if (us < FINE_US) return us;
  if (us >= MAX_US) return BUCKETS - 1;
  return FINE_US + Math.floor((us - FINE_US) / COARSE_STEP_US);
}

/** The lower bound, in µs, of bucket `i`. */
function lowerBoundUs(i: number): number {
  return i < FINE_US ? i : FINE_US + (i - FINE_US) * COARSE_STEP_US;
}

export interface LatencySummary {
  readonly samples: number;
  readonly meanUs: number;
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
}

export class Histogram {
  private readonly buckets = new Uint32Array(BUCKETS);
  private n = 0;
  private sumNs = 0;
  private maxNs = 0;

  recordNs(ns: number): void {
    const i = bucketOf(Math.floor(ns / 1000));
    this.buckets[i] = (this.buckets[i] as number) + 1;
    this.n++;
    this.sumNs += ns;
    if (ns > this.maxNs) this.maxNs = ns;
  }

  /** The lower bound (µs) of the first bucket by which fraction `q` of the samples are counted. */
  quantileUs(q: number): number {
    if (this.n === 0) return NaN;
    const want = Math.ceil(q * this.n);
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.buckets[i] as number;
      if (seen >= want) return lowerBoundUs(i);
    }
    return MAX_US;
  }

  summary(): LatencySummary {
    return {
      samples: this.n,
      meanUs: this.n === 0 ? NaN : this.sumNs / this.n / 1000,
      p50Us: this.quantileUs(0.5),
      p90Us: this.quantileUs(0.9),
      p99Us: this.quantileUs(0.99),
      p999Us: this.quantileUs(0.999),
      maxUs: this.maxNs / 1000,
    };
  }
}
