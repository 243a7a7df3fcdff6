/**
 * The CrowdSec decisions a bouncer holds, by id, and what they make of the
 * crowdsec layer of the ban list: one ban per target, lasting as long as
 * the longest decision on it. An address may carry several decisions (two
 * scenarios, a scenario's and an operator's); CrowdSec deleting one leaves
 * the ban in force while another remains.
 *
 * apply() changes the set and returns the targets whose ban changed; the
 * caller hands them to sync(), which makes the ban list agree. A snapshot()
 * is what a fleet's polling node writes to Redis for the others, and
 * load() what they read back.
 */
import type { BanList } from '../core/bans.js';
import { banReason, type Decision } from './stream.js';

interface Held {
  readonly target: string;
  readonly until: number;
  readonly reason: string;
}

/** One target's ban as the fleet's snapshot carries it: target, until (epoch ms), reason. */
export interface SnapshotBan {
  readonly t: string;
  readonly u: number;
  readonly r: string;
}

export class DecisionSet {
  private readonly byId = new Map<number, Held>();
  private readonly byTarget = new Map<string, Set<number>>();

  get size(): number {
    return this.byId.size;
  }

  /** Targets with at least one decision. */
  get targets(): number {
    return this.byTarget.size;
  }

  /** Forgets everything (before a startup answer). */
  clear(): void {
    this.byId.clear();
    this.byTarget.clear();
  }

  /**
   * Deleted ids first, then the new decisions (an id seen again is replaced);
   * `accept` may refuse a decision (an exception network). Returns the targets touched.
   */
  apply(added: readonly Decision[], deleted: readonly number[], now: number, accept: (d: Decision) => boolean = () => true): Set<string> {
    const touched = new Set<string>();
    for (const id of deleted) {
      const h = this.byId.get(id);
      if (h === undefined) continue;
      this.drop(id, h);
      touched.add(h.target);
    }
    for (const d of added) {
      if (!accept(d)) continue;
      const old = this.byId.get(d.id);
      if (old !== undefined) {
        this.drop(d.id, old);
        touched.add(old.target);
      }
      this.byId.set(d.id, { target: d.target, until: now + d.ttlMs, reason: banReason(d) });
      let ids = this.byTarget.get(d.target);
      if (ids === undefined) this.byTarget.set(d.target, (ids = new Set()));
      ids.add(d.id);
      touched.add(d.target);
    }
    return touched;
  }

  /** Drops decisions already over, so the set does not grow with CrowdSec's history. */
  sweep(now: number): void {
    for (const [id, h] of this.byId) if (h.until <= now) this.drop(id, h);
  }

  /** The ban a target should have now: its longest decision still running, or null. */
  banOf(target: string, now: number): { until: number; reason: string } | null {
    const ids = this.byTarget.get(target);
    if (ids === undefined) return null;
    let best: Held | null = null;
    for (const id of ids) {
      const h = this.byId.get(id);
      if (h !== undefined && h.until > now && (best === null || h.until > best.until)) best = h;
    }
    return best === null ? null : { until: best.until, reason: best.reason };
  }

  /** Every target's ban, for the fleet's snapshot. */
  snapshot(now: number): SnapshotBan[] {
    const out: SnapshotBan[] = [];
    for (const t of this.byTarget.keys()) {
      const b = this.banOf(t, now);
      if (b !== null) out.push({ t, u: b.until, r: b.reason });
    }
    return out;
  }

  private drop(id: number, h: Held): void {
    this.byId.delete(id);
    const ids = this.byTarget.get(h.target);
    ids?.delete(id);
    if (ids !== undefined && ids.size === 0) this.byTarget.delete(h.target);
  }
}

/** What a sync changed in the ban list. */
export interface SyncCount {
  added: number;
  removed: number;
}

/**
 * Makes the crowdsec layer's ban on each of `targets` what `want` says
 * (null: none): added, lengthened, shortened (removed and added again) or
 * lifted. Listeners of the ban list (an nftables set) hear each change.
 */
export function syncTargets(bans: BanList, targets: Iterable<string>, want: (target: string) => { until: number; reason: string } | null, now: number): SyncCount {
  const n: SyncCount = { added: 0, removed: 0 };
  for (const t of targets) {
    const w = want(t);
    const held = bans.get(t, 'crowdsec');
    if (w === null) {
      if (held !== null && bans.remove(t, 'crowdsec')) n.removed++;
      continue;
    }
    if (held !== null && held.until === w.until && held.reason === w.reason) continue;
    // A shorter ban, or another reason for as long: add() alone would keep the one held.
    if (held !== null && held.until >= w.until) bans.remove(t, 'crowdsec');
    bans.add(t, w.until - now, w.reason, now, { origin: 'crowdsec' });
    n.added++;
  }
  return n;
}

/**
 * Puts a whole list in the crowdsec layer in place of what it held: the
 * layer cleared, then every ban still running loaded (CrowdSec's startup
 * answer, a fleet node's first read of the snapshot).
 */
export function replaceLayer(bans: BanList, list: readonly SnapshotBan[], now: number): number {
  bans.clear('crowdsec');
  let n = 0;
  for (const b of list) {
    if (b.u <= now) continue;
    bans.add(b.t, b.u - now, b.r, now, { origin: 'crowdsec' });
    n++;
  }
  return n;
}

/** Makes the crowdsec layer hold exactly `list`, touching only the bans that differ (a follower's later reads). */
export function mergeLayer(bans: BanList, list: readonly SnapshotBan[], now: number): SyncCount {
  const want = new Map<string, { until: number; reason: string }>();
  for (const b of list) if (b.u > now) want.set(b.t, { until: b.u, reason: b.r });
  const targets = new Set(want.keys());
  for (const b of bans.list(now, 'crowdsec')) targets.add(b.target);
  return syncTargets(bans, targets, (t) => want.get(t) ?? null, now);
}
