/**
 * contrib/'s monitoring, held to what Doorman serves (issue 17): the alert
 * rules pass `promtool check rules` and their own `promtool test rules`
 * (Debian's prometheus package ships promtool; CI installs it), the Grafana
 * dashboard is a JSON model whose every panel has a data source and a query,
 * and every metric the dashboard and the rules name is one a running daemon,
 * with every front-end configured and some traffic through each, serves.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { REPO_ROOT, startDoorman } from '../helpers/daemon.js';
import { AnvilTestClient } from '../helpers/anvil-client.js';
import { startFakeBackend } from '../helpers/fake-backend.js';
import { PolicyTestClient } from '../helpers/policy-client.js';
import { RawClient } from '../helpers/raw-client.js';
import { skipBanner } from '../helpers/skip.js';

const RULES = join(REPO_ROOT, 'contrib', 'prometheus', 'doorman-alerts.yml');
const RULE_TESTS = join(REPO_ROOT, 'contrib', 'prometheus', 'doorman-alerts.test.yml');
const DASHBOARD = join(REPO_ROOT, 'contrib', 'grafana', 'doorman.json');
/** promtool checks a small file in well under a second; past this it is stuck. */
const PROMTOOL_TIMEOUT_MS = 30_000;
const KEY = 'contrib-monitoring-key';

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
const noPromtool = promtool.error !== undefined ? 'promtool is not installed (apt-get install prometheus)' : undefined;
if (noPromtool !== undefined) skipBanner(`${noPromtool}: contrib/prometheus/doorman-alerts.yml was not checked with promtool`);

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  gridPos: { x: number; y: number; w: number; h: number };
  targets?: Array<{ expr?: string; refId?: string; datasource?: { uid?: string } }>;
}
interface Dashboard {
  __inputs: Array<{ name: string; pluginId: string }>;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query: unknown; definition?: string; datasource?: { uid?: string } }> };
  uid: string;
  title: string;
}

const dashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;

function alertRules(): Array<{ alert: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }> {
  const doc = parse(readFileSync(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }> };
  return doc.groups.flatMap((g) => g.rules);
}

/**
 * The metric names a PromQL expression selects: identifiers starting with
 * doorman_, and up (Prometheus's own, per target). Quoted strings (label
 * values, regexes) and Grafana's $variables are taken out first.
 */
function metricNames(expr: string): string[] {
  const bare = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\$\{?\w+\}?/g, '');
  const names = new Set<string>();
  for (const m of bare.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    if (m[0].startsWith('doorman_') || m[0] === 'up') names.add(m[0]);
  }
  return [...names];
}

/** Every expression the dashboard holds: panel queries and the variables' queries. */
function dashboardExprs(d: Dashboard): string[] {
  const queries = d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));
  const vars = d.templating.list.filter((v) => v.type === 'query').map((v) => v.definition ?? '');
  return [...queries, ...vars];
}

test('the names taken out of PromQL: doorman_ series and up, not label values, variables or functions', () => {
  assert.deepEqual(
    metricNames('histogram_quantile(0.99, sum by (front, le) (rate(doorman_decision_seconds_bucket{job=~"$job",x="doorman_not_a_metric"}[$__rate_interval]))) / on(instance) up'),
    ['doorman_decision_seconds_bucket', 'up'],
  );
  assert.deepEqual(metricNames('doorman_store_up == 0 or absent(up{job=~"doorman.*"})'), ['doorman_store_up', 'up']);
});

test('promtool check rules and promtool test rules pass on contrib/prometheus/doorman-alerts.yml', { skip: noPromtool ?? false }, () => {
  for (const args of [['check', 'rules', RULES], ['test', 'rules', RULE_TESTS]]) {
    const r = spawnSync('promtool', args, { encoding: 'utf8', timeout: PROMTOOL_TIMEOUT_MS, cwd: REPO_ROOT });
    assert.equal(r.status, 0, `promtool ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout + r.stderr, /SUCCESS/);
  }
});

test('the alert rules: the ones issue 17 asks for, each with a severity, a summary and a description', () => {
  const rules = alertRules();
  const names = rules.map((r) => r.alert);
  for (const want of ['DoormanDown', 'DoormanStoreDown', 'DoormanRefusalsSpiking', 'DoormanListenerAtCap', 'DoormanDecisionSlow']) assert.ok(names.includes(want), `${want} is missing: ${names.join(', ')}`);
  for (const r of rules) {
    assert.match(r.labels?.['severity'] ?? '', /^(critical|warning)$/, `${r.alert}: severity`);
    assert.ok((r.annotations?.['summary'] ?? '').length > 10, `${r.alert}: summary`);
    assert.ok((r.annotations?.['description'] ?? '').length > 40, `${r.alert}: description`);
    for (const m of r.expr.matchAll(/\bup\b(\{[^}]*\})?/g)) assert.match(m[1] ?? '', /job=~"doorman\.\*"/, `${r.alert}: up must be Doorman's job's: ${r.expr}`);
  }
});

test('the Grafana dashboard: a JSON model with a Prometheus data source input, every panel with a data source and a query, none overlapping', () => {
  const d = dashboard();
  assert.equal(d.title, 'Doorman');
  assert.ok(d.uid.length > 0 && d.uid.length <= 40, 'a uid Grafana takes');
  assert.deepEqual(d.__inputs.map((i) => [i.name, i.pluginId]), [['DS_PROMETHEUS', 'prometheus']]);
  const dsVar = d.templating.list.find((v) => v.type === 'datasource');
  assert.equal(dsVar?.name, 'datasource');
  assert.equal(dsVar?.query, 'prometheus');
  const uses = (uid: string | undefined) => uid === '${datasource}' || uid === '${DS_PROMETHEUS}';
  for (const v of d.templating.list.filter((x) => x.type === 'query')) assert.ok(uses(v.datasource?.uid), `variable ${v.name}: data source`);
  assert.ok(d.panels.length >= 10);
  assert.equal(new Set(d.panels.map((p) => p.id)).size, d.panels.length, 'panel ids are unique');
  const cells = new Map<string, string>();
  for (const p of d.panels) {
    assert.ok(p.title.length > 0);
    assert.ok(uses(p.datasource?.uid) && p.datasource?.type === 'prometheus', `${p.title}: data source ${JSON.stringify(p.datasource)}`);
    assert.ok((p.targets ?? []).length >= 1, `${p.title}: no query`);
    for (const t of p.targets ?? []) {
      assert.ok((t.expr ?? '').trim().length > 0, `${p.title}: an empty query`);
      assert.ok(uses(t.datasource?.uid), `${p.title} ${t.refId}: query data source`);
    }
    const { x, y, w, h } = p.gridPos;
    assert.ok(x >= 0 && w > 0 && x + w <= 24 && y >= 0 && h > 0, `${p.title}: ${JSON.stringify(p.gridPos)}`);
    for (let i = x; i < x + w; i++) {
      for (let j = y; j < y + h; j++) {
        const other = cells.get(`${i},${j}`);
        assert.equal(other, undefined, `${p.title} overlaps ${other}`);
        cells.set(`${i},${j}`, p.title);
      }
    }
  }
  // What issue 17 asks the dashboard to show.
  const all = dashboardExprs(d).join('\n');
  for (const m of ['doorman_connections', 'doorman_decisions_total', 'doorman_bans', 'doorman_decision_seconds_bucket', 'doorman_store_up', 'doorman_store_failovers', 'doorman_listener_clients', 'doorman_engine_entries', 'doorman_process_resident_memory_bytes', 'doorman_process_cpu_seconds_total']) {
    assert.ok(metricNames(all).includes(m), `the dashboard shows no ${m}`);
  }
});

test('every metric the dashboard and the alert rules name is served by a daemon running every front-end', async (t) => {
  const b = await startFakeBackend({ proxy: true, greeting: '* OK ready\r\n' });
  t.after(() => b.close());
  const d = await startDoorman({
    anvil: { socket: './run/anvil' },
    postfix_policy: { listen: ['127.0.0.1:0'] },
    dovecot_policy: { listen: '127.0.0.1:0', api_key: KEY },
    metrics: { listen: '127.0.0.1:0' },
    services: {
      smtp: { limits: { connections_per_address: 5 } },
      imap: { limits: { connections_per_address: 1 }, proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${b.port}`, proxy_protocol: 'v2' } },
    },
  });
  t.after(() => d.stop());
  const port = (msg: (m: string) => boolean): number => Number(d.logs().find((l) => msg(String(l['msg'])))?.['port'] ?? 0);
  const policyPort = port((m) => m === 'postfix_policy service listening');
  const dovecotPort = port((m) => m === 'dovecot_policy service listening');
  const proxyPort = port((m) => m === 'proxy listening');
  const metricsPort = port((m) => m.startsWith('metrics on http://'));
  assert.ok(policyPort > 0 && dovecotPort > 0 && proxyPort > 0 && metricsPort > 0, d.output());

  // Some traffic through each front-end, counted, so every counter and histogram has samples.
  const anvil = await AnvilTestClient.open(join(d.dir, 'run', 'anvil'));
  t.after(() => anvil.destroy());
  assert.equal((await anvil.request('connect', 'smtp:192.0.2.7')).status, 0);
  assert.equal((await anvil.request('connect', 'smtp:192.0.2.7')).count, 2);
  const policy = await PolicyTestClient.open({ port: policyPort });
  t.after(() => policy.close());
  assert.equal(await policy.ask({ request: 'smtpd_access_policy', protocol_state: 'CONNECT', client_address: '192.0.2.7' }), 'DUNNO');
  assert.equal(await policy.ask({ request: 'smtpd_access_policy', protocol_state: 'RCPT', client_address: '192.0.2.7' }), 'DUNNO');
  assert.equal(await policy.ask({ request: 'smtpd_access_policy', protocol_state: 'DATA', client_address: '192.0.2.7' }), 'DUNNO');
  const dovecot = await fetch(`http://127.0.0.1:${dovecotPort}/policy?command=allow`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': KEY },
    body: JSON.stringify({ login: 'alice', protocol: 'imap', remote: '192.0.2.8', session_id: 's1', pwhash: '0dcd', tls: false }),
  });
  assert.deepEqual(await dovecot.json(), { status: 0 });
  const admitted = await RawClient.open(proxyPort, { localAddress: '127.0.0.41' });
  t.after(() => admitted.destroy());
  await admitted.waitFor(/ready\r\n/);
  const refused = await RawClient.open(proxyPort, { localAddress: '127.0.0.41' });
  await refused.closed();
  assert.match(refused.received, /^\* BYE /);

  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(res.status, 200);
  const text = await res.text();
  const served = new Set(text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => /^[A-Za-z_:][A-Za-z0-9_:]*/.exec(l)?.[0] ?? ''));
  const value = (series: string) => Number(text.split('\n').find((l) => l.startsWith(`${series} `))?.slice(series.length + 1));

  // The traffic above is what the series say: each request answered was timed by its front-end.
  assert.equal(value('doorman_decision_seconds_count{front="anvil"}'), 2);
  assert.equal(value('doorman_decision_seconds_count{front="policy"}'), 3);
  assert.equal(value('doorman_decision_seconds_count{front="dovecot"}'), 1);
  assert.equal(value('doorman_decision_seconds_count{front="proxy"}'), 2);
  assert.equal(value('doorman_decisions_total{service="imap",action="refuse",rule="services.imap.limits.connections_per_address"}'), 1);
  assert.equal(value('doorman_store_up'), 1, 'the memory store is up');
  assert.equal(value(`doorman_listener_clients{listener="anvil",address="./run/anvil"}`), 1);
  assert.equal(value(`doorman_listener_max_clients{listener="dovecot_policy",address="127.0.0.1:${dovecotPort}"}`), 256);

  const named = new Map<string, string>();
  for (const r of alertRules()) for (const n of metricNames(r.expr)) named.set(n, `alert ${r.alert}`);
  for (const e of dashboardExprs(dashboard())) for (const n of metricNames(e)) named.set(n, `dashboard query ${e}`);
  assert.ok(named.size >= 15, `only ${named.size} names found: the parsing is off`);
  const missing = [...named].filter(([n]) => n !== 'up' && !served.has(n)).map(([n, where]) => `${n} (${where})`);
  assert.deepEqual(missing, [], `named but not served:\n${missing.join('\n')}`);
});
