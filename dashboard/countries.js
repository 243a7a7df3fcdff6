/**
 * Country rules per service and phase, with country names in the browser's
 * language, and the controls to block and unblock one country: a form, and a
 * remove button on each country in a list. Blocking works whatever list is in
 * force (added to a deny list, taken out of an allow list); the dry run tells
 * how many live connections come from that country.
 */
import * as api from './api.js';
import { clearErrors, liveConnectionsCome, runChange, showError } from './confirm.js';
import { countryLabel, countryName, emptyNote, h, parseCountry } from './format.js';

/** @typedef {import('./api.js').Rule} Rule */
/** @typedef {import('./api.js').Phase} Phase */

/** @type {Phase[]} */
const PHASES = ['connect', 'auth'];

export class CountriesView {
  /** @param {{ body: HTMLTableSectionElement, form: HTMLFormElement, onChange: () => void }} els */
  constructor(els) {
    this.els = els;
    this.generation = 0;
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      const submitter = /** @type {HTMLButtonElement | null} */ (e.submitter);
      void this.fromForm(submitter?.value === 'unblock' ? 'unblock' : 'block');
    });
    els.body.addEventListener('click', (e) => {
      const btn = /** @type {HTMLElement} */ (e.target).closest('button.chip-x');
      if (!(btn instanceof HTMLElement)) return;
      const { op, service, phase, code } = btn.dataset;
      if (service && code && (phase === 'connect' || phase === 'auth')) void this.change(op === 'block' ? 'block' : 'unblock', service, phase, code);
    });
  }

  async load() {
    const gen = ++this.generation;
    try {
      const r = await api.getCountries();
      if (gen !== this.generation) return;
      clearErrors('Country rules');
      this.show(r.services);
    } catch (err) {
      showError('Country rules could not be loaded.', err);
    }
  }

  /** @param {Record<string, { connect: Rule | null, auth: Rule | null }>} services */
  show(services) {
    const names = Object.keys(services).sort();
    const rows = names.flatMap((service) => PHASES.map((phase, i) => this.row(service, phase, services[service]?.[phase] ?? null, i === 0)));
    this.els.body.replaceChildren(...(rows.length > 0 ? rows : [emptyNote('No services.', 3)]));
    const sel = /** @type {HTMLSelectElement} */ (this.els.form.elements.namedItem('service'));
    if ([...sel.options].map((o) => o.value).join('\n') !== names.join('\n')) {
      const cur = sel.value;
      sel.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
      if (names.includes(cur)) sel.value = cur;
    }
  }

  /**
   * @param {string} service
   * @param {Phase} phase
   * @param {Rule | null} rule
   * @param {boolean} first
   */
  row(service, phase, rule, first) {
    const svc = first ? h('th', { scope: 'rowgroup', rowspan: 2 }, service) : null;
    if (rule === null) return h('tr', null, svc, h('td', null, phase), h('td', { class: 'muted' }, 'no rule: every country'));
    const allow = rule.kind === 'allow';
    // Taking a country out of an allow list blocks it; out of a deny list unblocks it.
    const op = allow ? 'block' : 'unblock';
    const chips = [...rule.codes]
      .sort((a, b) => countryName(a).localeCompare(countryName(b)))
      .map((code) =>
        h(
          'li',
          { class: 'chip' },
          countryName(code),
          ' ',
          h('span', { class: 'code' }, code),
          h(
            'button',
            { type: 'button', class: 'chip-x', 'data-op': op, 'data-service': service, 'data-phase': phase, 'data-code': code, 'aria-label': `${allow ? 'Block' : 'Unblock'} ${countryLabel(code)} for ${service} at ${phase}`, title: allow ? 'Take out of the allow list (block)' : 'Unblock' },
            '×',
          ),
        ),
      );
    return h(
      'tr',
      null,
      svc,
      h('td', null, phase),
      h(
        'td',
        null,
        // The countries follow the kind at once ("Only from Germany"); where the rule came from comes last, in words of its own.
        h('span', { class: `kind ${rule.kind}` }, allow ? 'Only from' : 'Blocked'),
        h('ul', { class: 'chips' }, ...chips),
        rule.mode === 'dry-run' ? h('span', { class: 'badge', title: 'logged, not enforced' }, 'dry run') : null,
        h('span', { class: 'muted small' }, rule.source === 'runtime' ? ' set at run time' : ' set in the configuration file'),
      ),
    );
  }

  async fromForm(/** @type {'block' | 'unblock'} */ op) {
    const f = this.els.form;
    const service = /** @type {HTMLSelectElement} */ (f.elements.namedItem('service')).value;
    const phase = /** @type {Phase} */ (/** @type {HTMLSelectElement} */ (f.elements.namedItem('phase')).value);
    const input = /** @type {HTMLInputElement} */ (f.elements.namedItem('country'));
    const code = parseCountry(input.value);
    input.setAttribute('aria-invalid', String(code === null));
    if (code === null) {
      showError('Country rules:', new Error(`"${input.value.trim()}" is no country code or country name.`));
      input.focus();
      return;
    }
    if ((await this.change(op, service, phase, code)) !== null) input.value = '';
  }

  /**
   * @param {'block' | 'unblock'} op
   * @param {string} service
   * @param {Phase} phase
   * @param {string} code
   */
  async change(op, service, phase, code) {
    const who = countryLabel(code);
    const what = phase === 'connect' ? `connections from ${who} to ${service}` : `logins from ${who} to ${service}`;
    const r = await runChange({
      what: `${op === 'block' ? 'Block' : 'Unblock'} ${who} for ${service} at ${phase}`,
      dryRun: () => api.countryChange(op, service, phase, code, true),
      apply: () => api.countryChange(op, service, phase, code, false),
      title: `${op === 'block' ? 'Block' : 'Unblock'} ${who} for ${service} at ${phase}?`,
      message: op === 'block' ? `New ${what} will be refused. Connections already open stay open.` : `New ${what} will be accepted again.`,
      hitsText: (n) => (op === 'unblock' ? '' : n === 0 ? `No live connection to ${service} comes from ${countryName(code)}.` : `${liveConnectionsCome(n)} from ${countryName(code)}:`),
      confirmLabel: op === 'block' ? 'Block' : 'Unblock',
      done: () => `${who} ${op === 'block' ? 'blocked' : 'unblocked'} for ${service} at ${phase}.`,
    });
    if (r !== null) this.els.onChange();
    return r;
  }
}
