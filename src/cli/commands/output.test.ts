/** The commands' text output, from API answers shaped as docs/admin-api.md says. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ApiCheck, ApiConnection, ApiStatus } from '../api-types.js';
import { banTable, formatBanResult } from './bans.js';
import { formatLiveCheck } from './check.js';
import { connectionTable } from './connections.js';
import { countriesTable, describeRule } from './countries.js';
import { formatKick } from './kick.js';
import { formatStatus } from './status.js';

const conn = (id: string, address: string, more: Partial<ApiConnection> = {}): ApiConnection => ({
  id,
  service: 'imap',
  protocol: 'imap',
  client: { address, port: 40_000 },
  country: 'DE',
  listen: '0.0.0.0:143',
  backend: '127.0.0.1:10143',
  started_at: '2026-06-20T10:00:00.000Z',
  age_s: 725,
  bytes_in: 1229,
  bytes_out: 812,
  encrypted: true,
  ...more,
});
const BAN = { target: '192.0.2.7', until: '2026-06-20T11:00:00.000Z', left_s: 600, reason: 'flood', created_at: '2026-06-20T10:50:00.000Z', origin: 'operator', strike: 1 };

test('connectionTable: one row per connection; IPv6 clients bracketed; no country is -', () => {
  assert.equal(
    connectionTable([conn('1', '192.0.2.7'), conn('2a', '2001:db8::7', { country: null, encrypted: false, age_s: 4000, bytes_in: 0 })]),
    [
      'ID  SERVICE  CLIENT               COUNTRY     AGE       IN    OUT  TLS',
      '1   imap     192.0.2.7:40000      DE       12m05s  1.2 KiB  812 B  yes',
      '2a  imap     [2001:db8::7]:40000  -         1h06m      0 B  812 B  no',
      '',
    ].join('\n'),
  );
});

test('formatStatus: header, services sorted, total, bans, engine, countries by count', () => {
  const s: ApiStatus = {
    version: '0.1.0',
    started_at: '2026-06-20T07:03:00.000Z',
    uptime_s: 11_220,
    connections: 5,
    services: { smtp: { protocol: 'smtp', connections: 1, listen: ['0.0.0.0:25'] }, imap: { protocol: 'imap', connections: 4, listen: ['0.0.0.0:143', '[::]:143'] }, submission: { protocol: 'submission', connections: 0, listen: [] } },
    countries: { DE: 3, '': 1, RU: 1, FR: 0 },
    engine: { entries: 42 },
    bans: 2,
  };
  assert.equal(
    formatStatus(s),
    [
      'doorman 0.1.0 up 3h07m (since 2026-06-20T07:03:00Z)',
      'SERVICE     PROTOCOL    CONNECTIONS  LISTEN',
      'imap        imap                  4  0.0.0.0:143 [::]:143',
      'smtp        smtp                  1  0.0.0.0:25',
      'submission  submission            0  -',
      'total                             5',
      'bans: 2   engine entries: 42   by country: DE 3, none 1, RU 1',
      '',
    ].join('\n'),
  );
});

test('formatStatus: the CrowdSec bouncer, up, down, or following another node', () => {
  const base: ApiStatus = { connections: 0, services: {} };
  const cs = { lapi_url: 'http://127.0.0.1:8080', role: 'single', up: true, last_success: '2026-06-20T10:00:00.000Z', last_error: null, bans: 12, skipped: { exception: 0 } };
  assert.match(formatStatus({ ...base, crowdsec: cs }), /^crowdsec: up, 12 bans$/m);
  assert.match(formatStatus({ ...base, crowdsec: { ...cs, up: false, last_error: { code: 'DOORMAN_ERR_CROWDSEC_UNREACHABLE', message: 'x' }, skipped: { exception: 2 } } }), /^crowdsec: DOWN \(DOORMAN_ERR_CROWDSEC_UNREACHABLE; last success 2026-06-20T10:00:00Z\), 12 bans, 2 skipped over exceptions$/m);
  assert.match(formatStatus({ ...base, crowdsec: { ...cs, role: 'follower', poller: 'mx2' } }), /^crowdsec: up, 12 bans, polled by mx2$/m);
  assert.doesNotMatch(formatStatus({ ...base, crowdsec: null }), /crowdsec/);
});

test('formatKick: what was kicked, the ban, and a dry run said to change nothing', () => {
  assert.equal(formatKick('192.0.2.7', { dry_run: true, hits: [], kicked: 0, ban: null }, '10m'), 'dry run: no live connection matches 192.0.2.7; would kick none and ban 192.0.2.7 for 10m\nnothing was changed\n');
  const done = formatKick('192.0.2.7', { dry_run: false, hits: [conn('1', '192.0.2.7')], kicked: 1, ban: BAN }, '10m');
  assert.match(done, /^kicked 1 connection:\nID .*\n1 .*192\.0\.2\.7:40000.*\nbanned 192\.0\.2\.7 for 10m00s \(until 2026-06-20T11:00:00Z\): flood\n$/);
  assert.equal(formatKick('7', { dry_run: false, hits: [], kicked: 0, ban: null }, undefined), 'no live connection matches 7; kicked none\n');
});

test('bans: a table soonest-ending first, or "no bans"; a ban result names the open connections', () => {
  assert.equal(banTable([]), 'no bans\n');
  assert.equal(
    banTable([{ ...BAN, target: '198.51.100.0/24', left_s: 86_400, reason: 'scanner', origin: 'auto', strike: 3 }, BAN]),
    [
      'TARGET             LEFT  UNTIL                 BY        REASON',
      '192.0.2.7        10m00s  2026-06-20T11:00:00Z  operator  flood',
      '198.51.100.0/24   1d00h  2026-06-20T11:00:00Z  auto #3   scanner',
      '',
    ].join('\n'),
  );
  const r = formatBanResult('192.0.2.7', '1h', { dry_run: true, hits: [conn('1', '192.0.2.7')], ban: null });
  assert.match(r, /^dry run: would ban 192\.0\.2\.7 for 1h\n1 live connection from there would stay open \(doorman kick 192\.0\.2\.7 closes them\):\nID /);
  assert.match(r, /nothing was changed\n$/);
});

test('countries: every service and phase, the rule, its mode and source', () => {
  assert.equal(describeRule(null), 'none');
  assert.equal(describeRule({ kind: 'allow', codes: [], mode: 'enforce', source: 'runtime' }), 'allow (no country)');
  assert.equal(
    countriesTable({ services: { smtp: { connect: null, auth: null }, imap: { connect: { kind: 'deny', codes: ['KP', 'RU'], mode: 'dry-run', source: 'runtime' }, auth: { kind: 'allow', codes: ['DE'], mode: 'enforce', source: 'config' } } } }),
    [
      'SERVICE  PHASE    RULE         MODE     SOURCE',
      'imap     connect  deny KP, RU  dry-run  runtime',
      'imap     auth     allow DE     enforce  config',
      'smtp     connect  none',
      'smtp     auth     none',
      '',
    ].join('\n'),
  );
  assert.equal(countriesTable({ services: {} }), 'no services configured\n');
});

test('formatLiveCheck: each phase, the rule, the reason, the retry and dry-run findings', () => {
  const r: ApiCheck = {
    address: '10.1.2.3',
    service: 'imap',
    country: null,
    connect: { action: 'refuse', rule: 'bans', reason: '10.1.2.3 is banned', retry_after_s: 600, dry_run: [], exempt: null, country: null },
    auth: { action: 'allow', rule: null, reason: 'no rule refuses', retry_after_s: 0, dry_run: [{ rule: { name: 'services.imap.limits.auth_rate' }, reason: 'over 30/60s' }], exempt: null, country: null },
  };
  assert.equal(
    formatLiveCheck(r),
    [
      '10.1.2.3 (imap): country none (private-use)',
      '  connect  refuse  bans: 10.1.2.3 is banned (retry after 10m00s)',
      '  auth     allow   no rule refuses',
      '           dry-run would refuse: services.imap.limits.auth_rate: over 30/60s',
      '',
    ].join('\n'),
  );
});

test('formatLiveCheck: a client counted under a Postfix 3.8+ range says so', () => {
  const allow = { action: 'allow', rule: null, reason: 'no rule refuses', retry_after_s: 0, dry_run: [], exempt: null, country: null } as const;
  const r: ApiCheck = { address: '2001:db8::7', service: 'smtp', counted_as: '2001:db8::/84', country: null, connect: allow, auth: allow };
  assert.match(formatLiveCheck(r), /^2001:db8::7 \(smtp\): country none \(documentation\)\n {2}counted as 2001:db8::\/84, the range smtpd \(Postfix 3\.8\+\) counts it in\n/);
  assert.doesNotMatch(formatLiveCheck({ ...r, counted_as: '2001:db8::7' }), /counted as/);
});
