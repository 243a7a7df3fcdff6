/**
 * Bans: the list with each ban's time left counting down (from the server's
 * `left_s`, so the browser's clock does not matter), the ban form, and an
 * Unban button per ban. A ban's dry run lists the live connections it
 * covers: a ban refuses new connections, it does not close open ones.
 */
import * as api from './api.js';
import { clearErrors, confirmDialog, liveConnectionsCome, runChange, showError, showStatus } from './confirm.js';
import { emptyNote, formatDuration, formatTime, h } from './format.js';

/** Who made a ban, in words, for the BY column's tooltip. */
const BY = {
  operator: 'an administrator (API, CLI or dashboard)',
  auto: "one of Doorman's rules (AUTH failures, recipient probing); #N: the Nth within the repeat-offender window",
  crowdsec: "CrowdSec's decision: lift it in CrowdSec, Doorman follows",
};

/** @typedef {import('./api.js').Ban} Ban */

export class BansView {
  /** @param {{ body: HTMLTableSectionElement, form: HTMLFormElement, onChange: () => void }} els */
  constructor(els) {
    this.els = els;
    /** @type {Array<{ ban: Ban, endsAt: number, left: HTMLElement, tr: HTMLTableRowElement }>} */
    this.items = [];
    this.generation = 0;
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.banFromForm();
    });
    els.body.addEventListener('click', (e) => {
      const btn = /** @type {HTMLElement} */ (e.target).closest('button.unban');
      if (btn instanceof HTMLElement && btn.dataset.target !== undefined) void this.unban(btn.dataset.target);
    });
  }

  async load() {
    const gen = ++this.generation;
    try {
      const r = await api.getBans();
      if (gen !== this.generation) return;
      clearErrors('Bans');
      this.show(r.items);
    } catch (err) {
      showError('Bans could not be loaded.', err);
    }
  }

  show(/** @type {Ban[]} */ bans) {
    const now = performance.now();
    this.items = [...bans]
      .sort((a, b) => a.left_s - b.left_s)
      .map((ban) => {
        const left = h('td', { class: 'num', title: `until ${formatTime(ban.until)}` }, formatDuration(ban.left_s));
        const tr = h(
          'tr',
          null,
          h('td', { class: 'addr' }, ban.target),
          left,
          h('td', { title: BY[ban.origin] ?? '' }, ban.strike > 1 ? `${ban.origin} #${ban.strike}` : ban.origin),
          h('td', null, ban.reason),
          h(
            'td',
            { class: 'act' },
            ban.origin === 'crowdsec'
              ? h('span', { class: 'muted', title: `cscli decisions delete --${ban.target.includes('/') ? 'range' : 'ip'} ${ban.target}` }, 'in CrowdSec')
              : h('button', { type: 'button', class: 'unban small', 'data-target': ban.target, 'aria-label': `Unban ${ban.target}` }, 'Unban'),
          ),
        );
        return { ban, endsAt: now + ban.left_s * 1000, left, tr };
      });
    this.els.body.replaceChildren(...(this.items.length > 0 ? this.items.map((i) => i.tr) : [emptyNote('No bans.', 5)]));
  }

  /** Once a second: time left; an expired ban leaves the list. */
  tick() {
    const now = performance.now();
    const live = this.items.filter((i) => i.endsAt - now >= 500);
    for (const i of live) i.left.textContent = formatDuration((i.endsAt - now) / 1000);
    if (live.length === this.items.length) return;
    for (const i of this.items) if (!live.includes(i)) i.tr.remove();
    this.items = live;
    if (live.length === 0) this.els.body.replaceChildren(emptyNote('No bans.', 5));
  }

  async banFromForm() {
    const fd = new FormData(this.els.form);
    const target = String(fd.get('target') ?? '').trim();
    const ttl = String(fd.get('ttl') ?? '').trim();
    const reason = String(fd.get('reason') ?? '').trim();
    const body = { target, ttl, reason };
    const r = await runChange({
      what: `Ban ${target}`,
      dryRun: () => api.ban({ ...body, dry_run: true }),
      apply: () => api.ban(body),
      title: `Ban ${target} for ${ttl}?`,
      message: `New connections from ${target} are refused until the ban ends or is lifted. Connections already open stay open; kick them to close them.`,
      hitsText: (n) => (n === 0 ? 'No live connection comes from there.' : `${liveConnectionsCome(n)} from there:`),
      confirmLabel: 'Ban',
      done: (r) => `Banned ${r.ban?.target ?? target} for ${formatDuration(r.ban?.left_s ?? 0)}.`,
    });
    if (r !== null) {
      this.els.form.reset();
      this.els.onChange();
    }
  }

  async unban(/** @type {string} */ target) {
    const ok = await confirmDialog({
      title: `Lift the ban on ${target}?`,
      message: `${target} may connect again at once.`,
      hits: [],
      hitsText: () => '',
      confirmLabel: 'Unban',
    });
    if (!ok) return;
    try {
      await api.unban(target);
      showStatus(`The ban on ${target} is lifted.`);
    } catch (err) {
      showError(`Unban ${target}: failed.`, err);
    }
    this.els.onChange();
  }
}
