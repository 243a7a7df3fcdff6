/**
 * The `doorman` commands that talk to the admin API, run as an operator
 * would: the built CLI as a child process against a real daemon (a child
 * process too) with a guard proxy in front of a fake backend and real client
 * connections through it. One daemon serves every test but the ones about a
 * missing daemon, which run beside it; the daemon's tests run in order and
 * build on each other (the kick bans an address that check later finds banned).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import { doorman, show, type CliResult } from '../helpers/cli.js';
import { startDoorman, type DoormanProcess } from '../helpers/daemon.js';
import { startFakeBackend, type FakeBackend } from '../helpers/fake-backend.js';
import { freePort } from '../helpers/postfix.js';
import { RawClient } from '../helpers/raw-client.js';

const TOKEN = 'cli-test-token-0123456789abcdef';
const ADMIN_COMMANDS = ['status', 'connections', 'kick', 'ban', 'unban', 'bans', 'block', 'unblock', 'countries', 'check', 'why'];

let backend: FakeBackend;
let daemon: DoormanProcess;
/** The admin API's URL, from the daemon's log. */
let url: string;
/** A configuration for the CLI: the daemon's admin section with the port it bound. */
let cliConfig: string;
let proxyPort: number;
const clients: RawClient[] = [];

/** `doorman ARGS… --config cli.yaml`. */
const cli = (...args: string[]) => doorman([...args, '--config', cliConfig]);

function ok(r: CliResult): string {
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stderr, '', show(r));
  return r.stdout;
}

/** Exit code `code` and one stderr line matching `re`. */
function failed(r: CliResult, code: number, re: RegExp): void {
  assert.equal(r.code, code, show(r));
  assert.equal(r.stdout, '', show(r));
  assert.match(r.stderr, /^doorman: [^\n]+\n$/, `one line on stderr\n${show(r)}`);
  assert.match(r.stderr, re, show(r));
}

describe('doorman CLI', { concurrency: 3 }, () => {
  // These two need no daemon: they run beside the suite that has one.
  test('--help for every command: usage, the shared options and the exit codes', async () => {
    const results = await Promise.all(ADMIN_COMMANDS.map((c) => doorman([c, '--help'])));
    for (const [i, r] of results.entries()) {
      const out = ok(r);
      assert.match(out, new RegExp(`^Usage: doorman ${ADMIN_COMMANDS[i]} `), out);
      for (const opt of ['--config <file>', '--url <url>', '--token <token>', '--timeout <duration>']) assert.ok(out.includes(opt), `${ADMIN_COMMANDS[i]} --help lacks ${opt}`);
      assert.match(out, /Exit status: 0 done; 1 the daemon refused/);
    }
    const top = ok(await doorman(['--help']));
    for (const c of ADMIN_COMMANDS) assert.match(top, new RegExp(`^  ${c} `, 'm'), `doorman --help lists ${c}`);
    failed(await doorman(['ban', '192.0.2.7', '--ttl', '1h']), 2, /required option '--reason <text>' not specified \(see --help\)/);
  });

  test('no daemon: a clear error naming where it looked (exit 3); a silent one times out; check suggests --offline', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'doorman-cli-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const port = await freePort();
    const cfg = join(dir, 'nodaemon.yaml');
    await writeFile(cfg, stringify({ admin: { listen: `127.0.0.1:${port}` }, services: { imap: {} } }));
    const portZero = join(dir, 'port0.yaml');
    await writeFile(portZero, stringify({ admin: { listen: '127.0.0.1:0' } }));
    // Accepts and never answers.
    const silent = createServer((s: Socket) => void s.on('error', () => {}));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentPort = (silent.address() as { port: number }).port;
    try {
      const [refused, check, offline, offlineUnknown, timedOut, zero] = await Promise.all([
        doorman(['status', '--config', cfg]),
        doorman(['check', '192.0.2.7', '--service', 'imap', '--config', cfg]),
        doorman(['check', '192.0.2.7', '--service', 'imap', '--config', cfg, '--offline']),
        doorman(['check', '192.0.2.7', '--service', 'pop3', '--config', cfg, '--offline']),
        doorman(['bans', '--url', `http://127.0.0.1:${silentPort}`, '--timeout', '300ms']),
        doorman(['status', '--config', portZero]),
      ]);
      failed(refused, 3, new RegExp(`^doorman: cannot reach the daemon at http://127\\.0\\.0\\.1:${port} \\(connection refused\\): is the daemon running\\? admin\\.listen is 127\\.0\\.0\\.1:${port} in \\S+nodaemon\\.yaml$`, 'm'));
      failed(check, 3, /is the daemon running\?.*; --offline judges from the configuration alone$/m);
      assert.match(ok(offline), /^192\.0\.2\.7 \(imap\): country none \(documentation\)$/m);
      failed(offlineUnknown, 2, /no service "pop3" in \S+nodaemon\.yaml \(it has imap\)/);
      failed(timedOut, 3, /no answer from the daemon at http:\/\/127\.0\.0\.1:\d+ within 300 ms \(GET \/api\/bans\)/);
      failed(zero, 2, /admin\.listen is 127\.0\.0\.1:0 in \S+port0\.yaml, a port chosen at start: pass --url/);
    } finally {
      silent.close();
    }
  });

  describe('against one running daemon, in order', { concurrency: 1 }, () => {
    before(async () => {
      backend = await startFakeBackend({ proxy: true, greeting: '* OK backend ready\r\n' });
      daemon = await startDoorman({
        anvil: { enabled: false },
        admin: { listen: '127.0.0.1:0', token: TOKEN },
        exceptions: ['127.0.9.0/24'],
        services: {
          imap: {
            countries: { connect: { deny: ['KP'] } },
            proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${backend.port}`, proxy_protocol: 'v2', hostname: 'mx.test' },
          },
          smtp: { limits: { connections_per_address: 5 } },
        },
      });
      const adminLine = await daemon.waitForLog((l) => typeof l['msg'] === 'string' && l['msg'].startsWith('admin API'));
      url = /(http:\/\/\S+?)\/?$/.exec(adminLine['msg'] as string)?.[1] ?? `http://127.0.0.1:${String(adminLine['port'])}`;
      proxyPort = (await daemon.waitForLog((l) => l['msg'] === 'proxy listening'))['port'] as number;
      cliConfig = join(daemon.dir, 'cli.yaml');
      await writeFile(cliConfig, stringify({ admin: { listen: url.replace(/^http:\/\//, ''), token: TOKEN } }));
      for (const address of ['127.0.0.20', '127.0.0.20', '127.0.0.21']) {
        const c = await RawClient.open(proxyPort, { localAddress: address });
        await c.waitFor(/\* OK backend ready/);
        clients.push(c);
      }
    });

    after(async () => {
      for (const c of clients) c.destroy();
      await daemon?.stop();
      await backend?.close();
    });

    test('status: each service with its connections, the total, bans and engine entries; --json', async () => {
      const text = ok(await cli('status'));
      assert.match(text, /^doorman \S+ up \d+s \(since \d{4}-\d\d-\d\dT[\d:]+Z\)$/m, text);
      assert.match(text, new RegExp(`^imap +imap +3 +127\\.0\\.0\\.1:${proxyPort}$`, 'm'), text);
      assert.match(text, /^smtp +smtp +0 +-$/m, text);
      assert.match(text, /^total +3$/m, text);
      assert.match(text, /^bans: 0 {3}engine entries: \d+ {3}by country: none 3$/m, text);
      const json = JSON.parse(ok(await cli('status', '--json'))) as { connections: number; services: Record<string, { connections: number }>; bans: number };
      assert.deepEqual([json.connections, json.services['imap']?.connections, json.services['smtp']?.connections, json.bans], [3, 3, 0, 0]);
    });

    test('connections: a table with every column, filters and --limit, or --json', async () => {
      const [all, one, net, none, limited, asJson] = await Promise.all([
        cli('connections'),
        cli('connections', '--address', '127.0.0.21'),
        cli('connections', '-a', '127.0.0.16/28', '--service', 'imap'),
        cli('connections', '--service', 'smtp', '--country', 'de'),
        cli('connections', '--limit', '1'),
        cli('connections', '--json'),
      ]);
      const lines = ok(all).trimEnd().split('\n');
      assert.match(lines[0] ?? '', /^ID +SERVICE +CLIENT +COUNTRY +AGE +IN +OUT +TLS$/, ok(all));
      assert.equal(lines.length, 4, ok(all));
      assert.match(ok(all), /^\S+ +imap +127\.0\.0\.20:\d+ +- +\d+s +\d+ B +\d+ B +no$/m);
      assert.match(ok(one), /127\.0\.0\.21:\d+/);
      assert.doesNotMatch(ok(one), /127\.0\.0\.20/);
      assert.equal(ok(net).trimEnd().split('\n').length, 4, 'a CIDR filter');
      assert.equal(ok(none), 'no live connections match\n');
      assert.match(ok(limited), /^1 of 3 shown \(--limit shows up to 1000\)$/m);
      assert.equal(ok(limited).trimEnd().split('\n').length, 3, 'header, one row, the footer');
      const j = JSON.parse(ok(asJson)) as { total: number; items: Array<{ id: string; service: string; client: { address: string }; bytes_out: number; encrypted: boolean }> };
      assert.equal(j.total, 3);
      assert.deepEqual(j.items.map((c) => c.client.address), ['127.0.0.20', '127.0.0.20', '127.0.0.21'], 'oldest first');
      assert.ok((j.items[0]?.bytes_out ?? 0) > 0, 'the greeting went out');
      failed(await cli('connections', '--limit', '5000'), 2, /argument '5000' is invalid\. expected a whole number from 1 to 1000/);
    });

    test('kick: --dry-run closes nothing; by id and by address (with a ban) the clients are closed', async () => {
      const dry = ok(await cli('kick', '127.0.0.21', '--dry-run'));
      assert.match(dry, /^dry run: would kick 1 connection:$/m, dry);
      assert.match(dry, /127\.0\.0\.21:\d+/);
      assert.match(dry, /^nothing was changed$/m);
      const ids = JSON.parse(ok(await cli('connections', '--json', '--address', '127.0.0.21'))) as { items: Array<{ id: string }> };
      assert.equal(ids.items.length, 1, 'the dry run closed nothing');
      const id = ids.items[0]?.id as string;

      const byId = ok(await cli('kick', id, '--reason', 'cli test'));
      assert.match(byId, /^kicked 1 connection:$/m, byId);
      await clients[2]?.closed();
      assert.match(clients[2]?.received ?? '', /\* BYE \[UNAVAILABLE\] Connection closed by the administrator/);

      // --ttl, as `doorman ban` spells a ban's length; the old --ban still works, hidden from --help; not both.
      assert.match(ok(await cli('kick', '127.0.0.20', '--ban', '5m', '--reason', 'x', '--dry-run')), /^dry run: would kick 2 connections and ban 127\.0\.0\.20 for 5m:$/m);
      failed(await cli('kick', '127.0.0.20', '--ttl', '5m', '--ban', '5m'), 2, /option '--ban <duration>' cannot be used with option '--ttl <duration>'/);
      assert.doesNotMatch(ok(await cli('kick', '--help')), /--ban/);
      // An unknown service is an error, as in block and check, not a filter that matches nothing.
      failed(await cli('kick', '127.0.0.20', '--service', 'nope', '--ttl', '5m', '--reason', 'x'), 1, /no service "nope" in the configuration/);
      // A ban needs --reason, whether made by ban or by kick --ttl.
      failed(await cli('kick', '127.0.0.20', '--ttl', '5m'), 2, /kick --ttl bans, and a ban needs --reason/);
      failed(await cli('connections', '--service', 'nope'), 1, /no service "nope" in the configuration/);
      failed(await cli('connections', '--country', 'xx'), 2, /"xx" is not a country code/);
      const byAddress = ok(await cli('kick', '127.0.0.20', '--ttl', '10m', '--reason', 'flood'));
      assert.match(byAddress, /^kicked 2 connections:$/m, byAddress);
      assert.match(byAddress, /^banned 127\.0\.0\.20 for (9m59s|10m00s) \(until \d{4}-[\d-]+T[\d:]+Z\): flood$/m, byAddress);
      await Promise.all([clients[0]?.closed(), clients[1]?.closed()]);
      const back = await RawClient.open(proxyPort, { localAddress: '127.0.0.20' });
      await back.closed();
      assert.doesNotMatch(back.received, /backend ready/, 'the ban keeps it out');

      assert.equal(ok(await cli('kick', '127.0.0.99')), 'no live connection matches 127.0.0.99; kicked none\n');
      failed(await cli('kick', 'no-such-id'), 1, /"no-such-id" is no connection id, address or network/);
    });

    test('ban, bans, unban; guardrails refuse a ban on our own address or an exception network', async () => {
      const dry = ok(await cli('ban', '127.0.0.30', '--ttl', '1h', '--reason', 'test', '--dry-run'));
      assert.equal(dry, 'dry run: would ban 127.0.0.30 for 1h\nnothing was changed\n');
      const made = ok(await cli('ban', '127.0.0.30', '--ttl', '1h', '--reason', 'brute force'));
      assert.match(made, /^banned 127\.0\.0\.30 for (59m59s|1h00m) \(until \S+\): brute force$/m, made);

      // None of the refused bans changes anything, so the listings may run beside them.
      const [list, listJson, own, exception, badTarget, badTtl] = await Promise.all([
        cli('bans'),
        cli('bans', '--json'),
        cli('ban', '127.0.0.0/8', '--ttl', '1h', '--reason', 'oops'),
        cli('ban', '127.0.9.5', '--ttl', '1h', '--reason', 'oops'),
        cli('ban', 'mx.example', '--ttl', '1h', '--reason', 'oops'),
        cli('ban', '192.0.2.7', '--ttl', '2y', '--reason', 'oops'),
      ]);
      const rows = ok(list).trimEnd().split('\n');
      assert.equal(rows.length, 3, ok(list));
      assert.match(rows[0] ?? '', /^TARGET +LEFT +UNTIL +BY +REASON$/, ok(list));
      assert.match(rows[1] ?? '', /^127\.0\.0\.20 +\d+m\d\ds +\S+Z +operator +flood$/, ok(list));
      assert.match(rows[2] ?? '', /^127\.0\.0\.30 +(59m\d\ds|1h00m) +\S+Z +operator +brute force$/, ok(list));
      const j = JSON.parse(ok(listJson)) as { items: Array<{ target: string; left_s: number }> };
      assert.deepEqual(j.items.map((b) => b.target).sort(), ['127.0.0.20', '127.0.0.30']);
      failed(own, 1, /refused: 127\.0\.0\.0\/8 covers your own address 127\.0\.0\.1 \(a guardrail; nothing was changed\)/);
      failed(exception, 1, /overlaps the exception network 127\.0\.9\.0\/24 \(a guardrail; nothing was changed\)/);
      failed(badTarget, 2, /expected an IP address or a CIDR network/);
      failed(badTtl, 2, /expected a duration from 1s to 366d/);

      assert.equal(ok(await cli('unban', '127.0.0.30')), 'unbanned 127.0.0.30\n');
      const [again, after] = await Promise.all([cli('unban', '127.0.0.30'), cli('bans')]);
      failed(again, 1, /^doorman: .*127\.0\.0\.30/);
      assert.match(ok(after), /^TARGET.*\n127\.0\.0\.20 .*\n$/, "only the kick's ban is left");
    });

    test('block, unblock, countries: run-time rules beside the configuration\'s', async () => {
      // Nothing here changes anything: a dry run and refused requests.
      const [before, dry, unknown, badCode, notCountry, badPhase, noService] = await Promise.all([
        cli('countries'),
        cli('block', 'cn', '--service', 'imap', '--dry-run'),
        cli('block', 'RU', '--service', 'nope'),
        cli('block', 'RUS', '--service', 'imap'),
        cli('block', 'XX', '--service', 'imap'),
        cli('block', 'RU', '--service', 'imap', '--phase', 'login'),
        cli('block', 'RU'),
      ]);
      assert.match(ok(before), /^SERVICE +PHASE +RULE +MODE +SOURCE$/m, ok(before));
      assert.match(ok(before), /^imap +connect +deny KP +enforce +config$/m, ok(before));
      assert.match(ok(before), /^imap +auth +none$/m, ok(before));
      assert.match(ok(before), /^smtp +connect +none$/m, ok(before));
      assert.equal(ok(dry), 'dry run: would block CN for imap at connect\nnothing was changed\n');
      failed(unknown, 1, /no service "nope" in the configuration/);
      failed(badCode, 2, /"RUS" is not a country code: expected an ISO 3166-1 alpha-2 country code/);
      // Two letters, but no country: refused before anything is sent (it used to be blocked and persisted).
      failed(notCountry, 2, /"XX" is not a country code: expected an ISO 3166-1 alpha-2 country code \(officially assigned, or XK for Kosovo\) such as DE/);
      failed(badPhase, 2, /expected connect or auth/);
      failed(noService, 2, /required option '-s, --service <name>' not specified/);

      assert.equal(ok(await cli('block', 'RU', '--service', 'imap')), 'blocked RU for imap at connect\nimap connect rule now: deny KP, RU\n', 'without the dry run\'s CN');
      assert.equal(ok(await cli('block', 'DE', '-s', 'smtp', '--phase', 'auth')), 'blocked DE for smtp at auth\nsmtp auth rule now: deny DE\n');
      const [text, json] = await Promise.all([cli('countries'), cli('countries', '--json')]);
      assert.match(ok(text), /^imap +connect +deny KP, RU +enforce +runtime$/m, ok(text));
      assert.match(ok(text), /^smtp +auth +deny DE +enforce +runtime$/m, ok(text));
      const j = JSON.parse(ok(json)) as { services: Record<string, Record<string, { kind: string; codes: string[]; source: string } | null>> };
      assert.deepEqual(j.services['imap']?.['connect'], { kind: 'deny', codes: ['KP', 'RU'], mode: 'enforce', source: 'runtime' });
      assert.deepEqual(j.services['smtp']?.['auth'], { kind: 'deny', codes: ['DE'], mode: 'enforce', source: 'runtime' });
      assert.equal(ok(await cli('unblock', 'RU', '--service', 'imap')), 'unblocked RU for imap at connect\nimap connect rule now: deny KP\n');
      assert.equal(ok(await cli('unblock', 'DE', '--service', 'smtp', '--phase', 'auth')), 'unblocked DE for smtp at auth\nsmtp auth rule now: none\n');
    });

    test('check: the daemon\'s live bans; --offline judges from the configuration alone', async () => {
      const [live, json, offline, bad] = await Promise.all([
        cli('check', '127.0.0.20', '--service', 'imap'),
        cli('check', '127.0.0.20', '--service', 'imap', '--json'),
        doorman(['check', '127.0.0.20', '--service', 'imap', '--offline', '--config', daemon.configPath]),
        cli('check', 'mx.example', '--service', 'imap'),
      ]);
      const text = ok(live);
      assert.match(text, /^127\.0\.0\.20 \(imap\): country none \(loopback\)$/m, text);
      assert.match(text, /^ {2}connect +refuse +.*ban/m, text);
      const j = JSON.parse(ok(json)) as { address: string; connect: { action: string }; auth: { action: string } };
      assert.deepEqual([j.address, j.connect.action], ['127.0.0.20', 'refuse']);
      assert.match(ok(offline), /^ {2}connect +allow /m, 'offline knows no bans');
      failed(bad, 2, /"mx\.example" is not an IP address/);
    });

    test('tokens: a wrong one is refused (401), none at all is refused, $DOORMAN_TOKEN is used', async () => {
      const [wrong, none, env] = await Promise.all([
        doorman(['status', '--url', url, '--token', 'wrong-token-0123456789']),
        doorman(['status', '--url', url]),
        doorman(['status', '--url', url, '--json'], { env: { DOORMAN_TOKEN: TOKEN } }),
      ]);
      failed(wrong, 1, /^doorman: the daemon refused the token from --token \(.+\)$/m);
      failed(none, 1, /^doorman: the daemon requires a token \(.+\): pass --token, set DOORMAN_TOKEN/m);
      assert.equal((JSON.parse(ok(env)) as { connections: number }).connections, 0, 'everyone was kicked');
    });
  });
});
