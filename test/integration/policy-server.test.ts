import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon } from '../../src/main.js';
import { AnvilTestClient } from '../helpers/anvil-client.js';
import { memoryLogger } from '../helpers/log.js';
import { PolicyTestClient } from '../helpers/policy-client.js';
import { isolated } from '../helpers/state.js';

/** Countries for public test addresses (as the CC0 database answers them); no traffic goes to them. */
const COUNTRIES: Record<string, string> = { '8.8.8.8': 'US', '77.88.8.8': 'RU', '133.242.0.1': 'JP', '2a00:1450::1': 'DE' };

async function daemon(t: TestContext, rules: Record<string, unknown>, policy: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-policy-'));
  const config = parseConfig(
    { anvil: { socket: join(dir, 'anvil') }, ...isolated(dir), postfix_policy: { listen: ['127.0.0.1:0', join(dir, 'policy')], ...policy }, ...rules },
    'test',
  );
  const { log, lines } = memoryLogger();
  const d = await startDaemon(config, log, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
  const client = await PolicyTestClient.open({ port: d.policy?.ports[0] as number });
  t.after(async () => {
    client.close();
    await d.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  return { d, dir, client, lines };
}

const connectReq = (addr: string, extra: Record<string, string> = {}) => ({ protocol_state: 'CONNECT', protocol_name: 'SMTP', client_address: addr, ...extra });

test('CONNECT: country rules, special addresses, exceptions; XCLIENT is CONNECT', async (t) => {
  const { client, lines } = await daemon(t, { services: { smtp: { countries: { connect: { deny: ['RU'] } } } }, exceptions: ['77.88.8.0/24'] });
  assert.equal(await client.ask(connectReq('8.8.8.8')), 'DUNNO');
  assert.equal(await client.ask(connectReq('10.1.2.3')), 'DUNNO', 'a private address has no country');
  assert.equal(await client.ask(connectReq('77.88.8.8')), 'DUNNO', 'exception network');
  const { client: c2 } = await daemon(t, { services: { smtp: { countries: { connect: { deny: ['RU'] } } } } });
  assert.equal(await c2.ask(connectReq('77.88.8.8')), '554 5.7.1 country RU of 77.88.8.8 is in the deny list for smtp at connect');
  assert.equal(await c2.ask({ ...connectReq('77.88.8.8'), protocol_state: 'XCLIENT' }), '554 5.7.1 country RU of 77.88.8.8 is in the deny list for smtp at connect');
  assert.equal(await c2.ask(connectReq('not-an-address')), 'DUNNO');
  assert.equal(await c2.ask({ ...connectReq('8.8.8.8'), protocol_state: 'EHLO' }), 'DUNNO');
  void lines;
});

test('CONNECT reads the anvil service counts: concurrency and connection rate', async (t) => {
  const { d, client, lines } = await daemon(t, { services: { smtp: { limits: { connections_per_address: 2, connection_rate: 5 } } } });
  const anvil = await AnvilTestClient.open(d.anvil?.opts.socket as string);
  t.after(() => anvil.destroy());
  await anvil.request('connect', 'smtp:8.8.8.8');
  await anvil.request('connect', 'smtp:8.8.8.8');
  assert.equal(await client.ask(connectReq('8.8.8.8')), 'DUNNO');
  await anvil.request('connect', 'smtp:8.8.8.8');
  assert.equal(await client.ask(connectReq('8.8.8.8')), '421 4.7.0 3 connections from 8.8.8.8, over the limit of 2, try again in 60 s');
  await anvil.request('disconnect', 'smtp:8.8.8.8');
  for (let i = 0; i < 3; i++) {
    await anvil.request('connect', 'smtp:8.8.8.8');
    await anvil.request('disconnect', 'smtp:8.8.8.8');
  }
  assert.equal(await client.ask(connectReq('8.8.8.8')), '421 4.7.0 connection rate of 8.8.8.8 is 6/60s, over the limit of 5, try again in 60 s');
  assert.ok(lines.some((l) => l.msg === 'refused' && l.rule === 'services.smtp.limits.connection_rate' && l.address === '8.8.8.8'));
});

test('Postfix 3.8+ ranges: the policy service refuses ::1 from the counts smtpd reported under smtp:::/84, and says so once', async (t) => {
  const { d, client, lines } = await daemon(t, { services: { smtp: { limits: { connections_per_address: 2, recipient_rate: 1 } } } });
  const anvil = await AnvilTestClient.open(d.anvil?.opts.socket as string);
  t.after(() => anvil.destroy());
  for (let i = 0; i < 2; i++) await anvil.request('connect', 'smtp:::/84');
  assert.equal(await client.ask(connectReq('::1')), 'DUNNO');
  await anvil.request('connect', 'smtp:::/84');
  assert.equal(await client.ask(connectReq('::1')), '421 4.7.0 3 connections from ::/84, over the limit of 2, try again in 60 s');
  assert.equal(await client.ask(connectReq('2001:db8::1')), 'DUNNO', 'another /84');
  const told = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('anvil: smtpd sends IPv6 clients as /84 networks'));
  assert.equal(told.length, 1, 'said once, however many ranges arrive');
  assert.equal(told[0]?.service, 'smtp');
  // The policy's own counts (recipients) are kept as smtpd keeps its own: per range.
  assert.equal(await client.ask({ ...connectReq('::1'), protocol_state: 'RCPT' }), 'DUNNO');
  assert.match(String(await client.ask({ ...connectReq('::2'), protocol_state: 'RCPT' })), /^450 4\.7\.1 recipient rate of ::\/84 is 2\/60s/);
});

test('Postfix 3.7 sends whole IPv6 addresses: learned from its first connect, so its counts are found too', async (t) => {
  const { d, client, lines } = await daemon(t, { services: { smtp: { limits: { connections_per_address: 2 } } } });
  const anvil = await AnvilTestClient.open(d.anvil?.opts.socket as string);
  t.after(() => anvil.destroy());
  for (let i = 0; i < 3; i++) await anvil.request('connect', 'smtp:2001:db8::7');
  assert.equal(await client.ask(connectReq('2001:db8::7')), '421 4.7.0 3 connections from 2001:db8::7, over the limit of 2, try again in 60 s');
  assert.ok(lines.some((l) => l.msg === 'anvil: smtpd sends IPv6 clients by their whole address, not /84 as anvil.client_ipv6_prefix_length assumed; the policy service and checks look counts up as smtpd writes them'));
});

test('RCPT: recipient rate, and the AUTH-phase country rule for authenticated clients', async (t) => {
  const { client } = await daemon(t, { services: { submission: { limits: { recipient_rate: 2 }, countries: { auth: { allow: ['DE'] } } } } }, { service: 'submission' });
  const rcpt = (addr: string, user = '') => ({ protocol_state: 'RCPT', client_address: addr, recipient: 'a@example.org', sasl_username: user });
  assert.equal(await client.ask(rcpt('8.8.8.8')), 'DUNNO', 'unauthenticated: the AUTH rule does not apply');
  assert.equal(await client.ask(rcpt('8.8.8.8')), 'DUNNO');
  assert.equal(await client.ask(rcpt('8.8.8.8')), '450 4.7.1 recipient rate of 8.8.8.8 is 3/60s, over the limit of 2, try again in 60 s');
  assert.equal(await client.ask(rcpt('133.242.0.1', 'alice')), '554 5.7.1 country JP of 133.242.0.1 is not in the allow list for submission at auth');
  assert.equal(await client.ask(rcpt('2a00:1450::1', 'alice')), 'DUNNO');
});

test('policy_context names the service; END-OF-MESSAGE counts messages; dry-run refuses nothing', async (t) => {
  const { client, lines } = await daemon(t, {
    services: { smtp: { limits: { message_rate: 1 } }, submission: { mode: 'dry-run', limits: { message_rate: 1 } } },
  });
  const eom = (ctx: string) => ({ protocol_state: 'END-OF-MESSAGE', client_address: '8.8.8.8', policy_context: ctx });
  assert.equal(await client.ask(eom('')), 'DUNNO');
  assert.equal(await client.ask(eom('')), '450 4.7.1 message rate of 8.8.8.8 is 2/60s, over the limit of 1, try again in 60 s');
  assert.equal(await client.ask(eom('submission')), 'DUNNO');
  assert.equal(await client.ask(eom('submission')), 'DUNNO', 'dry-run');
  assert.ok(lines.some((l) => l.msg === 'dry-run: would refuse' && l.rule === 'services.submission.limits.message_rate'));
});

test('the UNIX socket serves too; a malformed request drops only that client', async (t) => {
  const { dir, client, lines } = await daemon(t, {});
  const unix = await PolicyTestClient.open({ path: join(dir, 'policy') });
  t.after(() => unix.close());
  assert.equal(await unix.ask(connectReq('8.8.8.8')), 'DUNNO');
  assert.equal(await unix.raw('request=junk\n\n'), null);
  assert.ok(lines.some((l) => l.code === 'DOORMAN_ERR_POLICY_REQUEST' && l.msg === 'postfix_policy: client dropped'));
  assert.equal(await client.ask(connectReq('8.8.8.8')), 'DUNNO');
});

test('per-prefix concurrency: the anvil service counts the network, the policy service refuses over it', async (t) => {
  const { d, client } = await daemon(t, { services: { smtp: { limits: { connections_per_prefix: 3 }, prefix: { ipv4: 24, ipv6: 64 } } } });
  const anvil = await AnvilTestClient.open(d.anvil?.opts.socket as string);
  for (const host of [1, 2, 3]) await anvil.request('connect', `smtp:198.51.100.${host}`);
  assert.equal(await client.ask(connectReq('198.51.100.3')), 'DUNNO');
  await anvil.request('connect', 'smtp:198.51.100.200');
  assert.equal(await client.ask(connectReq('198.51.100.200')), '421 4.7.0 4 connections from network 198.51.100.0/24, over the limit of 3, try again in 60 s');
  assert.equal(await client.ask(connectReq('198.51.101.1')), 'DUNNO', 'another /24');
  for (const i of [1, 2, 3, 4]) await anvil.request('connect', `smtp:2001:db8:1:2::${i}`);
  assert.match(String(await client.ask(connectReq('2001:db8:1:2::9'))), /^421 4\.7\.0 4 connections from network 2001:db8:1:2::\/64/);
  await anvil.request('disconnect', 'smtp:198.51.100.200');
  assert.equal(await client.ask(connectReq('198.51.100.9')), 'DUNNO', 'a disconnect gives the network its slot back');
  anvil.destroy();
  // When the anvil client goes away, its network counts go with its address counts.
  let after: string | null = null;
  for (let i = 0; i < 50 && after !== 'DUNNO'; i++) {
    await new Promise((r) => setTimeout(r, 20));
    after = await client.ask(connectReq('2001:db8:1:2::9'));
  }
  assert.equal(after, 'DUNNO');
});

test('a decision slower than decision_timeout gets the configured default action', async (t) => {
  const { Gatekeeper } = await import('../../src/core/gate.js');
  const { Rules } = await import('../../src/core/rules.js');
  const { MemoryStore } = await import('../../src/store/memory.js');
  const { slidingWindow } = await import('../../src/store/rate.js');
  const { systemClock } = await import('../../src/core/clock.js');
  const { PolicyServer } = await import('../../src/listeners/policy-server.js');
  const { serviceSchema } = await import('../../src/config/rules-schema.js');
  // A store that answers reads 300 ms late, as a stuck Redis would.
  const mem = new MemoryStore({ rate: slidingWindow(60_000), maxEntries: 100 });
  let storeAnswered = false;
  const slow = Object.assign(Object.create(mem) as typeof mem, {
    read: (key: string, now: number) =>
      new Promise((r) =>
        setTimeout(() => {
          storeAnswered = true;
          r(mem.read(key, now));
        }, 300),
      ),
  });
  const { log, lines } = memoryLogger();
  const rules = Rules.compile({ services: { smtp: serviceSchema.parse({ limits: { connection_rate: 10 } }) }, exceptions: [], overrides: [] }, 't');
  const gate = Gatekeeper.open({ store: slow, rules, clock: systemClock, log, rateUnitMs: 60_000, statusUpdateMs: 600_000 });
  t.after(() => gate.stop());
  const server = new PolicyServer(gate, log, {
    listen: ['127.0.0.1:0'],
    service: 'smtp',
    defaultAction: 'DEFER_IF_PERMIT',
    decisionTimeoutMs: 50,
    mode: 0o666,
    maxClients: 10,
    requestTimeoutMs: 1000,
    idleTimeoutMs: 60_000,
  });
  await server.listen();
  t.after(() => server.close());
  const c = await PolicyTestClient.open({ port: server.ports[0] as number });
  t.after(() => c.close());
  assert.equal(await c.ask(connectReq('8.8.8.8')), 'DEFER_IF_PERMIT');
  assert.equal(storeAnswered, false, 'answered at the deadline, before the store did');
  assert.ok(lines.some((l) => l.msg === 'postfix_policy: no decision in time, answered the default action'));
  assert.equal(await c.ask({ ...connectReq('8.8.8.8'), protocol_state: 'EHLO' }), 'DUNNO', 'the connection goes on');
});
