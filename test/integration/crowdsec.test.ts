/**
 * Doorman with a real CrowdSec (Debian's crowdsec 1.4.6, test/helpers/crowdsec.ts):
 *
 * - as a bouncer: `cscli decisions add --ip` makes the guard proxy refuse
 *   that address while another passes; `cscli decisions delete` lifts it
 *   within a poll; a Range decision refuses its whole network; a decision
 *   over an exception network is not applied, and is counted; the API, the
 *   audit log and the metrics show it all;
 * - the Local API stopped: the bans held stay, the status and metrics say
 *   it is down; started again: polling resumes by itself;
 * - as a source of signals: failed logins Dovecot reports to Doorman reach
 *   the signals log, CrowdSec's agent reads it with contrib/crowdsec/'s
 *   parser and scenario, raises an alert and a ban, and Doorman, polling,
 *   refuses that address.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { metricValue, startAdminDaemon, type AdminSetup } from '../helpers/admin-daemon.js';
import { CROWDSEC_SKIP, crowdsecMissing, TestCrowdsec } from '../helpers/crowdsec.js';
import { skipBanner, waitUntil } from '../helpers/guard.js';
import { RawClient } from '../helpers/raw-client.js';
import { encodeDovecotBody } from '../../src/protocols/dovecot-policy.js';
import type { TestContext } from 'node:test';

const DOVECOT_KEY = 'crowdsec-test-dovecot-key';
/** A poll a second: each wait below is a few polls at most. */
const POLL = '1s';
const WAIT_MS = 15_000;

/** Whether a client from `from` gets the backend's greeting (true) or is refused (false). */
async function admitted(port: number, from: string): Promise<boolean> {
  const c = await RawClient.open(port, { localAddress: from });
  try {
    const line = await c.waitFor(/^.*\r\n/);
    return /ready/.test(line) && !/BYE/.test(line);
  } catch {
    return false;
  } finally {
    c.destroy();
  }
}

async function status(s: AdminSetup): Promise<Record<string, unknown>> {
  return (await s.api.get<{ crowdsec: Record<string, unknown> }>('/api/status')).json.crowdsec;
}

async function report(port: number, from: string, login: string): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${port}/policy?command=report`, {
    method: 'POST',
    headers: { 'X-API-Key': DOVECOT_KEY, 'Content-Type': 'application/json' },
    body: encodeDovecotBody({ remote: from, login, success: false, failType: 'credentials' }),
  });
  assert.equal(r.status, 200);
  await r.text();
}

if (crowdsecMissing() !== undefined) {
  skipBanner(CROWDSEC_SKIP);
  test('crowdsec', { skip: CROWDSEC_SKIP }, () => {});
} else {
  describe('Doorman and a real CrowdSec 1.4', () => {
    let cs: TestCrowdsec;
    let s: AdminSetup;
    before(async () => {
      cs = await TestCrowdsec.start();
    });
    after(async () => {
      await cs?.close();
    });

    const start = async (t: TestContext, extra: Record<string, unknown> = {}) => {
      const key = await cs.addBouncer(`doorman-${Math.random().toString(36).slice(2, 8)}`);
      s = await startAdminDaemon(t, {
        crowdsec: { lapi_url: cs.url, api_key: key, poll_interval: POLL, request_timeout: '2s', signals_log: cs.signals },
        dovecot_policy: { listen: '127.0.0.1:0', api_key: DOVECOT_KEY },
        ...extra,
      });
      return key;
    };

    test('decisions added and deleted with cscli: an address and a network refused, then let in again; exceptions guarded', async (t) => {
      const key = await start(t);
      assert.equal(s.lines.some((l) => JSON.stringify(l).includes(key)), false, 'the key is in no log line');
      const st = await status(s);
      assert.equal(st['up'], true, JSON.stringify(st));
      assert.equal(st['role'], 'single');
      assert.equal(await admitted(s.port, '127.0.0.2'), true, 'no decision yet');

      await cs.cscliOk('decisions', 'add', '--ip', '127.0.0.2', '--duration', '1h', '--reason', 'doorman-test');
      await waitUntil('127.0.0.2 refused by the proxy', async () => !(await admitted(s.port, '127.0.0.2')), WAIT_MS);
      assert.equal(await admitted(s.port, '127.0.0.1'), true, '127.0.0.1 passes');
      const list = JSON.stringify((await s.api.get('/api/bans')).json);
      assert.match(list, /127\.0\.0\.2/);
      assert.match(list, /crowdsec/);
      // The admin API's check, a second front-end, agrees.
      const check = (await s.api.get('/api/check?address=127.0.0.2&service=imap')).json as { connect: unknown };
      assert.match(JSON.stringify(check.connect), /banned/);

      await cs.cscliOk('decisions', 'delete', '--ip', '127.0.0.2');
      await waitUntil('127.0.0.2 let in again', () => admitted(s.port, '127.0.0.2'), WAIT_MS);

      await cs.cscliOk('decisions', 'add', '--range', '127.0.6.0/24', '--duration', '1h', '--reason', 'doorman-test-range');
      await waitUntil('127.0.6.9 refused (a Range decision)', async () => !(await admitted(s.port, '127.0.6.9')), WAIT_MS);
      assert.equal(await admitted(s.port, '127.0.7.9'), true, 'outside the range passes');

      // 127.0.9.0/24 is the setup's exception network.
      await cs.cscliOk('decisions', 'add', '--range', '127.0.9.0/28', '--duration', '1h', '--reason', 'over-an-exception');
      await waitUntil('the exception decision counted as skipped', async () => ((await status(s))['skipped'] as { exception: number }).exception >= 1, WAIT_MS);
      assert.equal(await admitted(s.port, '127.0.9.5'), true, 'an exception network is never banned by CrowdSec');
      assert.ok(s.lines.some((l) => l['msg'] === 'crowdsec: a decision over an exception network is not applied' && l['target'] === '127.0.9.0/28'));

      const entries = JSON.stringify((await s.api.get('/api/audit?limit=50')).json);
      assert.match(entries, /crowdsec\.sync/);
      assert.equal(entries.includes(key), false, 'the key is not in the audit log');
      const metrics = (await s.api.get<string>('/metrics')).json;
      assert.equal(metricValue(metrics, 'doorman_crowdsec_up'), 1);
      assert.ok((metricValue(metrics, 'doorman_crowdsec_polls_total{result="ok"}') ?? 0) >= 3);
      assert.equal(metricValue(metrics, 'doorman_bans{origin="crowdsec"}'), 1);

      // The Local API goes away: the ban held stays, and the status says so.
      await cs.stop();
      await waitUntil('the status shows the Local API down', async () => (await status(s))['up'] === false, WAIT_MS);
      const down = await status(s);
      assert.match(String((down['last_error'] as { code: string }).code), /DOORMAN_ERR_CROWDSEC_(UNREACHABLE|TIMEOUT)/);
      assert.equal(await admitted(s.port, '127.0.6.9'), false, 'the range stays banned while CrowdSec is down');
      const m2 = (await s.api.get<string>('/metrics')).json;
      assert.equal(metricValue(m2, 'doorman_crowdsec_up'), 0);
      await new Promise((r) => setTimeout(r, 2500));
      const warned = s.lines.filter((l) => typeof l['msg'] === 'string' && (l['msg'] as string).startsWith('crowdsec: the Local API'));
      assert.equal(warned.length, 1, `one warning for a failure that lasts, not one per poll: ${JSON.stringify(warned)}`);

      // Back: polling resumes by itself, with the whole list.
      await cs.resume();
      await waitUntil('the status shows the Local API up again', async () => (await status(s))['up'] === true, WAIT_MS);
      assert.ok(s.lines.some((l) => l['msg'] === 'crowdsec: the Local API answers again; the whole list was asked for'));
      await cs.cscliOk('decisions', 'delete', '--range', '127.0.6.0/24');
      await waitUntil('127.0.6.9 let in after the restart', () => admitted(s.port, '127.0.6.9'), WAIT_MS);
    });

    test('failed logins reported by Dovecot reach CrowdSec through the signals log, and come back as a ban', async (t) => {
      await start(t);
      const dovecot = s.d.dovecotPort;
      for (let i = 0; i < 8; i++) await report(dovecot, '127.0.0.88', `user${i}`);
      // Another address, in the exception network: never signalled.
      await report(dovecot, '127.0.9.20', 'x');
      await waitUntil('the signals log has the failures', () => readFileSync(cs.signals, 'utf8').split('\n').filter((l) => l.includes('auth-failed client=127.0.0.88')).length >= 8, WAIT_MS);
      const lines = readFileSync(cs.signals, 'utf8');
      assert.match(lines, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z doorman\[\d+\]: auth-failed client=127\.0\.0\.88 service=imap front=dovecot rule=-$/m);
      assert.equal(lines.includes('127.0.9.20'), false, 'an exception address is not signalled');

      await waitUntil(
        'cscli alerts list shows doorman/mail-auth-bf for 127.0.0.88',
        async () => {
          const r = await cs.cscli('alerts', 'list', '-o', 'json');
          return r.code === 0 && r.stdout.includes('doorman/mail-auth-bf') && r.stdout.includes('127.0.0.88');
        },
        WAIT_MS,
      );
      await waitUntil('Doorman refuses 127.0.0.88 on CrowdSec\'s decision', async () => !(await admitted(s.port, '127.0.0.88')), WAIT_MS);
      const bans = JSON.stringify((await s.api.get('/api/bans')).json);
      assert.match(bans, /doorman\/mail-auth-bf/);

      // cscli explain accepts a refusal line and names the parser.
      const explain = await cs.cscli('explain', '--log', '2026-12-07T00:11:08.123Z doorman[4242]: refused client=192.0.2.7 service=imap front=proxy rule=limits.connection_rate', '--type', 'doorman');
      assert.equal(explain.code, 0, explain.stderr);
      assert.match(explain.stdout, /doorman\/doorman-logs/);
      assert.match(explain.stdout, /doorman\/mail-refused/);
    });
  });
}
