/**
 * The SPOE agent (src/listeners/spoe-agent.ts) in a whole in-process daemon,
 * driven by a fake HAProxy (../helpers/spop-client.ts) that sends the frames
 * HAProxy 2.6 sends: handshake and health check, decisions with their
 * variables, pipelining, the caps and timeouts, the malformed message that
 * fails open, and the close on shutdown. The real HAProxy is in
 * haproxy-spoe.test.ts.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig } from '../../src/config/load.js';
import type { Gatekeeper, Screening } from '../../src/core/gate.js';
import { SpoeAgentServer } from '../../src/listeners/spoe-agent.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { SPOP_FRAME, SPOP_STATUS } from '../../src/protocols/spop.js';
import { encodeHaproxyHello } from '../../src/protocols/spop-messages.js';
import { AdminClient } from '../helpers/admin-client.js';
import { metricValue } from '../helpers/admin-daemon.js';
import { memoryLogger } from '../helpers/log.js';
import { FakeHaproxy, HAPROXY_HELLO_FIELDS, ackVars, clientArgs } from '../helpers/spop-client.js';
import { HAPROXY_HELLO_HEALTHCHECK } from '../helpers/spop-golden.js';
import { isolated } from '../helpers/state.js';
import { waitUntil } from '../helpers/guard.js';

const COUNTRIES: Record<string, string> = { '127.0.0.66': 'KP', '127.0.0.49': 'DE' };
const MSG = 'doorman-client';

async function daemon(t: TestContext, spoe: Record<string, unknown> = {}, services: Record<string, unknown> = {}): Promise<{ d: Daemon; port: number; lines: Array<Record<string, unknown>> }> {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-spoe-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = parseConfig(
    {
      anvil: { enabled: false },
      ...isolated(dir),
      haproxy_spoe: { listen: ['127.0.0.1:0'], hostname: 'mx.test', ...spoe },
      services: {
        smtp: { limits: { connection_rate: 3 }, countries: { connect: { deny: ['KP'] } } },
        imap: { limits: { connections_per_address: 4 } },
        ...services,
      },
    },
    'spoe-test',
  );
  const { log, lines } = memoryLogger();
  const d = await startDaemon(config, log, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
  t.after(() => d.stop());
  const port = d.spoe?.ports[0];
  assert.ok(port, 'the agent listens');
  return { d, port, lines };
}

async function haproxy(t: TestContext, port: number): Promise<FakeHaproxy> {
  const h = await FakeHaproxy.ready(port);
  t.after(() => h.destroy());
  return h;
}

test('a good client is allowed; a banned one refused in SMTP words; the decision is in the metrics, the stream and the status', async (t) => {
  const { d, port, lines } = await daemon(t);
  const api = new AdminClient(d.adminPort, null);
  const stream = await api.events();
  t.after(() => stream.close());
  const h = await haproxy(t, port);

  h.notify(0, 1, [{ name: MSG, args: clientArgs('127.0.0.5', 'smtp') }]);
  const ok = await h.next();
  assert.deepEqual([ok.type, ok.streamId, ok.frameId], [SPOP_FRAME.ACK, 0, 1]);
  assert.deepEqual(ackVars(ok), { verdict: 'allow' });

  await d.control.ban('127.0.0.9', 3_600_000, 'test ban', { address: 'test' });
  h.notify(8, 1, [{ name: MSG, args: clientArgs('127.0.0.9', 'smtp') }]);
  const banned = ackVars(await h.next());
  assert.deepEqual(banned, { verdict: 'refuse', text: '421 4.7.0 mx.test Your address is temporarily blocked, try again later', rule: 'bans', retry_after: 3600 });

  const ev = await stream.waitFor((e) => e.event === 'refusal' && e.data.address === '127.0.0.9');
  assert.deepEqual([ev.data.by, ev.data.service, ev.data.rule], ['haproxy', 'smtp', 'bans']);
  const logged = lines.find((l) => l['msg'] === 'haproxy: refused');
  assert.deepEqual([logged?.['client'], logged?.['service'], logged?.['port'], logged?.['rule']], ['127.0.0.9', 'smtp', 25, 'bans']);

  const metrics = (await api.get('/metrics')).json as string;
  assert.equal(metricValue(metrics, 'doorman_decisions_total{service="smtp",action="refuse",rule="bans"}'), 1);
  assert.equal(metricValue(metrics, 'doorman_decisions_total{service="smtp",action="allow",rule="none"}'), 1);
  assert.equal(metricValue(metrics, 'doorman_decision_seconds_count{front="spoe"}'), 2);
  assert.equal(metricValue(metrics, `doorman_listener_clients{listener="haproxy_spoe",address="127.0.0.1:${port}"}`), 1);
  const status = (await api.get('/api/status')).json;
  const { reads, ...rest } = status.front_ends.haproxy_spoe;
  assert.ok(reads >= 3, `HELLO and two NOTIFY frames were read (${reads} reads)`);
  assert.deepEqual(rest, {
    listen: [`127.0.0.1:${port}`],
    haproxy_connections: 1,
    notifies: 2,
    decisions: 2,
    refusals: 1,
    failed_open: 0,
    protocol_errors: 0,
    health_checks: 0,
    admitted: { smtp: 1 },
  });
});

test('country, connection rate, and the per-address limit handed to HAProxy with its line', async (t) => {
  const { port } = await daemon(t);
  const h = await haproxy(t, port);
  h.notify(1, 1, [{ name: MSG, args: clientArgs('127.0.0.66', 'smtp') }]);
  assert.deepEqual(ackVars(await h.next()), { verdict: 'refuse', text: '521 5.7.1 mx.test Access from your country is not allowed', rule: 'services.smtp.countries.connect', retry_after: 0, country: 'KP' });
  for (let i = 0; i < 3; i++) {
    h.notify(10 + i, 1, [{ name: MSG, args: clientArgs('127.0.0.7', 'smtp') }]);
    assert.equal(ackVars(await h.next()).verdict, 'allow', `connection ${i + 1}`);
  }
  h.notify(13, 1, [{ name: MSG, args: clientArgs('127.0.0.7', 'smtp') }]);
  const rate = ackVars(await h.next());
  assert.deepEqual([rate.verdict, rate.rule, rate.retry_after], ['refuse', 'services.smtp.limits.connection_rate', 60]);
  h.notify(14, 1, [{ name: MSG, args: clientArgs('127.0.0.49', 'imap', 143) }]);
  assert.deepEqual(ackVars(await h.next()), {
    verdict: 'allow',
    country: 'DE',
    conn_limit: 4,
    conn_text: '* BYE [UNAVAILABLE] Too many connections from your address (at most 4 at once), try again later',
  });
});

test('a service\'s own refusal texts (its guard proxy\'s proxy.texts) are the words HAProxy\'s clients of it get', async (t) => {
  const proxy = { listen: ['127.0.0.1:0'], backend: '127.0.0.1:10025', proxy_protocol: 'v1', texts: { banned: 'Blocked here, write to postmaster@example.org', country: 'Mail from your country is not taken here' } };
  const { d, port } = await daemon(t, {}, { smtp: { limits: { connections_per_address: 2 }, countries: { connect: { deny: ['KP'] } }, proxy: { ...proxy, texts: { ...proxy.texts, too_many: 'Two at once, no more' } } } });
  const h = await haproxy(t, port);
  await d.control.ban('127.0.0.9', 3_600_000, 'test ban', { address: 'test' });
  h.notify(1, 1, [{ name: MSG, args: clientArgs('127.0.0.9', 'smtp') }]);
  assert.equal(ackVars(await h.next()).text, '421 4.7.0 mx.test Blocked here, write to postmaster@example.org');
  h.notify(2, 1, [{ name: MSG, args: clientArgs('127.0.0.66', 'smtp') }]);
  assert.equal(ackVars(await h.next()).text, '521 5.7.1 mx.test Mail from your country is not taken here');
  h.notify(3, 1, [{ name: MSG, args: clientArgs('127.0.0.5', 'smtp') }]);
  assert.equal(ackVars(await h.next()).conn_text, '421 4.7.0 mx.test Two at once, no more');
  // imap sets no texts: the built-in words.
  h.notify(4, 1, [{ name: MSG, args: clientArgs('127.0.0.9', 'imap') }]);
  assert.equal(ackVars(await h.next()).text, '* BYE [UNAVAILABLE] Your address is temporarily blocked, try again later');
});

test('a service with no guard proxy sets its words with services.NAME.texts; its proxy.texts, where a service has both, win', async (t) => {
  const { d, port } = await daemon(t, {}, {
    pop3: { texts: { banned: 'Closed to you for now' } },
    smtp: { texts: { banned: 'service words', country: 'No mail from there' }, countries: { connect: { deny: ['KP'] } }, proxy: { listen: ['127.0.0.1:0'], backend: '127.0.0.1:10025', proxy_protocol: 'v1', texts: { banned: 'proxy words' } } },
  });
  const h = await haproxy(t, port);
  await d.control.ban('127.0.0.9', 3_600_000, 'test ban', { address: 'test' });
  h.notify(1, 1, [{ name: MSG, args: clientArgs('127.0.0.9', 'pop3', 110) }]);
  assert.equal(ackVars(await h.next()).text, '-ERR [SYS/TEMP] Closed to you for now');
  h.notify(2, 1, [{ name: MSG, args: clientArgs('127.0.0.9', 'smtp') }]);
  assert.equal(ackVars(await h.next()).text, '421 4.7.0 mx.test proxy words');
  h.notify(3, 1, [{ name: MSG, args: clientArgs('127.0.0.66', 'smtp') }]);
  assert.equal(ackVars(await h.next()).text, '521 5.7.1 mx.test No mail from there');
});

test('dry-run: what would be refused is logged and allowed, and no limit is handed to HAProxy', async (t) => {
  const { port, lines } = await daemon(t, {}, { pop3: { mode: 'dry-run', limits: { connections_per_address: 2 }, countries: { connect: { deny: ['KP'] } } } });
  const h = await haproxy(t, port);
  h.notify(2, 1, [{ name: MSG, args: clientArgs('127.0.0.66', 'pop3', 110) }]);
  assert.deepEqual(ackVars(await h.next()), { verdict: 'allow', country: 'KP' });
  const line = lines.find((l) => l['msg'] === 'haproxy: would refuse (dry-run)');
  assert.deepEqual([line?.['client'], line?.['rule']], ['127.0.0.66', 'services.pop3.countries.connect']);
  h.notify(3, 1, [{ name: MSG, args: clientArgs('2001:db8::7', 'pop3', 110) }]);
  assert.deepEqual(ackVars(await h.next()), { verdict: 'allow' }, 'an IPv6 client, in dry-run: no conn_limit');
});

test('pipelined NOTIFY frames in one write are each answered; other messages get an empty ACK; malformed ones fail open with one warning', async (t) => {
  const { port, lines } = await daemon(t);
  const h = await haproxy(t, port);
  const frames = [19, 30, 31, 32, 33].map((sid) => ({ sid, args: clientArgs(`127.0.1.${sid}`, 'smtp') }));
  const { encodeNotify } = await import('../../src/protocols/spop-messages.js');
  h.send(Buffer.concat(frames.map((f) => encodeNotify({ streamId: f.sid, frameId: 1, messages: [{ name: MSG, args: f.args }] }, 16380))));
  const acks = [];
  for (let i = 0; i < frames.length; i++) acks.push(await h.next());
  assert.deepEqual(acks.map((a) => a.streamId).sort((a, b) => a - b), [19, 30, 31, 32, 33]);
  assert.ok(acks.every((a) => ackVars(a).verdict === 'allow'));

  h.notify(40, 1, [{ name: 'someone-else', args: clientArgs('127.0.0.5', 'smtp') }]);
  assert.deepEqual(ackVars(await h.next()), {});
  for (const sid of [41, 42]) {
    h.notify(sid, 1, [{ name: MSG, args: [{ name: 'service', value: { type: 'string', value: 'smtp' } }] }]);
    assert.deepEqual(ackVars(await h.next()), { verdict: 'allow' }, 'no src: allowed, as HAProxy fails open');
  }
  const warned = lines.filter((l) => typeof l['msg'] === 'string' && (l['msg'] as string).includes('unusable'));
  assert.equal(warned.length, 1, 'one warning a minute');
  assert.match(String(warned[0]?.['reason']), /argument src is missing/);
  h.notify(43, 1, [{ name: MSG, args: clientArgs('127.0.0.5', 'smtp-typo') }]);
  assert.equal(ackVars(await h.next()).verdict, 'allow', 'an unknown service: no rules but bans');
  assert.ok(lines.some((l) => l['msg'] === 'haproxy_spoe: HAProxy asked about service "smtp-typo", which the configuration does not name: only bans apply (name HAProxy\'s frontends like Doorman\'s services)'));
});

test('health check, HAPROXY-DISCONNECT, a broken frame, and AGENT-DISCONNECT on shutdown', async (t) => {
  const { d, port } = await daemon(t);
  const check = await FakeHaproxy.connect(port);
  t.after(() => check.destroy());
  check.send(HAPROXY_HELLO_HEALTHCHECK);
  assert.equal((await check.next()).type, SPOP_FRAME.AGENT_HELLO);
  await check.waitClosed();

  const h = await haproxy(t, port);
  h.disconnect(2, 'a timeout occurred');
  assert.deepEqual(await h.agentDisconnect(), { status: 0, message: 'normal close' });
  await h.waitClosed();

  const bad = await haproxy(t, port);
  bad.send(encodeHaproxyHello(HAPROXY_HELLO_FIELDS));
  assert.equal((await bad.agentDisconnect()).status, SPOP_STATUS.INVALID, 'HELLO twice');
  await bad.waitClosed();

  const live = await haproxy(t, port);
  live.notify(3, 1, [{ name: MSG, args: clientArgs('127.0.0.5', 'smtp') }]);
  await live.next();
  assert.equal(d.spoe?.stats.healthChecks, 1);
  assert.equal(d.spoe?.stats.protocolErrors, 1);
  const stopping = d.stop();
  assert.deepEqual(await live.agentDisconnect(), { status: 0, message: 'Doorman is shutting down' });
  live.destroy();
  await stopping;
});

test('caps: NOTIFY frames waiting past max_in_flight, a frame not finished in request_timeout, max_clients, idle connections', async (t) => {
  const { d, port, lines } = await daemon(t, { max_in_flight: 2, request_timeout: '200ms', idle_timeout: '1s', max_clients: 3 });
  // A fake gate that never decides keeps NOTIFY frames waiting; the daemon's own is used for the rest.
  const stalled = new SpoeAgentServer(
    { screen: () => new Promise<Screening>(() => undefined), rules: d.gate.rules } as unknown as Gatekeeper,
    memoryLogger().log,
    { listen: ['127.0.0.1:0'], message: MSG, hostname: 'mx.test', maxClients: 5, requestTimeoutMs: 1000, idleTimeoutMs: 60_000, decisionTimeoutMs: 60_000, maxFrameSize: 16380, maxInFlight: 2 },
  );
  await stalled.listen();
  t.after(() => stalled.close());
  const s = await haproxy(t, stalled.ports[0]!);
  for (const sid of [1, 2, 3]) s.notify(sid, 1, [{ name: MSG, args: clientArgs('127.0.0.5', 'smtp') }]);
  assert.equal((await s.agentDisconnect()).status, SPOP_STATUS.RESOURCE);

  const half = await haproxy(t, port);
  half.send(Buffer.from([0, 0, 0, 40, 3]));
  const started = Date.now();
  assert.deepEqual(await half.agentDisconnect(), { status: SPOP_STATUS.TIMEOUT, message: 'frame not finished in time' });
  assert.ok(Date.now() - started >= 150);
  assert.ok(lines.some((l) => l['code'] === 'DOORMAN_ERR_REQUEST_STALLED'));

  const held = [await haproxy(t, port), await haproxy(t, port), await haproxy(t, port)];
  const fourth = await FakeHaproxy.connect(port);
  t.after(() => fourth.destroy());
  await fourth.waitClosed();
  await waitUntil('max_clients is counted', () => (d.spoe?.listeners[0]?.full ?? 0) === 1);

  // Silent for one to two idle periods: AGENT-DISCONNECT status 2 (a timeout).
  const bye = await held[0]!.agentDisconnect(3000);
  assert.equal(bye.status, SPOP_STATUS.TIMEOUT);
});

test('a decision not made in decision_timeout is answered allow (the slow store fails open, as HAProxy would)', async (t) => {
  const { log, lines } = memoryLogger();
  const server = new SpoeAgentServer(
    { screen: () => new Promise<Screening>(() => undefined), rules: { services: new Map(), service: () => ({ protocol: 'smtp' }) } } as unknown as Gatekeeper,
    log,
    { listen: ['127.0.0.1:0'], message: MSG, hostname: 'mx.test', maxClients: 5, requestTimeoutMs: 1000, idleTimeoutMs: 60_000, decisionTimeoutMs: 100, maxFrameSize: 16380, maxInFlight: 8 },
  );
  await server.listen();
  t.after(() => server.close());
  const h = await haproxy(t, server.ports[0]!);
  const started = Date.now();
  h.notify(5, 1, [{ name: MSG, args: clientArgs('127.0.0.5', 'smtp') }]);
  assert.deepEqual(ackVars(await h.next()), { verdict: 'allow' });
  assert.ok(Date.now() - started >= 90);
  assert.ok(lines.some((l) => l['msg'] === 'haproxy_spoe: no decision in time (answered allow)'));
  assert.equal(server.stats.failedOpen, 1);
  await sleep(10);
});
