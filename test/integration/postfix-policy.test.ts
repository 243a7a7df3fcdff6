/**
 * Doorman as a real Postfix smtpd's policy service (check_policy_service),
 * and its anvil too, against each Postfix generation (3.7 on the host, 3.10
 * in the Debian 13 root). XCLIENT presents a chosen client address from
 * loopback; the bundled country database says 77.88.8.8 is RU and 8.8.8.8
 * US (no traffic goes to either). smtpd asks again after XCLIENT with
 * protocol_state=XCLIENT, and a refusal there is the reply to XCLIENT.
 *
 * connections_per_address is judged by the policy service on the counts
 * smtpd reports to Doorman's anvil: the policy looks up `SERVICE:ADDRESS`
 * where SERVICE must be smtpd's master.cf service name (here the port, see
 * test/helpers/postfix.ts) — so Doorman's service is named after the port,
 * which is picked before either starts.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { AnvilTestClient } from '../helpers/anvil-client.js';
import { startDoorman } from '../helpers/daemon.js';
import { freePorts, ipv6LoopbackWorks } from '../helpers/net.js';
import {
  freePort,
  POSTFIX_GENERATION,
  POSTFIX_GENERATIONS,
  postfixUnavailableReason,
  prepareQueueDir,
  startPostfix,
  type PostfixGeneration,
} from '../helpers/postfix.js';
import { perGeneration, skipBanner } from '../helpers/skip.js';
import { SmtpTestClient } from '../helpers/smtp.js';

/** Counts settle within milliseconds on loopback; this only bounds a failure. */
const SETTLE_MS = 3000;
/** Doorman's connections_per_address in the connection tests. */
const PER_ADDRESS = 2;

/** Runs `c` in reverse order of registration after the test, pass or fail. */
function cleanupsFor(t: TestContext): Array<() => Promise<unknown>> {
  const cleanups: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });
  return cleanups;
}

/**
 * Doorman as anvil (in the instance's private/) and as policy service on a
 * free port, then Postfix using both: `mainCf(policy)` gets the
 * check_policy_service restriction to place. Everything is torn down after
 * the test, sessions first.
 */
async function startPair(
  t: TestContext,
  generation: PostfixGeneration,
  o: { services: Record<string, unknown>; policyService?: string; port?: number; readyCheck?: 'tcp'; mainCf: (policy: string) => Record<string, string> },
) {
  const cleanups = cleanupsFor(t);
  const dirs = await prepareQueueDir(generation);
  cleanups.push(() => dirs.remove());
  const policyPort = await freePort();
  const doorman = await startDoorman({
    log: { level: 'info', format: 'json' },
    anvil: { socket: dirs.anvilSocket, socket_mode: '0666' },
    postfix_policy: { listen: [`127.0.0.1:${policyPort}`], ...(o.policyService === undefined ? {} : { service: o.policyService }) },
    services: o.services,
  });
  cleanups.push(() => doorman.stop());
  const postfix = await startPostfix({
    generation,
    ownAnvil: false,
    dirs,
    ...(o.port === undefined ? {} : { port: o.port }),
    ...(o.readyCheck === undefined ? {} : { readyCheck: o.readyCheck }),
    mainCf: { smtpd_delay_reject: 'no', ...o.mainCf(`check_policy_service inet:127.0.0.1:${policyPort}`) },
  });
  cleanups.push(() => postfix.stop());
  const sessions: SmtpTestClient[] = [];
  cleanups.push(async () => sessions.forEach((s) => s.destroy()));
  return { cleanups, dirs, doorman, postfix, sessions };
}

async function rig(t: TestContext, generation: PostfixGeneration, smtpService: Record<string, unknown> = { countries: { connect: { deny: ['RU'] } }, limits: { recipient_rate: 2 } }) {
  const { doorman, postfix, sessions } = await startPair(t, generation, {
    services: { smtp: smtpService },
    readyCheck: 'tcp',
    mainCf: (policy) => ({
      smtpd_client_restrictions: policy,
      // example.org is local and any recipient there exists, so the policy's answer is what shows.
      mydestination: 'example.org',
      local_recipient_maps: '',
      smtpd_recipient_restrictions: `${policy}, reject_unauth_destination`,
      smtpd_authorized_xclient_hosts: '127.0.0.0/8',
    }),
  });
  return {
    doorman,
    postfix,
    async smtp() {
      const s = await SmtpTestClient.open('127.0.0.1', postfix.port);
      sessions.push(s);
      return s;
    },
  };
}

/**
 * Doorman as anvil and policy service with connections_per_address, for the
 * service smtpd names (its port, chosen first); Postfix with the stock
 * prefix lengths, its own count limit far above Doorman's, and loopback not
 * exempt from anvil.
 */
async function connectionRig(t: TestContext, generation: PostfixGeneration) {
  const addresses = (await ipv6LoopbackWorks()) ? ['127.0.0.1', '::1'] : ['127.0.0.1'];
  const [smtpPort] = (await freePorts(1, addresses)) as [number];
  // master.cf's service name, which smtpd puts in every anvil ident.
  const service = String(smtpPort);
  const { cleanups, dirs, doorman, postfix, sessions } = await startPair(t, generation, {
    services: { [service]: { protocol: 'smtp', limits: { connections_per_address: PER_ADDRESS } } },
    policyService: service,
    port: smtpPort,
    mainCf: (policy) => ({
      smtpd_client_restrictions: policy,
      // Loopback is exempt by default; empty, so it talks to anvil (set so by baseMainCf too).
      smtpd_client_event_limit_exceptions: '',
      // Far above Doorman's limit: a refusal must come from the policy.
      smtpd_client_connection_count_limit: '100',
    }),
  });
  assert.equal(postfix.service, service);
  const anvil = await AnvilTestClient.open(dirs.anvilSocket);
  cleanups.push(() => anvil.close());
  return {
    doorman,
    postfix,
    /** Waits until Doorman's anvil count for smtpd's ident of `address` is `n` (the readiness probe's session ends asynchronously). */
    async countIs(address: string, n: number): Promise<void> {
      const ident = postfix.ident(address);
      const deadline = Date.now() + SETTLE_MS;
      for (;;) {
        const { count } = await anvil.request('lookup', ident);
        if (count === n) return;
        if (Date.now() > deadline) assert.fail(`Doorman's count for ${ident} is ${count}, not ${n}, after ${SETTLE_MS} ms`);
        await sleep(20);
      }
    },
    async smtp(address: string) {
      const s = await SmtpTestClient.open(address, postfix.port, undefined, address);
      sessions.push(s);
      return s;
    },
  };
}

for (const generation of POSTFIX_GENERATIONS) {
  const { label } = POSTFIX_GENERATION[generation];
  const { skip: SKIP, title } = perGeneration(label, postfixUnavailableReason(generation), 'the real-Postfix policy tests');

  test(title('a client Postfix sees from a blocked country is refused with Doorman\'s reply'), { skip: SKIP }, async (t) => {
    const { smtp, doorman } = await rig(t, generation);
    const s = await smtp();
    assert.equal(s.greeting.code, 220, 'loopback has no country');
    assert.equal((await s.command('EHLO test.example')).code, 250);
    const r = await s.command('XCLIENT ADDR=77.88.8.8 NAME=[UNAVAILABLE]');
    assert.equal(r.code, 554);
    assert.match(r.text, /5\.7\.1 <unknown\[77\.88\.8\.8\]>: Client host rejected: country RU of 77\.88\.8\.8 is in the deny list for smtp at connect/);
    await doorman.waitForLog((l) => l['msg'] === 'refused' && l['rule'] === 'services.smtp.countries.connect' && l['address'] === '77.88.8.8', 2000);
  });

  test(title('the recipient over the rate limit is deferred'), { skip: SKIP }, async (t) => {
    const { smtp } = await rig(t, generation);
    const s = await smtp();
    await s.command('EHLO test.example');
    assert.equal((await s.command('XCLIENT ADDR=8.8.8.8 NAME=[UNAVAILABLE]')).code, 220, 'US is not blocked');
    await s.command('EHLO test.example');
    assert.equal((await s.command('MAIL FROM:<sender@example.com>')).code, 250);
    assert.equal((await s.command('RCPT TO:<one@example.org>')).code, 250);
    assert.equal((await s.command('RCPT TO:<two@example.org>')).code, 250);
    const third = await s.command('RCPT TO:<three@example.org>');
    assert.equal(third.code, 450);
    assert.match(third.text, /4\.7\.1 <three@example\.org>: Recipient address rejected: recipient rate of 8\.8\.8\.8 is 3\/60s, over the limit of 2/);
  });

  test(title('recipient_probing: a client naming too many distinct recipients is banned, and its next session refused at connect'), { skip: SKIP }, async (t) => {
    const { smtp, doorman } = await rig(t, generation, { recipient_probing: { recipients: 3, window: '1h', ban: '1h' } });
    const s = await smtp();
    await s.command('EHLO test.example');
    assert.equal((await s.command('XCLIENT ADDR=8.8.4.4 NAME=[UNAVAILABLE]')).code, 220);
    await s.command('EHLO test.example');
    assert.equal((await s.command('MAIL FROM:<sender@example.com>')).code, 250);
    for (const r of ['a', 'b', 'c', 'A']) assert.equal((await s.command(`RCPT TO:<${r}@example.org>`)).code, 250, `${r}: a, b, c, and a again in capitals, are 3 distinct`);
    const fourth = await s.command('RCPT TO:<d@example.org>');
    assert.equal(fourth.code, 450);
    assert.match(fourth.text, /4\.7\.1 <d@example\.org>: Recipient address rejected: 8\.8\.4\.4 is banned for 3600 s more \(4 distinct recipients within 60 min, over the limit of 3 \(recipient probing\)\)/);
    const next = await smtp();
    await next.command('EHLO test.example');
    const refused = await next.command('XCLIENT ADDR=8.8.4.4 NAME=[UNAVAILABLE]');
    assert.equal(refused.code, 421, 'refused at connect, and the session closed');
    assert.match(refused.text, /8\.8\.4\.4 is banned/);
    const other = await smtp();
    await other.command('EHLO test.example');
    assert.equal((await other.command('XCLIENT ADDR=8.8.8.8 NAME=[UNAVAILABLE]')).code, 220, 'another client is not');
    await doorman.waitForLog((l) => l['msg'] === 'refused' && l['rule'] === 'bans' && l['address'] === '8.8.4.4', 2000);
  });

  for (const address of ['127.0.0.1', '::1']) {
    // Postfix 3.10 counts ::1 under `PORT:::/84` (stock
    // smtpd_client_ipv6_prefix_length): the policy service must look the
    // client up under that range, or it finds 0 and lets the third session in
    // (it did, before Doorman learned ranges). 127.0.0.1 (prefix 32) and
    // Postfix 3.7 send whole addresses.
    test(title(`the session over connections_per_address ${PER_ADDRESS} from ${address} gets 421 4.7.0 from the policy, on counts from Doorman's anvil`), { skip: SKIP }, async (t) => {
      const { postfix, smtp, countIs, doorman } = await connectionRig(t, generation);
      if (!postfix.addresses.includes(address)) {
        skipBanner(`${label}: ${address} does not work here; the policy connection test from ${address} did not run`);
        t.skip(`no ${address}`);
        return;
      }
      await countIs('127.0.0.1', 0);
      for (let i = 1; i <= PER_ADDRESS; i++) {
        const s = await smtp(address);
        assert.equal(s.greeting.code, 220, `session ${i} greeting: ${s.greeting.lines.join(' | ')}`);
      }
      await countIs(address, PER_ADDRESS);
      const over = await smtp(address);
      assert.equal(
        over.greeting.code,
        421,
        `session ${PER_ADDRESS + 1} from ${address} (anvil ident ${postfix.ident(address)}) greeting: ${over.greeting.lines.join(' | ')}`,
      );
      // The refusal names what smtpd counts: the address, or under 3.10 its /84.
      const client = postfix.ident(address).slice(postfix.service.length + 1);
      assert.ok(over.greeting.text.startsWith('4.7.0 '), over.greeting.text);
      assert.ok(over.greeting.text.includes(`: Client host rejected: ${PER_ADDRESS + 1} connections from ${client}, over the limit of ${PER_ADDRESS}`), over.greeting.text);
      await over.waitClosed();
      if (client.includes('/')) {
        await doorman.waitForLog((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('anvil: smtpd sends IPv6 clients as /84 networks') && l['service'] === postfix.service, 2000);
      }
      await doorman.waitForLog(
        (l) => l['msg'] === 'refused' && l['rule'] === `services.${postfix.service}.limits.connections_per_address`,
        2000,
      );
    });
  }
}
