/**
 * Doorman as nginx mail's auth_http server, in front of a real Dovecot
 * (IMAP and POP3), once per nginx generation (1.22 on the host, 1.26 from
 * the Debian 13 root). nginx passes the client on to Dovecot's haproxy
 * listeners with `proxy_protocol on`, so Dovecot sees the real client and
 * reports its failed logins to Doorman's Dovecot endpoint: that is how an
 * AUTH-failure ban reaches logins through nginx, which never says how a
 * login ended. Dovecot is told not to ask before or after the password
 * (auth_policy_check_before_auth/after_auth = no), only to report: nginx has
 * asked already, and a second ask would count every attempt twice. Countries
 * come from a stand-in lookup (127.0.0.9 is RU).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { DOVECOT_GENERATION, dovecotUnavailableReason, startDovecot, type DovecotInstance } from '../helpers/dovecot.js';
import { until } from '../helpers/guard.js';
import { memoryLogger } from '../helpers/log.js';
import { ImapTestClient, Pop3TestClient } from '../helpers/mail-clients.js';
import { NGINX_GENERATION, NGINX_GENERATIONS, nginxUnavailableReason, startNginxMail, type NginxGeneration, type NginxMailInstance } from '../helpers/nginx.js';
import { freePort } from '../helpers/postfix.js';
import { perGeneration } from '../helpers/skip.js';
import { stateIn } from '../helpers/state.js';

const KEY = 'doorman-nginx-test-key';
const COUNTRIES: Record<string, string> = { '127.0.0.9': 'RU' };

interface Rig {
  readonly d: Daemon;
  readonly nginx: NginxMailInstance;
  readonly dovecot: DovecotInstance;
  readonly lines: Array<Record<string, unknown>>;
  imap(source: string): Promise<ImapTestClient>;
  pop3(source: string): Promise<Pop3TestClient>;
}

async function rig(t: TestContext, generation: NginxGeneration, services: Record<string, unknown>): Promise<Rig> {
  const cleanups: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
  });
  const dir = mkdtempSync(join(tmpdir(), 'doorman-nginx-'));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const policyPort = await freePort();
  // Dovecot first: Doorman names its haproxy listeners as the backends. nginx
  // asks Doorman before every login, so Dovecot only reports how each ended
  // (asked too, Dovecot would count every attempt a second time).
  const dovecot = await startDovecot({
    policyUrl: `http://127.0.0.1:${policyPort}/policy`,
    policyApiHeader: `Authorization: Bearer ${KEY}`,
    checkBeforeAuth: false,
    checkAfterAuth: false,
  });
  cleanups.push(() => dovecot.stop());
  const { log, lines } = memoryLogger('info');
  const config = parseConfig(
    {
      log: { level: 'info' },
      anvil: { enabled: false },
      state: stateIn(dir),
      admin: { listen: '127.0.0.1:0' },
      dovecot_policy: { listen: `127.0.0.1:${policyPort}`, api_key: KEY },
      nginx_auth: {
        listen: '127.0.0.1:0',
        api_key: KEY,
        backends: { imap: `127.0.0.1:${dovecot.ports.imapProxy}`, pop3: `127.0.0.1:${dovecot.ports.pop3Proxy}` },
      },
      services,
    },
    'nginx-test.yaml',
  );
  const d = await startDaemon(config, log, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
  cleanups.push(() => d.stop());
  const nginx = await startNginxMail({
    generation,
    authHttp: `http://127.0.0.1:${d.nginxPort}/auth`,
    authHttpHeaders: { 'X-Doorman-Key': KEY },
    // Dovecot's answer for a wrong password comes through; Doorman's refusals are nginx's own.
    servers: [
      { protocol: 'imap', directives: ['proxy_protocol on'] },
      { protocol: 'pop3', directives: ['proxy_protocol on'] },
    ],
  });
  cleanups.push(() => nginx.stop());
  return {
    d,
    nginx,
    dovecot,
    lines,
    async imap(source) {
      const c = await ImapTestClient.open('127.0.0.1', nginx.port('imap'), { localAddress: source });
      cleanups.push(async () => c.destroy());
      return c;
    },
    async pop3(source) {
      const c = await Pop3TestClient.open('127.0.0.1', nginx.port('pop3'), { localAddress: source });
      cleanups.push(async () => c.destroy());
      return c;
    },
  };
}

const dovecotMissing = dovecotUnavailableReason('2.3');

for (const generation of NGINX_GENERATIONS) {
  const { label } = NGINX_GENERATION[generation];
  const unavailable = nginxUnavailableReason(generation) ?? (dovecotMissing === undefined ? undefined : `${DOVECOT_GENERATION['2.3'].label}: ${dovecotMissing}`);
  const { skip: SKIP, title } = perGeneration(label, unavailable, 'the nginx auth_http tests with Doorman and Dovecot');

  test(title('a good IMAP and POP3 login goes through to Dovecot, which sees the real client'), { skip: SKIP }, async (t) => {
    const r = await rig(t, generation, { imap: { limits: { auth_rate: 10 } }, pop3: {} });
    const ok = await (await r.imap('127.0.0.5')).login('alice', 'secret');
    assert.equal(ok.status, 'OK', ok.tagged);
    await r.dovecot.waitForLog(/imap-login: (Info: )?Login: user=<alice>.*rip=127\.0\.0\.5/, 5000);
    assert.equal((await (await r.pop3('127.0.0.5')).login('bob', 'secret')).ok, true);
    await r.dovecot.waitForLog(/pop3-login: (Info: )?Login: user=<bob>.*rip=127\.0\.0\.5/, 5000);
    assert.equal(r.lines.filter((l) => l['msg'] === 'refused').length, 0);
  });

  test(title('a banned address and a blocked country get the protocol\'s refusal from nginx, with Doorman\'s reason'), { skip: SKIP }, async (t) => {
    const r = await rig(t, generation, { imap: { countries: { connect: { deny: ['RU'] } } }, pop3: {} });
    await r.d.control.ban('127.0.0.8', 600_000, 'test ban', { address: '10.0.0.1' });
    const banned = await (await r.imap('127.0.0.8')).login('alice', 'secret');
    assert.match(banned.tagged, /^A1 NO \[UNAVAILABLE\] 127\.0\.0\.8 is banned for \d+ s more \(test ban\), try again in \d+ s$/);
    const country = await (await r.imap('127.0.0.9')).login('alice', 'secret');
    assert.equal(country.tagged, 'A1 NO [CONTACTADMIN] country RU of 127.0.0.9 is in the deny list for imap at connect');
    const pop3 = await (await r.pop3('127.0.0.8')).login('bob', 'secret');
    assert.equal(pop3.ok, false);
    assert.match(pop3.line, /^-ERR \[SYS\/TEMP\] 127\.0\.0\.8 is banned for \d+ s more \(test ban\)/);
    assert.ok(r.lines.some((l) => l['msg'] === 'refused' && l['rule'] === 'services.imap.countries.connect' && l['address'] === '127.0.0.9'));
    const decisions = await r.d.metrics.text();
    assert.match(decisions, /doorman_decisions_total\{service="imap",action="refuse",rule="bans"\} 1/);
    assert.match(decisions, /doorman_decision_seconds_count\{front="nginx"\} [1-9]/);
  });

  test(title('the AUTH rate is counted per login attempt through nginx; failed logins Dovecot reports get the address banned'), { skip: SKIP }, async (t) => {
    const r = await rig(t, generation, { imap: { limits: { auth_rate: 2, auth_failure_rate: 1 }, auth_failure_ban: '10m' }, pop3: {} });
    assert.equal((await (await r.imap('127.0.0.6')).login('alice', 'secret')).status, 'OK');
    assert.equal((await (await r.imap('127.0.0.6')).login('alice', 'secret')).status, 'OK');
    const third = await (await r.imap('127.0.0.6')).login('alice', 'secret');
    assert.equal(third.tagged, 'A1 NO [UNAVAILABLE] AUTH rate of 127.0.0.6 is 3/60s, over the limit of 2, try again in 60 s');

    for (const pass of ['wrong-1', 'wrong-2']) {
      const no = await (await r.imap('127.0.0.7')).login('alice', pass, 15_000);
      assert.equal(no.status, 'NO', `${pass}: Dovecot's own refusal`);
    }
    await until('the ban made from Dovecot\'s reports', async () => r.d.control.bans().map((b) => b.target), (b) => b.includes('127.0.0.7'), 10_000);
    const banned = await (await r.imap('127.0.0.7')).login('alice', 'secret');
    assert.match(banned.tagged, /^A1 NO \[UNAVAILABLE\] 127\.0\.0\.7 is banned for \d+ s more \(2 AUTH failures in 60s, over the limit of 1\)/);
  });
}
