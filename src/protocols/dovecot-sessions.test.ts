import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DovecotSessions, MAX_SESSIONS, SESSION_TTL_MS } from './dovecot-sessions.js';

test('the first allow of a session is the before-auth check, a later one the after-auth check; the report ends it', () => {
  const s = new DovecotSessions();
  assert.equal(s.check('s1', 0), 'before-auth');
  assert.equal(s.check('s1', 1000), 'after-auth');
  assert.equal(s.check('s1', 2000), 'after-auth', 'still remembered: not moved on by the after-auth check');
  assert.equal(s.check('s2', 2000), 'before-auth');
  s.end('s1');
  assert.equal(s.check('s1', 3000), 'before-auth', 'a new login with the same id');
  assert.equal(s.size, 2);
});

test('without a session id every allow is a before-auth check, and nothing is remembered', () => {
  const s = new DovecotSessions();
  for (const id of [undefined, '', undefined, '']) assert.equal(s.check(id, 0), 'before-auth');
  s.end(undefined);
  s.end('');
  assert.equal(s.size, 0);
});

test('a session is remembered for SESSION_TTL_MS: an allow after that starts it again', () => {
  const s = new DovecotSessions();
  s.check('s', 0);
  assert.equal(s.check('s', SESSION_TTL_MS - 1), 'after-auth');
  assert.equal(s.check('s', SESSION_TTL_MS), 'before-auth');
  assert.equal(s.check('s', SESSION_TTL_MS + 1), 'after-auth');
  assert.equal(s.size, 1);
});

test('at MAX_SESSIONS the oldest session is forgotten first', () => {
  const s = new DovecotSessions();
  for (let i = 0; i < MAX_SESSIONS; i++) s.check(`s${i}`, 0);
  assert.equal(s.size, MAX_SESSIONS);
  s.check('new', 1);
  assert.equal(s.size, MAX_SESSIONS);
  assert.equal(s.check('s1', 2), 'after-auth');
  assert.equal(s.check('new', 2), 'after-auth');
  assert.equal(s.check('s0', 2), 'before-auth', 's0 was forgotten to make room');
});
