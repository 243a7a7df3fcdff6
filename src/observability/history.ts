/**
 * Live connections per service, sampled once a step (a minute) and kept for
 * the last POINTS steps (an hour), for `/api/history` and the dashboard's
 * chart. One sample at start, so a fresh daemon shows its services at once.
 * The timer is unref'd: history never keeps the process alive.
 */
import type { Clock } from '../core/clock.js';

export interface HistoryPoint {
  /** Epoch ms (the clock given). */
  readonly at: number;
  readonly services: Readonly<Record<string, number>>;
}

export interface HistoryOptions {
  readonly stepMs?: number;
  readonly points?: number;
}

export class HistorySampler {
  readonly stepMs: number;
  private readonly max: number;
  private readonly clock: Clock;
  private readonly source: () => Record<string, number>;
  private readonly services: readonly string[];
  private readonly ring: HistoryPoint[] = [];
  private timer: NodeJS.Timeout | null = null;

  /**
   * `source` gives live connections per service now; `services` are always
   * present in a point (0 when idle), so a chart's series do not come and go.
   */
  constructor(clock: Clock, source: () => Record<string, number>, services: readonly string[], opts: HistoryOptions = {}) {
    this.clock = clock;
    this.source = source;
    this.services = services;
    this.stepMs = opts.stepMs ?? 60_000;
    this.max = opts.points ?? 60;
  }

  start(): void {
    if (this.timer !== null) return;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.stepMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Takes one point now; the oldest goes when there are more than `points`. */
  sample(): void {
    const services: Record<string, number> = {};
    for (const s of this.services) services[s] = 0;
    Object.assign(services, this.source());
    this.ring.push({ at: this.clock.now(), services });
    if (this.ring.length > this.max) this.ring.shift();
  }

  /** Oldest first. */
  points(): readonly HistoryPoint[] {
    return this.ring;
  }
}
