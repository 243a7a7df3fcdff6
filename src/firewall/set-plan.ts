/**
 * What the nftables sets should hold, and the nft script that takes them
 * there from what was last written, with no I/O: the set writer
 * (./nft-set.ts) tells it every ban change as it happens, asks it for a
 * batch when it is ready to run nft, and tells it whether the batch went in.
 *
 * It mirrors the bans in force (both layers), keyed like the BanList, and
 * the elements written. A change touches a range; a batch recomputes the
 * envelope (./nft-elements.ts) over each touched region, grown until no ban
 * and no written element straddles its edge, and writes only the difference.
 * An element no longer wanted is deleted; but a `delete` of an element the
 * kernel has already timed out fails the whole transaction, so one that may
 * be ending while nft runs (within one nft deadline of its end) is removed
 * first, in a run of its own, by `add` then `delete`, which succeeds either
 * way; nft 1.0.6 refuses that pair followed by an overlapping `add` in one
 * transaction ("interval overlaps"), hence two runs. One long past its end
 * is simply forgotten. A resync (at start, after a `clear`, after a failure) flushes the
 * sets and writes every element in one transaction, so no address in force
 * is ever missing from the set while it runs.
 *
 * The guardrail: a ban overlapping loopback or an exception network is never
 * written, whatever let it through; each is reported once, for the log.
 * A single address costs map lookups and a scan of the network bans; a
 * network's region, a scan of every ban (CrowdSec's tens of thousands: a
 * few milliseconds, in the rare batch that has one).
 */
import type { Ban, BanChange, BanLayer } from '../core/bans.js';
import { layerOf } from '../core/bans.js';
import { parseNetwork, type Network } from '../core/networks.js';
import { contains, elementText, envelope, familyOf, LOOPBACK, networkSpan, overlaps, timeoutText, type Family, type Piece, type Span } from './nft-elements.js';

/** Where the elements go: `family table` and each family's set (null: that family is not written). */
export interface SetNames {
  /** "inet filter": the table's family and name, as nft reads them. */
  readonly table: string;
  readonly v4: string | null;
  readonly v6: string | null;
}

/** A ban the guardrail kept out of the sets, and why. */
export interface Withheld {
  readonly target: string;
  readonly layer: BanLayer;
  readonly why: string;
}

/** One batch of changes: at most two nft runs. */
export interface Batch {
  /** Run first when not empty: elements that may be timing out, removed whether or not they still are. */
  readonly pre: string;
  /** The batch's transaction (empty: nothing to write). */
  readonly script: string;
  readonly resync: boolean;
  /** Elements added (or re-added with a new timeout) and removed. */
  readonly added: number;
  readonly removed: number;
  /** Bans the guardrail kept out since the last batch (to log). */
  readonly withheld: readonly Withheld[];
}

interface Entry extends Piece {
  readonly key: string;
  readonly target: string;
  readonly layer: BanLayer;
}

/** Elements per `add element` line of a resync (one transaction whatever the count). */
const LINE_ELEMENTS = 500;

const spanKey = (s: Span): string => `${s.lo}-${s.hi}`;

export class SetPlan {
  /** The bans in force by layer and target, but those withheld or of a family not written. */
  private readonly bans = new Map<string, Entry>();
  /** Those of `bans` wider than one address, and those of one address by its value. */
  private readonly nets = new Set<Entry>();
  private readonly hosts = new Map<bigint, Entry[]>();
  /** The elements written, by range; `wideWritten` holds those wider than one address. */
  private readonly written = new Map<string, Piece>();
  private readonly wideWritten = new Set<Piece>();
  /** Ranges changed since the last batch. */
  private touched: Span[] = [];
  private resyncWanted = true;
  private withheld: Withheld[] = [];
  /** Keys of bans withheld, so each is reported once. */
  private readonly told = new Set<string>();
  private pending: { batch: Batch; commit: () => void } | null = null;

  constructor(
    private readonly names: SetNames,
    /** The exception networks in force (a reload may change them). */
    private readonly exceptions: () => Iterable<Network>,
    /**
     * The deadline of an nft run. An element's timeout starts when nft runs,
     * at most this long after it was computed, so the kernel drops it at
     * most this long after its end, and never before.
     */
    private readonly runMs = 30_000,
  ) {}

  /** Whether a batch has something to do (or to report). */
  get dirty(): boolean {
    return this.resyncWanted || this.touched.length > 0 || this.withheld.length > 0;
  }

  /** How many elements were last written (some may have timed out since). */
  get elements(): number {
    return this.written.size;
  }

  /** Follows a change of the ban list (gate.bans.onChange). */
  change(c: BanChange): void {
    if (c.kind === 'clear') {
      // The list of that layer is being replaced: write everything again once it is in.
      for (const [k, e] of this.bans) if (e.layer === c.layer) this.forget(k);
      for (const k of this.told) if (k.startsWith(`${c.layer}|`)) this.told.delete(k);
      this.resyncWanted = true;
      return;
    }
    const layer = layerOf(c.ban.origin);
    const key = `${layer}|${c.ban.target}`;
    const old = this.bans.get(key);
    if (old !== undefined) {
      this.forget(key);
      this.touched.push(old);
    }
    if (c.kind === 'add') {
      const e = this.remember(c.ban);
      if (e !== null) this.touched.push(e);
    } else this.told.delete(key);
  }

  /** Write everything again at the next batch (a failure, exceptions reloaded). */
  wantResync(): void {
    this.resyncWanted = true;
  }

  /**
   * The next batch, or null when there is nothing to do. `inForce` is read on
   * a resync (gate.bans.list). The batch takes effect in the plan only once
   * settled with ok true; with ok false the next one is a resync.
   */
  next(now: number, inForce: () => readonly Ban[]): Batch | null {
    if (this.pending !== null) throw new Error('a batch is already out');
    if (!this.dirty) return null;
    const out = this.resyncWanted ? this.resync(now, inForce()) : this.incremental(now);
    this.pending = out;
    return out.batch;
  }

  /** The outcome of the batch last returned by next(). */
  settle(ok: boolean): void {
    const p = this.pending;
    this.pending = null;
    if (p === null) return;
    if (ok) p.commit();
    else this.resyncWanted = true;
  }

  private resync(now: number, bans: readonly Ban[]): { batch: Batch; commit: () => void } {
    for (const k of [...this.bans.keys()]) this.forget(k);
    for (const b of bans) this.remember(b);
    this.touched = [];
    this.resyncWanted = false;
    const pieces = envelope([...this.bans.values()].filter((e) => e.until > now));
    const lines: string[] = [];
    for (const f of [4, 6] as const) {
      const set = this.setOf(f);
      if (set !== null) lines.push(`flush set ${this.names.table} ${set}`);
    }
    const keep = pieces.filter((p) => p.until > now);
    for (const f of [4, 6] as const) {
      const set = this.setOf(f);
      const mine = keep.filter((p) => familyOf(p) === f);
      if (set === null) continue;
      for (let i = 0; i < mine.length; i += LINE_ELEMENTS) lines.push(this.addLine(set, f, mine.slice(i, i + LINE_ELEMENTS), now));
    }
    return {
      batch: this.batch([], lines, true, keep.length, 0),
      commit: () => {
        this.written.clear();
        this.wideWritten.clear();
        for (const p of keep) this.record(p);
      },
    };
  }

  private incremental(now: number): { batch: Batch; commit: () => void } {
    const regions = this.regions(now);
    this.touched = [];
    const gone: Piece[] = [];
    const fresh: Piece[] = [];
    for (const r of regions) {
      const old = this.writtenIn(r, now);
      const want = envelope(this.bansIn(r, now));
      const same = new Map(old.map((p) => [spanKey(p), p]));
      for (const p of want) {
        const o = same.get(spanKey(p));
        if (o !== undefined && o.until === p.until) same.delete(spanKey(p));
        else fresh.push(p);
      }
      gone.push(...same.values());
    }
    const pre: string[] = [];
    const lines: string[] = [];
    for (const p of gone) {
      const f = familyOf(p) as Family;
      const set = this.setOf(f) as string;
      const el = `${this.names.table} ${set} { ${elementText(p, f)} }`;
      // Still in the kernel when this run's delete reaches it: a plain delete.
      if (p.until - now > this.runMs) lines.push(`delete element ${el}`);
      // Perhaps ending meanwhile: add then delete, removed whether or not it still was.
      else if (p.until + this.runMs > now) pre.push(`add element ${this.names.table} ${set} { ${elementText(p, f)} timeout 1s }`, `delete element ${el}`);
      // Long gone: forgotten at commit.
    }
    for (const f of [4, 6] as const) {
      const set = this.setOf(f);
      const mine = fresh.filter((p) => familyOf(p) === f);
      if (set !== null && mine.length > 0) lines.push(this.addLine(set, f, mine, now));
    }
    return {
      batch: this.batch(pre, lines, false, fresh.length, gone.length),
      commit: () => {
        for (const p of gone) this.unrecord(p);
        for (const p of fresh) this.record(p);
      },
    };
  }

  private batch(pre: string[], lines: string[], resync: boolean, added: number, removed: number): Batch {
    const withheld = this.withheld;
    this.withheld = [];
    const text = (l: string[]) => (l.length === 0 ? '' : `${l.join('\n')}\n`);
    return { pre: text(pre), script: text(lines), resync, added, removed, withheld };
  }

  private addLine(set: string, f: Family, pieces: readonly Piece[], now: number): string {
    return `add element ${this.names.table} ${set} { ${pieces.map((p) => `${elementText(p, f)} timeout ${timeoutText(p.until - now)}`).join(', ')} }`;
  }

  /**
   * The regions to recompute: each touched range grown until no ban in
   * force and no element possibly still in the kernel crosses its edge, then
   * merged where they overlap.
   */
  private regions(now: number): Span[] {
    const grown: Span[] = [];
    for (const t of this.touched) {
      let r: Span = { lo: t.lo, hi: t.hi };
      for (;;) {
        let next = r;
        for (const s of [...this.bansOver(r, now), ...this.writtenOver(r, now)]) {
          if (!contains(next, s)) next = { lo: s.lo < next.lo ? s.lo : next.lo, hi: s.hi > next.hi ? s.hi : next.hi };
        }
        if (next === r) break;
        r = next;
      }
      grown.push(r);
    }
    grown.sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
    const out: Span[] = [];
    for (const r of grown) {
      const last = out[out.length - 1];
      if (last !== undefined && r.lo <= last.hi) out[out.length - 1] = { lo: last.lo, hi: r.hi > last.hi ? r.hi : last.hi };
      else out.push(r);
    }
    return out;
  }

  /** Bans in force overlapping `r`. */
  private bansOver(r: Span, now: number): Entry[] {
    const out: Entry[] = [];
    for (const e of this.nets) if (e.until > now && overlaps(e, r)) out.push(e);
    if (r.lo === r.hi) {
      for (const e of this.hosts.get(r.lo) ?? []) if (e.until > now) out.push(e);
    } else {
      for (const [v, es] of this.hosts) if (v >= r.lo && v <= r.hi) for (const e of es) if (e.until > now) out.push(e);
    }
    return out;
  }

  private bansIn(r: Span, now: number): Entry[] {
    return this.bansOver(r, now).filter((e) => contains(r, e));
  }

  /** Written elements that may still be in the kernel and overlap `r`; those long gone are forgotten. */
  private writtenOver(r: Span, now: number): Piece[] {
    const out: Piece[] = [];
    const consider = (p: Piece): void => {
      if (p.until + this.runMs <= now) this.unrecord(p);
      else if (overlaps(p, r)) out.push(p);
    };
    for (const p of [...this.wideWritten]) consider(p);
    if (r.lo === r.hi) {
      const p = this.written.get(spanKey(r));
      if (p !== undefined && !this.wideWritten.has(p)) consider(p);
    } else {
      for (const p of [...this.written.values()]) if (p.lo === p.hi) consider(p);
    }
    return out;
  }

  private writtenIn(r: Span, now: number): Piece[] {
    return this.writtenOver(r, now).filter((p) => contains(r, p));
  }

  private record(p: Piece): void {
    this.written.set(spanKey(p), p);
    if (p.lo !== p.hi) this.wideWritten.add(p);
  }

  private unrecord(p: Piece): void {
    const k = spanKey(p);
    const had = this.written.get(k);
    if (had === undefined) return;
    this.written.delete(k);
    this.wideWritten.delete(had);
  }

  /** Adds a ban to the mirror unless the guardrail withholds it or its family is not written; returns its entry. */
  private remember(b: Ban): Entry | null {
    const layer = layerOf(b.origin);
    const key = `${layer}|${b.target}`;
    let net: Network;
    try {
      net = parseNetwork(b.target);
    } catch {
      return null;
    }
    const span = networkSpan(net);
    const why = this.guard(span);
    if (why !== null) {
      if (!this.told.has(key)) {
        this.told.add(key);
        this.withheld.push({ target: b.target, layer, why });
      }
      return null;
    }
    const f = familyOf(span);
    if (f === null || this.setOf(f) === null) return null;
    const e: Entry = { lo: span.lo, hi: span.hi, until: b.until, key, target: b.target, layer };
    this.bans.set(key, e);
    if (e.lo === e.hi) {
      const list = this.hosts.get(e.lo);
      if (list === undefined) this.hosts.set(e.lo, [e]);
      else list.push(e);
    } else this.nets.add(e);
    return e;
  }

  private forget(key: string): void {
    const e = this.bans.get(key);
    if (e === undefined) return;
    this.bans.delete(key);
    if (e.lo !== e.hi) {
      this.nets.delete(e);
      return;
    }
    const list = (this.hosts.get(e.lo) ?? []).filter((x) => x !== e);
    if (list.length === 0) this.hosts.delete(e.lo);
    else this.hosts.set(e.lo, list);
  }

  /** Why a range must never be written, or null. */
  private guard(s: Span): string | null {
    for (const l of LOOPBACK) if (overlaps(s, l)) return 'it covers loopback';
    for (const ex of this.exceptions()) if (overlaps(s, networkSpan(ex))) return `it overlaps the exception network ${ex.text}`;
    return null;
  }

  private setOf(f: Family): string | null {
    return f === 4 ? this.names.v4 : this.names.v6;
  }
}
