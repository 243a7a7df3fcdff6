/**
 * Doorman as the auth policy server of a real Dovecot (IMAP and POP3), once
 * per generation (2.3 on the host, 2.4 in the Debian 13 root).
 * The client address Dovecot sees comes from a PROXY header on its haproxy
 * listeners (haproxy_trusted_networks covers loopback); the bundled country
 * database says 77.88.8.8 is RU, 133.242.0.1 JP and 8.8.8.8 US (no traffic
 * goes to them). Dovecot groups failures per IP (IPv6 per /48) and delays
 * each after the first by ~4.5 s, so the ban test fails from one address
 * only as often as it must. A client on ::1 logs in over Dovecot's plain
 * listener on ::1, so the policy request's `remote` is `::1` itself.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { startDoorman } from '../helpers/daemon.js';
import { DOVECOT_GENERATION, DOVECOT_GENERATIONS, dovecotUnavailableReason, startDovecot, type DovecotGeneration } from '../helpers/dovecot.js';
import { ImapTestClient, Pop3TestClient } from '../helpers/mail-clients.js';
import { freePort } from '../helpers/postfix.js';
import { perGeneration, skipBanner } from '../helpers/skip.js';

const KEY = 'doorman-dovecot-test-key';

async function rig(t: TestContext, generation: DovecotGeneration, services: Record<string, unknown>) {
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
  const dovecot = await startDovecot({ generation, policyUrl: `http://127.0.0.1:${port}/policy`, policyApiHeader: `Authorization: Bearer ${KEY}` });
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
  /** A client of Dovecot's plain IMAP listener on ::1: no PROXY header, `remote` is ::1. */
  const imap6 = async () => {
    const c = await ImapTestClient.open('::1', dovecot.ports.imap);
    cleanups.push(async () => c.destroy());
    return c;
  };
  return { doorman, dovecot, imap, imap6, pop3 };
}

for (const generation of DOVECOT_GENERATIONS) {
  const { label } = DOVECOT_GENERATION[generation];
  const { skip: SKIP, title } = perGeneration(label, dovecotUnavailableReason(generation), 'the real-Dovecot policy tests');

  test(title('a login from a blocked country is refused, one from an allowed country succeeds'), { skip: SKIP }, async (t) => {
    const { imap, pop3, dovecot } = await rig(t, generation, {
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

  test(title('repeated failures with different passwords get the address banned'), { skip: SKIP }, async (t) => {
    const { imap, doorman } = await rig(t, generation, { imap: { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m' } });
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

  test(title('good_login: a good login shields its address from AUTH-failure bans; login_failures: a name guessed from many addresses is refused but where it logged in well'), { skip: SKIP }, async (t) => {
    const { imap, doorman } = await rig(t, generation, {
      imap: { limits: { auth_failure_rate: 1 }, auth_failure_ban: '10m', good_login: '1h', login_failures: { addresses: 2, window: '1h' } },
    });
    const office = '9.9.9.8';
    assert.equal((await (await imap(office)).login('alice', 'secret')).status, 'OK');
    // Dovecot asks after the password and before its OK (check_after_auth): the good login is recorded by now.
    // alice's name guessed from three other addresses, one failure each.
    for (const a of ['9.9.9.1', '9.9.9.2', '9.9.9.3']) assert.equal((await (await imap(a)).login('alice', 'guess')).status, 'NO');
    let refused: { status: string; text: string } | null = null;
    for (let i = 10; i < 20 && refused === null; i++) {
      const r = await (await imap(`9.9.9.${i}`)).login('alice', 'secret');
      if (r.status === 'NO') refused = r;
    }
    assert.ok(refused !== null, 'a new address is refused alice once her name failed from 3');
    assert.equal(refused.text, '[ALERT] login alice failed from 3 addresses within 60 min, over the limit of 2');
    assert.equal((await (await imap(office)).login('alice', 'secret')).status, 'OK', 'alice at the office still logs in');
    for (const pass of ['typo-1', 'typo-2']) assert.equal((await (await imap(office)).login('bob', pass, 15_000)).status, 'NO');
    // Over auth_failure_rate: refused while the rate is over (a minute), but not banned.
    const meanwhile = await (await imap(office)).login('bob', 'secret', 15_000);
    assert.equal(meanwhile.status, 'NO');
    assert.match(meanwhile.text, /^\[ALERT\] AUTH failure rate of 9\.9\.9\.8 is 2\/60s, over the limit of 1$/);
    assert.doesNotMatch(doorman.output(), /"msg":"banned"/, 'no ban for the office of a good login');
  });

  test(title('logins from a client on ::1 are judged by Doorman under ::1: the one over auth_rate is refused'), { skip: SKIP }, async (t) => {
    const { imap6, dovecot, doorman } = await rig(t, generation, { imap: { limits: { auth_rate: 1 } } });
    if (!dovecot.addresses.includes('::1')) {
      skipBanner(`${label}: IPv6 loopback (::1) does not work here; the ::1 policy test did not run`);
      t.skip('no ::1');
      return;
    }
    const first = await (await imap6()).login('alice', 'secret');
    assert.equal(first.status, 'OK', first.tagged);
    await dovecot.waitForLog(new RegExp(`imap-login: Info: ${dovecot.facts.loginLog} user=<alice>, method=PLAIN, rip=::1, lip=::1,`));
    const second = await (await imap6()).login('alice', 'secret');
    assert.equal(second.status, 'NO', second.tagged);
    assert.match(second.text, /^\[ALERT\] AUTH rate of ::1 is \d+\/\d+s, over the limit of 1$/);
    await doorman.waitForLog((l) => l['msg'] === 'refused' && l['remote'] === '::1' && l['rule'] === 'services.imap.limits.auth_rate', 3000);
  });
}
