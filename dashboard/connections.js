/**
 * The live connection table's model. A host may hold tens of thousands of
 * connections and open and close hundreds a second, so the table never
 * redraws itself: it loads the oldest PAGE connections that match the filter
 * (the API pages, oldest first) and the total, then applies the event stream
 * to what it holds. Events are queued and applied once per animation frame;
 * a connection beyond the loaded page only moves the total. A periodic
 * resync (and one after a row leaves a full page) corrects byte counts and
 * any drift. Sorting is by the page, on the loaded rows; filtering is by the
 * API. Only the rows in view are in the DOM (./table-window.js).
 */
import * as api from './api.js';
import { clearErrors, showError } from './confirm.js';
import { countryLabel, formatNumber, h, parseCountry, throttle } from './format.js';
import { addressMatcher, addressSortKey } from './ip.js';
import { kickConnection, kickFromForm } from './kick.js';
import { TableWindow } from './table-window.js';

/** @typedef {import('./api.js').Connection} Connection */
/** @typedef {import('./api.js').Disconnect} Disconnect */
/** @typedef {import('./table-window.js').Row} Row */
/** @typedef {'service' | 'address' | 'country' | 'age' | 'bytes_in' | 'bytes_out'} SortKey */
/** @typedef {{ service: string, country: string, address: string }} Filter */

/** Rows loaded at first and per "Show more": one API page, many screenfuls. */
const PAGE = 1000;
/** Rows the table holds at most; past that a filter is the way to find a connection. */
const MAX_ROWS = 5000;
/** The API's largest page. */
const API_MAX_LIMIT = 1000;
/** A disconnect that raced a page load must not bring its row back: remembered this long. */
const GONE_MEMORY_MS = 30_000;
/** Typing in a filter field reloads once the typing pauses. */
const FILTER_DELAY_MS = 250;
/** At most one resync this often when events leave the page short or the total uncertain. */
const RESYNC_MIN_MS = 1500;
/** The count line changes with every event; repainted this often at most. */
const COUNT_EVERY_MS = 250;
/** More rows than this arriving in one frame are sorted in at once rather than one by one. */
const BULK_INSERT = 32;

const collator = new Intl.Collator(undefined, { numeric: true });

/** Ascending order per column. @type {Record<SortKey, (a: Row, b: Row) => number>} */
const ORDER = {
  service: (a, b) => collator.compare(a.c.service, b.c.service),
  address: (a, b) => (a.addrKey < b.addrKey ? -1 : a.addrKey > b.addrKey ? 1 : a.c.client.port - b.c.client.port),
  country: (a, b) => collator.compare(a.countryKey, b.countryKey),
  age: (a, b) => b.startMs - a.startMs,
  bytes_in: (a, b) => a.c.bytes_in - b.c.bytes_in,
  bytes_out: (a, b) => a.c.bytes_out - b.c.bytes_out,
};

export class ConnectionTable {
  /**
   * @param {{ table: HTMLTableElement, scroll: HTMLElement, count: HTMLElement, more: HTMLButtonElement,
   *   filter: HTMLFormElement, kickForm: HTMLFormElement, onChange: () => void }} els
   */
  constructor(els) {
    this.els = els;
    this.tbody = /** @type {HTMLTableSectionElement} */ (els.table.tBodies[0]);
    this.view = new TableWindow({ table: els.table, scroll: els.scroll, onScroll: () => this.schedule() });
    /** @type {Map<string, Row>} */
    this.rows = new Map();
    /** Every loaded row, in display order. @type {Row[]} */
    this.order = [];
    /** @type {SortKey} */
    this.sortKey = 'age';
    this.sortDesc = true;
    /** The filter the loaded rows match; events are judged by it. @type {Filter} */
    this.filter = { service: '', country: '', address: '' };
    /** The filter asked for: it replaces `filter` together with the rows that match it. @type {Filter} */
    this.wanted = this.filter;
    /** @type {((address: string) => boolean) | null} */
    this.addressOk = null;
    this.total = 0;
    this.limit = PAGE;
    /** Events not yet applied. @type {Array<{ connect: Connection } | { disconnect: Disconnect }>} */
    this.queue = [];
    this.frame = 0;
    /** Bumped by every load, so an answer to an older one is dropped. */
    this.generation = 0;
    this.loaded = false;
    /** @type {Map<string, number>} */
    this.gone = new Map();
    /** Country of connections seen connecting but not loaded, to judge their disconnect against a country filter. @type {Map<string, string | null>} */
    this.countryOf = new Map();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.resyncTimer = undefined;
    this.lastResync = 0;
    this.showCountSoon = throttle(() => this.showCount(), COUNT_EVERY_MS);
    this.wire();
  }

  wire() {
    const { filter, kickForm, more, table } = this.els;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    let typing;
    filter.addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(() => this.readFilter(), FILTER_DELAY_MS);
    });
    filter.addEventListener('submit', (e) => {
      e.preventDefault();
      this.readFilter();
    });
    filter.addEventListener('reset', () => setTimeout(() => this.readFilter(), 0));
    more.addEventListener('click', () => {
      this.limit = Math.min(MAX_ROWS, this.limit + PAGE);
      void this.resync();
    });
    for (const th of table.tHead?.rows[0]?.cells ?? []) {
      const key = /** @type {SortKey | undefined} */ (th.dataset.key);
      if (key !== undefined) th.querySelector('button')?.addEventListener('click', () => this.sortBy(key));
    }
    this.tbody.addEventListener('click', async (e) => {
      const btn = /** @type {HTMLElement} */ (e.target).closest('button.kick');
      const id = btn instanceof HTMLElement ? btn.dataset.id : undefined;
      if (id !== undefined && (await kickConnection(id, this.rows.get(id)?.c))) this.changed();
    });
    kickForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (await kickFromForm(kickForm)) this.changed();
    });
  }

  /** After a kick from the page: the rows go by the event stream; a resync makes sure, and the rest of the page follows. */
  changed() {
    this.scheduleResync();
    this.els.onChange();
  }

  /** The service names for the filter and the kick form. */
  setServices(/** @type {string[]} */ names) {
    for (const form of [this.els.filter, this.els.kickForm]) {
      const sel = /** @type {HTMLSelectElement} */ (form.elements.namedItem('service'));
      const want = ['', ...names];
      if ([...sel.options].map((o) => o.value).join('\n') === want.join('\n')) continue;
      const cur = sel.value;
      sel.replaceChildren(...want.map((n) => h('option', { value: n }, n === '' ? 'any' : n)));
      sel.value = want.includes(cur) ? cur : '';
    }
  }

  readFilter() {
    const f = this.els.filter;
    const field = (/** @type {string} */ n) => /** @type {HTMLInputElement} */ (f.elements.namedItem(n));
    const service = field('service').value;
    const countryIn = field('country');
    const addressIn = field('address');
    const country = countryIn.value.trim() === '' ? '' : parseCountry(countryIn.value);
    const address = addressIn.value.trim();
    const addressOk = address === '' ? null : addressMatcher(address);
    countryIn.setAttribute('aria-invalid', String(country === null));
    addressIn.setAttribute('aria-invalid', String(address !== '' && addressOk === null));
    if (country === null || (address !== '' && addressOk === null)) return;
    const w = this.wanted;
    if (service === w.service && country === w.country && address === w.address) return;
    this.wanted = { service, country, address };
    this.limit = PAGE;
    this.els.count.textContent = 'Loading the matching connections…';
    void this.resync();
  }

  /** Loads the first `limit` matching connections and makes the table hold exactly them. */
  async resync() {
    const gen = ++this.generation;
    clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
    this.lastResync = Date.now();
    const f = this.wanted;
    /** @type {Connection[]} */
    const items = [];
    let total = 0;
    try {
      for (let offset = 0; offset < this.limit; offset += API_MAX_LIMIT) {
        const want = Math.min(API_MAX_LIMIT, this.limit - offset);
        const r = await api.getConnections({ service: f.service, country: f.country, address: f.address, offset, limit: want });
        if (gen !== this.generation) return;
        items.push(...r.items);
        total = r.total;
        if (r.items.length < want) break;
      }
      clearErrors('Live connections');
    } catch (err) {
      if (gen === this.generation) showError('Live connections could not be loaded.', err);
      return;
    }
    if (f !== this.filter) {
      this.filter = f;
      this.addressOk = f.address === '' ? null : addressMatcher(f.address);
      this.countryOf.clear();
      this.view.toTop();
    }
    this.reconcile(items, total);
  }

  /**
   * Makes the loaded rows those of `items`, keeping the rows (and their elements) that stay.
   * Events still queued are applied after, by flush(): a close that raced the answer removes its row there.
   * @param {Connection[]} items
   * @param {number} total
   */
  reconcile(items, total) {
    const now = Date.now();
    for (const [id, at] of this.gone) if (now - at > GONE_MEMORY_MS) this.gone.delete(id);
    const first = items[0];
    if (first !== undefined) this.view.skewMs = first.age_s * 1000 - (now - Date.parse(first.started_at));
    /** @type {Map<string, Row>} */
    const next = new Map();
    let stale = 0;
    for (const c of items) {
      if (this.gone.has(c.id)) stale++;
      else if (!next.has(c.id)) next.set(c.id, this.rows.get(c.id) ?? this.makeRow(c));
      const row = next.get(c.id);
      if (row !== undefined && row.c !== c) this.view.update(row, c);
    }
    this.rows = next;
    this.order = [...next.values()].sort(this.comparator());
    this.total = Math.max(total - stale, this.rows.size);
    this.loaded = true;
    this.showCount();
    this.view.render(this.order);
  }

  /** A connection opened (from the event stream). */
  onConnect(/** @type {Connection} */ c) {
    this.enqueue({ connect: c });
  }

  /** A connection closed (from the event stream). */
  onDisconnect(/** @type {Disconnect} */ d) {
    this.enqueue({ disconnect: d });
  }

  /** @param {{ connect: Connection } | { disconnect: Disconnect }} ev */
  enqueue(ev) {
    if (!this.loaded) return;
    this.queue.push(ev);
    this.schedule();
  }

  schedule() {
    if (this.frame === 0) this.frame = requestAnimationFrame(() => this.flush());
  }

  /** Once a frame: applies the queued events, then renders the rows in view. */
  flush() {
    this.frame = 0;
    const events = this.queue;
    this.queue = [];
    /** @type {Row[]} */
    const added = [];
    /** @type {Set<Row>} */
    const removed = new Set();
    let uncertain = false;
    for (const ev of events) {
      if ('connect' in ev) {
        const c = ev.connect;
        if (this.gone.has(c.id) || this.rows.has(c.id) || this.matches(c.service, c.client.address, c.country) !== true) continue;
        this.total++;
        if (this.rows.size < this.limit) {
          const row = this.makeRow(c);
          this.rows.set(c.id, row);
          added.push(row);
        } else {
          this.countryOf.set(c.id, c.country);
        }
      } else {
        const d = ev.disconnect;
        this.gone.set(d.id, Date.now());
        const row = this.rows.get(d.id);
        if (row !== undefined) {
          this.rows.delete(d.id);
          removed.add(row);
          this.total--;
          continue;
        }
        const known = this.countryOf.has(d.id);
        const m = this.matches(d.service, d.address, known ? (this.countryOf.get(d.id) ?? null) : undefined);
        this.countryOf.delete(d.id);
        if (m === true) this.total--;
        else if (m === null) uncertain = true;
      }
    }
    if (removed.size > 0) this.order = this.order.filter((r) => !removed.has(r));
    const fresh = added.filter((r) => this.rows.get(r.c.id) === r);
    if (fresh.length > BULK_INSERT) {
      this.order.push(...fresh);
      this.order.sort(this.comparator());
    } else {
      for (const r of fresh) this.insert(r);
    }
    this.total = Math.max(this.total, this.rows.size);
    if (events.length > 0) this.showCountSoon();
    this.view.render(this.order);
    // A page left short while more match, or a total we could not follow: ask the server.
    if (uncertain || (removed.size > 0 && this.rows.size < Math.min(this.limit, this.total))) this.scheduleResync();
  }

  /**
   * Whether a connection passes the filter; null when that cannot be told here
   * (a country filter, and a connection whose country the page never saw).
   * @param {string} service
   * @param {string} address
   * @param {string | null | undefined} country
   * @returns {boolean | null}
   */
  matches(service, address, country) {
    const f = this.filter;
    if (f.service !== '' && service !== f.service) return false;
    if (this.addressOk !== null && !this.addressOk(address)) return false;
    if (f.country === '') return true;
    return country === undefined ? null : country === f.country;
  }

  scheduleResync() {
    if (this.resyncTimer !== undefined) return;
    const wait = Math.max(0, this.lastResync + RESYNC_MIN_MS - Date.now());
    this.resyncTimer = setTimeout(() => void this.resync(), wait);
  }

  /** Puts one new row in its sorted place. */
  insert(/** @type {Row} */ row) {
    const cmp = this.comparator();
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cmp(/** @type {Row} */ (this.order[mid]), row) <= 0) lo = mid + 1;
      else hi = mid;
    }
    this.order.splice(lo, 0, row);
  }

  /** @returns {(a: Row, b: Row) => number} */
  comparator() {
    const base = ORDER[this.sortKey];
    const dir = this.sortDesc ? -1 : 1;
    return (a, b) => dir * base(a, b) || a.startMs - b.startMs || collator.compare(a.c.id, b.c.id);
  }

  sortBy(/** @type {SortKey} */ key) {
    if (key === this.sortKey) this.sortDesc = !this.sortDesc;
    else {
      this.sortKey = key;
      // Oldest first and biggest first are what one looks for; names read A to Z.
      this.sortDesc = key === 'age' || key === 'bytes_in' || key === 'bytes_out';
    }
    for (const th of this.els.table.tHead?.rows[0]?.cells ?? []) {
      if (th.dataset.key === undefined) continue;
      if (th.dataset.key === key) th.setAttribute('aria-sort', this.sortDesc ? 'descending' : 'ascending');
      else th.removeAttribute('aria-sort');
    }
    this.order.sort(this.comparator());
    this.view.render(this.order);
  }

  /** @returns {Row} */
  makeRow(/** @type {Connection} */ c) {
    return { c, startMs: Date.parse(c.started_at), addrKey: addressSortKey(c.client.address), countryKey: countryLabel(c.country), dom: null };
  }

  /** Once a second: the ages in view. */
  tick() {
    this.view.tick();
  }

  showCount() {
    const shown = this.rows.size;
    const f = this.filter;
    const filtered = f.service !== '' || f.country !== '' || f.address !== '';
    const what = filtered ? 'matching connections' : 'live connections';
    this.els.count.textContent =
      shown >= this.total
        ? `${formatNumber(this.total)} ${what}.`
        : `Loaded the ${formatNumber(shown)} oldest of ${formatNumber(this.total)} ${what}; sorting applies to these.`;
    this.els.more.hidden = !(this.total > shown && this.limit < MAX_ROWS);
    this.els.more.textContent = `Load ${formatNumber(Math.min(PAGE, this.total - shown))} more`;
  }
}
