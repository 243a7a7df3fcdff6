/**
 * Proves test/helpers/dovecot.ts and test/helpers/mail-clients.ts against a
 * real Dovecot of each generation (2.3 on the host, 2.4 in the Debian 13
 * root), and records the Dovecot behaviour Doorman builds on:
 * - `haproxy = yes` listeners take PROXY v1 and v2 headers from loopback and
 *   log the claimed client as `rip=` (IPv4 and IPv6), for IMAP and POP3;
 * - the auth policy protocol as Dovecot 2.3.19.1 and 2.4.1 speak it: POST
 *   `?command=allow` before and after the passdb, `?command=report` after,
 *   JSON bodies (login, remote, protocol, pwhash, session_id, tls …), the
 *   configured API header, and what clients see when the server says
 *   `{"status":-1,"msg":"go away"}`.
 * Where 2.4 differs (greeting, log wording, `secured` on proxied logins,
 * fail_type in policy bodies) the expectation comes from DOVECOT_GENERATION.
 * The policy server here is a stub written with node:http, not Doorman.
 *
 * Every failing login comes from its own fake client IP: anvil's auth
 * penalty (per IPv4 address, per IPv6 /48) would add seconds otherwise.
 *
 * Needs root and dovecot-imapd + dovecot-pop3d; skipped (loudly) without them.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DOVECOT_GENERATION,
  DOVECOT_GENERATIONS,
  dovecotUnavailableReason,
  sessionProcesses,
  startDovecot,
  type DovecotGenerationFacts,
  type DovecotInstance,
  type DovecotOptions,
} from '../helpers/dovecot.js';
import { ImapTestClient, Pop3TestClient, type ProxyHeaderOptions } from '../helpers/mail-clients.js';
import { perGeneration } from '../helpers/skip.js';

const LOCAL = '127.0.0.1';
/** pwhash values for nonce `doorman-test-nonce` (sha256(nonce || user || NUL || password), first 12 bits). */
const PWHASH = { aliceSecret: '0dcd', bobSecret: '0079', aliceWrong: '0690' };

/** Starts Dovecot and stops it when the test ends, pass or fail. */
async function dovecot(t: TestContext, opts: DovecotOptions = {}): Promise<DovecotInstance> {
  const dc = await startDovecot(opts);
  t.after(() => dc.stop());
  return dc;
}

const re = (s: string): RegExp => new RegExp(s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));

/** Opens an IMAP session that is destroyed at teardown whatever happens. */
async function imapOf(facts: DovecotGenerationFacts, t: TestContext, port: number, proxy?: ProxyHeaderOptions): Promise<ImapTestClient> {
  const c = await ImapTestClient.open(LOCAL, port, proxy ? { proxy } : {});
  t.after(() => c.destroy());
  assert.match(c.greeting, new RegExp(`^\\* OK \\[CAPABILITY [^\\]]*\\] ${re(facts.greeting).source}$`));
  return c;
}

async function pop3Of(facts: DovecotGenerationFacts, t: TestContext, port: number, proxy?: ProxyHeaderOptions): Promise<Pop3TestClient> {
  const c = await Pop3TestClient.open(LOCAL, port, proxy ? { proxy } : {});
  t.after(() => c.destroy());
  assert.equal(c.greeting, `+OK ${facts.greeting}`);
  return c;
}

interface PolicyRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Record<string, unknown>;
}

/** An auth policy server stub: records every request and answers with `reply(request)`. */
interface PolicyStub {
  readonly url: string;
  readonly requests: PolicyRequest[];
  reply: (r: PolicyRequest) => unknown;
  /** Waits until `n` requests arrived after the first `from`, and returns those. */
  waitFor(from: number, n: number, timeoutMs?: number): Promise<PolicyRequest[]>;
}

async function policyStub(t: TestContext): Promise<PolicyStub> {
  const requests: PolicyRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        body = { unparsable: text };
      }
      const r: PolicyRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body };
      requests.push(r);
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(stub.reply(r)));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, LOCAL, resolve));
  t.after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as { port: number };
  const stub: PolicyStub = {
    url: `http://${LOCAL}:${port}/policy`,
    requests,
    reply: () => ({ status: 0 }),
    async waitFor(from, n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (requests.length < from + n) {
        if (Date.now() > deadline) {
          const got = JSON.stringify(requests.slice(from));
          assert.fail(`policy stub: ${requests.length - from} of ${n} requests after ${timeoutMs} ms: ${got}`);
        }
        await sleep(10);
      }
      await sleep(50); // nothing more should follow
      assert.equal(requests.length, from + n, `unexpected extra requests: ${JSON.stringify(requests.slice(from + n))}`);
      return requests.slice(from);
    },
  };
  return stub;
}

for (const generation of DOVECOT_GENERATIONS) {
  const facts = DOVECOT_GENERATION[generation];
  const { label } = facts;
  const { skip: SKIP, title } = perGeneration(label, dovecotUnavailableReason(generation), 'the Dovecot harness tests');
    const imap = (t: TestContext, port: number, proxy?: ProxyHeaderOptions) => imapOf(facts, t, port, proxy);
    const pop3 = (t: TestContext, port: number, proxy?: ProxyHeaderOptions) => pop3Of(facts, t, port, proxy);
  test(title('startDovecot: a private Dovecot serving IMAP and POP3, directly and behind PROXY v1/v2'), { skip: SKIP }, async (t) => {
    const t0 = performance.now();
    const dc = await dovecot(t, { generation });
    const ms = (performance.now() - t0).toFixed(0);
    t.diagnostic(`start took ${ms} ms; dir ${dc.dir}; ports ${JSON.stringify(dc.ports)}; listen ${dc.addresses.join(', ')}`);

    await t.test('(a) plain IMAP: alice/secret logs in and sees INBOX', async (t) => {
      const c = await imap(t, dc.ports.imap);
      const login = await c.login('alice', 'secret');
      assert.equal(login.status, 'OK', login.tagged);
      assert.match(login.text, /^\[CAPABILITY [^\]]+\] Logged in$/);
      const list = await c.command('LIST "" "*"');
      assert.equal(list.status, 'OK', list.tagged);
      assert.deepEqual(list.lines, ['* LIST (\\HasNoChildren) "." INBOX']);
      await c.close();
      await dc.waitForLog(new RegExp(`imap-login: Info: ${facts.loginLog} user=<alice>, method=PLAIN, rip=127\\.0\\.0\\.1, lip=127\\.0\\.0\\.1, mpid=\\d+, secured, `));
    });

    await t.test('(b) IMAP behind PROXY: v1 from 203.0.113.7 and v2 from 2001:db8::7 log in, logged as rip=', async (t) => {
      for (const [version, source, user, lip] of [
        [1, '203.0.113.7', 'alice', '127.0.0.1'],
        [2, '2001:db8::7', 'bob', '::1'],
      ] as const) {
        const c = await imap(t, dc.ports.imapProxy, { version, source });
        const login = await c.login(user, 'secret');
        assert.equal(login.status, 'OK', `v${version}: ${login.tagged}`);
        await c.close();
        // 2.3: proxied sessions are not `secured` (that is why disable_plaintext_auth = no is needed); 2.4: they are.
        const line = await dc.waitForLog(re(`imap-login: Info: ${facts.loginLog} user=<${user}>, method=PLAIN, rip=${source}, lip=${lip}, mpid=`));
        if (facts.proxiedLoginSecured) assert.match(line, /, secured, /);
        else assert.doesNotMatch(line, /secured/);
      }
    });

    await t.test('(c) POP3 plain and behind PROXY v1 (203.0.113.8) and v2 (2001:db8::8)', async (t) => {
      const direct = await pop3(t, dc.ports.pop3);
      assert.deepEqual(await direct.login('bob', 'secret'), { ok: true, line: '+OK Logged in.', lines: [] });
      assert.equal((await direct.command('STAT')).line, '+OK 0 0');
      assert.deepEqual(await direct.multiline('LIST'), { ok: true, line: '+OK 0 messages:', lines: [] });
      await direct.close();
      await dc.waitForLog(new RegExp(`pop3-login: Info: ${facts.loginLog} user=<bob>, method=PLAIN, rip=127\\.0\\.0\\.1, lip=127\\.0\\.0\\.1, mpid=\\d+, secured, `));
      for (const [version, source, lip] of [
        [1, '203.0.113.8', '127.0.0.1'],
        [2, '2001:db8::8', '::1'],
      ] as const) {
        const c = await pop3(t, dc.ports.pop3Proxy, { version, source });
        const login = await c.login('alice', 'secret');
        assert.equal(login.line, '+OK Logged in.', `v${version}`);
        await c.close();
        await dc.waitForLog(re(`pop3-login: Info: ${facts.loginLog} user=<alice>, method=PLAIN, rip=${source}, lip=${lip}, mpid=`));
      }
    });

    await t.test('a haproxy listener says nothing until it gets a PROXY header', async () => {
      const open = ImapTestClient.open(LOCAL, dc.ports.imapProxy, { timeoutMs: 300 });
      await assert.rejects(open, /no IMAP greeting.*nothing within 300 ms/);
    });

    await t.test('stop() ends every process quickly, even with a session logged in; idempotent; removes the dir', async (t) => {
      const c = await imap(t, dc.ports.imap);
      assert.equal((await c.login('alice', 'secret')).status, 'OK');
      const before = dc.log();
      const t1 = performance.now();
      await dc.stop();
      const ms = performance.now() - t1;
      t.diagnostic(`stop took ${ms.toFixed(0)} ms`);
      assert.ok(ms < 1000, `stop took ${ms} ms`);
      assert.deepEqual(sessionProcesses(dc.pid), []);
      assert.equal(existsSync(dc.dir), false);
      assert.ok(dc.log().startsWith(before), 'log() still answers after stop');
      await dc.stop();
      await dc.stop();
      // The session's imap process is gone, so the socket closes (after `* BYE Server shutting down.`).
      await assert.rejects(c.command('NOOP', 2000), /closed|BYE/);
    });
  });

  test(title('startDovecot refuses a config doveconf rejects, with its message, and leaves no dir'), { skip: SKIP }, async () => {
    const err = await startDovecot({ generation, extraConf: 'no_such_setting = 1' }).then(
      () => assert.fail('startDovecot accepted an unknown setting'),
      (e: Error) => e,
    );
    assert.match(err.message, /doveconf -c \S+ -n failed \(exit \d+\):\n[\s\S]*Unknown setting: no_such_setting/);
    const dir = /doveconf -c (\S+)\/dovecot\.conf/.exec(err.message)?.[1];
    assert.ok(dir && !existsSync(dir), `${dir} should be gone`);
  });

  test(title('auth policy: requests, bodies, API header, and a refusal as IMAP and POP3 clients see it'), { skip: SKIP }, async (t) => {
    const stub = await policyStub(t);
    const dc = await dovecot(t, { generation, policyUrl: stub.url, policyApiHeader: 'Authorization: Bearer t0ken', policyTimeoutMs: 2000 });

    const allowUrl = '/policy?command=allow';
    const reportUrl = '/policy?command=report';
    /** An allow request's body; a report adds success, policy_reject and (2.4) its own fail_type. */
    const body = (login: string, protocol: string, pwhash: string, remote: string, session: string) => ({
      ...facts.policyFields(''),
      device_id: '',
      login,
      protocol,
      pwhash,
      remote,
      session_id: session,
      tls: false,
    });

    await t.test('(d) a good login: allow, allow, report, with the API header and JSON bodies', async (t) => {
      const from = stub.requests.length;
      const logFrom = dc.log().length;
      const c = await imap(t, dc.ports.imap);
      assert.equal((await c.login('alice', 'secret')).status, 'OK');
      const got = await stub.waitFor(from, 3);
      const line = await dc.waitForLog(new RegExp(`imap-login: Info: ${facts.loginLog} user=<alice>.* session=<([^>]+)>`), 5000, logFrom);
      const session = /session=<([^>]+)>/.exec(line)![1]!;
      assert.deepEqual(
        got.map((r) => `${r.method} ${r.url}`),
        [`POST ${allowUrl}`, `POST ${allowUrl}`, `POST ${reportUrl}`],
      );
      const allow = body('alice', 'imap', PWHASH.aliceSecret, LOCAL, session);
      assert.deepEqual(got[0]!.body, allow, 'before-auth check');
      assert.deepEqual(got[1]!.body, allow, 'after-auth check: same body');
      assert.deepEqual(got[2]!.body, { ...allow, ...facts.policyFields(''), success: true, policy_reject: false });
      for (const r of got) {
        assert.equal(r.headers['authorization'], 'Bearer t0ken');
        assert.equal(r.headers['content-type'], 'application/json');
        assert.equal(r.headers['user-agent'], 'dovecot/auth-policy-client');
      }
      await c.close();
    });

    await t.test('a wrong password: allow and report only (no after-auth check)', async (t) => {
      const from = stub.requests.length;
      const c = await imap(t, dc.ports.imapProxy, { version: 1, source: '203.0.113.23' });
      const login = await c.login('alice', 'wrong');
      assert.equal(login.tagged, `${login.tag} NO [AUTHENTICATIONFAILED] Authentication failed.`);
      const got = await stub.waitFor(from, 2);
      assert.deepEqual(got.map((r) => r.url), [allowUrl, reportUrl]);
      const session = got[0]!.body['session_id'] as string;
      const allow = body('alice', 'imap', PWHASH.aliceWrong, '203.0.113.23', session);
      assert.deepEqual(got[0]!.body, allow);
      assert.deepEqual(got[1]!.body, { ...allow, ...facts.policyFields('credentials'), success: false, policy_reject: false });
      await c.close();
    });

    await t.test('(d) {"status":-1,"msg":"go away"}: IMAP `NO [ALERT] go away`, POP3 `-ERR [AUTH] go away`', async (t) => {
      stub.reply = (r) => (r.url.endsWith('command=allow') ? { status: -1, msg: 'go away' } : {});
      t.after(() => {
        stub.reply = () => ({ status: 0 });
      });

      let from = stub.requests.length;
      const c = await imap(t, dc.ports.imapProxy, { version: 1, source: '203.0.113.21' });
      const login = await c.login('alice', 'secret');
      assert.equal(login.tagged, `${login.tag} NO [ALERT] go away`);
      let got = await stub.waitFor(from, 2);
      assert.deepEqual(got.map((r) => r.url), [allowUrl, reportUrl], 'refused before auth: the passdb is not asked, no second check');
      let session = got[0]!.body['session_id'] as string;
      let allow = body('alice', 'imap', PWHASH.aliceSecret, '203.0.113.21', session);
      assert.deepEqual(got[0]!.body, allow);
      assert.deepEqual(got[1]!.body, { ...allow, ...facts.policyFields('policy'), success: false, policy_reject: true });
      const why = 'Authentication failure due to policy server refusal: go away';
      await dc.waitForLog(re(`${facts.policyRefusalLog('alice', '203.0.113.21', session)}${why}`));
      // The log says "drop connection", but the connection stays usable.
      assert.equal((await c.command('NOOP')).status, 'OK');
      await c.close();

      from = stub.requests.length;
      const p = await pop3(t, dc.ports.pop3Proxy, { version: 2, source: '2001:db8:21::9' });
      assert.deepEqual(await p.login('bob', 'secret'), { ok: false, line: '-ERR [AUTH] go away', lines: [] });
      got = await stub.waitFor(from, 2);
      assert.deepEqual(got.map((r) => r.url), [allowUrl, reportUrl]);
      session = got[0]!.body['session_id'] as string;
      allow = body('bob', 'pop3', PWHASH.bobSecret, '2001:db8:21::9', session);
      assert.deepEqual(got[0]!.body, allow);
      assert.deepEqual(got[1]!.body, { ...allow, ...facts.policyFields('policy'), success: false, policy_reject: true });
      await p.close();
    });
  });
}
