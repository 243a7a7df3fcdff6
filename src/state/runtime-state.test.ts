import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError } from '../errors.js';
import { AuditLog } from './audit-log.js';
import { StateStore } from './runtime-state.js';

function dir(t: { after(f: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'doorman-state-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const ban = (target: string) => ({ target, until: 2_000_000_000_000, reason: 'test', created_at: 1 });

test('a missing file is an empty state; updates are written before they are current, and read back', async (t) => {
  const path = join(dir(t), 'state.json');
  const s = await StateStore.open(path);
  assert.deepEqual(s.current, { version: 1, bans: [], countries: {} });
  await s.update((st) => ({ ...st, bans: [...st.bans, ban('192.0.2.1')] }));
  await s.update((st) => ({ ...st, countries: { imap: { connect: { deny: ['KP'] } } } }));
  const again = await StateStore.open(path);
  assert.deepEqual(again.current.bans.map((b) => b.target), ['192.0.2.1']);
  assert.deepEqual(again.current.countries.imap?.connect, { deny: ['KP'] });
  assert.ok(Object.isFrozen(again.current.bans));
  assert.deepEqual(readdirSync(join(path, '..')), ['state.json'], 'no temporary file left behind');
});

test('concurrent updates are applied in order, none lost', async (t) => {
  const path = join(dir(t), 'state.json');
  const s = await StateStore.open(path);
  await Promise.all(Array.from({ length: 20 }, (_, i) => s.update((st) => ({ ...st, bans: [...st.bans, ban(`192.0.2.${i}`)] }))));
  assert.equal((await StateStore.open(path)).current.bans.length, 20);
});

test('a change that fails to validate or to be written changes nothing', async (t) => {
  const d = dir(t);
  const path = join(d, 'state.json');
  const s = await StateStore.open(path);
  await s.update((st) => ({ ...st, bans: [ban('192.0.2.1')] }));
  const before = readFileSync(path, 'utf8');
  await assert.rejects(s.update((st) => ({ ...st, bans: [{ ...ban('x'), until: -1 }] })));
  assert.equal(s.current.bans.length, 1);
  rmSync(d, { recursive: true, force: true });
  await assert.rejects(s.update((st) => ({ ...st, bans: [] })), /ENOENT/);
  assert.equal(s.current.bans.length, 1, 'a failed write leaves the state in force');
  assert.match(before, /192\.0\.2\.1/);
});

test('a damaged state file stops the start, naming the file and the key', async (t) => {
  const path = join(dir(t), 'state.json');
  writeFileSync(path, '{"version":1,"bans":[{"target":"x"}],"countries":{}}');
  await assert.rejects(StateStore.open(path), (e: unknown) => e instanceof ConfigError && e.issues[0]?.file === path && e.issues[0]?.key.startsWith('bans.0'));
  writeFileSync(path, '{"version":1,"bans":[');
  await assert.rejects(StateStore.open(path), /a JSON state file written by Doorman/);
});

test('the audit log appends one JSON line per change, in order', async (t) => {
  const path = join(dir(t), 'audit.log');
  const a = await AuditLog.open(path);
  await Promise.all([
    a.append({ action: 'ban.add', target: '192.0.2.1', by: '127.0.0.1', reason: 'flood' }, 0),
    a.append({ action: 'kick', target: 'c1', by: 'cli', reason: null, details: { kicked: 1 } }, 1000),
  ]);
  await a.close();
  const lines = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines, [
    { at: '1970-01-01T00:00:00.000Z', action: 'ban.add', target: '192.0.2.1', by: '127.0.0.1', reason: 'flood' },
    { at: '1970-01-01T00:00:01.000Z', action: 'kick', target: 'c1', by: 'cli', reason: null, details: { kicked: 1 } },
  ]);
});
