/**
 * The guard proxy in front of a real Dovecot, once per generation (2.3 on
 * the host, 2.4 in the Debian 13 root): Doorman runs in-process
 * (so the tests kick and read counts) with Dovecot's `haproxy = yes`
 * listeners as backends, IMAP over PROXY v2 and POP3 over v1. Clients bind
 * their own loopback address (127.0.0.5 and up, which Linux accepts on lo),
 * so the `rip=` Dovecot logs is the client's, not the proxy's 127.0.0.1; the
 * IMAP proxy listens on [::1] too, for a client on ::1 (logged `rip=::1`).
 * Every test has its own Dovecot (about 80 ms to start, 60 ms to stop) and
 * its own Doorman, so log lines are counted without offsets.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  DOVECOT_GENERATION,
  DOVECOT_GENERATIONS,
  dovecotUnavailableReason,
  startDovecot,
  type DovecotGeneration,
  type DovecotInstance,
} from '../helpers/dovecot.js';
import { countOf, missingProgram, run, startGuard, waitUntil } from '../helpers/guard.js';
import { perGeneration, skipBanner } from '../helpers/skip.js';
import { ImapTestClient, Pop3TestClient } from '../helpers/mail-clients.js';
import { ipv6LoopbackWorks } from '../helpers/net.js';
import { freePort } from '../helpers/postfix.js';

const CURL = '/usr/bin/curl';

/** The IMAP limit per address in these tests. */
const LIMIT = 3;
const HOST = 'mx.test';

/** Dovecot, and Doorman proxying IMAP (limit LIMIT per address, PROXY v2) and POP3 (PROXY v1) to it. */
async function rig(t: TestContext, generation: DovecotGeneration) {
  const dovecot = await startDovecot({ generation });
  t.after(() => dovecot.stop());
  const v6 = await ipv6LoopbackWorks();
  const { daemon, lines } = await startGuard(t, {
    imap: {
      limits: { connections_per_address: LIMIT },
      proxy: { listen: v6 ? ['127.0.0.1:0', '[::1]:0'] : ['127.0.0.1:0'], backend: `127.0.0.1:${dovecot.ports.imapProxy}`, proxy_protocol: 'v2', hostname: HOST },
    },
    pop3: { proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${dovecot.ports.pop3Proxy}`, proxy_protocol: 'v1', hostname: HOST } },
  });
  const proxy = (service: string, listen: string) => daemon.proxies.find((p) => p.opts.service === service && p.opts.listen === listen);
  const imapProxy = proxy('imap', '127.0.0.1:0');
  const imap6Proxy = proxy('imap', '[::1]:0');
  const pop3Proxy = proxy('pop3', '127.0.0.1:0');
  assert.ok(imapProxy && pop3Proxy && (imap6Proxy !== undefined) === v6, 'the proxies Doorman was told to start');
  const clients = trackClients(t);
  const imap = (from: string) => clients.add(ImapTestClient.open('127.0.0.1', imapProxy.port, { localAddress: from }));
  /** A client on ::1 through the proxy's [::1] listener; undefined where ::1 does not work. */
  const imap6 = imap6Proxy && (() => clients.add(ImapTestClient.open('::1', imap6Proxy.port, { localAddress: '::1' })));
  return { dovecot, daemon, lines, imap, imap6, imapPort: imapProxy.port, pop3Port: pop3Proxy.port };
}

/** Clients destroyed after the test, whatever happened. */
function trackClients(t: TestContext) {
  const all: Array<{ destroy(): void }> = [];
  t.after(() => all.forEach((c) => c.destroy()));
  return {
    async add<C extends { destroy(): void }>(p: Promise<C>): Promise<C> {
      const c = await p;
      all.push(c);
      return c;
    },
  };
}

/** Dovecot's log lines whose `rip=` is `address`. */
function linesFor(dovecot: DovecotInstance, address: string): string[] {
  return dovecot.log().split('\n').filter((l) => l.includes(`rip=${address},`));
}

for (const generation of DOVECOT_GENERATIONS) {
  const facts = DOVECOT_GENERATION[generation];
  const { label } = facts;
  const { skip: SKIP, title } = perGeneration(label, dovecotUnavailableReason(generation), 'the guard-proxy tests');
  const CURL_SKIP = SKIP || (missingProgram(CURL) ? `${CURL} missing (apt-get install curl): the curl-through-the-proxy test did not run` : false);
  if (!SKIP && CURL_SKIP) skipBanner(CURL_SKIP);

  test(title('curl logs in and lists through the proxy; Dovecot sees the client\'s address (IMAP over PROXY v2, POP3 over v1)'), { skip: CURL_SKIP }, async (t) => {
    const { dovecot, daemon, imapPort, pop3Port } = await rig(t, generation);
    const tmp = await mkdtemp(join(tmpdir(), 'guard-curl-'));
    t.after(() => rm(tmp, { recursive: true, force: true }));
    const message = 'From: a@example.net\r\nTo: bob@example.org\r\nSubject: through the proxy\r\n\r\nhello\r\n';
    await writeFile(join(tmp, 'msg.eml'), message);
    const curl = (url: string, ...extra: string[]) => run(CURL, ['-sS', '--max-time', '10', '--interface', '127.0.0.5', url, ...extra]);

    const list = await curl(`imap://127.0.0.1:${imapPort}/`, '--user', 'alice:secret');
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^\* LIST \([^)]*\) "\." INBOX\r?$/m);
    // A message for bob goes in over IMAP (APPEND) so that POP3's LIST has something to show.
    const append = await curl(`imap://127.0.0.1:${imapPort}/INBOX`, '--user', 'bob:secret', '-T', join(tmp, 'msg.eml'));
    assert.equal(append.code, 0, append.stderr);
    const pop3 = await curl(`pop3://127.0.0.1:${pop3Port}/`, '--user', 'bob:secret');
    assert.equal(pop3.code, 0, pop3.stderr);
    assert.equal(pop3.stdout.trim(), `1 ${Buffer.byteLength(message)}`);

    await dovecot.waitForLog(new RegExp(`imap-login: Info: ${facts.loginLog} user=<alice>, method=PLAIN, rip=127\\.0\\.0\\.5, lip=127\\.0\\.0\\.1,`));
    await dovecot.waitForLog(new RegExp(`pop3-login: Info: ${facts.loginLog} user=<bob>, method=PLAIN, rip=127\\.0\\.0\\.5, lip=127\\.0\\.0\\.1,`));
    const logins = dovecot.log().split('\n').filter((l) => l.includes(`-login: Info: ${facts.loginLog} `));
    assert.equal(logins.length, 3, logins.join('\n'));
    assert.ok(logins.every((l) => l.includes('rip=127.0.0.5,')), `every login came from the client's address:\n${logins.join('\n')}`);
    await waitUntil('the sessions are gone from the registry', () => daemon.registry.size === 0);
    assert.equal(await countOf(daemon, 'imap:127.0.0.5'), 0);
    assert.equal(await countOf(daemon, 'pop3:127.0.0.5'), 0);
  });

  test(title(`the IMAP connection over the limit of ${LIMIT} per address is refused with a BYE and never reaches Dovecot`), { skip: SKIP }, async (t) => {
    const { dovecot, daemon, lines, imap } = await rig(t, generation);
    const held: ImapTestClient[] = [];
    for (let i = 0; i < LIMIT; i++) {
      const c = await imap('127.0.0.7');
      assert.match(c.greeting, /^\* OK .*Dovecot.* ready\.$/, `session ${i + 1} is greeted by Dovecot`);
      held.push(c);
    }
    assert.equal(daemon.registry.list({ address: '127.0.0.7' }).length, LIMIT);
    assert.equal(await countOf(daemon, 'imap:127.0.0.7'), LIMIT);

    const over = await imap('127.0.0.7');
    assert.equal(over.greeting, `* BYE [UNAVAILABLE] Too many connections from your address (at most ${LIMIT} at once), try again later`);
    await over.waitClosed(2000);
    const other = await imap('127.0.0.8');
    assert.match(other.greeting, /^\* OK .*Dovecot/, 'another address is still served');
    assert.equal(await countOf(daemon, 'imap:127.0.0.7'), LIMIT, 'the refusal took no slot');
    const refusal = lines.find((l) => l['msg'] === 'proxy: refused' && l['client'] === '127.0.0.7');
    assert.equal(refusal?.['rule'], 'services.imap.limits.connections_per_address');
    assert.equal(refusal?.['reason'], `${LIMIT + 1} connections from 127.0.0.7, over the limit of ${LIMIT}`);

    // Dovecot logs exactly one imap-login line with the rip for every connection
    // that reached it, logged in or not (here, 2.3: `Disconnected: Connection
    // closed (no auth attempts in 0 secs): user=<>, rip=…`; 2.4: `Login aborted:
    // Connection closed (no auth attempts in 0 secs) (no_auth_attempts): …`),
    // written when it goes away.
    // `doveadm who` would not do: it lists logged-in users only. The refused
    // connection was closed before the held ones, so had it reached Dovecot its
    // line would be there by the time theirs are.
    for (const c of [...held, other]) c.destroy();
    await waitUntil(`Dovecot logged ${LIMIT} disconnects for rip=127.0.0.7`, () => linesFor(dovecot, '127.0.0.7').length >= LIMIT);
    await waitUntil('Dovecot logged the other address', () => linesFor(dovecot, '127.0.0.8').length >= 1);
    await new Promise((r) => setTimeout(r, 200));
    const seen = linesFor(dovecot, '127.0.0.7');
    assert.equal(seen.length, LIMIT, `Dovecot saw only the ${LIMIT} admitted connections:\n${seen.join('\n')}`);
    assert.ok(seen.every((l) => l.includes(`imap-login: Info: ${facts.closedBeforeAuthLog} `) && /no auth attempts/.test(l)), seen.join('\n'));
    await waitUntil('counts released', async () => (await countOf(daemon, 'imap:127.0.0.7')) === 0);
  });

  test(title('a kicked IMAP session is told BYE, closed and its count released; a kick with a ban refuses the next connection'), { skip: SKIP }, async (t) => {
    const { dovecot, daemon, imap } = await rig(t, generation);
    const addr = '127.0.0.9';
    const c = await imap(addr);
    assert.equal((await c.login('alice', 'secret')).status, 'OK');
    await dovecot.waitForLog(new RegExp(`imap-login: Info: ${facts.loginLog} user=<alice>, method=PLAIN, rip=127\\.0\\.0\\.9,`));
    const [live, ...more] = daemon.registry.list({ service: 'imap', address: addr });
    assert.ok(live && more.length === 0, 'one live session from the address');
    assert.equal(live.client.address, addr);
    assert.equal(await countOf(daemon, `imap:${addr}`), 1);

    const from = dovecot.log().length;
    assert.equal((await daemon.kick(live.id)).kicked.length, 1);
    assert.equal(await c.readLine(2000), '* BYE [UNAVAILABLE] Connection closed by the administrator');
    await c.waitClosed(2000);
    await waitUntil('the kicked session left the registry', () => daemon.registry.get(live.id) === null);
    await waitUntil('its count was released', async () => (await countOf(daemon, `imap:${addr}`)) === 0);
    // The backend side went too: Dovecot's imap process saw the connection close.
    await dovecot.waitForLog(/imap\(alice\)<\d+><[^>]+>: Info: Disconnected: /, 3000, from);

    const again = await imap(addr);
    assert.match(again.greeting, /^\* OK .*Dovecot/, 'a new connection from the kicked address is accepted');
    assert.equal((await again.login('alice', 'secret')).status, 'OK');

    const banned = await daemon.kick(addr, { banMs: 60_000, reason: 'test ban' });
    assert.equal(banned.kicked.length, 1);
    assert.equal(banned.ban?.target, addr);
    assert.equal(await again.readLine(2000), '* BYE [UNAVAILABLE] Connection closed by the administrator');
    await again.waitClosed(2000);
    const refused = await imap(addr);
    assert.equal(refused.greeting, '* BYE [UNAVAILABLE] Your address is temporarily blocked, try again later');
    await refused.waitClosed(2000);
    await waitUntil('no count left after the ban', async () => (await countOf(daemon, `imap:${addr}`)) === 0 && daemon.registry.size === 0);
  });

  test(title('a client on ::1 logs in through the proxy\'s [::1] listener; Dovecot logs rip=::1 and the count is kept under ::1'), { skip: SKIP }, async (t) => {
    const { dovecot, daemon, imap6 } = await rig(t, generation);
    if (!imap6) {
      skipBanner(`${label}: IPv6 loopback (::1) does not work here; the guard test from ::1 did not run`);
      t.skip('no ::1');
      return;
    }
    const c = await imap6();
    assert.match(c.greeting, /^\* OK .*Dovecot.* ready\.$/);
    assert.equal((await c.login('alice', 'secret')).status, 'OK');
    // PROXY v2 carries ::1 as source and destination.
    await dovecot.waitForLog(new RegExp(`imap-login: Info: ${facts.loginLog} user=<alice>, method=PLAIN, rip=::1, lip=::1,`));
    assert.equal(daemon.registry.list({ address: '::1' }).length, 1);
    assert.equal(await countOf(daemon, 'imap:::1'), 1);
    await c.close();
    await waitUntil('the ::1 session gave its count back', async () => (await countOf(daemon, 'imap:::1')) === 0 && daemon.registry.size === 0);
  });

}

// Needs no Dovecot: the backends are ports nobody listens on.
test('a backend that is down gets the client a temporary failure at once and leaves no count', async (t) => {
  const [imapDown, pop3Down] = [await freePort(), await freePort()];
  const { daemon, lines } = await startGuard(t, {
    imap: { proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${imapDown}`, proxy_protocol: 'v2', hostname: HOST } },
    pop3: { proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${pop3Down}`, proxy_protocol: 'v1', hostname: HOST } },
  });
  const clients = trackClients(t);
  const addr = '127.0.0.10';
  const [imapProxy, pop3Proxy] = daemon.proxies;
  assert.ok(imapProxy && pop3Proxy);

  let started = Date.now();
  const i = await clients.add(ImapTestClient.open('127.0.0.1', imapProxy.port, { localAddress: addr, timeoutMs: 2000 }));
  assert.equal(i.greeting, '* BYE [UNAVAILABLE] Service temporarily unavailable, try again later');
  await i.waitClosed(2000);
  assert.ok(Date.now() - started < 1000, `IMAP answered in ${Date.now() - started} ms`);

  started = Date.now();
  const p = await clients.add(Pop3TestClient.open('127.0.0.1', pop3Proxy.port, { localAddress: addr, timeoutMs: 2000 }));
  assert.equal(p.greeting, '-ERR [SYS/TEMP] Service temporarily unavailable, try again later');
  await p.waitClosed(2000);
  assert.ok(Date.now() - started < 1000, `POP3 answered in ${Date.now() - started} ms`);

  await waitUntil('no count left', async () => (await countOf(daemon, `imap:${addr}`)) === 0 && (await countOf(daemon, `pop3:${addr}`)) === 0);
  assert.equal(daemon.registry.size, 0);
  const warned = lines.filter((l) => l['msg'] === 'proxy: backend unreachable; client told to try later');
  assert.equal(warned.length, 2);
  assert.ok(warned.every((l) => l['client'] === addr && /ECONNREFUSED/.test(String(l['why']))), JSON.stringify(warned));
});
