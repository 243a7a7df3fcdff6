/**
 * The numbers beside the table: top clients by live connections and by
 * refusals (/api/top), peak statistics as anvil keeps them (/api/peaks), and
 * the latest refusals as they stream in (batched per animation frame, a
 * short list: a storm of refusals must not flood the page).
 */
import * as api from './api.js';
import { clearErrors, showError } from './confirm.js';
import { countryLabel, emptyNote, formatNumber, formatTime, h } from './format.js';

/** @typedef {import('./api.js').TopItem} TopItem */
/** @typedef {import('./api.js').Peak} Peak */
/** @typedef {import('./api.js').Refusal} Refusal */

/** Refusals kept on screen. */
const FEED_LENGTH = 12;
const TOP_LIMIT = 10;

/** anvil's names for its statistics, and ours for the table size. */
const PEAK_LABELS = /** @type {const} */ ([
  ['count', 'Most connections at once'],
  ['conn', 'Highest connection rate'],
  ['mail', 'Highest message rate'],
  ['rcpt', 'Highest recipient rate'],
  ['newtls', 'Highest new-TLS rate'],
  ['auth', 'Highest AUTH rate'],
  ['tlstr', 'Highest TLS trace rate (Postfix 3.12)'],
  ['authfail', 'Highest AUTH-failure rate'],
  ['entries', 'Largest table'],
]);

export class StatsView {
  /**
   * @param {{ topConnections: HTMLOListElement, topRefusals: HTMLOListElement, engineClients: HTMLOListElement, peaks: HTMLElement, feed: HTMLOListElement,
   *   onWhy: (address: string) => void }} els  onWhy: a refused address's "why?" was pressed
   */
  constructor(els) {
    this.els = els;
    /** @type {Refusal[]} */
    this.pending = [];
    this.frame = 0;
    this.els.feed.replaceChildren(emptyNote('None since this page was opened.'));
    const why = (/** @type {Event} */ e) => {
      const btn = /** @type {HTMLElement} */ (e.target).closest('button.why-ask');
      if (btn instanceof HTMLElement && btn.dataset.address) els.onWhy(btn.dataset.address);
    };
    els.feed.addEventListener('click', why);
    els.topRefusals.addEventListener('click', why);
  }

  async loadTop() {
    try {
      const [conn, ref, engine] = await Promise.all([api.getTop('connections', TOP_LIMIT), api.getTop('refusals', TOP_LIMIT), api.getClients(TOP_LIMIT)]);
      clearErrors('Top clients');
      this.showTop(this.els.topConnections, conn.items, 'No live connections.', 'connection');
      this.showTop(this.els.topRefusals, ref.items, 'No refusals in the last hour.', 'refusal', true);
      // The engine's view includes clients that only Postfix (anvil) or a policy service reported.
      // A network is a per-prefix count, or the range Postfix 3.8+ counts a client in (::/84).
      const counted = engine.items.map((c) => ({ address: `${c.service} ${c.client}${c.kind === 'network' ? ' (network)' : ''}`, country: null, count: c.count }));
      this.showTop(this.els.engineClients, counted, 'Nothing counted now.', 'connection');
    } catch (err) {
      showError('Top clients could not be loaded.', err);
    }
  }

  /**
   * @param {HTMLOListElement} list
   * @param {TopItem[]} items
   * @param {string} empty
   * @param {string} unit
   * @param {boolean} [ask] a "why?" button on each address
   */
  showTop(list, items, empty, unit, ask = false) {
    const max = Math.max(1, ...items.map((i) => i.count));
    const rows = items.map((i) =>
      h(
        'li',
        { style: `--share:${((i.count / max) * 100).toFixed(1)}%` },
        h('span', { class: 'addr' }, i.address, ask ? whyButton(i.address) : null),
        h('span', { class: 'muted' }, countryLabel(i.country)),
        h('span', { class: 'num', 'aria-label': `${i.count} ${unit}${i.count === 1 ? '' : 's'}` }, formatNumber(i.count)),
      ),
    );
    list.replaceChildren(...(rows.length > 0 ? rows : [emptyNote(empty)]));
  }

  async loadPeaks() {
    try {
      const r = await api.getPeaks();
      clearErrors('Peaks');
      const out = [];
      for (const [name, label] of PEAK_LABELS) {
        const p = r.peaks[name];
        if (p === undefined) continue;
        out.push(
          h('div', null, h('dt', null, label), h('dd', null, h('strong', null, formatNumber(p.value)), ' ', p.key ? h('span', { class: 'addr' }, p.key) : null, h('span', { class: 'muted' }, ` at ${formatTime(p.at)}`))),
        );
      }
      this.els.peaks.replaceChildren(...(out.length > 0 ? out : [h('div', null, h('dt', null, 'Nothing yet'), h('dd', { class: 'muted' }, 'no traffic since the last report'))]));
    } catch (err) {
      showError('Peaks could not be loaded.', err);
    }
  }

  onRefusal(/** @type {Refusal} */ r) {
    this.pending.push(r);
    if (this.pending.length > FEED_LENGTH) this.pending.splice(0, this.pending.length - FEED_LENGTH);
    if (this.frame === 0) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    const feed = this.els.feed;
    feed.querySelector('.empty')?.remove();
    const now = formatTime(Date.now());
    const items = this.pending.reverse().map((r) =>
      h(
        'li',
        null,
        h('time', { class: 'muted' }, now),
        ' ',
        h('span', { class: 'svc' }, r.service),
        ' ',
        h('span', { class: 'addr' }, r.address),
        r.country ? ` ${countryLabel(r.country)}` : '',
        `: ${r.reason}`,
        whyButton(r.address),
      ),
    );
    this.pending = [];
    feed.prepend(...items);
    while (feed.children.length > FEED_LENGTH) feed.lastElementChild?.remove();
  }
}

/** The small button that asks why an address was refused. */
function whyButton(/** @type {string} */ address) {
  return h('button', { type: 'button', class: 'why-ask small quiet', 'data-address': address, 'aria-label': `Why was ${address} refused?` }, 'why?');
}
