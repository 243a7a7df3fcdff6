/**
 * The rows of the connection table that are in view, and only those, in the
 * DOM: a few dozen, between two spacer rows that give the scrollbar its true
 * length. Every row has the same height (the CSS fixes it), so which rows are
 * in view is arithmetic on the scroll position and the box's height, both
 * kept from events: nothing here reads layout after the first row is
 * measured. A row's elements are built the first time it comes into view and
 * kept; rows that stay in view are never moved, so a focused button keeps
 * its focus while the table updates around it.
 */
import { countryLabel, formatBytes, formatDuration, h } from './format.js';

/** @typedef {import('./api.js').Connection} Connection */
/** @typedef {{ tr: HTMLTableRowElement, age: HTMLTableCellElement, bytesIn: HTMLTableCellElement, bytesOut: HTMLTableCellElement }} RowDom */
/**
 * One loaded connection, with what sorting needs computed once.
 * @typedef {{ c: Connection, startMs: number, addrKey: string, countryKey: string, dom: RowDom | null }} Row
 */

/** Rows rendered beyond each edge of the view, so a fast scroll does not show blank space. */
const OVERSCAN = 10;
/** Until the first row is measured. */
const DEFAULT_ROW_PX = 30;
const COLUMNS = 7;

/** A row that only takes up height. */
function spacer() {
  const td = h('td', { colspan: COLUMNS });
  return { tr: h('tr', { class: 'spacer', 'aria-hidden': 'true' }, td), td };
}

export class TableWindow {
  /** @param {{ table: HTMLTableElement, scroll: HTMLElement, onScroll: () => void }} els */
  constructor(els) {
    this.table = els.table;
    this.tbody = /** @type {HTMLTableSectionElement} */ (els.table.tBodies[0]);
    this.above = spacer();
    this.below = spacer();
    this.tbody.replaceChildren(this.above.tr, this.below.tr);
    /** The rows now in the DOM. @type {Set<Row>} */
    this.shown = new Set();
    this.rowHeight = 0;
    this.scrollTop = 0;
    this.viewHeight = 460;
    /** Server clock minus ours, from the ages the server reports, so ages do not depend on the browser's clock. */
    this.skewMs = 0;
    this.scroll = els.scroll;
    els.scroll.addEventListener(
      'scroll',
      () => {
        this.scrollTop = els.scroll.scrollTop;
        els.onScroll();
      },
      { passive: true },
    );
    new ResizeObserver((entries) => {
      for (const e of entries) this.viewHeight = e.contentRect.height;
      els.onScroll();
    }).observe(els.scroll);
  }

  /** Back to the top (a new filter). */
  toTop() {
    this.scroll.scrollTop = this.scrollTop = 0;
  }

  /** Shows the rows of `order` that are in view and takes the others out. */
  render(/** @type {Row[]} */ order) {
    const n = order.length;
    const rh = this.rowHeight || DEFAULT_ROW_PX;
    const from = Math.max(0, Math.floor(this.scrollTop / rh) - OVERSCAN);
    const to = Math.min(n, Math.ceil((this.scrollTop + this.viewHeight) / rh) + OVERSCAN);
    const want = order.slice(from, to);
    const wanted = new Set(want);
    for (const r of this.shown) if (!wanted.has(r) && r.dom) r.dom.tr.remove();
    let cur = this.above.tr.nextSibling;
    for (let i = 0; i < want.length; i++) {
      const r = /** @type {Row} */ (want[i]);
      const dom = r.dom ?? (r.dom = this.makeDom(r));
      dom.tr.setAttribute('aria-rowindex', String(from + i + 2));
      dom.tr.classList.toggle('odd', (from + i) % 2 === 1);
      if (cur === dom.tr) cur = cur.nextSibling;
      else this.tbody.insertBefore(dom.tr, cur);
      if (!this.shown.has(r)) this.setAge(r);
    }
    this.shown = wanted;
    this.above.td.style.height = `${from * rh}px`;
    this.below.td.style.height = `${(n - to) * rh}px`;
    this.above.tr.hidden = from === 0;
    this.below.tr.hidden = to >= n;
    this.table.setAttribute('aria-rowcount', String(n + 1));
    if (this.rowHeight === 0 && want[0]?.dom) {
      // The one layout read.
      this.rowHeight = want[0].dom.tr.getBoundingClientRect().height || DEFAULT_ROW_PX;
      if (this.rowHeight !== rh) this.render(order);
    }
  }

  /** @returns {RowDom} */
  makeDom(/** @type {Row} */ r) {
    const c = r.c;
    const age = h('td', { class: 'num age' });
    const bytesIn = h('td', { class: 'num' }, formatBytes(c.bytes_in));
    const bytesOut = h('td', { class: 'num' }, formatBytes(c.bytes_out));
    const addr = c.client.address;
    const tr = h(
      'tr',
      { 'data-id': c.id },
      h('td', null, c.service, c.encrypted ? h('span', { class: 'badge', title: 'encrypted (TLS)' }, 'TLS') : null),
      h('td', { class: 'addr', title: `${addr} port ${c.client.port}` }, addr, h('span', { class: 'port' }, ` :${c.client.port}`)),
      h('td', null, countryLabel(c.country)),
      age,
      bytesIn,
      bytesOut,
      h('td', { class: 'act' }, h('button', { type: 'button', class: 'kick danger small', 'data-id': c.id, 'aria-label': `Kick ${addr} (${c.service}, connection ${c.id})` }, 'Kick')),
    );
    return { tr, age, bytesIn, bytesOut };
  }

  /** A row's connection as a resync saw it: new byte counts, maybe TLS now. */
  update(/** @type {Row} */ row, /** @type {Connection} */ c) {
    const d = row.dom;
    const was = row.c;
    row.c = c;
    if (d === null) return;
    if (c.encrypted !== was.encrypted) {
      // Rare (STARTTLS): a new row, put where the old one was if it is in view.
      row.dom = this.makeDom(row);
      d.tr.replaceWith(row.dom.tr);
      this.setAge(row);
      return;
    }
    if (c.bytes_in !== was.bytes_in) d.bytesIn.textContent = formatBytes(c.bytes_in);
    if (c.bytes_out !== was.bytes_out) d.bytesOut.textContent = formatBytes(c.bytes_out);
  }

  setAge(/** @type {Row} */ r) {
    if (r.dom === null) return;
    const text = formatDuration((Date.now() - r.startMs + this.skewMs) / 1000);
    if (r.dom.age.textContent !== text) r.dom.age.textContent = text;
  }

  /** Once a second: the ages of the rows in view. */
  tick() {
    for (const r of this.shown) this.setAge(r);
  }
}
