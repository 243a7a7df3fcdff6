import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../errors.js';
import { Rules, type ServiceInput } from './rules.js';

const LIMITS = { connections_per_address: 3, connections_per_prefix: null, connection_rate: null, message_rate: null, recipient_rate: null, auth_rate: null, auth_failure_rate: null };

function service(over: Partial<ServiceInput> = {}): ServiceInput {
  return { mode: 'enforce', limits: LIMITS, prefix: { ipv4: 24, ipv6: 64 }, countries: {}, auth_failure_ban: 3_600_000, max_countries_per_login: null, repeat_offenders: null, good_login: null, login_failures: null, recipient_probing: null, early_leavers: null, proxy: null, ...over };
}

const base = Rules.compile(
  {
    services: { imap: service({ countries: { connect: { deny: ['KP'] }, auth: { allow: ['DE'] } } }), pop3: service({ mode: 'dry-run' }) },
    exceptions: ['10.0.0.0/8'],
    overrides: [],
  },
  'doorman.yaml',
);

test('run-time country rules replace only the phases they name; null lifts one; the rest is the same compiled rules', () => {
  const r = base.withCountries({ imap: { connect: { deny: ['RU', 'KP'] }, auth: null } }, 'state');
  const imap = r.service('imap');
  assert.deepEqual([imap.countries.connect?.kind, [...(imap.countries.connect?.codes ?? [])].sort()], ['deny', ['KP', 'RU']]);
  assert.equal(imap.countries.connect?.key, 'services.imap.countries.connect', 'decisions name the rule as the configuration does');
  assert.equal(imap.countries.auth, null);
  assert.equal(imap.limits, base.service('imap').limits, 'limits are not compiled again');
  assert.equal(r.exceptions, base.exceptions);
  assert.equal(r.service('pop3'), base.service('pop3'), 'a service the overlay does not name is the same object');
  assert.deepEqual([...(base.service('imap').countries.connect?.codes ?? [])], ['KP'], 'the configured rules are untouched');
});

test('a run-time rule takes the service mode unless it sets its own; a service no longer configured is skipped', () => {
  const r = base.withCountries({ pop3: { connect: { allow: ['DE'] } }, gone: { connect: { deny: ['KP'] } } }, 'state');
  assert.equal(r.service('pop3').countries.connect?.dryRun, true, 'pop3 runs in dry-run');
  assert.equal(r.services.has('gone'), false);
  assert.equal(base.withCountries({ pop3: { connect: { allow: ['DE'], mode: 'enforce' } } }, 'state').service('pop3').countries.connect?.dryRun, false);
});

test('a run-time rule with both lists, or neither, is a ConfigError naming where it came from', () => {
  assert.throws(
    () => base.withCountries({ imap: { connect: { allow: ['DE'], deny: ['KP'] } } }, 'state.json'),
    (e: unknown) => e instanceof ConfigError && e.issues[0]?.file === 'state.json' && e.issues[0]?.key === 'services.imap.countries.connect' && /not both/.test(e.issues[0]?.expected ?? ''),
  );
  assert.throws(() => base.withCountries({ imap: { auth: {} } }, 'state.json'), ConfigError);
});
