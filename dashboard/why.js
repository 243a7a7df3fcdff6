/**
 * "Why refused?": an address's bans in force (both layers: local and
 * CrowdSec's) and its recent refusals (GET /api/why: every node's in a
 * fleet), each with the front-end, the rule, the counts against the limit,
 * until when, and the one command that lifts it. Asked from the form, or
 * from the "why?" button on a refused address elsewhere on the page.
 */
import * as api from './api.js';
import { clearErrors, showError } from './confirm.js';
import { countryLabel, formatDuration, formatTime, h } from './format.js';

/** @typedef {import('./api.js').Why} Why */
/** @typedef {import('./api.js').Lift} Lift */

const WHO = /** @type {Record<string, string>} */ ({ operator: 'an operator', auto: "Doorman's own rule", crowdsec: 'CrowdSec' });

export class WhyView {
  /** @param {{ form: HTMLFormElement, answer: HTMLElement }} els */
  constructor(els) {
    this.els = els;
    this.generation = 0;
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      const address = String(new FormData(els.form).get('address') ?? '').trim();
      if (address !== '') void this.ask(address);
    });
  }

  /** Fills the form with `address`, brings the panel into view and asks. */
  askFor(/** @type {string} */ address) {
    const input = /** @type {HTMLInputElement} */ (this.els.form.elements.namedItem('address'));
    input.value = address;
    this.els.form.scrollIntoView({ block: 'nearest' });
    void this.ask(address);
  }

  async ask(/** @type {string} */ address) {
    const gen = ++this.generation;
    this.els.answer.setAttribute('aria-busy', 'true');
    try {
      const w = await api.getWhy(address);
      if (gen !== this.generation) return;
      clearErrors('Why');
      this.show(w);
    } catch (err) {
      if (gen === this.generation) this.els.answer.replaceChildren();
      showError(`Why ${address}: not answered.`, err);
    } finally {
      if (gen === this.generation) this.els.answer.removeAttribute('aria-busy');
    }
  }

  show(/** @type {Why} */ w) {
    const items = [];
    for (const b of w.bans) {
      const strike = b.strike > 1 ? `, strike ${b.strike}` : '';
      items.push(
        h(
          'li',
          { class: 'why-item ban', 'data-layer': b.layer },
          h('p', null, h('strong', null, 'Banned: '), h('span', { class: 'addr' }, b.target), ` (${b.layer} layer, by ${WHO[b.origin] ?? b.origin}${strike}) for ${formatDuration(b.left_s)} more, until ${formatTime(b.until)}: ${b.reason}`),
          lift(b.lift, true),
        ),
      );
    }
    for (const r of w.refusals) {
      const times = r.times > 1 ? `, ${r.times} times since ${formatTime(r.first_at)}` : '';
      const counts = r.count !== null && r.limit !== null ? ` — ${r.count} against a limit of ${r.limit}${r.key !== null && r.key !== w.address ? ` (counted as ${r.key})` : ''}` : '';
      const status = r.in_force ? (r.until === null ? 'in force until it is lifted' : `until ${formatTime(r.until)}`) : 'no longer in force';
      items.push(
        h(
          'li',
          { class: `why-item${r.in_force ? '' : ' past'}`, 'data-cause': r.cause },
          h('p', null, h('time', { class: 'muted', datetime: r.at }, formatTime(r.at)), ' ', h('span', { class: 'svc' }, r.service), ` refused by ${r.by}: `, h('span', { class: 'rule' }, r.rule), h('span', { class: 'muted' }, ` (on ${r.node}${times})`)),
          h('p', null, r.reason, counts),
          h('p', { class: 'muted' }, r.retry_after_s > 0 ? `Retry after ${formatDuration(r.retry_after_s)}; ${status}.` : `Not temporary; ${status}.`),
          lift(r.lift, r.in_force),
        ),
      );
    }
    const head = h('p', { class: 'why-head' }, h('span', { class: 'addr' }, w.address), w.country ? ` ${countryLabel(w.country)}` : '', `: ${count(w.bans.length, 'ban')} in force, ${count(w.refusals.length, 'refusal')} recorded.`);
    const out = [head];
    if (items.length > 0) out.push(h('ol', { class: 'why-list' }, ...items));
    else out.push(h('p', { class: 'muted small' }, `Each node keeps the last ${w.record.addresses} addresses refused, ${w.record.per_address} refusals each, for ${formatDuration(w.record.max_age_s)}.`));
    if (w.missing_nodes.length > 0) out.push(h('p', { class: 'muted small' }, `Not answered in time by: ${w.missing_nodes.join(', ')}.`));
    this.els.answer.replaceChildren(...out);
  }
}

/** "To lift it:" the command (selectable as a whole), and how in words. */
function lift(/** @type {Lift} */ l, /** @type {boolean} */ inForce) {
  if (!inForce) return h('p', { class: 'muted lift' }, l.how);
  if (l.command === null) return h('p', { class: 'lift' }, h('strong', null, 'To lift it: '), l.how);
  return h('p', { class: 'lift' }, h('strong', null, 'To lift it: '), h('code', { class: 'cmd' }, l.command), h('br'), h('span', { class: 'muted small' }, l.how));
}

const count = (/** @type {number} */ n, /** @type {string} */ noun) => `${n} ${noun}${n === 1 ? '' : 's'}`;
