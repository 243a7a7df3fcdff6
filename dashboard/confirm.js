/**
 * Every change goes the same way: ask the API with dry_run, show in a
 * <dialog> how many live connections it would hit and which, and only on
 * confirm ask again for real. Errors (a 409 guardrail, a 400 on bad input,
 * Doorman unreachable) are shown as the server words them, in an alert that
 * stays until dismissed; successes in a status line that fades.
 */
import { ApiError } from './api.js';
import { countryLabel, formatDuration, h } from './format.js';

/** @typedef {import('./api.js').Connection} Connection */

/** More hits than this are summed up, not listed: the dialog must stay readable. */
const MAX_LISTED_HITS = 20;
/** How long a success message stays. */
const STATUS_MS = 8000;

const errorArea = /** @type {HTMLElement} */ (document.getElementById('error-area'));
const statusArea = /** @type {HTMLElement} */ (document.getElementById('status-area'));
/** @type {ReturnType<typeof setTimeout> | undefined} */
let statusTimer;

/** Shows an error until the user dismisses it; the same error twice is shown once. */
export function showError(/** @type {string} */ title, /** @type {unknown} */ err) {
  const msg = err instanceof ApiError ? err.message : err instanceof Error ? err.message : String(err);
  const code = err instanceof ApiError ? `${err.status === 0 ? '' : `${err.status} `}${err.code}` : '';
  const key = `${title}\n${msg}`;
  for (const old of errorArea.children) if (/** @type {HTMLElement} */ (old).dataset.key === key) old.remove();
  const box = h(
    'div',
    { class: 'notice error' },
    h('p', null, h('strong', null, title), ' ', msg),
    code ? h('p', { class: 'code' }, code) : null,
    h('button', { type: 'button', class: 'quiet close', 'aria-label': 'Dismiss this error', onclick: () => box.remove() }, '×'),
  );
  box.dataset.key = key;
  errorArea.append(box);
}

/** Clears the errors whose title starts with `prefix` (a load that failed and now works). */
export function clearErrors(/** @type {string} */ prefix) {
  for (const old of [...errorArea.children]) if ((/** @type {HTMLElement} */ (old).dataset.key ?? '').startsWith(prefix)) old.remove();
}

export function showStatus(/** @type {string} */ text) {
  statusArea.replaceChildren(h('div', { class: 'notice ok' }, text));
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => statusArea.replaceChildren(), STATUS_MS);
}

const dialog = /** @type {HTMLDialogElement} */ (document.getElementById('confirm-dialog'));
const els = {
  title: /** @type {HTMLElement} */ (document.getElementById('confirm-title')),
  message: /** @type {HTMLElement} */ (document.getElementById('confirm-message')),
  count: /** @type {HTMLElement} */ (document.getElementById('confirm-hits-count')),
  hits: /** @type {HTMLElement} */ (document.getElementById('confirm-hits')),
  ok: /** @type {HTMLButtonElement} */ (document.getElementById('confirm-ok')),
};

/** One hit, as a person reads it. */
function hitItem(/** @type {Connection} */ c) {
  return h(
    'li',
    null,
    h('span', { class: 'svc' }, c.service),
    ' ',
    h('span', { class: 'addr' }, c.client.address),
    ` ${countryLabel(c.country)}, open ${formatDuration(c.age_s)} (id ${c.id})`,
  );
}

/**
 * Opens the confirmation dialog; resolves true when the user confirms, false on Cancel or Escape.
 * @param {{ title: string, message: string, hits: Connection[], hitsText: (n: number) => string, confirmLabel: string }} o
 * @returns {Promise<boolean>}
 */
export function confirmDialog(o) {
  els.title.textContent = o.title;
  els.message.textContent = o.message;
  els.count.textContent = o.hitsText(o.hits.length);
  const listed = o.hits.slice(0, MAX_LISTED_HITS).map(hitItem);
  if (o.hits.length > MAX_LISTED_HITS) listed.push(h('li', { class: 'more' }, `and ${o.hits.length - MAX_LISTED_HITS} more`));
  els.hits.replaceChildren(...listed);
  els.hits.hidden = listed.length === 0;
  els.ok.textContent = o.confirmLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.showModal();
  });
}

/**
 * The dry run, the dialog, the change. Returns the change's reply, or null when
 * the user cancelled or the API refused (the error is then on screen).
 * @template {{ hits: Connection[] }} R
 * @param {{ what: string, dryRun: () => Promise<R>, apply: () => Promise<R>, title: string,
 *   message: string, hitsText: (n: number) => string, confirmLabel: string, done: (r: R) => string }} o
 * @returns {Promise<R | null>}
 */
export async function runChange(o) {
  let preview;
  try {
    preview = await o.dryRun();
  } catch (err) {
    showError(`${o.what}:`, err);
    return null;
  }
  const ok = await confirmDialog({ title: o.title, message: o.message, hits: preview.hits, hitsText: o.hitsText, confirmLabel: o.confirmLabel });
  if (!ok) return null;
  try {
    const r = await o.apply();
    showStatus(o.done(r));
    return r;
  } catch (err) {
    showError(`${o.what} failed:`, err);
    return null;
  }
}

/** "1 live connection", "3 live connections". */
export const liveConnections = (/** @type {number} */ n) => `${n} live connection${n === 1 ? '' : 's'}`;

/** "1 live connection comes", "3 live connections come". */
export const liveConnectionsCome = (/** @type {number} */ n) => `${liveConnections(n)} ${n === 1 ? 'comes' : 'come'}`;
