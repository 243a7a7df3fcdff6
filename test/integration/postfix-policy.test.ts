/**
 * Doorman as a real Postfix smtpd's policy service (check_policy_service),
 * and its anvil too. XCLIENT presents a chosen client address from
 * loopback; the bundled country database says 77.88.8.8 is RU and 8.8.8.8
 * US (no traffic goes to either). smtpd asks again after XCLIENT with
 * protocol_state=XCLIENT, and a refusal there is the reply to XCLIENT.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { startDoorman } from '../helpers/daemon.js';
import { freePort, postfixAvailable, prepareQueueDir, startPostfix } from '../helpers/postfix.js';
import { SmtpTestClient } from '../helpers/smtp.js';

const SKIP = postfixAvailable() ? false : 'postfix is not installed (apt-get install postfix); the real-Postfix policy tests did not run';
if (SKIP) process.stderr.write(`\n${'!'.repeat(78)}\n!!! SKIPPED: ${SKIP}\n${'!'.repeat(78)}\n\n`);

async function rig(t: TestContext) {
  const cleanups: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });
  const dirs = await prepareQueueDir();
  cleanups.push(() => dirs.remove());
  const policyPort = await freePort();
  const doorman = await startDoorman({
    log: { level: 'info', format: 'json' },
    anvil: { socket: dirs.anvilSocket, socket_mode: '0666' },
    postfix_policy: { listen: [`127.0.0.1:${policyPort}`] },
    services: { smtp: { countries: { connect: { deny: ['RU'] } }, limits: { recipient_rate: 2 } } },
  });
  cleanups.push(() => doorman.stop());
  const policy = `check_policy_service inet:127.0.0.1:${policyPort}`;
  const postfix = await startPostfix({
    ownAnvil: false,
    dirs,
    readyCheck: 'tcp',
    mainCf: {
      smtpd_delay_reject: 'no',
      smtpd_client_restrictions: policy,
      // example.org is local and any recipient there exists, so the policy's answer is what shows.
      mydestination: 'example.org',
      local_recipient_maps: '',
      smtpd_recipient_restrictions: `${policy}, reject_unauth_destination`,
      smtpd_authorized_xclient_hosts: '127.0.0.0/8',
    },
  });
  cleanups.push(() => postfix.stop());
  const sessions: SmtpTestClient[] = [];
  cleanups.push(async () => sessions.forEach((s) => s.destroy()));
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

test('a client Postfix sees from a blocked country is refused with Doorman\'s reply', { skip: SKIP }, async (t) => {
  const { smtp, doorman } = await rig(t);
  const s = await smtp();
  assert.equal(s.greeting.code, 220, 'loopback has no country');
  assert.equal((await s.command('EHLO test.example')).code, 250);
  const r = await s.command('XCLIENT ADDR=77.88.8.8 NAME=[UNAVAILABLE]');
  assert.equal(r.code, 554);
  assert.match(r.text, /5\.7\.1 <unknown\[77\.88\.8\.8\]>: Client host rejected: country RU of 77\.88\.8\.8 is in the deny list for smtp at connect/);
  await doorman.waitForLog((l) => l['msg'] === 'refused' && l['rule'] === 'services.smtp.countries.connect' && l['address'] === '77.88.8.8', 2000);
});

test('the recipient over the rate limit is deferred', { skip: SKIP }, async (t) => {
  const { smtp } = await rig(t);
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
