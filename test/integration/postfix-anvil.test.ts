/**
 * Doorman as the anvil of a real Postfix: a private Postfix instance whose
 * master.cf has no anvil service, so its smtpd connects to Doorman on
 * `$queue_directory/private/anvil`, and Postfix's own limits
 * (smtpd_client_connection_count_limit, smtpd_client_message_rate_limit)
 * are enforced from Doorman's counts.
 *
 * The expected replies and counts are what Postfix 3.7.11 does with its own
 * anvil (measured with the same scenario and `ownAnvil: true`):
 * - 4th concurrent session: greeting `421 4.7.0 <myhostname> Error: too many
 *   connections from 127.0.0.1`; smtpd sends `disconnect` for it at once, so
 *   lookup shows count 3 again; the log says `warning: Connection concurrency
 *   limit exceeded: 4 from localhost[127.0.0.1] for service <service>`.
 * - 3rd MAIL FROM with a limit of 2: `450 4.7.1 Error: too much mail from
 *   127.0.0.1`; the refused request is counted too, so lookup shows mail=3.
 * - startPostfix's readiness probe is one SMTP session (from 127.0.0.1), so
 *   after four more connects lookup shows rate=5 (4 for ::1).
 *
 * Every test runs against each Postfix generation (3.7 on the host, 3.10 in
 * the Debian 13 root), IPv4 and IPv6 clients alike. Postfix 3.10 counts a
 * client by its smtpd_client_*_prefix_length network: the ident Doorman gets
 * for ::1 is `PORT:::/84` (seen with 3.10.13: every connect, disconnect and
 * count for ::1 lands under that ident, none under `PORT:::1`), for 127.0.0.1
 * still `PORT:127.0.0.1`; Postfix's own limits work the same on Doorman's
 * counts either way, since smtpd judges the count of the ident it sent.
 *
 * Needs root and the postfix package (and the Debian 13 root for 3.10);
 * a generation that cannot run is skipped loudly.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { AnvilReply } from '../../src/protocols/anvil.js';
import { AnvilTestClient } from '../helpers/anvil-client.js';
import { startDoorman, type DoormanProcess } from '../helpers/daemon.js';
import {
  POSTFIX_GENERATION,
  POSTFIX_GENERATIONS,
  postfixUnavailableReason,
  prepareQueueDir,
  startPostfix,
  type PostfixDirs,
  type PostfixGeneration,
  type PostfixInstance,
} from '../helpers/postfix.js';
import { perGeneration, skipBanner } from '../helpers/skip.js';
import { SmtpTestClient, type SmtpReply } from '../helpers/smtp.js';
import { until as untilBounded } from '../helpers/guard.js';

const HOSTNAME = 'doorman-test.localdomain';
/** Counts settle within milliseconds on loopback; this only bounds a failure. */
const SETTLE_MS = 3000;

/** One Doorman, one Postfix using it, and an anvil client to look at Doorman's counts. */
interface Rig {
  dirs: PostfixDirs;
  doorman: DoormanProcess;
  postfix: PostfixInstance;
  anvil: AnvilTestClient;
  /** smtpd's anvil ident for a client on 127.0.0.1: `PORT:127.0.0.1`. */
  ident: string;
  /** Opens an SMTP session to Postfix from and to `address` (default 127.0.0.1); destroyed at teardown. */
  smtp(address?: string): Promise<SmtpTestClient>;
  /** Doorman's lookup for smtpd's ident of a client at `address` (default 127.0.0.1). */
  lookup(address?: string): Promise<AnvilReply<'lookup'>>;
}

/**
 * Starts Doorman on the queue dir's anvil socket, then Postfix, and registers
 * a teardown that runs even when the test fails: SMTP sessions, anvil client,
 * Postfix, Doorman, dir — in that order, so Doorman can still remove its own
 * socket.
 */
async function setup(t: TestContext, generation: PostfixGeneration, mainCf: Record<string, string>): Promise<Rig> {
  const cleanups: Array<() => Promise<unknown>> = [];
  t.after(async () => {
    const errors: unknown[] = [];
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'teardown failed');
  });

  const dirs = await prepareQueueDir(generation);
  cleanups.push(() => dirs.remove());
  const doorman = await startDoorman({
    log: { level: 'info', format: 'json' },
    engine: { rate_time_unit: '60s', status_update_time: '600s' },
    anvil: { socket: dirs.anvilSocket, socket_mode: '0666' },
  });
  cleanups.push(() => doorman.stop());
  await doorman.waitForLog((l) => l['msg'] === 'anvil service listening' && l['socket'] === dirs.anvilSocket, 1000);

  const postfix = await startPostfix({ ownAnvil: false, mainCf, dirs });
  cleanups.push(() => postfix.stop());
  const anvil = await AnvilTestClient.open(dirs.anvilSocket);
  cleanups.push(() => anvil.close());
  const sessions: SmtpTestClient[] = [];
  cleanups.push(async () => {
    for (const s of sessions) s.destroy();
  });
  return {
    dirs,
    doorman,
    postfix,
    anvil,
    ident: postfix.ident('127.0.0.1'),
    async smtp(address = '127.0.0.1') {
      const s = await SmtpTestClient.open(address, postfix.port, undefined, address);
      sessions.push(s);
      return s;
    },
    lookup: (address = '127.0.0.1') => anvil.request('lookup', postfix.ident(address)),
  };
}

/** Polls until `ok` holds, within SETTLE_MS unless told otherwise. */
function until<T>(what: string, get: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = SETTLE_MS): Promise<T> {
  return untilBounded(what, get, ok, timeoutMs);
}

async function maillogContains(pf: PostfixInstance, text: string): Promise<void> {
  await until(`Postfix maillog line containing ${JSON.stringify(text)}`, async () => pf.maillog(), (log) => log.includes(text)).catch(
    (err: Error) => {
      throw new Error(`${err.message.slice(0, 200)}\n--- maillog ---\n${pf.maillog()}`);
    },
  );
}

/**
 * Three sessions from `address`, a fourth refused, all closed again; returns
 * once Doorman's count is back to 0.
 */
async function connectionLimitTraffic(rig: Rig, address = '127.0.0.1'): Promise<void> {
  const lookup = () => rig.lookup(address);
  const open: SmtpTestClient[] = [];
  for (let i = 1; i <= 3; i++) {
    const s = await rig.smtp(address);
    assert.equal(s.greeting.code, 220, `session ${i} greeting: ${s.greeting.lines.join(' | ')}`);
    open.push(s);
  }
  await until(`lookup ${rig.postfix.ident(address)} count with 3 sessions open`, lookup, (r) => r.count === 3);

  const fourth = await rig.smtp(address);
  assert.equal(fourth.greeting.code, 421, `4th session greeting: ${fourth.greeting.lines.join(' | ')}`);
  assert.equal(fourth.greeting.text, `4.7.0 ${HOSTNAME} Error: too many connections from ${address}`);
  await fourth.waitClosed();
  // smtpd counted the 4th (count 4), refused it, and sent disconnect for it.
  const during = await until('lookup count after the refused 4th session', lookup, (r) => r.count === 3);
  assert.equal(during.status, 0);
  // The readiness probe came from 127.0.0.1.
  const rate = address === '127.0.0.1' ? 5 : 4;
  assert.equal(during.rate, rate, 'connection rate: readiness probe (127.0.0.1 only) + 4 connects, as Postfix’s own anvil counts');

  for (const s of open) {
    const bye = await s.close();
    assert.equal(bye?.code, 221);
  }
  await until('lookup count after QUIT of all sessions', lookup, (r) => r.count === 0);
}

for (const generation of POSTFIX_GENERATIONS) {
  const { label } = POSTFIX_GENERATION[generation];
  const { skip: SKIP, title } = perGeneration(label, postfixUnavailableReason(generation), 'the real-Postfix anvil tests');

  test(title('smtpd enforces smtpd_client_connection_count_limit with counts from Doorman'), { skip: SKIP }, async (t) => {
    const rig = await setup(t, generation, { smtpd_client_connection_count_limit: '3' });
    await connectionLimitTraffic(rig);
    await maillogContains(
      rig.postfix,
      `warning: Connection concurrency limit exceeded: 4 from localhost[127.0.0.1] for service ${rig.postfix.service}`,
    );
  });

  test(title('the 4th session from ::1 is refused by smtpd_client_connection_count_limit on Doorman’s counts'), { skip: SKIP }, async (t) => {
    const rig = await setup(t, generation, { smtpd_client_connection_count_limit: '3' });
    if (!rig.postfix.addresses.includes('::1')) {
      skipBanner(`${label}: IPv6 loopback (::1) does not work here; the ::1 anvil test did not run`);
      t.skip('no ::1');
      return;
    }
    // 3.7: `PORT:::1`; 3.10: `PORT:::/84` (the stock smtpd_client_ipv6_prefix_length).
    const ident = rig.postfix.ident('::1');
    assert.equal(ident, rig.postfix.facts.anvilRanges ? `${rig.postfix.service}:::/84` : `${rig.postfix.service}:::1`);
    await connectionLimitTraffic(rig, '::1');
    await until(
      'the refusal in the maillog',
      async () => rig.postfix.maillog(),
      (log) => new RegExp(`warning: Connection concurrency limit exceeded: 4 from [^\\s\\[]+\\[::1\\] for service ${rig.postfix.service}$`, 'm').test(log),
    ).catch((err: Error) => assert.fail(`${err.message.slice(0, 200)}\n--- maillog ---\n${rig.postfix.maillog()}`));
    if (rig.postfix.facts.anvilRanges) {
      const exact = await rig.anvil.request('lookup', `${rig.postfix.service}:::1`);
      assert.equal(exact.rate, 0, `smtpd named only the range ${ident} to anvil, never ::1 itself`);
    }
  });

  test(title('smtpd enforces smtpd_client_message_rate_limit with rates from Doorman'), { skip: SKIP }, async (t) => {
    const rig = await setup(t, generation, { smtpd_client_message_rate_limit: '2' });
    const s = await rig.smtp();
    assert.equal(s.greeting.code, 220);
    assert.equal((await s.command('EHLO client.example')).code, 250);
    const replies: SmtpReply[] = [];
    for (let i = 0; i < 3; i++) {
      replies.push(await s.command('MAIL FROM:<sender@example.com>'));
      assert.equal((await s.command('RSET')).code, 250);
    }
    assert.deepEqual(
      replies.map((r) => r.code),
      [250, 250, 450],
      `MAIL FROM replies: ${replies.map((r) => r.lines.join(' | ')).join(' / ')}`,
    );
    assert.equal(replies[2]?.text, '4.7.1 Error: too much mail from 127.0.0.1');

    const r = await rig.lookup();
    assert.equal(r.count, 1, 'the session is still open');
    assert.equal(r.mail, 3, 'every MAIL FROM is counted, the refused one too');
    await maillogContains(
      rig.postfix,
      `warning: Message delivery request rate limit exceeded: 3 from localhost[127.0.0.1] for service ${rig.postfix.service}`,
    );
    assert.equal((await s.close())?.code, 221);
    await until('lookup count after QUIT', rig.lookup, (v) => v.count === 0);
  });

  test(title('Doorman releases the counts of an smtpd that goes away without disconnect'), { skip: SKIP }, async (t) => {
    const rig = await setup(t, generation, { smtpd_client_connection_count_limit: '3' });
    const s = await rig.smtp();
    assert.equal(s.greeting.code, 220);
    await until('lookup count with 1 session open', rig.lookup, (r) => r.count === 1);

    // Stopping Postfix kills smtpd mid-session: its anvil connection just closes.
    await rig.postfix.stop();
    await s.waitClosed();
    await until('lookup count after smtpd died', rig.lookup, (r) => r.count === 0);
    assert.equal(rig.doorman.proc.exitCode, null, 'Doorman is still running');
  });

  test(title('Doorman on SIGTERM exits 0, removes its socket and logs peak statistics'), { skip: SKIP }, async (t) => {
    const rig = await setup(t, generation, { smtpd_client_connection_count_limit: '3' });
    await connectionLimitTraffic(rig);
    await rig.anvil.close();
    await rig.postfix.stop();
    assert.ok(existsSync(rig.dirs.anvilSocket), 'socket exists before SIGTERM');

    const code = await rig.doorman.stop('SIGTERM');
    const out = rig.doorman.output();
    assert.equal(code, 0, `exit code; output:\n${out}`);
    assert.ok(!existsSync(rig.dirs.anvilSocket), `socket ${rig.dirs.anvilSocket} removed; output:\n${out}`);

    const stats = rig.doorman
      .logs()
      .map((l) => l['msg'])
      .filter((m): m is string => typeof m === 'string' && m.startsWith('statistics: '));
    const counts = stats.filter((m) => m.startsWith('statistics: max connection count'));
    assert.ok(counts.length >= 1, `a 'statistics: max connection count' line; statistics lines: ${JSON.stringify(stats)}\noutput:\n${out}`);
    // The refused 4th session was counted before smtpd disconnected it, so the peak is 4.
    assert.ok(
      counts.some((m) => m.startsWith(`statistics: max connection count 4 for (${rig.ident})`)),
      `peak of 4 for (${rig.ident}) in ${JSON.stringify(counts)}`,
    );
  });
}
