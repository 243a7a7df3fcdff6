/**
 * The dashboard in a real browser (Debian's Chromium, driven by
 * playwright-core) against a real Doorman started in-process: its admin API
 * with a token, a guard proxy for IMAP in front of a stand-in backend, and
 * real client connections from distinct loopback addresses, some of them
 * given a country by a fake lookup. Everything is done through the page, as
 * a person would: reading the live list, kicking a connection, blocking a
 * country, banning and unbanning, with each confirmation dialog, and asking
 * why an address was refused. A
 * screenshot is kept under test-artifacts/.
 *
 * Without /usr/bin/chromium the file skips with a loud banner (`bash .ci/run`
 * as root installs it).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { REPO_ROOT } from '../helpers/daemon.js';
import { startFakeBackend } from '../helpers/fake-backend.js';
import { missingProgram, skipBanner, waitUntil } from '../helpers/guard.js';
import { memoryLogger } from '../helpers/log.js';
import { RawClient } from '../helpers/raw-client.js';
import { stateIn } from '../helpers/state.js';

const CHROMIUM = '/usr/bin/chromium';
const SKIP = missingProgram(CHROMIUM) ? `Chromium not found at ${CHROMIUM} (Debian package chromium; bash .ci/run as root installs it): the dashboard's browser test did not run` : false;
if (SKIP) skipBanner(SKIP);

/**
 * Chromium's own background connections (updates, safe browsing, QUIC probes)
 * are refused on a closed network and only add noise and delay.
 */
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const TOKEN = 'dashboard-test-token-0123456789';
/** Bounds every wait on the page: a live update takes a frame or two, a change a round trip. */
const UI_TIMEOUT_MS = 5000;
const SCREENSHOT = join(REPO_ROOT, 'test-artifacts', 'dashboard.png');

/** The fake country lookup: two Russian clients, one German, one American; the rest have none. */
const COUNTRIES: Record<string, string> = { '127.0.0.5': 'RU', '127.0.0.6': 'DE', '127.0.0.7': 'RU', '127.0.0.8': 'US' };
const IMAP_GREETING = /^\* OK backend ready\r\n/;

interface Rig {
  daemon: Daemon;
  page: Page;
  /** A client connected through the guard proxy from `address`. */
  connect(address: string): Promise<RawClient>;
  /** Page errors and console errors other than the HTTP errors the test provokes. */
  errors: string[];
}

async function rig(t: TestContext): Promise<Rig> {
  const backend = await startFakeBackend({ proxy: true, greeting: '* OK backend ready\r\n' });
  t.after(() => backend.close());
  const dir = mkdtempSync(join(tmpdir(), 'doorman-dashboard-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = parseConfig(
    {
      anvil: { enabled: false },
      state: stateIn(dir),
      admin: { listen: '127.0.0.1:0', token: TOKEN },
      services: {
        imap: { proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${backend.port}`, proxy_protocol: 'v2', hostname: 'imap.test' } },
        smtp: { countries: { connect: { deny: ['KP'] }, auth: { allow: ['DE'] } } },
      },
    },
    'dashboard test',
  );
  const { log } = memoryLogger('warn');
  const daemon = await startDaemon(config, log, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
  t.after(() => daemon.stop());
  assert.ok(daemon.adminPort > 0, 'the admin API listens');
  const proxyPort = daemon.proxies[0]?.port ?? 0;

  const clients: RawClient[] = [];
  t.after(() => clients.forEach((c) => c.destroy()));
  const connect = async (address: string) => {
    const c = await RawClient.open(proxyPort, { localAddress: address });
    clients.push(c);
    return c;
  };

  const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  t.after(() => browser.close());
  const page = await browser.newPage({ locale: 'en-US', timezoneId: 'UTC', viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The browser logs every 4xx it gets; the guardrail's 409 is provoked on purpose.
    if (m.type() === 'error' && !/status of 409/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return { daemon, page, connect, errors };
}

/** The table row of the live connection from `address` (the only one from there). */
function row(page: Page, address: string): Locator {
  const cell = page.locator('td.addr', { hasText: new RegExp(`^${address.replaceAll('.', '\\.')} :`) });
  return page.locator('#conn-table tbody tr:not(.spacer)').filter({ has: cell });
}

/** Confirms the open dialog after checking what its dry run found; returns the dialog's text. */
async function confirm(page: Page, hitsText: RegExp): Promise<string> {
  const dialog = page.locator('#confirm-dialog[open]');
  await dialog.waitFor();
  const text = (await dialog.textContent()) ?? '';
  assert.match(await page.locator('#confirm-hits-count').innerText(), hitsText, text);
  await page.locator('#confirm-ok').click();
  await page.locator('#confirm-dialog').waitFor({ state: 'hidden' });
  return text;
}

test('the dashboard in Chromium: live list with countries, kick, country block, ban and unban, why refused', { skip: SKIP, timeout: 30_000 }, async (t) => {
  const started = Date.now();
  const { daemon, page, connect, errors } = await rig(t);

  // Four live clients before the page opens; their greetings prove they are relayed.
  const live = new Map<string, RawClient>();
  for (const a of ['127.0.0.5', '127.0.0.6', '127.0.0.8', '127.0.0.9']) {
    const c = await connect(a);
    await c.waitFor(IMAP_GREETING);
    live.set(a, c);
  }

  await page.goto(`http://127.0.0.1:${daemon.adminPort}/?token=${TOKEN}`);
  assert.equal(new URL(page.url()).search, '', 'the token is dropped from the address bar');
  await page.locator('html[data-ready]').waitFor({ state: 'attached' });
  await page.locator('#live-state[data-state="live"]').waitFor();

  await t.test('the list shows the live connections, with country names', async () => {
    for (const a of live.keys()) await row(page, a).waitFor();
    assert.match(await page.locator('#conn-count').innerText(), /^4 live connections\./);
    assert.match(await row(page, '127.0.0.5').innerText(), /Russia \(RU\)/);
    assert.match(await row(page, '127.0.0.6').innerText(), /Germany \(DE\)/);
    assert.match(await row(page, '127.0.0.8').innerText(), /United States \(US\)/);
    assert.match(await page.locator('#service-tiles').innerText(), /imap\s+4/);
    assert.match(await page.locator('#service-tiles').innerText(), /asked by guard proxy/, 'each service says which front-ends ask about it');
    // Country rules name the country, not only its code.
    const rules = await page.locator('#countries-body').innerText();
    assert.match(rules, /North Korea\s+KP/);
    // An allow rule reads "Only from Germany", never "Only from from the config".
    assert.match(rules, /Only from\s+Germany/);
    assert.doesNotMatch(rules, /\bfrom\s+from\b/i);
  });

  await t.test('a connection made now appears without a reload (event stream)', async () => {
    const c = await connect('127.0.0.10');
    await c.waitFor(IMAP_GREETING);
    live.set('127.0.0.10', c);
    await row(page, '127.0.0.10').waitFor();
    await waitUntil('the count follows', async () => /^5 live connections\./.test(await page.locator('#conn-count').innerText()), UI_TIMEOUT_MS);
  });

  await t.test('a kick from the page closes the connection and its row goes', async () => {
    const victim = live.get('127.0.0.6') as RawClient;
    await row(page, '127.0.0.6').getByRole('button', { name: /^Kick 127\.0\.0\.6 / }).click();
    const text = await confirm(page, /^This closes 1 live connection:$/);
    assert.match(text, /127\.0\.0\.6 Germany \(DE\)/, 'the dialog lists the hit');
    await victim.closed();
    await row(page, '127.0.0.6').waitFor({ state: 'detached' });
    await page.locator('#status-area', { hasText: 'Kicked 1 live connection.' }).waitFor();
    assert.equal(daemon.registry.list({ address: '127.0.0.6' }).length, 0);
    live.delete('127.0.0.6');
  });

  await t.test('a kick that bans asks for a reason first, as every ban does, and sends nothing without one', async () => {
    await page.locator('details.action-form summary', { hasText: 'Kick an address or network' }).click();
    const form = page.locator('#kick-form');
    await form.getByLabel('Target').fill('127.0.0.99');
    await form.getByLabel('Then ban for').fill('10m');
    await form.getByRole('button', { name: 'Kick…', exact: true }).click();
    const why = await form.getByLabel('Reason').evaluate((el) => (el as HTMLInputElement).validationMessage);
    assert.equal(why, 'A kick that bans needs a reason.');
    assert.equal(await page.locator('dialog[open]').count(), 0, 'no confirmation was opened');
    assert.equal(daemon.gate.bans.list(Date.now()).length, 0, 'no ban was made');
    await form.getByLabel('Then ban for').fill('');
    await page.locator('details.action-form summary', { hasText: 'Kick an address or network' }).click();
  });

  await t.test('a country blocked from the page refuses the next connection from there', async () => {
    const form = page.locator('#country-form');
    await form.getByLabel('Service').selectOption('imap');
    await form.getByLabel('Phase').selectOption('connect');
    // Two letters that are no assigned country are refused on the page, before anything is sent.
    await form.getByLabel('Country').fill('XX');
    await form.getByRole('button', { name: 'Block…', exact: true }).click();
    await page.locator('#error-area', { hasText: '"XX" is no country code or country name.' }).waitFor();
    await form.getByLabel('Country').fill('Russia');
    await form.getByRole('button', { name: 'Block…', exact: true }).click();
    const text = await confirm(page, /^1 live connection comes from Russia:$/);
    assert.match(text, /Block Russia \(RU\) for imap at connect\?/);
    await page.locator('#countries-body tr', { hasText: /Blocked/ }).filter({ hasText: 'Russia' }).waitFor();
    const refused = await connect('127.0.0.7');
    await refused.waitFor(/^\* BYE \[CONTACTADMIN\] Access from your country is not allowed\r\n$/);
    await refused.closed();
    // Already open connections from there stay open, as the dialog said.
    assert.equal((live.get('127.0.0.5') as RawClient).socket.destroyed, false);
  });

  await t.test('a ban from the page refuses the address; an unban from the page lets it in again', async () => {
    const form = page.locator('#ban-form');
    await form.getByLabel('Address or network').fill('127.0.0.9');
    await form.getByLabel('For').fill('10m');
    await form.getByLabel('Reason').fill('browser test');
    await form.getByRole('button', { name: 'Ban…' }).click();
    await confirm(page, /^1 live connection comes from there:$/);
    const banRow = page.locator('#bans-body tr', { hasText: '127.0.0.9' });
    await banRow.waitFor();
    assert.match(await banRow.innerText(), /\b(9 min \d\d s|10 min 00 s)\b/, 'the time left');
    assert.match(await banRow.innerText(), /browser test/);
    assert.match(await banRow.innerText(), /\boperator\b/, 'who made it');
    const refused = await connect('127.0.0.9');
    await refused.waitFor(/^\* BYE \[UNAVAILABLE\] /);
    await refused.closed();

    await banRow.getByRole('button', { name: 'Unban 127.0.0.9' }).click();
    await confirm(page, /^$/);
    await banRow.waitFor({ state: 'detached' });
    assert.match(await page.locator('#bans-body').innerText(), /No bans\./);
    const admitted = await connect('127.0.0.9');
    await admitted.waitFor(IMAP_GREETING);
  });

  await t.test('why refused: from the feed and from the form, with the rule and the one command that lifts it', async () => {
    // The country block above refused 127.0.0.7: its entry in the feed asks why.
    await page.locator('#refusals li', { hasText: '127.0.0.7' }).first().getByRole('button', { name: 'Why was 127.0.0.7 refused?' }).click();
    const answer = page.locator('#why-answer');
    await answer.locator('.why-head', { hasText: '127.0.0.7' }).waitFor();
    assert.equal(await page.locator('#why-form input[name="address"]').inputValue(), '127.0.0.7');
    const item = answer.locator('.why-item[data-cause="country"]');
    assert.match(await item.innerText(), /imap refused by proxy: services\.imap\.countries\.connect/);
    assert.equal(await item.locator('code.cmd').innerText(), 'doorman unblock RU --service imap --phase connect');

    // A ban in CrowdSec's layer (as its bouncer would put it), asked from the form: CrowdSec's own command, not unban.
    daemon.gate.bans.add('127.0.0.11', 3_600_000, 'crowdsecurity/postfix-spam', Date.now(), { origin: 'crowdsec' });
    const refused = await connect('127.0.0.11');
    await refused.waitFor(/^\* BYE \[UNAVAILABLE\] /);
    await page.locator('#why-form input[name="address"]').fill('127.0.0.11');
    await page.locator('#why-form').getByRole('button', { name: 'Why?' }).click();
    const ban = answer.locator('.why-item.ban[data-layer="crowdsec"]');
    await ban.waitFor();
    assert.match(await ban.innerText(), /crowdsec layer, by CrowdSec\) for (59 min \d\d s|1 h 00 min) more/);
    assert.equal(await ban.locator('code.cmd').innerText(), 'cscli decisions delete --ip 127.0.0.11');
    assert.equal(await answer.locator('.why-item[data-cause="ban"] code.cmd').innerText(), 'cscli decisions delete --ip 127.0.0.11', 'the refusal it made says the same');

    // 127.0.0.9 was banned and unbanned above: its refusal is shown as past.
    await page.locator('#why-form input[name="address"]').fill('127.0.0.9');
    await page.locator('#why-form').getByRole('button', { name: 'Why?' }).click();
    const past = answer.locator('.why-item.past[data-cause="ban"]');
    await past.waitFor();
    assert.match(await past.innerText(), /no longer in force/);
    assert.equal(await past.locator('code').count(), 0, 'nothing left to lift, no command');
    daemon.gate.bans.remove('127.0.0.11', 'crowdsec');
  });

  await t.test("the API's refusals are shown as the API words them (409 guardrail)", async () => {
    const form = page.locator('#ban-form');
    await form.getByLabel('Address or network').fill('127.0.0.0/8');
    await form.getByLabel('Reason').fill('lock myself out');
    await form.getByRole('button', { name: 'Ban…' }).click();
    const alert = page.locator('#error-area .notice', { hasText: 'Ban 127.0.0.0/8' });
    await alert.waitFor();
    const text = await alert.innerText();
    assert.match(text, /covers your own address 127\.0\.0\.1/);
    assert.match(text, /409 DOORMAN_ERR_GUARDRAIL/);
    assert.equal(await page.locator('#confirm-dialog[open]').count(), 0, 'no dialog for a refused change');
    await alert.getByRole('button', { name: 'Dismiss this error' }).click();
  });

  mkdirSync(join(REPO_ROOT, 'test-artifacts'), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  t.diagnostic(`screenshot: ${SCREENSHOT}`);
  t.diagnostic(`browser test took ${Date.now() - started} ms`);
  assert.deepEqual(errors, [], 'no script errors in the page');
});
