/**
 * The guard proxy in front of a real Postfix smtpd that takes the client
 * address from a PROXY header (`smtpd_upstream_proxy_protocol = haproxy`,
 * which accepts v1 and v2), once per Postfix generation (3.7 on the host,
 * 3.10 in the Debian 13 root). Doorman runs in-process and listens on
 * 127.0.0.1 and [::1]; clients bind their own loopback address (127.0.0.6 and
 * up, or ::1), so the client Postfix logs is the one Doorman passed on, not
 * the proxy's own 127.0.0.1. Postfix here has no qmgr: an accepted message
 * stays in the incoming queue, which is all a test needs.
 *
 * Postfix names a client from the /etc/hosts it sees: 127.0.0.6 is
 * `unknown` everywhere, ::1 is `localhost` in the Debian 13 root and may be
 * `unknown` on the host, so the ::1 lines are matched with any name.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { countOf, missingProgram, run, startGuard, waitUntil } from '../helpers/guard.js';
import { perGeneration, skipBanner } from '../helpers/skip.js';
import { ipv6LoopbackWorks } from '../helpers/net.js';
import {
  POSTFIX_GENERATION,
  POSTFIX_GENERATIONS,
  postfixUnavailableReason,
  startPostfix,
  type PostfixGeneration,
  type PostfixInstance,
} from '../helpers/postfix.js';
import { SmtpTestClient } from '../helpers/smtp.js';

const SWAKS = '/usr/bin/swaks';

/** The SMTP limit per address in these tests. */
const LIMIT = 2;
const HOST = 'mx.test';

/** Postfix expecting a PROXY header, and Doorman in front of it sending one in `version`. */
async function rig(t: TestContext, generation: PostfixGeneration, version: 'v1' | 'v2') {
  const postfix = await startPostfix({
    generation,
    ownAnvil: true,
    // smtpd greets only after the PROXY header, so readiness is the accept alone.
    readyCheck: 'tcp',
    mainCf: {
      smtpd_upstream_proxy_protocol: 'haproxy',
      // example.org is local and any recipient there exists (as in postfix-policy.test.ts).
      mydestination: 'example.org',
      local_recipient_maps: '',
    },
  });
  t.after(() => postfix.stop());
  const listen = (await ipv6LoopbackWorks()) ? ['127.0.0.1:0', '[::1]:0'] : ['127.0.0.1:0'];
  const { daemon, lines } = await startGuard(t, {
    smtp: {
      limits: { connections_per_address: LIMIT },
      proxy: { listen, backend: `127.0.0.1:${postfix.port}`, proxy_protocol: version, hostname: HOST },
    },
  });
  const port = daemon.proxies[0]!.port;
  const port6 = daemon.proxies[1]?.port;
  const sessions: SmtpTestClient[] = [];
  t.after(() => sessions.forEach((s) => s.destroy()));
  /** A session from `from` (127.x.y.z or ::1) to the proxy's listener of the same family. */
  const smtp = async (from: string) => {
    const v6 = isIPv6(from);
    if (v6 && port6 === undefined) throw new Error('the proxy has no ::1 listener');
    const s = await SmtpTestClient.open(v6 ? '::1' : '127.0.0.1', v6 ? port6! : port, undefined, from);
    sessions.push(s);
    return s;
  };
  return { postfix, daemon, lines, port, smtp };
}

/** Postfix's log lines matching `what`. */
function linesFor(postfix: PostfixInstance, what: RegExp): string[] {
  return postfix.maillog().split('\n').filter((l) => what.test(l));
}

/** `NAME[ADDRESS]` as smtpd logs a client; any name for ::1 (see the header). */
function client(address: string): string {
  const escaped = address.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return isIPv6(address) ? `[^\\s\\[]+\\[${escaped}\\]` : `unknown\\[${escaped}\\]`;
}

for (const generation of POSTFIX_GENERATIONS) {
  const { label } = POSTFIX_GENERATION[generation];
  const { skip: SKIP, title } = perGeneration(label, postfixUnavailableReason(generation), 'the guard-proxy tests');
  const SWAKS_SKIP = SKIP || (missingProgram(SWAKS) ? `${SWAKS} missing (apt-get install swaks): the swaks-through-the-proxy test did not run` : false);
  if (!SKIP && SWAKS_SKIP) skipBanner(SWAKS_SKIP);

  test(title('swaks sends a message through the proxy; Postfix logs the client Doorman passed on (PROXY v1)'), { skip: SWAKS_SKIP }, async (t) => {
    const { postfix, daemon, port } = await rig(t, generation, 'v1');
    const r = await run(SWAKS, [
      '--server', `127.0.0.1:${port}`,
      '--local-interface', '127.0.0.6',
      '--to', 'user@example.org',
      '--from', 'a@example.net',
      '--helo', 'client.test',
      '--timeout', '10',
    ]);
    assert.equal(r.code, 0, `swaks failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}\n--- maillog ---\n${postfix.maillog()}`);
    const queued = /<- {2}250 2\.0\.0 Ok: queued as ([0-9A-F]+)\r?$/m.exec(r.stdout);
    assert.ok(queued, `no "queued as" in swaks' output:\n${r.stdout}`);
    const qid = queued[1]!;

    await waitUntil('Postfix logged the session end', () => linesFor(postfix, /disconnect from unknown\[127\.0\.0\.6\]/).length === 1);
    const log = postfix.maillog();
    assert.match(log, /postfix\/smtpd\[\d+\]: connect from unknown\[127\.0\.0\.6\]$/m);
    assert.match(log, new RegExp(`postfix/smtpd\\[\\d+\\]: ${qid}: client=unknown\\[127\\.0\\.0\\.6\\]$`, 'm'));
    assert.match(log, new RegExp(`postfix/cleanup\\[\\d+\\]: ${qid}: message-id=<`, 'm'));
    assert.match(log, /disconnect from unknown\[127\.0\.0\.6\] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5$/m);
    assert.ok(existsSync(join(postfix.queueDir, 'incoming', qid)), `${qid} is in the incoming queue`);
    // (The readiness probe shows up as `connect from localhost[127.0.0.1]`: smtpd
    // falls back to the socket's peer when the PROXY header read ends early.)
    assert.equal(linesFor(postfix, / connect from unknown\[127\.0\.0\.6\]$/).length, 1);
    await waitUntil('the session left the registry and gave its count back', async () => daemon.registry.size === 0 && (await countOf(daemon, 'smtp:127.0.0.6')) === 0);
  });

  for (const [address, other] of [
    ['127.0.0.7', '127.0.0.8'],
    ['::1', '127.0.0.8'],
  ] as const) {
    test(title(`the SMTP session from ${address} over the limit of ${LIMIT} per address gets 421 from Doorman and never reaches Postfix (PROXY v2)`), { skip: SKIP }, async (t) => {
      if (isIPv6(address) && !(await ipv6LoopbackWorks())) {
        skipBanner(`${label}: IPv6 loopback (::1) does not work here; the guard test from ::1 did not run`);
        t.skip('no ::1');
        return;
      }
      const { postfix, daemon, lines, smtp } = await rig(t, generation, 'v2');
      const held: SmtpTestClient[] = [];
      for (let i = 0; i < LIMIT; i++) {
        const s = await smtp(address);
        assert.deepEqual(s.greeting.lines, ['220 doorman-test.localdomain ESMTP Postfix'], `session ${i + 1} is greeted by Postfix`);
        held.push(s);
      }
      assert.equal(await countOf(daemon, `smtp:${address}`), LIMIT);

      const over = await smtp(address);
      assert.deepEqual(over.greeting.lines, [`421 4.7.0 ${HOST} Too many connections from your address, try again later`]);
      await over.waitClosed(2000);
      const another = await smtp(other);
      assert.equal(another.greeting.code, 220, 'another address is still served');
      const refusal = lines.find((l) => l['msg'] === 'proxy: refused' && l['client'] === address);
      assert.equal(refusal?.['rule'], 'services.smtp.limits.connections_per_address');

      // smtpd logs `connect from` once per connection it serves, as soon as the
      // PROXY header is read; the refused session was closed before the held ones
      // QUIT, so had it reached Postfix its line would be in by their disconnects.
      for (const s of [...held, another]) assert.equal((await s.close())?.code, 221);
      const disconnects = new RegExp(`disconnect from ${client(address)}`);
      await waitUntil(`Postfix logged ${LIMIT} disconnects from ${address}`, () => linesFor(postfix, disconnects).length >= LIMIT);
      await new Promise((r) => setTimeout(r, 200));
      const connects = linesFor(postfix, new RegExp(` connect from ${client(address)}$`));
      assert.equal(connects.length, LIMIT, `Postfix saw only the ${LIMIT} admitted sessions from ${address}:\n${postfix.maillog()}`);
      await waitUntil('counts released', async () => (await countOf(daemon, `smtp:${address}`)) === 0 && daemon.registry.size === 0);
    });
  }
}
