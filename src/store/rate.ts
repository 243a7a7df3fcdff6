/**
 * Rate windows over a table of counters. Each key has one window start and,
 * per metric, the count of the current window and of the previous one. The
 * algorithms work on the stores' flat arrays so a key costs a few bytes, not
 * an object.
 *
 * - sliding-window (default): the rate is the current window's count plus the
 *   previous window's count weighted by how much of it still overlaps the last
 *   time unit. A client cannot double its allowance by bursting on both sides of
 *   a window boundary: right after the boundary the previous burst still counts
 *   almost in full. The weighted part is rounded down, so a client that keeps
 *   exactly to its limit is never refused for it.
 * - fixed-window: anvil(8) exactly. The window starts at a key's first event
 *   and resets when `start + unit < now`, both in whole seconds; a client can
 *   send its full allowance at the end of one window and again at the start of
 *   the next.
 */
import { METRIC_COUNT } from '../core/metrics.js';

export type RateAlgorithmName = 'sliding-window' | 'fixed-window';

/** Counters are C ints in anvil; we clamp rather than wrap. */
export const RATE_MAX = 0x7fffffff;

/** Column layout: for slot s and metric m, current at (s*M+m)*2, previous at +1. */
export interface RateTable {
  /** Window start per slot, ms since the epoch. */
  start: Float64Array;
  /** Current and previous counts, interleaved. */
  counts: Int32Array;
}

export interface RateAlgorithm {
  readonly name: RateAlgorithmName;
  readonly unitMs: number;
  /** Starts a fresh window for a new slot. */
  init(t: RateTable, slot: number, now: number): void;
  /** Counts one event of metric m and returns the rate including it. */
  hit(t: RateTable, slot: number, m: number, now: number): number;
  /** The rate of metric m now, without counting anything. */
  read(t: RateTable, slot: number, m: number, now: number): number;
  /** True when every rate of the slot reads zero from now on. */
  idle(t: RateTable, slot: number, now: number): boolean;
}

function clearSlot(t: RateTable, slot: number): void {
  t.counts.fill(0, slot * METRIC_COUNT * 2, (slot + 1) * METRIC_COUNT * 2);
}

export function slidingWindow(unitMs: number): RateAlgorithm {
  /** Moves the slot's window forward to the one holding `now`. */
  function roll(t: RateTable, slot: number, now: number): void {
    const start = t.start[slot] as number;
    const elapsed = now - start;
    if (elapsed < unitMs) return;
    const base = slot * METRIC_COUNT * 2;
    if (elapsed < 2 * unitMs) {
      for (let m = 0; m < METRIC_COUNT; m++) {
        const i = base + m * 2;
        t.counts[i + 1] = t.counts[i] as number;
        t.counts[i] = 0;
      }
      t.start[slot] = start + unitMs;
    } else {
      clearSlot(t, slot);
      t.start[slot] = now;
    }
  }
  function estimate(t: RateTable, slot: number, m: number, now: number): number {
    const i = (slot * METRIC_COUNT + m) * 2;
    const prev = t.counts[i + 1] as number;
    const curr = t.counts[i] as number;
    if (prev === 0) return curr;
    // The last unit is the ms (now - unit, now]; of the previous window's ms
    // [start - unit, start) it overlaps unit - elapsed - 1 of them.
    const overlap = unitMs - (now - (t.start[slot] as number)) - 1;
    const weighted = Math.floor((prev * overlap) / unitMs);
    return Math.min(RATE_MAX, curr + weighted);
  }
  return {
    name: 'sliding-window',
    unitMs,
    init(t, slot, now) {
      clearSlot(t, slot);
      t.start[slot] = now;
    },
    hit(t, slot, m, now) {
      roll(t, slot, now);
      const i = (slot * METRIC_COUNT + m) * 2;
      const c = t.counts[i] as number;
      if (c < RATE_MAX) t.counts[i] = c + 1;
      return estimate(t, slot, m, now);
    },
    read(t, slot, m, now) {
      const elapsed = now - (t.start[slot] as number);
      if (elapsed >= 2 * unitMs - 1) return 0;
      if (elapsed >= unitMs) {
        // Without moving the window: the current window has become the previous one.
        const i = (slot * METRIC_COUNT + m) * 2;
        const prev = t.counts[i] as number;
        const overlap = 2 * unitMs - elapsed - 1;
        return Math.floor((prev * overlap) / unitMs);
      }
      return estimate(t, slot, m, now);
    },
    idle(t, slot, now) {
      return now - (t.start[slot] as number) >= 2 * unitMs;
    },
  };
}

export function fixedWindow(unitMs: number): RateAlgorithm {
  const unitSec = Math.max(1, Math.round(unitMs / 1000));
  const stale = (t: RateTable, slot: number, now: number): boolean =>
    Math.floor((t.start[slot] as number) / 1000) + unitSec < Math.floor(now / 1000);
  return {
    name: 'fixed-window',
    unitMs: unitSec * 1000,
    init(t, slot, now) {
      clearSlot(t, slot);
      t.start[slot] = now;
    },
    hit(t, slot, m, now) {
      if (stale(t, slot, now)) {
        clearSlot(t, slot);
        t.start[slot] = now;
      }
      const i = (slot * METRIC_COUNT + m) * 2;
      const c = t.counts[i] as number;
      if (c < RATE_MAX) t.counts[i] = c + 1;
      return c < RATE_MAX ? c + 1 : c;
    },
    read(t, slot, m, now) {
      return stale(t, slot, now) ? 0 : (t.counts[(slot * METRIC_COUNT + m) * 2] as number);
    },
    idle(t, slot, now) {
      return stale(t, slot, now);
    },
  };
}

export function rateAlgorithm(name: RateAlgorithmName, unitMs: number): RateAlgorithm {
  return name === 'fixed-window' ? fixedWindow(unitMs) : slidingWindow(unitMs);
}
