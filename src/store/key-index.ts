/**
 * A string → slot index for the memory store that keeps no JS object per key.
 *
 * Keys of up to INLINE_KEY_BYTES bytes of UTF-8 — every "service:IPv4" and
 * "smtp:" plus a full IPv6 address — live as bytes in per-slot cells of
 * fixed-size pages; an open-addressing table (linear probing, load at most
 * 1/2, backward-shift deletion, so no tombstones) maps a hash to the slot.
 * Longer keys go to an ordinary Map. With a million keys the garbage
 * collector has a handful of typed arrays to look at instead of a million
 * strings, and a key costs 48 + 1 + 4 bytes plus about 8 of table.
 *
 * The hash is FNV-1a with a per-process random seed and a final mix, so a
 * client cannot precompute addresses that collide.
 *
 * Slots are chosen by the caller (the store allocates them); this class only
 * remembers which key owns which slot.
 */
import { randomBytes } from 'node:crypto';

export const INLINE_KEY_BYTES = 48;
const PAGE_BITS = 16;
const PAGE_SIZE = 1 << PAGE_BITS;
const PAGE_MASK = PAGE_SIZE - 1;
/** keyLen marker: the slot is not in use. */
const FREE = 255;
/** keyLen marker: the slot's key is in the long-key map. */
const LONG = 254;
const MIN_TABLE = 1024;

interface KeyPage {
  readonly len: Uint8Array;
  readonly hash: Uint32Array;
  readonly bytes: Uint8Array;
}

export class KeyIndex {
  private readonly seed = randomBytes(4).readUInt32LE(0);
  private readonly pages: KeyPage[] = [];
  /** Open-addressing table of slot + 1; 0 is empty. */
  private table = new Int32Array(MIN_TABLE);
  private mask = MIN_TABLE - 1;
  private inline = 0;
  private readonly longByKey = new Map<string, number>();
  private readonly longBySlot = new Map<number, string>();
  /** Room for INLINE_KEY_BYTES characters of up to 3 bytes each, plus one to see overflow. */
  private readonly scratch = Buffer.allocUnsafe(INLINE_KEY_BYTES * 3 + 1);

  get size(): number {
    return this.inline + this.longByKey.size;
  }

  /** The slot of `key`, or -1. */
  get(key: string): number {
    const n = this.encode(key);
    if (n < 0) return this.longByKey.get(key) ?? -1;
    const h = this.hashScratch(n);
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const e = this.table[i] as number;
      if (e === 0) return -1;
      if (this.matches(e - 1, h, n)) return e - 1;
    }
  }

  /** Records `key` at `slot`; the key must not be present and the slot must be free. */
  insert(key: string, slot: number): void {
    this.ensurePage(slot);
    const page = this.pages[slot >>> PAGE_BITS] as KeyPage;
    const at = slot & PAGE_MASK;
    const n = this.encode(key);
    if (n < 0) {
      page.len[at] = LONG;
      this.longByKey.set(key, slot);
      this.longBySlot.set(slot, key);
      return;
    }
    if ((this.inline + 1) * 2 > this.table.length) this.rehash(this.table.length * 2);
    const h = this.hashScratch(n);
    page.len[at] = n;
    page.hash[at] = h;
    this.scratch.copy(page.bytes, at * INLINE_KEY_BYTES, 0, n);
    let i = h & this.mask;
    while (this.table[i] !== 0) i = (i + 1) & this.mask;
    this.table[i] = slot + 1;
    this.inline++;
  }

  /** Forgets whichever key owns `slot`. */
  removeSlot(slot: number): void {
    const page = this.pages[slot >>> PAGE_BITS];
    if (page === undefined) return;
    const at = slot & PAGE_MASK;
    const len = page.len[at] as number;
    if (len === FREE) return;
    page.len[at] = FREE;
    if (len === LONG) {
      const key = this.longBySlot.get(slot) as string;
      this.longBySlot.delete(slot);
      this.longByKey.delete(key);
      return;
    }
    let i = (page.hash[at] as number) & this.mask;
    while (this.table[i] !== slot + 1) i = (i + 1) & this.mask;
    this.deleteAt(i);
    this.inline--;
  }

  /** True when `slot` holds a key. */
  used(slot: number): boolean {
    const page = this.pages[slot >>> PAGE_BITS];
    return page !== undefined && page.len[slot & PAGE_MASK] !== FREE;
  }

  /** The key stored at `slot` (for listings; not on the request path). */
  keyOf(slot: number): string | undefined {
    const page = this.pages[slot >>> PAGE_BITS];
    if (page === undefined) return undefined;
    const at = slot & PAGE_MASK;
    const len = page.len[at] as number;
    if (len === FREE) return undefined;
    if (len === LONG) return this.longBySlot.get(slot);
    return Buffer.from(page.bytes.buffer, page.bytes.byteOffset + at * INLINE_KEY_BYTES, len).toString('utf8');
  }

  clear(): void {
    this.pages.length = 0;
    this.table = new Int32Array(MIN_TABLE);
    this.mask = MIN_TABLE - 1;
    this.inline = 0;
    this.longByKey.clear();
    this.longBySlot.clear();
  }

  /** UTF-8 of `key` into scratch; its length, or -1 when it does not fit inline. */
  private encode(key: string): number {
    if (key.length > INLINE_KEY_BYTES) return -1;
    const n = this.scratch.write(key, 0, 'utf8');
    return n > INLINE_KEY_BYTES ? -1 : n;
  }

  private hashScratch(n: number): number {
    let h = (0x811c9dc5 ^ this.seed) | 0;
    const b = this.scratch;
    for (let i = 0; i < n; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193);
    // fmix32 from MurmurHash3: FNV's low bits are weak and the table uses them.
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
  }

  private matches(slot: number, h: number, n: number): boolean {
    const page = this.pages[slot >>> PAGE_BITS] as KeyPage;
    const at = slot & PAGE_MASK;
    if (page.hash[at] !== h || page.len[at] !== n) return false;
    const base = at * INLINE_KEY_BYTES;
    const bytes = page.bytes;
    const b = this.scratch;
    for (let i = 0; i < n; i++) if (bytes[base + i] !== b[i]) return false;
    return true;
  }

  /** Backward-shift deletion: pull later entries of the run into the hole. */
  private deleteAt(hole: number): void {
    const t = this.table;
    const mask = this.mask;
    let i = hole;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const e = t[j] as number;
      if (e === 0) break;
      const slot = e - 1;
      const home = ((this.pages[slot >>> PAGE_BITS] as KeyPage).hash[slot & PAGE_MASK] as number) & mask;
      // Move e into the hole unless its home lies in (i, j] (cyclically).
      if (((j - home) & mask) >= ((j - i) & mask)) {
        t[i] = e;
        i = j;
      }
    }
    t[i] = 0;
  }

  private rehash(size: number): void {
    const old = this.table;
    this.table = new Int32Array(size);
    this.mask = size - 1;
    for (let k = 0; k < old.length; k++) {
      const e = old[k] as number;
      if (e === 0) continue;
      const slot = e - 1;
      let i = ((this.pages[slot >>> PAGE_BITS] as KeyPage).hash[slot & PAGE_MASK] as number) & this.mask;
      while (this.table[i] !== 0) i = (i + 1) & this.mask;
      this.table[i] = e;
    }
  }

  private ensurePage(slot: number): void {
    while (this.pages.length <= slot >>> PAGE_BITS) {
      const len = new Uint8Array(PAGE_SIZE);
      len.fill(FREE);
      this.pages.push({ len, hash: new Uint32Array(PAGE_SIZE), bytes: new Uint8Array(PAGE_SIZE * INLINE_KEY_BYTES) });
    }
  }
}
