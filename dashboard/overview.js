/**
 * Connections per service now (a tile each) and over the last hour (the
 * chart). The counts come from /api/status and then follow the event stream,
 * one increment per event; the next status poll puts them right if an event
 * was missed.
 */
import * as api from './api.js';
import { HistoryChart } from './chart.js';
import { clearErrors, showError } from './confirm.js';
import { emptyNote, formatNumber, h, throttle } from './format.js';

/** @typedef {import('./api.js').Status} Status */

const TILES_EVERY_MS = 250;

export class Overview {
  /** @param {{ tiles: HTMLUListElement, chart: HTMLElement, total: HTMLElement }} els */
  constructor(els) {
    this.els = els;
    this.chart = new HistoryChart(els.chart);
    /** @type {Map<string, { protocol: string, fronts: string[], count: number, el: HTMLElement | null, maxEl: HTMLElement | null, hourMax: number }>} */
    this.services = new Map();
    /** Tiles and chart follow the counts a few times a second, however many events arrive. */
    this.changed = throttle(() => this.paint(), TILES_EVERY_MS);
  }

  /** The service names, in display order. */
  names() {
    return [...this.services.keys()].sort();
  }

  setStatus(/** @type {Status} */ s) {
    const names = Object.keys(s.services).sort();
    const same = names.join('\n') === this.names().join('\n');
    for (const n of [...this.services.keys()]) if (!(n in s.services)) this.services.delete(n);
    for (const n of names) {
      const st = /** @type {import('./api.js').ServiceStatus} */ (s.services[n]);
      const cur = this.services.get(n);
      if (cur) {
        cur.count = st.connections;
        cur.protocol = st.protocol;
        cur.fronts = st.fronts ?? [];
      } else this.services.set(n, { protocol: st.protocol, fronts: st.fronts ?? [], count: st.connections, el: null, maxEl: null, hourMax: 0 });
    }
    if (!same) this.buildTiles();
    this.changed();
  }

  buildTiles() {
    const tiles = this.names().map((n) => {
      const s = /** @type {{ protocol: string, fronts: string[], count: number, el: HTMLElement | null, maxEl: HTMLElement | null }} */ (this.services.get(n));
      s.el = h('span', { class: 'tile-count' }, formatNumber(s.count));
      s.maxEl = h('span', { class: 'tile-max muted' });
      return h(
        'li',
        { class: `tile s${this.chart.colourOf(n)}` },
        h('span', { class: 'tile-name' }, h('span', { class: 'swatch', 'aria-hidden': 'true' }), n),
        s.el,
        h('span', { class: 'tile-proto muted' }, s.protocol === n ? 'live now' : `live now (${s.protocol})`),
        s.maxEl,
        h('span', { class: 'tile-fronts muted' }, s.fronts.length > 0 ? `asked by ${s.fronts.join(', ')}` : 'no front-end asks'),
      );
    });
    this.els.tiles.replaceChildren(...(tiles.length > 0 ? tiles : [emptyNote('No proxied services.')]));
  }

  /** @param {string} service @param {number} delta */
  bump(service, delta) {
    const s = this.services.get(service);
    if (s === undefined) return;
    s.count = Math.max(0, s.count + delta);
    this.changed();
  }

  /** Writes the counts into the tiles, the header and the chart. */
  paint() {
    requestAnimationFrame(() => {
      let total = 0;
      /** @type {Record<string, number>} */
      const live = {};
      for (const [n, s] of this.services) {
        total += s.count;
        live[n] = s.count;
        const text = formatNumber(s.count);
        if (s.el && s.el.textContent !== text) s.el.textContent = text;
        const max = `max ${formatNumber(Math.max(s.hourMax, s.count))} in the last hour`;
        if (s.maxEl && s.maxEl.textContent !== max) s.maxEl.textContent = max;
      }
      this.els.total.textContent = formatNumber(total);
      this.chart.setLive(live);
    });
  }

  async loadHistory() {
    try {
      const r = await api.getHistory();
      clearErrors('History');
      this.chart.setHistory(r.points);
      for (const [n, s] of this.services) s.hourMax = Math.max(0, ...r.points.map((p) => p.services[n] ?? 0));
      this.changed();
    } catch (err) {
      showError('History could not be loaded.', err);
    }
  }
}
