/**
 * Kicks from the page: one connection (the button on its row), or every
 * connection from an address or network (the form), optionally banning it
 * after. Both show the dry run's hits first and kick only on confirm.
 */
import * as api from './api.js';
import { liveConnections, runChange } from './confirm.js';
import { countryName, formatDuration } from './format.js';

/** @typedef {import('./api.js').Connection} Connection */

/**
 * The Kick button of one row. Resolves true when it was kicked.
 * @param {string} id
 * @param {Connection | undefined} c what the table knows of it
 */
export async function kickConnection(id, c) {
  const who = c ? `${c.client.address}${c.country ? ` (${countryName(c.country)})` : ''} on ${c.service}` : `connection ${id}`;
  const r = await runChange({
    what: `Kick ${who}`,
    dryRun: () => api.kick({ target: id, dry_run: true }),
    apply: () => api.kick({ target: id, reason: 'kicked from the dashboard' }),
    title: `Kick connection ${id}?`,
    message: `Closes the connection from ${who} now. The client may connect again unless banned.`,
    hitsText: (n) => (n === 0 ? 'It is no longer connected.' : `This closes ${liveConnections(n)}:`),
    confirmLabel: 'Kick',
    done: (r) => (r.kicked === 0 ? 'Nothing kicked: the connection had already closed.' : `Kicked ${liveConnections(r.kicked)}.`),
  });
  return r !== null;
}

/**
 * The "kick an address or network" form. Resolves true when the kick was done.
 * @param {HTMLFormElement} form
 */
export async function kickFromForm(form) {
  const fd = new FormData(form);
  const target = String(fd.get('target') ?? '').trim();
  const service = String(fd.get('service') ?? '');
  const ban = String(fd.get('ban') ?? '').trim();
  const reason = String(fd.get('reason') ?? '').trim();
  // A ban says why, here as in the ban form, the command line and the API.
  const reasonInput = form.elements.namedItem('reason');
  if (ban && !reason && reasonInput instanceof HTMLInputElement) {
    reasonInput.setCustomValidity('A kick that bans needs a reason.');
    reasonInput.reportValidity();
    reasonInput.addEventListener('input', () => reasonInput.setCustomValidity(''), { once: true });
    return false;
  }
  const body = { target, ...(service ? { service } : {}), ...(ban ? { ban } : {}), reason: reason || 'kicked from the dashboard' };
  const r = await runChange({
    what: `Kick ${target}`,
    dryRun: () => api.kick({ ...body, dry_run: true }),
    apply: () => api.kick(body),
    title: `Kick ${target}${service ? ` from ${service}` : ''}?`,
    message: ban ? `Closes every matching connection, then bans ${target} for ${ban}.` : 'Closes every matching connection now. The clients may connect again unless banned.',
    hitsText: (n) => (n === 0 ? 'No live connection matches.' : `This closes ${liveConnections(n)}:`),
    confirmLabel: ban ? 'Kick and ban' : 'Kick',
    done: (r) => `Kicked ${liveConnections(r.kicked)}${r.ban ? `; ${r.ban.target} banned for ${formatDuration(r.ban.left_s)}` : ''}.`,
  });
  if (r === null) return false;
  form.reset();
  return true;
}
