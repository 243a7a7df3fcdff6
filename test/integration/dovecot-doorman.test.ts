/**
 * Doorman as the auth policy server of a real Dovecot 2.3 (IMAP and POP3).
 * The client address Dovecot sees comes from a PROXY header on its haproxy
 * listeners (haproxy_trusted_networks covers loopback); the bundled country
 * database says 77.88.8.8 is RU, 133.242.0.1 JP and 8.8.8.8 US (no traffic
 * goes to them). Dovecot groups failures per IP (IPv6 per /48) and delays
 * each after the first by ~4.5 s, so the ban test fails from one address
 * only as often as it must.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { startDoorman } from '../helpers/daemon.js';
import { dovecotAvailable, dovecotUnavailableReason, startDovecot } from '../helpers/dovecot.js';
import { ImapTestClient, Pop3TestClient } from '../helpers/mail-clients.js';
import { freePort } from '../helpers/postfix.js';

const SKIP = dovecotAvailable() ? false : `Dovecot unavailable (${dovecotUnavailableReason()}): the real-Dovecot policy tests did not run`;
if (SKIP) process.stderr.write(`\n${'!'.repeat(78)}\n!!! SKIPPED: ${SKIP}\n${'!'.repeat(78)}\n\n`);

const KEY = 'doorman-dovecot-test-key';

async function rig(t: TestContext, services: Record<string, unknown>) {
  const cleanups: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });
  const port = await freePort();
  const doorman = await startDoorman({
    log: { level: 'info', format: 'json' },
    anvil: { enabled: false },
    dovecot_policy: { listen: `127.0.0.1:${port}`, api_key: KEY },
    services,
  });
  cleanups.push(() => doorman.stop());
  const dovecot = await startDovecot({ policyUrl: `http://127.0.0.1:${port}/policy`, policyApiHeader: `Authorization: Bearer ${KEY}` });
  cleanups.push(() => dovecot.stop());
  const imap = async (source: string) => {
    const c = await ImapTestClient.open('127.0.0.1', dovecot.ports.imapProxy, { proxy: { version: 2, source } });
    cleanups.push(async () => c.destroy());
    return c;
  };
  const pop3 = async (source: string) => {
    const c = await Pop3TestClient.open('127.0.0.1', dovecot.ports.pop3Proxy, { proxy: { version: 1, source } });
    cleanups.push(async () => c.destroy());
    return c;
  };
  return { doorman, dovecot, imap, pop3 };
}

test('a login from a blocked country is refused, one from an allowed country succeeds', { skip: SKIP }, async (t) => {
  const { imap, pop3, dovecot } = await rig(t, {
    imap: { countries: { auth: { deny: ['RU', 'JP'] } } },
    pop3: { countries: { auth: { allow: ['US'] } } },
  });
  const refused = await (await imap('77.88.8.8')).login('alice', 'secret');
  assert.equal(refused.status, 'NO');
  assert.equal(refused.text, '[ALERT] country RU of 77.88.8.8 is in the deny list for imap at auth');
  const ok = await (await imap('8.8.8.8')).login('alice', 'secret');
  assert.equal(ok.status, 'OK', ok.tagged);
  const pop3Refused = await (await pop3('133.242.0.1')).login('bob', 'secret');
  assert.equal(pop3Refused.ok, false);
  assert.equal(pop3Refused.line, '-ERR [AUTH] country JP of 133.242.0.1 is not in the allow list for pop3 at auth');
  assert.equal((await (await pop3('8.8.8.8')).login('bob', 'secret')).ok, true);
  await dovecot.waitForLog(/Authentication failure due to policy server refusal: country RU/, 2000);
});

test('repeated failures with different passwords get the address banned', { skip: SKIP }, async (t) => {
  const { imap, doorman } = await rig(t, { imap: { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m' } });
  const addr = '9.9.9.9';
  for (const pass of ['wrong-1', 'wrong-2']) {
    const r = await (await imap(addr)).login('alice', pass, 15_000);
    assert.equal(r.status, 'NO', `failure with ${pass}`);
  }
  await doorman.waitForLog((l) => l['msg'] === 'banned' && l['remote'] === addr, 3000);
  const banned = await (await imap(addr)).login('alice', 'secret', 15_000);
  assert.equal(banned.status, 'NO', 'the right password no longer helps');
  assert.match(banned.text, /^\[ALERT\] 9\.9\.9\.9 is banned for \d+ s more \(2 AUTH failures in 60s, over the limit of 1\)$/);
  const other = await (await imap('8.8.4.4')).login('alice', 'secret');
  assert.equal(other.status, 'OK', 'another address is not affected');
});
