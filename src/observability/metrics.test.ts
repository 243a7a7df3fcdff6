import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DoorEventBus } from '../core/events.js';
import { DoorMetrics } from './metrics.js';

const refusal = (service: string, country: string | null, rule = 'bans') => ({
  service,
  address: '192.0.2.9',
  country,
  rule,
  reason: 'r',
  by: 'proxy',
  refusal: { temporary: true, cause: 'ban' as const, rule, reason: 'r', retryAfterSec: 60 },
});

/** The value of one series in exposition text, or undefined. */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

function setup() {
  const bus = new DoorEventBus();
  let live: Record<string, number> = {};
  const admitted = new Map<string, number>();
  let bans = 0;
  const m = new DoorMetrics(bus, {
    registry: { countsByService: () => live, admittedByService: () => admitted },
    entries: () => 42,
    bans: () => ({ operator: bans, auto: 2, crowdsec: 0 }),
    services: ['imap', 'smtp', 'pop3'],
    proxied: ['imap', 'pop3'],
  });
  m.attach();
  const admit = (service: string) => admitted.set(service, (admitted.get(service) ?? 0) + 1);
  return { bus, m, admit, setLive: (v: Record<string, number>) => (live = v), setBans: (n: number) => (bans = n) };
}

test('metrics: counters from the bus, gauges read at scrape, series present from the start', async () => {
  const { bus, m, admit, setLive, setBans } = setup();
  let t = await m.text();
  assert.equal(value(t, 'doorman_connections{service="imap"}'), 0);
  assert.equal(value(t, 'doorman_connections{service="pop3"}'), 0);
  assert.equal(value(t, 'doorman_connections_total{service="imap"}'), 0);
  assert.equal(value(t, 'doorman_kicks_total'), 0);
  admit('imap');
  admit('imap');
  bus.emit('refusal', refusal('imap', 'RU', 'services.imap.limits.connections_per_address'));
  bus.emit('refusal', refusal('smtp', null));
  bus.emit('kick', { target: '192.0.2.0/24', kicked: 3, ban: null, reason: 'x' });
  setLive({ imap: 2 });
  setBans(5);
  t = await m.text();
  assert.equal(value(t, 'doorman_connections{service="imap"}'), 2);
  assert.equal(value(t, 'doorman_connections_total{service="imap"}'), 2);
  assert.equal(value(t, 'doorman_decisions_total{service="imap",action="allow",rule="none"}'), 2);
  admit('imap');
  t = await m.text();
  assert.equal(value(t, 'doorman_connections_total{service="imap"}'), 3, 'totals read again at each scrape, not counted twice');
  assert.equal(value(t, 'doorman_decisions_total{service="imap",action="refuse",rule="services.imap.limits.connections_per_address"}'), 1);
  assert.equal(value(t, 'doorman_refusals_by_country_total{service="imap",country="RU"}'), 1);
  assert.equal(value(t, 'doorman_refusals_by_country_total{service="smtp",country="none"}'), 1);
  assert.equal(value(t, 'doorman_engine_entries'), 42);
  assert.equal(value(t, 'doorman_bans{origin="operator"}'), 5);
  assert.equal(value(t, 'doorman_bans{origin="auto"}'), 2);
  assert.equal(value(t, 'doorman_kicks_total'), 3);
  assert.match(t, /^doorman_process_cpu_user_seconds_total /m, "prom-client's default metrics, prefixed");
  assert.match(t, /^doorman_nodejs_eventloop_lag_seconds /m);
  assert.match(m.contentType, /^text\/plain/);
});

test('metrics: labels from the network are capped; detach stops counting', async () => {
  const { bus, m } = setup();
  for (let i = 0; i < 60; i++) bus.emit('refusal', refusal('imap', `C${String.fromCharCode(65 + (i % 26))}${i}`));
  bus.emit('refusal', refusal('made-up-protocol', 'DE'));
  let t = await m.text();
  const countries = t.split('\n').filter((l) => l.startsWith('doorman_refusals_by_country_total{service="imap"'));
  assert.equal(countries.length, 51, '50 countries and "other"');
  assert.equal(value(t, 'doorman_refusals_by_country_total{service="imap",country="other"}'), 10);
  assert.equal(value(t, 'doorman_refusals_by_country_total{service="other",country="other"}'), 1, 'an unknown service name is "other", and DE is past the 50 countries');
  m.detach();
  assert.equal(bus.listenerCount('connect') + bus.listenerCount('refusal') + bus.listenerCount('kick'), 0);
  bus.emit('kick', { target: 'x', kicked: 1, ban: null, reason: 'x' });
  t = await m.text();
  assert.equal(value(t, 'doorman_kicks_total'), 0);
});

test('metrics: the memory store (no status) is up, with no failovers; a fleet store reports its own', async () => {
  const bus = new DoorEventBus();
  let status: { backend: 'redis' | 'memory'; up: boolean; failovers: number; since: number } | null = null;
  const m = new DoorMetrics(bus, { registry: { countsByService: () => ({}), admittedByService: () => new Map() }, entries: () => 0, bans: () => ({ operator: 0, auto: 0, crowdsec: 0 }), store: () => status, services: [], proxied: [] });
  let t = await m.text();
  assert.equal(value(t, 'doorman_store_up'), 1, 'issue 17: it read 0 on a single host, so the obvious alert fired forever');
  assert.equal(value(t, 'doorman_store_failovers'), 0);
  status = { backend: 'memory', up: false, failovers: 2, since: 0 };
  t = await m.text();
  assert.equal(value(t, 'doorman_store_up'), 0);
  assert.equal(value(t, 'doorman_store_failovers'), 2);
});

test('metrics: listeners at their cap: clients and cap read at scrape, refusals for being full counted by difference', async () => {
  const bus = new DoorEventBus();
  let clients = 3;
  let full = 0;
  const loads = [
    { listener: 'anvil', address: '/run/anvil', max: 10, clients: () => clients, full: () => full },
    { listener: 'dovecot_policy', address: '127.0.0.1:8026', max: 256, clients: async () => 7, full: () => 0 },
  ];
  const m = new DoorMetrics(bus, { registry: { countsByService: () => ({}), admittedByService: () => new Map() }, entries: () => 0, bans: () => ({ operator: 0, auto: 0, crowdsec: 0 }), services: [], proxied: [], listeners: () => loads });
  let t = await m.text();
  assert.equal(value(t, 'doorman_listener_clients{listener="anvil",address="/run/anvil"}'), 3);
  assert.equal(value(t, 'doorman_listener_clients{listener="dovecot_policy",address="127.0.0.1:8026"}'), 7, 'an asynchronous count is awaited');
  assert.equal(value(t, 'doorman_listener_max_clients{listener="anvil",address="/run/anvil"}'), 10);
  assert.equal(value(t, 'doorman_listener_full_total{listener="anvil",address="/run/anvil"}'), 0, 'present from the start');
  clients = 10;
  full = 4;
  t = await m.text();
  assert.equal(value(t, 'doorman_listener_clients{listener="anvil",address="/run/anvil"}'), 10);
  assert.equal(value(t, 'doorman_listener_full_total{listener="anvil",address="/run/anvil"}'), 4);
  full = 5;
  t = await m.text();
  assert.equal(value(t, 'doorman_listener_full_total{listener="anvil",address="/run/anvil"}'), 5, 'read again at each scrape, not added twice');
});

test('metrics: decision times are served, with the series of every front asked for and no other', async () => {
  const bus = new DoorEventBus();
  const m = new DoorMetrics(bus, { registry: { countsByService: () => ({}), admittedByService: () => new Map() }, entries: () => 0, bans: () => ({ operator: 0, auto: 0, crowdsec: 0 }), services: [], proxied: [] });
  assert.doesNotMatch(await m.text(), /doorman_decision_seconds/, 'no front-end, no series');
  const anvil = m.decisionTimer('anvil');
  assert.equal(m.decisionTimer('anvil'), anvil, 'one timer per front');
  m.decisionTimer('proxy');
  // A start mark an hour ago: past every bound whatever the machine's speed (the bucketing itself is in latency.test.ts).
  anvil.stop(anvil.start() - 3_600_000);
  const t = await m.text();
  assert.match(t, /^# TYPE doorman_decision_seconds histogram$/m);
  assert.equal(value(t, 'doorman_decision_seconds_count{front="anvil"}'), 1);
  assert.equal(value(t, 'doorman_decision_seconds_bucket{le="0.1",front="anvil"}'), 0);
  assert.equal(value(t, 'doorman_decision_seconds_bucket{le="+Inf",front="anvil"}'), 1);
  assert.equal(value(t, 'doorman_decision_seconds_count{front="proxy"}'), 0, 'a quiet front reads 0, not absent');
  assert.equal(value(t, 'doorman_decision_seconds_count{front="policy"}'), undefined, 'a front nobody asked for has no series');
  assert.match(t, /^doorman_process_cpu_user_seconds_total /m, 'the process metrics still follow');
});
