/**
 * The dashboard's entry point: builds the views, loads them, follows the
 * event stream (/api/events, Server-Sent Events) and polls what the stream
 * does not carry. Polls pause while the tab is hidden; after the stream
 * reconnects, or the tab comes back, everything is loaded afresh, since
 * events may have been missed meanwhile.
 */
import * as api from './api.js';
import { BansView } from './bans.js';
import { clearErrors, showError } from './confirm.js';
import { ConnectionTable } from './connections.js';
import { CountriesView } from './countries.js';
import { fillCountryList, formatDuration, formatNumber } from './format.js';
import { Overview } from './overview.js';
import { StatsView } from './stats.js';
import { WhyView } from './why.js';

/** How often what the stream does not carry is polled. */
const POLL_MS = {
  status: 10_000,
  connections: 15_000,
  top: 10_000,
  bans: 15_000,
  peaks: 30_000,
  countries: 30_000,
  history: 60_000,
};

/** @template {HTMLElement} T @returns {T} */
const $ = (/** @type {string} */ id) => /** @type {T} */ (/** @type {unknown} */ (document.getElementById(id)));

const overview = new Overview({ tiles: $('service-tiles'), chart: $('history-chart'), total: $('total-connections') });
const table = new ConnectionTable({
  onChange: () => afterChange(),
  table: $('conn-table'),
  scroll: $('conn-scroll'),
  count: $('conn-count'),
  more: $('conn-more'),
  filter: $('conn-filter'),
  kickForm: $('kick-form'),
});
const why = new WhyView({ form: $('why-form'), answer: $('why-answer') });
const stats = new StatsView({ topConnections: $('top-connections'), topRefusals: $('top-refusals'), engineClients: $('engine-clients'), peaks: $('peaks'), feed: $('refusals'), onWhy: (a) => why.askFor(a) });
const bans = new BansView({ body: $('bans-body'), form: $('ban-form'), onChange: () => afterChange() });
const countries = new CountriesView({ body: $('countries-body'), form: $('country-form'), onChange: () => afterChange() });

const liveState = $('live-state');
const setLive = (/** @type {'live' | 'connecting' | 'down' | 'unauthorized'} */ state, /** @type {string} */ text) => {
  liveState.dataset.state = state;
  liveState.textContent = text;
};

let signedOut = false;
api.setUnauthorizedHandler(() => {
  signedOut = true;
  setLive('unauthorized', 'not signed in');
  showError('Not signed in.', new Error('Open this page once as /?token=YOUR_ADMIN_TOKEN (the admin.token of doorman.yaml); the browser then keeps a cookie.'));
  events?.close();
});

async function loadStatus() {
  try {
    const s = await api.getStatus();
    clearErrors('Status');
    overview.setStatus(s);
    const names = Object.keys(s.services).sort();
    table.setServices(names);
    $('total-bans').textContent = formatNumber(s.bans);
    $('server-info').textContent = `Doorman ${s.version}, up ${formatDuration(s.uptime_s)}`;
  } catch (err) {
    showError('Status could not be loaded.', err);
  }
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let changeTimer;
/** After a change from this page (or a kick that banned): what it changed, loaded again, once. */
function afterChange() {
  clearTimeout(changeTimer);
  changeTimer = setTimeout(() => void Promise.all([loadStatus(), bans.load(), countries.load(), stats.loadTop(), stats.loadPeaks()]), 100);
}

/** Refusals move the top list; under a storm of them it is loaded again at most this often. */
const TOP_AFTER_REFUSAL_MS = 2000;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let topTimer;
function topSoon() {
  topTimer ??= setTimeout(() => {
    topTimer = undefined;
    void stats.loadTop();
  }, TOP_AFTER_REFUSAL_MS);
}

/** Everything, as on first load. */
function loadAll() {
  return Promise.all([loadStatus(), table.resync(), overview.loadHistory(), stats.loadTop(), stats.loadPeaks(), bans.load(), countries.load()]);
}

/** @type {EventSource | null} */
let events = null;

function follow() {
  if (signedOut) return;
  let opened = false;
  const es = new EventSource('/api/events');
  events = es;
  es.addEventListener('open', () => {
    setLive('live', 'live');
    // A reconnect: what happened while the stream was down is only in a fresh load.
    if (opened) void loadAll();
    opened = true;
  });
  es.addEventListener('error', () => {
    if (es.readyState === EventSource.CLOSED) {
      setLive('down', 'disconnected');
      // The server refused the stream (e.g. 401): a status call tells why; retry later.
      void loadStatus();
      setTimeout(() => events === es && follow(), 5000);
    } else setLive('connecting', 'reconnecting…');
  });
  const on = (/** @type {string} */ name, /** @type {(data: any) => void} */ f) =>
    es.addEventListener(name, (e) => {
      let data;
      try {
        data = JSON.parse(/** @type {MessageEvent<string>} */ (e).data);
      } catch {
        return;
      }
      f(data);
    });
  on('connect', (/** @type {import('./api.js').Connection} */ c) => {
    table.onConnect(c);
    overview.bump(c.service, 1);
  });
  on('disconnect', (/** @type {import('./api.js').Disconnect} */ d) => {
    table.onDisconnect(d);
    overview.bump(d.service, -1);
  });
  on('refusal', (/** @type {import('./api.js').Refusal} */ r) => {
    stats.onRefusal(r);
    topSoon();
  });
  on('kick', (/** @type {import('./api.js').KickEvent} */ k) => {
    if (k.ban !== null) afterChange();
  });
}

/** A poll that skips while the tab is hidden and never overlaps itself. */
function every(/** @type {number} */ ms, /** @type {() => Promise<unknown>} */ f) {
  let running = false;
  setInterval(() => {
    if (document.hidden || running) return;
    running = true;
    void f().finally(() => (running = false));
  }, ms);
}

fillCountryList($('country-list'));
await loadAll();
follow();
every(POLL_MS.status, loadStatus);
every(POLL_MS.connections, () => table.resync());
every(POLL_MS.top, () => stats.loadTop());
every(POLL_MS.bans, () => bans.load());
every(POLL_MS.peaks, () => stats.loadPeaks());
every(POLL_MS.countries, () => countries.load());
every(POLL_MS.history, () => overview.loadHistory());
setInterval(() => {
  table.tick();
  bans.tick();
}, 1000);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) void loadAll();
});
document.documentElement.dataset.ready = 'true';
