import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { BanList } from '../core/bans.js';
import { formatIp, parseIp } from '../core/ip.js';
import { DecisionSet, mergeLayer, replaceLayer, syncTargets } from './decision-set.js';
import { formatGoDuration } from './go-duration.js';
import { banTarget, readDecision, readStreamAnswer, StreamShapeError } from './stream.js';
import { streamPath } from './lapi-client.js';

const T0 = Date.UTC(2026, 11, 7, 10, 0, 0);

/** Answers as Debian's crowdsec 1.4.6 wrote them (test/integration/crowdsec.test.ts drives the real one). */
const EMPTY = '{"deleted":null,"new":null}';
const ADDED =
  '{"deleted":null,"new":[{"duration":"59m59.152065434s","id":1,"origin":"cscli","scenario":"test","scope":"Ip","type":"ban","value":"127.0.0.2"},' +
  '{"duration":"3h59m59.152063421s","id":2,"origin":"cscli","scenario":"manual \'ban\' from \'3d12\'","scope":"Range","type":"ban","value":"127.0.5.0/24"}]}';
const DELETED = '{"deleted":[{"duration":"-10.530707ms","id":1,"origin":"cscli","scenario":"test","scope":"Ip","type":"ban","value":"127.0.0.2"}],"new":null}';

function at(b: BanList, address: string, now = T0) {
  const ip = parseIp(address);
  assert.ok(ip !== null, address);
  return b.find(ip, formatIp(ip), now);
}

test('stream: the answers crowdsec 1.4.6 writes, nulls for empty lists and negative durations for deletions', () => {
  assert.deepEqual(readStreamAnswer(JSON.parse(EMPTY)), { added: [], deleted: [], skipped: { malformed: 0, type: 0, scope: 0, over: 0 } });
  const a = readStreamAnswer(JSON.parse(ADDED));
  assert.deepEqual(
    a.added.map((d) => [d.id, d.target, d.ttlMs, d.origin]),
    [
      [1, '127.0.0.2', 3_599_152, 'cscli'],
      [2, '127.0.5.0/24', 14_399_152, 'cscli'],
    ],
  );
  assert.deepEqual(readStreamAnswer(JSON.parse(DELETED)).deleted, [1]);
  // Later versions add fields (uuid, until): ignored.
  const later = readStreamAnswer({ new: [{ id: 7, uuid: 'x', until: '2026-12-07T11:00:00Z', origin: 'CAPI', type: 'ban', scope: 'ip', value: '2001:db8::1', duration: '1h', scenario: 'http:scan' }] });
  assert.equal(later.added[0]?.target, '2001:db8::1');
});

test('stream: decisions that are not bans of an address or network are skipped and counted', () => {
  const base = { id: 1, origin: 'crowdsec', type: 'ban', scope: 'Ip', value: '192.0.2.7', duration: '4h', scenario: 's' };
  assert.equal(readDecision({ ...base, type: 'captcha' }), 'type');
  assert.equal(readDecision({ ...base, scope: 'Country', value: 'RU' }), 'scope');
  assert.equal(readDecision({ ...base, scope: 'Username' }), 'scope');
  assert.equal(readDecision({ ...base, duration: '-1s' }), 'over');
  assert.equal(readDecision({ ...base, duration: '0s' }), 'over');
  assert.equal(readDecision({ ...base, duration: '4 hours' }), 'malformed');
  assert.equal(readDecision({ ...base, value: '192.0.2.0/24' }), 'malformed', 'an Ip decision with a prefix');
  assert.equal(readDecision({ ...base, value: 'mail.example' }), 'malformed');
  assert.equal(readDecision({ ...base, scope: 'Range', value: '192.0.2.0/33' }), 'malformed');
  assert.equal(readDecision({ ...base, id: -1 }), 'malformed');
  assert.equal(readDecision({ ...base, id: '1' }), 'malformed');
  assert.equal(readDecision({ ...base, value: undefined }), 'malformed');
  assert.equal(readDecision(null), 'malformed');
  const a = readStreamAnswer({ new: [{ ...base, type: 'captcha' }, base, 'junk'], deleted: [{ id: 'x' }, { id: 4 }] });
  assert.deepEqual(a.skipped, { malformed: 2, type: 1, scope: 0, over: 0 });
  assert.deepEqual(a.deleted, [4]);
  assert.equal(a.added.length, 1);
});

test('stream: an answer that is not {new, deleted} lists is refused whole', () => {
  for (const bad of [null, [], 'x', 42, { new: {} }, { new: 'a' }, { deleted: 1 }, { new: [], deleted: {} }]) {
    assert.throws(() => readStreamAnswer(bad), StreamShapeError, JSON.stringify(bad));
  }
  // Neither list present: nothing new (a Local API with nothing to say).
  assert.equal(readStreamAnswer({}).added.length, 0);
});

test('stream: targets are canonical, networks masked, a full-length range an address', () => {
  assert.equal(banTarget('192.0.2.9/24', true), '192.0.2.0/24');
  assert.equal(banTarget('192.0.2.9/32', true), '192.0.2.9');
  assert.equal(banTarget('2001:DB8:0:0::1', false), '2001:db8::1');
  assert.equal(banTarget('2001:db8::ff/64', true), '2001:db8::/64');
  assert.equal(banTarget('192.0.2.9', true), '192.0.2.9');
  assert.equal(banTarget('192.0.2.9/x', true), null);
});

test('stream: the request asks for ip and range decisions, every one, with the filters configured', () => {
  const o = { url: 'http://127.0.0.1:8080', origins: [], scenariosContaining: [], scenariosNotContaining: [] };
  assert.equal(streamPath(o, true), '/v1/decisions/stream?startup=true&scopes=ip,range&dedup=false');
  assert.equal(streamPath({ ...o, url: 'https://lapi.example/crowdsec/', origins: ['crowdsec', 'cscli'], scenariosNotContaining: ['http'] }, false), '/crowdsec/v1/decisions/stream?scopes=ip,range&dedup=false&origins=crowdsec,cscli&scenarios_not_containing=http');
});

test('decision set: deleting one of two decisions on an address keeps the ban; deleting the last lifts it', () => {
  const bans = new BanList();
  const set = new DecisionSet();
  const d = (id: number, value: string, duration: string) => readDecision({ id, origin: 'crowdsec', type: 'ban', scope: value.includes('/') ? 'Range' : 'Ip', value, duration, scenario: `s${id}` });
  const one = d(1, '198.51.100.4', '1h');
  const two = d(2, '198.51.100.4', '4h');
  assert.ok(typeof one === 'object' && typeof two === 'object');
  let touched = set.apply([one, two], [], T0);
  syncTargets(bans, touched, (t) => set.banOf(t, T0), T0);
  assert.equal(at(bans, '198.51.100.4')?.until, T0 + 4 * 3_600_000);
  touched = set.apply([], [2], T0 + 1000);
  assert.deepEqual(syncTargets(bans, touched, (t) => set.banOf(t, T0 + 1000), T0 + 1000), { added: 1, removed: 0 });
  assert.equal(at(bans, '198.51.100.4', T0 + 1000)?.until, T0 + 3_600_000, 'shortened to the decision left');
  assert.equal(at(bans, '198.51.100.4', T0 + 1000)?.reason, 'crowdsec: s1 (crowdsec)');
  touched = set.apply([], [1, 99], T0 + 2000);
  assert.deepEqual(syncTargets(bans, touched, (t) => set.banOf(t, T0 + 2000), T0 + 2000), { added: 0, removed: 1 });
  assert.equal(at(bans, '198.51.100.4', T0 + 2000), null);
  assert.equal(set.size, 0);
});

test('decision set: an operator ban on the same address survives CrowdSec lifting its own', () => {
  const bans = new BanList();
  bans.add('198.51.100.4', 600_000, 'by hand', T0);
  const set = new DecisionSet();
  const one = readDecision({ id: 1, origin: 'cscli', type: 'ban', scope: 'Ip', value: '198.51.100.4', duration: '1h', scenario: 's' });
  assert.ok(typeof one === 'object');
  syncTargets(bans, set.apply([one], [], T0), (t) => set.banOf(t, T0), T0);
  syncTargets(bans, set.apply([], [1], T0), (t) => set.banOf(t, T0), T0);
  assert.equal(at(bans, '198.51.100.4')?.reason, 'by hand');
});

test('decision set: replacing and merging a layer tell listeners only what changed', () => {
  const bans = new BanList();
  const seen: string[] = [];
  bans.onChange((c) => seen.push(c.kind === 'clear' ? `clear ${c.layer}` : `${c.kind} ${c.ban.target}`));
  replaceLayer(bans, [{ t: '192.0.2.1', u: T0 + 60_000, r: 'a' }, { t: '192.0.2.0/28', u: T0 - 1, r: 'over' }], T0);
  assert.deepEqual(seen, ['clear crowdsec', 'add 192.0.2.1']);
  seen.length = 0;
  assert.deepEqual(mergeLayer(bans, [{ t: '192.0.2.1', u: T0 + 60_000, r: 'a' }, { t: '192.0.2.2', u: T0 + 60_000, r: 'b' }], T0), { added: 1, removed: 0 });
  assert.deepEqual(seen, ['add 192.0.2.2']);
  seen.length = 0;
  assert.deepEqual(mergeLayer(bans, [{ t: '192.0.2.2', u: T0 + 60_000, r: 'b' }], T0), { added: 0, removed: 1 });
  assert.deepEqual(seen, ['remove 192.0.2.1']);
});

/** A model of the Local API's answers: random decisions added and deleted, read back through the wire format. */
test('decision set: after any sequence of answers, the layer bans exactly the targets with a live decision (property)', () => {
  const target = fc.constantFrom('192.0.2.1', '192.0.2.2', '192.0.2.0/24', '2001:db8::1', '2001:db8::/48');
  const op = fc.oneof(
    fc.record({ add: fc.constant(true as const), id: fc.integer({ min: 1, max: 12 }), value: target, ms: fc.integer({ min: 1000, max: 86_400_000 }) }),
    fc.record({ add: fc.constant(false as const), id: fc.integer({ min: 1, max: 12 }) }),
  );
  fc.assert(
    fc.property(fc.array(fc.array(op, { maxLength: 6 }), { maxLength: 12 }), (answers) => {
      const bans = new BanList();
      const set = new DecisionSet();
      const model = new Map<number, { value: string; until: number }>();
      for (const ops of answers) {
        const wire = { new: [] as unknown[], deleted: [] as unknown[] };
        for (const o of ops) {
          if (o.add) {
            wire.new.push({ id: o.id, origin: 'crowdsec', type: 'ban', scope: o.value.includes('/') ? 'Range' : 'Ip', value: o.value, duration: formatGoDuration(o.ms), scenario: 'x' });
          } else wire.deleted.push({ id: o.id, duration: '-1ms' });
        }
        const a = readStreamAnswer(JSON.parse(JSON.stringify(wire)));
        for (const id of a.deleted) model.delete(id);
        for (const d of a.added) model.set(d.id, { value: d.target, until: T0 + d.ttlMs });
        syncTargets(bans, set.apply(a.added, a.deleted, T0), (t) => set.banOf(t, T0), T0);
      }
      const want = new Map<string, number>();
      for (const m of model.values()) want.set(m.value, Math.max(want.get(m.value) ?? 0, m.until));
      const got = new Map(bans.list(T0, 'crowdsec').map((b) => [b.target, b.until]));
      assert.deepEqual(got, want);
      return true;
    }),
    { numRuns: 500 },
  );
});
