/**
 * The bouncer against a Local API that misbehaves, on a real socket (port
 * 0): each way a request fails has its code, the bans held stay through a
 * failure, a failure that lasts is logged once, and the next poll after one
 * asks for the whole list again. Rounds are run by hand (tick()), so no
 * assertion depends on timing. test/integration/crowdsec.test.ts drives the
 * real CrowdSec.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { memoryLogger } from '../../test/helpers/log.js';
import { serviceSchema } from '../config/rules-schema.js';
import type { Clock } from '../core/clock.js';
import { Gatekeeper } from '../core/gate.js';
import { formatIp, parseIp } from '../core/ip.js';
import { Rules } from '../core/rules.js';
import type { AuditEntry, AuditSink } from '../state/audit-log.js';
import { MemoryStore } from '../store/memory.js';
import { slidingWindow } from '../store/rate.js';
import { CrowdsecBouncer } from './bouncer.js';
import { CrowdsecCache } from './cache.js';
import { CrowdsecError, fetchStream, type LapiOptions } from './lapi-client.js';

const KEY = 'bouncer-test-key-0123456789';
const T0 = Date.UTC(2026, 11, 7, 10, 0, 0);

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function lapi(t: TestContext): Promise<{ url: string; set(h: Handler): void; seen: string[] }> {
  let handler: Handler = (_q, res) => res.end('{"new":null,"deleted":null}');
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    seen.push(`${req.headers['x-api-key'] === KEY ? 'key' : 'nokey'} ${req.url}`);
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}`, set: (h) => (handler = h), seen };
}

function opts(url: string, o: Partial<LapiOptions> = {}): LapiOptions {
  return { url, apiKey: KEY, timeoutMs: 2000, maxBytes: 4096, origins: [], scenariosContaining: [], scenariosNotContaining: [], userAgent: 'doorman/test', ...o };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CrowdsecError, String(e));
    return e.code;
  }
  return 'resolved';
}

const decision = (id: number, value: string, duration = '1h') => ({ id, origin: 'cscli', type: 'ban', scope: value.includes('/') ? 'Range' : 'Ip', value, duration, scenario: `s${id}` });

test('lapi client: every way a request fails has its code, and the key is sent and nowhere else', async (t) => {
  const l = await lapi(t);
  l.set((_q, res) => res.end(JSON.stringify({ new: [decision(1, '192.0.2.1')], deleted: null })));
  const ok = await fetchStream(opts(l.url), true);
  assert.equal(ok.answer.added[0]?.target, '192.0.2.1');
  assert.deepEqual(l.seen, ['key /v1/decisions/stream?startup=true&scopes=ip,range&dedup=false']);

  l.set((_q, res) => res.writeHead(403).end('{"message":"access forbidden"}'));
  assert.equal(await code(fetchStream(opts(l.url), false)), 'DOORMAN_ERR_CROWDSEC_KEY');
  l.set((_q, res) => res.writeHead(500).end('{"message":"db"}'));
  assert.equal(await code(fetchStream(opts(l.url), false)), 'DOORMAN_ERR_CROWDSEC_STATUS');
  l.set((_q, res) => res.end('<html>not json'));
  assert.equal(await code(fetchStream(opts(l.url), false)), 'DOORMAN_ERR_CROWDSEC_ANSWER');
  l.set((_q, res) => res.end('{"new":{"id":1}}'));
  assert.equal(await code(fetchStream(opts(l.url), false)), 'DOORMAN_ERR_CROWDSEC_ANSWER');
  // Over the cap: declared up front, and sent chunked without a length.
  l.set((_q, res) => res.end(JSON.stringify({ new: Array.from({ length: 100 }, (_, i) => decision(i, '192.0.2.1')) })));
  assert.equal(await code(fetchStream(opts(l.url), false)), 'DOORMAN_ERR_CROWDSEC_TOO_LARGE');
  l.set((_q, res) => {
    res.write('{"new":[');
    const one = JSON.stringify(decision(1, '192.0.2.1'));
    for (let i = 0; i < 100; i++) res.write(`${i > 0 ? ',' : ''}${one}`);
    res.end(']}');
  });
  assert.equal(await code(fetchStream(opts(l.url), false)), 'DOORMAN_ERR_CROWDSEC_TOO_LARGE');
  // Headers, then silence: the deadline covers the whole answer.
  l.set((_q, res) => res.write('{"new":['));
  assert.equal(await code(fetchStream(opts(l.url, { timeoutMs: 200 }), false)), 'DOORMAN_ERR_CROWDSEC_TIMEOUT');
  // Nobody listening.
  const closed = createTcpServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const e = await fetchStream(opts(`http://127.0.0.1:${port}`), false).catch((x: unknown) => x as CrowdsecError);
  assert.ok(e instanceof CrowdsecError);
  assert.equal(e.code, 'DOORMAN_ERR_CROWDSEC_UNREACHABLE');
  assert.equal(e.message.includes(KEY), false);
});

test('bouncer: bans applied, kept through garbage and silence, one warning for a lasting failure, the whole list asked for after it', async (t) => {
  const l = await lapi(t);
  const { log, lines } = memoryLogger();
  let now = T0;
  const clock: Clock = { now: () => now } as Clock;
  const rules = Rules.compile({ services: { imap: serviceSchema.parse({}) }, exceptions: ['192.0.2.128/25'], overrides: [] }, 't');
  const gate = Gatekeeper.open({ store: new MemoryStore({ rate: slidingWindow(60_000), maxEntries: 1000 }), rules, countries: { country: () => null }, clock, log, rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  t.after(() => gate.stop());
  const audit: AuditEntry[] = [];
  const sink: AuditSink = { append: async (e) => void audit.push(e), recent: async () => [], close: async () => undefined };
  const b = new CrowdsecBouncer({ lapi: opts(l.url, { maxBytes: 1 << 20 }), pollIntervalMs: 1000, tickMs: 1000, gate, audit: sink, clock, log, fleet: null });
  t.after(() => b.stop());
  const banned = (a: string) => {
    const ip = parseIp(a);
    assert.ok(ip);
    return gate.bans.find(ip, formatIp(ip), now) !== null;
  };
  const round = async (h: Handler) => {
    l.set(h);
    now += 1000;
    await b.tick();
  };

  await round((_q, res) => res.end(JSON.stringify({ new: [decision(1, '198.51.100.7'), decision(2, '203.0.113.0/24'), decision(3, '192.0.2.200')], deleted: null })));
  assert.ok(banned('198.51.100.7') && banned('203.0.113.77'));
  assert.equal(banned('192.0.2.200'), false, 'in the exception network');
  assert.equal((b.status()['skipped'] as { exception: number }).exception, 1);
  assert.equal(audit.length, 1);
  assert.deepEqual(audit[0]?.details, { startup: true, added: 2, removed: 0, bans: 2, decisions: 2 });

  // A delta: one deleted, one added.
  await round((_q, res) => res.end(JSON.stringify({ new: [decision(4, '198.51.100.8')], deleted: [decision(1, '198.51.100.7', '-5ms')] })));
  assert.equal(banned('198.51.100.7'), false);
  assert.ok(banned('198.51.100.8'));
  // Nothing changed: no audit line.
  await round((_q, res) => res.end('{"new":null,"deleted":null}'));
  assert.equal(audit.length, 2);

  // Garbage, then an error status, then garbage again: the bans stay; one warning, then none per poll.
  await round((_q, res) => res.end('{"new": "surprise"}'));
  await round((_q, res) => res.end('{"new": "surprise"}'));
  await round((_q, res) => res.end('{"new": "surprise"}'));
  assert.ok(banned('198.51.100.8') && banned('203.0.113.1'));
  const st = b.status();
  assert.equal(st['up'], false);
  assert.equal((st['last_error'] as { code: string }).code, 'DOORMAN_ERR_CROWDSEC_ANSWER');
  assert.equal(st['failures_in_a_row'], 3);
  const warnings = () => lines.filter((x) => typeof x['msg'] === 'string' && (x['msg'] as string).startsWith('crowdsec: the Local API') && x['level'] === 40);
  assert.equal(warnings().length, 1);
  // Past the reminder period, one more line.
  now += 5 * 60_000;
  await round((_q, res) => res.end('{"new": "surprise"}'));
  assert.equal(warnings().length, 2);

  // Back: the whole list is asked for, and replaces what was held.
  const before = l.seen.length;
  await round((_q, res) => res.end(JSON.stringify({ new: [decision(4, '198.51.100.8')], deleted: null })));
  assert.match(l.seen[before] ?? '', /startup=true/);
  assert.equal(banned('203.0.113.1'), false, 'deleted while the answers were garbage');
  assert.ok(banned('198.51.100.8'));
  assert.equal(b.status()['up'], true);
  assert.ok(lines.some((x) => x['msg'] === 'crowdsec: the Local API answers again; the whole list was asked for'));
  assert.equal(JSON.stringify(lines).includes(KEY), false, 'the key is in no log line');
  assert.ok(l.seen.every((s) => s.startsWith('key ')));
});

test('bouncer, single host: the list is saved when it changes, and a restart while the Local API is down enforces it until it answers', async (t) => {
  const l = await lapi(t);
  const { log } = memoryLogger();
  let now = T0;
  const clock: Clock = { now: () => now } as Clock;
  const dir = mkdtempSync(join(tmpdir(), 'doorman-crowdsec-cache-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const cache = new CrowdsecCache(join(dir, 'crowdsec-bans.json'), log);
  const sink: AuditSink = { append: async () => undefined, recent: async () => [], close: async () => undefined };
  const open = () => {
    const rules = Rules.compile({ services: { imap: serviceSchema.parse({}) }, exceptions: [], overrides: [] }, 't');
    const gate = Gatekeeper.open({ store: new MemoryStore({ rate: slidingWindow(60_000), maxEntries: 1000 }), rules, countries: { country: () => null }, clock, log, rateUnitMs: 60_000, statusUpdateMs: 600_000 });
    t.after(() => gate.stop());
    const b = new CrowdsecBouncer({ lapi: opts(l.url, { maxBytes: 1 << 20 }), pollIntervalMs: 1000, tickMs: 1000, gate, audit: sink, clock, log, fleet: null, cache });
    t.after(() => b.stop());
    return { gate, b };
  };
  const banned = (gate: Gatekeeper, a: string) => gate.bans.find(parseIp(a)!, a, now) !== null;

  const first = open();
  l.set((_q, res) => res.end(JSON.stringify({ new: [decision(1, '198.51.100.7', '1h'), decision(2, '203.0.113.0/24', '10s')], deleted: null })));
  await first.b.start();
  assert.ok(banned(first.gate, '198.51.100.7'));
  assert.match(readFileSync(join(dir, 'crowdsec-bans.json'), 'utf8'), /198\.51\.100\.7/);
  await first.b.stop();

  // The Local API is down; 20 s later a new Doorman starts: the saved ban that has not ended is in force, the ended one is not.
  l.set((_q, res) => res.writeHead(500).end('{}'));
  now += 20_000;
  const second = open();
  await second.b.start();
  assert.ok(banned(second.gate, '198.51.100.7'), 'the saved ban');
  assert.equal(banned(second.gate, '203.0.113.9'), false, 'ended while Doorman was down');
  assert.equal(second.b.status()['up'], false);
  // It answers: its whole list replaces the saved one.
  l.set((_q, res) => res.end('{"new":null,"deleted":null}'));
  now += 1000;
  await second.b.tick();
  assert.equal(banned(second.gate, '198.51.100.7'), false);
  assert.equal(readFileSync(join(dir, 'crowdsec-bans.json'), 'utf8'), '{"version":1,"bans":[]}');
});

test('crowdsec cache: a missing or broken file is no list', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-crowdsec-cache-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { log, lines } = memoryLogger();
  const c = new CrowdsecCache(join(dir, 'x.json'), log);
  assert.equal(await c.load(T0), null);
  writeFileSync(join(dir, 'x.json'), '{"version":1,"bans":[{"t":"not an address","u":1}]}');
  assert.equal(await c.load(T0), null);
  writeFileSync(join(dir, 'x.json'), `{"version":1,"bans":[{"t":"not an address","u":${T0 + 1},"r":"x"},{"t":"192.0.2.1","u":${T0 + 1},"r":"y"}]}`);
  assert.deepEqual(await c.load(T0), [{ t: '192.0.2.1', u: T0 + 1, r: 'y' }]);
  assert.equal(lines.filter((x) => x['msg'] === 'crowdsec: the saved ban list is not one; waiting for the Local API').length, 1);
});
