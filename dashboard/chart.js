/**
 * The connections-per-service chart: one line per service over the last
 * hour, drawn as SVG from /api/history (a point a minute), with a last
 * point that follows the live counts. Redrawn at most once a frame, and only
 * when something changed or the box was resized; the SVG is a few hundred
 * nodes at most, whatever the load.
 */
import { formatNumber } from './format.js';

/** @typedef {import('./api.js').HistoryPoint} HistoryPoint */

const SVG = 'http://www.w3.org/2000/svg';
const HEIGHT = 200;
const MARGIN = { top: 12, right: 14, bottom: 24, left: 44 };
const WINDOW_MS = 3600_000;
/** The live point moves with every connect and disconnect; twice a second is smooth enough to read. */
const MIN_REDRAW_MS = 500;
/** Series colours live in the CSS (--series-N), so light and dark themes pick their own. */
export const SERIES_COLOURS = 8;

/**
 * @param {string} name
 * @param {Record<string, string | number>} attrs
 * @param {string} [text]
 */
function svg(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A round upper bound for the y axis: 1, 2, 5, 10, 20, 50… */
function niceMax(/** @type {number} */ v) {
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

export class HistoryChart {
  /** @param {HTMLElement} box */
  constructor(box) {
    this.box = box;
    /** @type {Array<{ t: number, services: Record<string, number> }>} */
    this.points = [];
    /** @type {Record<string, number>} */
    this.live = {};
    /** Stable colour per service, in order of first sight. @type {Map<string, number>} */
    this.colour = new Map();
    this.pending = false;
    this.lastRender = -Infinity;
    /** From the resize observer: rendering never asks the layout. */
    this.width = 0;
    new ResizeObserver((entries) => {
      for (const e of entries) this.width = e.contentRect.width;
      this.schedule();
    }).observe(box);
  }

  /** The colour index of a service, shared with the tiles. */
  colourOf(/** @type {string} */ service) {
    let i = this.colour.get(service);
    if (i === undefined) this.colour.set(service, (i = this.colour.size % SERIES_COLOURS));
    return i;
  }

  setHistory(/** @type {HistoryPoint[]} */ points) {
    this.points = points.map((p) => ({ t: Date.parse(p.at), services: p.services })).filter((p) => !Number.isNaN(p.t));
    this.schedule();
  }

  setLive(/** @type {Record<string, number>} */ counts) {
    this.live = { ...counts };
    this.schedule();
  }

  /** Redraws soon: in the next frame, and no more often than every MIN_REDRAW_MS under a storm of events. */
  schedule() {
    if (this.pending) return;
    this.pending = true;
    const wait = Math.max(0, this.lastRender + MIN_REDRAW_MS - performance.now());
    setTimeout(() => {
      requestAnimationFrame(() => {
        this.pending = false;
        this.lastRender = performance.now();
        this.render();
      });
    }, wait);
  }

  render() {
    const width = Math.max(240, Math.floor(this.width));
    const now = Date.now();
    const from = now - WINDOW_MS;
    const names = [...new Set([...Object.keys(this.live), ...this.points.flatMap((p) => Object.keys(p.services))])].sort();
    for (const n of names) this.colourOf(n);
    const pts = [...this.points.filter((p) => p.t >= from && p.t < now), { t: now, services: this.live }];
    let max = 0;
    for (const p of pts) for (const n of names) max = Math.max(max, p.services[n] ?? 0);
    const top = niceMax(max);
    const w = width - MARGIN.left - MARGIN.right;
    const hgt = HEIGHT - MARGIN.top - MARGIN.bottom;
    const x = (/** @type {number} */ t) => MARGIN.left + ((t - from) / WINDOW_MS) * w;
    const y = (/** @type {number} */ v) => MARGIN.top + hgt - (v / top) * hgt;

    const now_ = names.map((n) => `${n} ${formatNumber(this.live[n] ?? 0)}`).join(', ');
    const root = svg('svg', { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img', 'aria-label': `Live connections per service over the last hour. Now: ${now_ || 'no services'}.` });
    const grid = svg('g', { class: 'grid' });
    for (const v of [0, top / 2, top]) {
      grid.append(svg('line', { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }));
      grid.append(svg('text', { x: MARGIN.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, formatNumber(v)));
    }
    for (const m of [60, 45, 30, 15, 0]) {
      const tx = x(now - m * 60_000);
      grid.append(svg('text', { x: tx, y: HEIGHT - 6, 'text-anchor': m === 60 ? 'start' : m === 0 ? 'end' : 'middle' }, m === 0 ? 'now' : `−${m} min`));
    }
    root.append(grid);
    for (const n of names) {
      const series = pts.map((p) => [x(p.t), y(p.services[n] ?? 0)]);
      const line = series.map(([px, py], i) => `${i === 0 ? 'M' : 'L'}${px?.toFixed(1)},${py?.toFixed(1)}`).join('');
      const g = svg('g', { class: `series s${this.colourOf(n)}` });
      const last = series[series.length - 1];
      g.append(svg('path', { class: 'line', d: line }));
      if (last) g.append(svg('circle', { cx: last[0] ?? 0, cy: last[1] ?? 0, r: 3 }));
      g.append(svg('title', {}, `${n}: ${formatNumber(this.live[n] ?? 0)} now`));
      root.append(g);
    }
    this.box.replaceChildren(root);
  }
}
