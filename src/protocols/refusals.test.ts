import assert from 'node:assert/strict';
import { test } from 'node:test';
import { goodbyeLine, refusalKindOf, refusalLine, refusalText } from './refusals.js';

test('SMTP: 421 4.7.0 with the host for temporary refusals, 521 5.7.1 for permanent ones', () => {
  const t = refusalText('smtp', 'too_many', null, 5);
  assert.equal(refusalLine('smtp', true, t, 'mx.example')?.toString(), '421 4.7.0 mx.example Too many connections from your address, try again later\r\n');
  assert.equal(refusalLine('submission', false, 'No', 'mx')?.toString(), '521 5.7.1 mx No\r\n');
});

test('IMAP and POP3: BYE [UNAVAILABLE] and -ERR [SYS/TEMP], naming the limit', () => {
  const t = refusalText('imap', 'too_many', null, 4);
  assert.equal(refusalLine('imap', true, t, 'h')?.toString(), '* BYE [UNAVAILABLE] Too many connections from your address (at most 4 at once), try again later\r\n');
  assert.equal(refusalLine('imap', false, 'x', 'h')?.toString(), '* BYE [CONTACTADMIN] x\r\n');
  assert.equal(refusalLine('pop3', true, 'x', 'h')?.toString(), '-ERR [SYS/TEMP] x\r\n');
  assert.equal(refusalLine('pop3', false, 'x', 'h')?.toString(), '-ERR [SYS/PERM] x\r\n');
});

test('implicit-TLS ports get a close, not a line', () => {
  for (const p of ['smtps', 'pop3s', 'imaps'] as const) {
    assert.equal(refusalLine(p, true, 'x', 'h'), null);
    assert.equal(goodbyeLine(p, 'h'), null);
  }
});

test('configured texts replace the built-in ones; {limit} is filled or its aside dropped', () => {
  const texts = { too_many: 'Max {limit} sessions', too_many_network: null, rate: null, banned: null, country: null, unavailable: null };
  assert.equal(refusalText('imap', 'too_many', texts, 3), 'Max 3 sessions');
  assert.equal(refusalText('imap', 'too_many', texts, null), 'Max the limit sessions');
  assert.equal(refusalText('imap', 'too_many', null, null), 'Too many connections from your address, try again later');
  assert.equal(refusalText('pop3', 'country', texts, null), 'Access from your country is not allowed');
});

test('a refusal\'s cause picks its text; causes with no text of their own are told to try later', () => {
  assert.equal(refusalKindOf('ban'), 'banned');
  assert.equal(refusalKindOf('connections_per_address'), 'too_many');
  assert.equal(refusalKindOf('connections_per_prefix'), 'too_many_network');
  assert.equal(refusalKindOf('connection_rate'), 'rate');
  assert.equal(refusalKindOf('country'), 'country');
  for (const c of ['store', 'countries_per_login', 'auth_rate', 'message_rate'] as const) assert.equal(refusalKindOf(c), 'unavailable', c);
});
