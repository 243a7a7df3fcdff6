/**
 * `doorman why`: refusals made by real front-ends — the guard proxy (IMAP
 * clients on loopback) and the Postfix policy service (a policy client over
 * TCP) — then asked of the running daemon through the built CLI and through
 * GET /api/why; both ban layers (a local ban made through the API, a
 * CrowdSec ban put in its layer as the bouncer would); and the commands it
 * names run for real, after which `why` says the refusal is no longer in force.
 * Fleet mode against a real redis-server: a refusal on one node is answered
 * by the other, naming the node.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { AdminClient } from '../helpers/admin-client.js';
import { doorman, show } from '../helpers/cli.js';
import { startFakeBackend } from '../helpers/fake-backend.js';
import { execFile } from 'node:child_process';
import { missingProgram, skipBanner } from '../helpers/guard.js';
import { memoryLogger } from '../helpers/log.js';
import { PolicyTestClient } from '../helpers/policy-client.js';
import { RawClient } from '../helpers/raw-client.js';
import { REDIS_SKIP, redisAvailable, TestRedis } from '../helpers/redis.js';
import { isolated, stateIn } from '../helpers/state.js';

const TOKEN = 'why-test-token-0123456789abcdef';
const COUNTRIES: Record<string, string> = { '127.0.0.66': 'RU', '77.88.8.8': 'RU' };
const GREETING = /^\* OK ready\r\n/;

interface Rig {
  d: Daemon;
  api: AdminClient;
  imap: number;
  policy: PolicyTestClient;
  /** `doorman why ADDR [more…]` against this daemon. */
  why(...args: string[]): ReturnType<typeof doorman>;
  cli(...args: string[]): ReturnType<typeof doorman>;
}

async function rig(t: TestContext, extra: Record<string, unknown> = {}, node?: { redis: TestRedis; name: string; dir: string }): Promise<Rig> {
  const dir = node?.dir ?? mkdtempSync(join(tmpdir(), 'doorman-why-'));
  if (node === undefined) t.after(() => rmSync(dir, { recursive: true, force: true }));
  const backend = await startFakeBackend({ proxy: true, greeting: '* OK ready\r\n' });
  t.after(() => backend.close());
  const base = node === undefined ? isolated(dir) : { state: stateIn(join(dir, node.name)), admin: { listen: '127.0.0.1:0' } };
  const config = parseConfig(
    {
      anvil: { enabled: false },
      ...base,
      admin: { ...base.admin, token: TOKEN },
      postfix_policy: { listen: ['127.0.0.1:0'], service: 'smtp' },
      services: {
        imap: {
          limits: { connections_per_address: 1 },
          countries: { connect: { deny: ['RU'] } },
          proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${backend.port}`, proxy_protocol: 'v2', hostname: 'mx.test' },
        },
        smtp: { countries: { connect: { deny: ['RU'] } } },
      },
      ...(node === undefined ? {} : { store: { type: 'redis', node: node.name, lease: '3s', redis: { url: node.redis.url, timeout: '500ms', prefix: 'why:' } } }),
      ...extra,
    },
    'why-test',
  );
  const { log } = memoryLogger('warn');
  const d = await startDaemon(config, log, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
  t.after(() => d.stop());
  const policy = await PolicyTestClient.open({ port: d.policy?.ports[0] as number });
  t.after(() => policy.close());
  const url = `http://127.0.0.1:${d.adminPort}`;
  const cli = (...args: string[]) => doorman([...args, '--url', url], { env: { DOORMAN_TOKEN: TOKEN } });
  return { d, api: new AdminClient(d.adminPort, TOKEN), imap: d.proxies[0]?.port ?? 0, policy, why: (...args) => cli('why', ...args), cli };
}

/** An IMAP client through the proxy from `from`: its first line (the greeting or the refusal). */
async function imapFrom(t: TestContext, port: number, from: string): Promise<string> {
  const c = await RawClient.open(port, { localAddress: from });
  t.after(() => c.destroy());
  return c.waitFor(/^.*\r\n/);
}

function ok(r: Awaited<ReturnType<typeof doorman>>): string {
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stderr, '', show(r));
  return r.stdout;
}

test('why: refusals by the guard proxy and the policy service, both ban layers, and the commands that lift them', { timeout: 60_000 }, async (t) => {
  const { d, api, imap, policy, why, cli } = await rig(t);

  // The guard proxy: one connection from .20 is let in, the second is over connections_per_address.
  assert.match(await imapFrom(t, imap, '127.0.0.20'), GREETING);
  assert.match(await imapFrom(t, imap, '127.0.0.20'), /^\* BYE \[UNAVAILABLE\] Too many connections/);
  // The policy service: RU is denied for smtp at connect.
  const refused = await policy.ask({ protocol_state: 'CONNECT', protocol_name: 'SMTP', client_address: '77.88.8.8' });
  assert.match(refused ?? '', /^554 5\.7\.1 country RU of 77\.88\.8\.8 is in the deny list/);
  // An allowed decision leaves nothing behind.
  assert.equal(await policy.ask({ protocol_state: 'CONNECT', protocol_name: 'SMTP', client_address: '8.8.8.8' }), 'DUNNO');

  await t.test('a limit: the front-end, the rule, the count against the limit, the retry-after, and how to exempt the address', async () => {
    const j = JSON.parse(ok(await why('127.0.0.20', '--json'))) as any;
    assert.equal(j.address, '127.0.0.20');
    assert.deepEqual(j.bans, []);
    assert.equal(j.refusals.length, 1, JSON.stringify(j));
    const r = j.refusals[0];
    assert.equal(r.by, 'proxy');
    assert.equal(r.service, 'imap');
    assert.equal(r.rule, 'services.imap.limits.connections_per_address');
    assert.equal(r.cause, 'connections_per_address');
    assert.deepEqual([r.count, r.limit, r.key], [2, 1, '127.0.0.20']);
    assert.equal(r.retry_after_s, 60);
    assert.equal(r.in_force, true);
    assert.equal(Date.parse(r.until) - Date.parse(r.at), 60_000, 'until is the retry-after from the refusal');
    assert.equal(r.lift.command, null, 'no command lifts a limit: none is invented');
    assert.match(r.lift.how, /retry after 60 s/);
    assert.match(r.lift.how, /add it to exceptions: in the configuration .*`doorman reload`/);

    const text = ok(await why('127.0.0.20'));
    const lines = text.split('\n');
    assert.match(lines[0] ?? '', /^127\.0\.0\.20: 0 bans in force, 1 refusal recorded$/, text);
    assert.match(lines[1] ?? '', /^\S+Z imap, refused by proxy: services\.imap\.limits\.connections_per_address \(on \S+\)$/, text);
    assert.match(lines[2] ?? '', /^ {2}2 connections from 127\.0\.0\.20, over the limit of 1 \[2 against a limit of 1\]$/, text);
    assert.match(lines[3] ?? '', /^ {2}retry after 1m00s, until \S+Z$/, text);
    assert.match(lines[4] ?? '', /^ {2}to lift it: it lifts by itself/, text);
  });

  await t.test('a country rule applied by the policy service: `doorman unblock` lifts it, and then why says so', async () => {
    const j = JSON.parse(ok(await why('77.88.8.8', '--json'))) as any;
    assert.equal(j.country, 'RU');
    const r = j.refusals[0];
    assert.deepEqual([r.by, r.service, r.rule, r.in_force, r.until], ['policy', 'smtp', 'services.smtp.countries.connect', true, null]);
    assert.equal(r.lift.command, 'doorman unblock RU --service smtp --phase connect');
    // The command named is the real one: run it, and the refusal is lifted.
    ok(await cli(...(r.lift.command as string).split(' ').slice(1)));
    assert.equal(await policy.ask({ protocol_state: 'CONNECT', protocol_name: 'SMTP', client_address: '77.88.8.8' }), 'DUNNO');
    const after = JSON.parse(ok(await why('77.88.8.8', '--json'))) as any;
    assert.equal(after.refusals[0].in_force, false);
    assert.equal(after.refusals[0].lift.command, null);
    assert.match(after.refusals[0].lift.how, /RU is no longer refused for smtp at connect/);
    assert.match(ok(await why('77.88.8.8')), /\n {2}not temporary; no longer in force\n {2}RU is no longer refused/);
  });

  await t.test('both ban layers: a local ban and CrowdSec\'s, each with its own command; unban lifts the local one only', async () => {
    const made = await api.call('POST', '/api/bans', { target: '127.0.0.22', ttl: '10m', reason: 'why test' });
    assert.equal(made.status, 200, JSON.stringify(made.json));
    // CrowdSec's layer, filled as its bouncer fills it.
    d.gate.bans.add('127.0.0.22/31', 3_600_000, 'crowdsecurity/postfix-spam', Date.now(), { origin: 'crowdsec' });
    assert.match(await imapFrom(t, imap, '127.0.0.22'), /^\* BYE \[UNAVAILABLE\] /);
    const j = JSON.parse(ok(await why('127.0.0.22', '--json'))) as any;
    const byLayer = Object.fromEntries(j.bans.map((b: any) => [b.layer, b]));
    assert.deepEqual(Object.keys(byLayer).sort(), ['crowdsec', 'local']);
    assert.equal(byLayer.local.origin, 'operator');
    assert.equal(byLayer.local.strike, 1);
    assert.equal(byLayer.local.lift.command, 'doorman unban 127.0.0.22');
    assert.equal(byLayer.crowdsec.target, '127.0.0.22/31');
    assert.equal(byLayer.crowdsec.lift.command, 'cscli decisions delete --range 127.0.0.22/31');
    assert.match(byLayer.crowdsec.lift.how, /Doorman follows CrowdSec/);
    // The refusal names the ban that refused: the local layer's, which is looked up first.
    const r = j.refusals[0];
    assert.deepEqual([r.cause, r.rule, r.by, r.ban.layer, r.ban.origin, r.in_force], ['ban', 'bans', 'proxy', 'local', 'operator', true]);
    assert.equal(r.lift.command, 'doorman unban 127.0.0.22');

    const text = ok(await why('127.0.0.22'));
    assert.match(text, /^banned: 127\.0\.0\.22 \(local layer, by an operator\) until \S+Z, (9m\d\ds|10m00s) left: why test\n {2}to lift it: doorman unban 127\.0\.0\.22\n/m, text);
    assert.match(text, /^banned: 127\.0\.0\.22\/31 \(crowdsec layer, by CrowdSec\) until \S+Z, (59m\d\ds|1h00m) left: crowdsecurity\/postfix-spam\n {2}to lift it: cscli decisions delete --range 127\.0\.0\.22\/31\n/m, text);

    // `doorman unban` lifts the local ban; CrowdSec's stays, and still refuses.
    ok(await cli(...(r.lift.command as string).split(' ').slice(1)));
    const after = JSON.parse(ok(await why('127.0.0.22', '--json'))) as any;
    assert.deepEqual(after.bans.map((b: any) => b.layer), ['crowdsec']);
    assert.equal(after.refusals[0].in_force, false, 'the local ban that refused is gone');
    assert.match(await imapFrom(t, imap, '127.0.0.22'), /^\* BYE \[UNAVAILABLE\] /);
    const again = JSON.parse(ok(await why('127.0.0.22', '--json'))) as any;
    assert.equal(again.refusals[0].ban.layer, 'crowdsec', 'the newest refusal was CrowdSec\'s ban');
    assert.equal(again.refusals[0].times, 1, "another layer's ban is another record");
    assert.equal(again.refusals[0].lift.command, 'cscli decisions delete --range 127.0.0.22/31');
  });

  await t.test('newest first; the same refusal again folds into one record', async () => {
    // .66 is RU: refused by the country rule twice, then (from .20's slot) nothing else.
    assert.match(await imapFrom(t, imap, '127.0.0.66'), /^\* BYE \[CONTACTADMIN\] /);
    assert.match(await imapFrom(t, imap, '127.0.0.66'), /^\* BYE \[CONTACTADMIN\] /);
    await api.call('POST', '/api/bans', { target: '127.0.0.66', ttl: '1h', reason: 'newest' });
    assert.match(await imapFrom(t, imap, '127.0.0.66'), /^\* BYE \[UNAVAILABLE\] /);
    const j = JSON.parse(ok(await why('127.0.0.66', '--json'))) as any;
    assert.deepEqual(j.refusals.map((r: any) => [r.cause, r.times]), [['ban', 1], ['country', 2]]);
    assert.ok(Date.parse(j.refusals[0].at) >= Date.parse(j.refusals[1].at));
  });

  await t.test('the API: canonical addresses, strict query, 400 for what is no address', async () => {
    const mapped = await api.get('/api/why?address=::ffff:127.0.0.20');
    assert.equal(mapped.status, 200);
    assert.equal(mapped.json.address, '127.0.0.20', 'a mapped address is its IPv4');
    assert.equal(mapped.json.refusals.length, 1);
    assert.deepEqual(mapped.json.missing_nodes, []);
    assert.deepEqual(mapped.json.record, { addresses: 4096, per_address: 8, max_age_s: 86400 });
    const bad = await api.get('/api/why?address=not-an-ip');
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'DOORMAN_ERR_ADDRESS');
    const extra = await api.get('/api/why?address=127.0.0.1&service=imap');
    assert.equal(extra.status, 400, 'unknown query fields are refused');
    assert.equal((await api.get('/api/why')).status, 400);
    const none = ok(await why('192.0.2.1'));
    assert.equal(none, '192.0.2.1: 0 bans in force, 0 refusals recorded\n(the record keeps the last 4096 addresses refused, 8 refusals each, for 1d00h)\n');
    const r = await why('not-an-ip');
    assert.equal(r.code, 2, show(r));
  });
});

const CSCLI = '/usr/bin/cscli';
const NO_CSCLI = missingProgram(CSCLI) ? `${CSCLI} not found (Debian package crowdsec; bash .ci/run as root installs it): the CrowdSec command \`doorman why\` prints was not checked against cscli` : false;
if (NO_CSCLI) skipBanner(NO_CSCLI);

test("the CrowdSec command why names is one Debian's cscli has: decisions delete with --ip and --range", { skip: NO_CSCLI }, async () => {
  // `--help` needs no Local API: the flags are cscli's own, whatever its configuration.
  const help = await new Promise<string>((resolve, reject) =>
    execFile(CSCLI, ['decisions', 'delete', '--help'], { timeout: 20_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout))),
  );
  assert.match(help, /cscli decisions delete \[options\]/);
  assert.match(help, /^\s+-i, --ip string\s+Source ip/m);
  assert.match(help, /^\s+-r, --range string\s+Range source ip/m);
});

if (!redisAvailable()) {
  skipBanner(REDIS_SKIP);
  test('why in a fleet', { skip: REDIS_SKIP }, () => {});
} else {
  describe('why in a fleet', () => {
    test('a refusal on one node is answered by the other, naming its node; a local ban is one entry held by both', { timeout: 60_000 }, async (t) => {
      const redis = await TestRedis.start();
      t.after(() => redis.stop());
      const dir = mkdtempSync(join(tmpdir(), 'doorman-why-fleet-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const a = await rig(t, {}, { redis, name: 'why-a', dir });
      const b = await rig(t, {}, { redis, name: 'why-b', dir });
      assert.match(await imapFrom(t, a.imap, '127.0.0.40'), GREETING);
      assert.match(await imapFrom(t, a.imap, '127.0.0.40'), /Too many connections/);
      await a.api.call('POST', '/api/bans', { target: '127.0.0.40', ttl: '10m', reason: 'fleet why' });
      // The ban reaches node b through the fleet's state channel.
      const deadline = Date.now() + 3000;
      while (b.d.gate.bans.get('127.0.0.40') === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const j = JSON.parse(ok(await b.why('127.0.0.40', '--json'))) as any;
      assert.deepEqual(j.missing_nodes, []);
      assert.equal(j.refusals.length, 1, JSON.stringify(j));
      assert.equal(j.refusals[0].node, 'why-a', 'the refusal names the node that made it');
      assert.equal(j.refusals[0].rule, 'services.imap.limits.connections_per_address');
      assert.equal(j.bans.length, 1, 'the fleet-wide local ban once');
      assert.deepEqual(j.bans[0].nodes, ['why-a', 'why-b']);
      assert.match(ok(await b.why('127.0.0.40')), /refused by proxy: services\.imap\.limits\.connections_per_address \(on why-a\)/);
      // Asked of node a, the same answer.
      const fromA = JSON.parse(ok(await a.why('127.0.0.40', '--json'))) as any;
      assert.deepEqual(fromA.refusals.map((r: any) => r.node), ['why-a']);
    });
  });
}
