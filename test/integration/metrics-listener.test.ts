/**
 * Metrics exist whenever the daemon runs (issue 17): with the admin API off,
 * /metrics is served alone where the admin API would listen; metrics.listen
 * puts a metrics-only listener (no token, as Prometheus scrapes) beside the
 * admin API, which keeps its own /metrics behind its token.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { ADMIN_DEFAULT_LISTEN } from '../../src/config/schema.js';
import { startDaemon, type Daemon, type DaemonDeps } from '../../src/main.js';
import { GREETING, TOKEN, metricValue } from '../helpers/admin-daemon.js';
import { startFakeBackend } from '../helpers/fake-backend.js';
import { memoryLogger } from '../helpers/log.js';
import { RawClient } from '../helpers/raw-client.js';
import { skipBanner } from '../helpers/skip.js';
import { stateIn } from '../helpers/state.js';

/** Doorman with an imap guard proxy in front of a fake server, the given admin and metrics sections; stopped after the test. */
async function start(t: TestContext, sections: Record<string, unknown>, deps: DaemonDeps = {}): Promise<{ d: Daemon; lines: Array<Record<string, unknown>> }> {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-metrics-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const b = await startFakeBackend({ proxy: true, greeting: GREETING });
  t.after(() => b.close());
  const config = parseConfig(
    {
      anvil: { enabled: false },
      state: stateIn(dir),
      services: { imap: { limits: { connections_per_address: 1 }, proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${b.port}`, proxy_protocol: 'v2' } } },
      ...sections,
    },
    'metrics-test',
  );
  const { log, lines } = memoryLogger();
  const d = await startDaemon(config, log, deps);
  t.after(() => d.stop());
  return { d, lines };
}

function url(host: string, port: number, path: string): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}${path}`;
}

/** A port some other program holds, for the duration of the test. */
async function occupied(t: TestContext): Promise<number> {
  const s: Server = createServer();
  await new Promise<void>((resolve) => s.listen({ host: '127.0.0.1', port: 0 }, resolve));
  t.after(() => new Promise<void>((resolve) => s.close(() => resolve())));
  const a = s.address();
  return a !== null && typeof a === 'object' ? a.port : 0;
}

async function ipv6Loopback(): Promise<boolean> {
  const s = createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen({ host: '::1', port: 0 }, () => s.close(() => resolve(true)));
  });
}

test('admin.listen null: /metrics alone where the admin API would be, said in the log, counting from the start', async (t) => {
  assert.equal(ADMIN_DEFAULT_LISTEN, parseConfig({}, 'x').admin.listen, "the fallback is the admin API's default address");
  // The fallback address itself is the admin API's fixed default; a test takes port 0 instead.
  const { d, lines } = await start(t, { admin: { listen: null } }, { metricsFallback: '127.0.0.1:0' });
  assert.equal(d.admin, null);
  assert.notEqual(d.metricsServer, null);
  assert.ok(d.metricsPort > 0);
  assert.ok(lines.some((l) => l['msg'] === 'admin.listen is null: /metrics served alone on 127.0.0.1:0, the admin API\'s default address (metrics.listen moves it)'), 'the fallback is logged');
  assert.ok(lines.some((l) => l['msg'] === `metrics on http://127.0.0.1:${d.metricsPort}/metrics (no token: reachable by whoever reaches the address)`));
  const port = d.proxies[0]?.port ?? 0;
  const admitted = await RawClient.open(port, { localAddress: '127.0.0.31' });
  t.after(() => admitted.destroy());
  await admitted.waitFor(/ready\r\n/);
  const refused = await RawClient.open(port, { localAddress: '127.0.0.31' });
  await refused.closed();
  const r = await fetch(url('127.0.0.1', d.metricsPort, '/metrics'));
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const text = await r.text();
  assert.equal(metricValue(text, 'doorman_connections_total{service="imap"}'), 1);
  assert.equal(metricValue(text, 'doorman_decisions_total{service="imap",action="refuse",rule="services.imap.limits.connections_per_address"}'), 1, 'refusals are counted without the admin API');
  assert.equal(metricValue(text, 'doorman_decision_seconds_count{front="proxy"}'), 2);
  assert.equal(metricValue(text, 'doorman_store_up'), 1);
  assert.equal(metricValue(text, `doorman_listener_clients{listener="services.imap.proxy",address="127.0.0.1:${port}"}`), 1);
  assert.equal(metricValue(text, `doorman_listener_max_clients{listener="services.imap.proxy",address="127.0.0.1:${port}"}`), 10_000);
});

for (const host of ['127.0.0.1', '::1']) {
  test(`metrics.listen on ${host}, port 0: served there without a token; the admin API is unchanged, its /metrics behind its token`, async (t) => {
    if (host === '::1' && !(await ipv6Loopback())) {
      skipBanner('no IPv6 loopback (::1) on this machine: the metrics listener on ::1 was not tested');
      t.skip('no IPv6 loopback');
      return;
    }
    const listen = host.includes(':') ? `[${host}]:0` : `${host}:0`;
    const { d } = await start(t, { admin: { listen: '127.0.0.1:0', token: TOKEN }, metrics: { listen } });
    assert.notEqual(d.admin, null);
    const addr = d.metricsServer?.server.address();
    assert.ok(addr !== null && typeof addr === 'object' && addr.address === host, JSON.stringify(addr));
    assert.notEqual(d.metricsPort, d.adminPort);

    const m = await fetch(url(host, d.metricsPort, '/metrics'));
    assert.equal(m.status, 200, 'no token asked for');
    const text = await m.text();
    assert.equal(metricValue(text, 'doorman_store_up'), 1);
    assert.equal(metricValue(text, 'doorman_connections{service="imap"}'), 0);
    assert.deepEqual(await fetch(url(host, d.metricsPort, '/health')).then(async (r) => [r.status, await r.json()]), [200, { status: 'ok' }]);
    const head = await fetch(url(host, d.metricsPort, '/metrics'), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), '');
    const post = await fetch(url(host, d.metricsPort, '/metrics'), { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    for (const path of ['/api/status', '/', '/api/bans']) {
      assert.equal((await fetch(url(host, d.metricsPort, path))).status, 404, `${path}: nothing of the admin API on the metrics listener`);
    }

    const admin = (path: string, token?: string) => fetch(url('127.0.0.1', d.adminPort, path), { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
    assert.equal((await admin('/metrics')).status, 401, 'the admin API still asks for its token');
    const viaAdmin = await admin('/metrics', TOKEN);
    assert.equal(viaAdmin.status, 200);
    assert.equal(metricValue(await viaAdmin.text(), 'doorman_store_up'), 1, 'the same metrics, on both');
    assert.equal((await admin('/api/status', TOKEN)).status, 200);
  });
}

test('a metrics address in use stops the start, naming it; the fallback says which key to set', async (t) => {
  const port = await occupied(t);
  await assert.rejects(start(t, { admin: { listen: '127.0.0.1:0' }, metrics: { listen: `127.0.0.1:${port}` } }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'DOORMAN_ERR_LISTEN');
    assert.match(err.message, new RegExp(`^metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    return true;
  });
  await assert.rejects(start(t, { admin: { listen: null } }, { metricsFallback: `127.0.0.1:${port}` }), (err: Error) => {
    assert.match(err.message, new RegExp(`^metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE.*\\(admin\\.listen and metrics\\.listen are null, .*set metrics\\.listen\\)$`));
    return true;
  });
});
