/**
 * The nft helper's whitelist: the writer's own scripts pass, whatever the
 * bans; anything else is refused, naming the line. The properties check it
 * against an oracle written another way (tokens, where the checker works on
 * prefixes), over scripts that mix the writer's lines with hostile ones and
 * token soup.
 */
import assert from 'node:assert/strict';
import { isIPv4, isIPv6 } from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { BanList, type BanOrigin } from '../core/bans.js';
import { checkScript, validElement } from './nft-script.js';
import { SetPlan } from './set-plan.js';

const NAMES = { table: 'inet filter', v4: 'doorman_v4', v6: 'doorman_v6' };
const T0 = 1_700_000_000_000;

test('the lines the writer prints pass, and a write is run as a script', () => {
  const script = [
    'flush set inet filter doorman_v4',
    'flush set inet filter doorman_v6',
    'add element inet filter doorman_v4 { 192.0.2.1 timeout 59s500ms, 198.51.100.0/24 timeout 1d2h3m4s5ms, 198.51.100.0-198.51.100.8 timeout 1s }',
    'add element inet filter doorman_v6 { 2001:db8::/32 timeout 59m59s500ms, ::1.2.3.4 timeout 1ms, 2001:db8::1-2001:db8::ff timeout 60d }',
    'delete element inet filter doorman_v4 { 192.0.2.1, 0.0.0.0/0 }',
    'delete element inet filter doorman_v6 { 2001:db8::5 }',
  ].join('\n');
  assert.deepEqual(checkScript(`${script}\n`, NAMES), { ok: true, kind: 'write', lines: 6 });
});

test("the start-up listing is run as nft's own arguments, alone", () => {
  assert.deepEqual(checkScript('list set inet filter doorman_v6\n', NAMES), { ok: true, kind: 'list', args: ['-j', '-t', 'list', 'set', 'inet', 'filter', 'doorman_v6'] });
  const mixed = checkScript('flush set inet filter doorman_v4\nlist set inet filter doorman_v4\n', NAMES);
  assert.deepEqual(mixed, { ok: false, error: `line 2 "list set inet filter doorman_v4": a listing must be the script's only line` });
});

test('refused, naming the line and why: other commands, tables, sets, a second command, options, wrong families', () => {
  const cases: Array<[string, RegExp]> = [
    ['flush ruleset', /^line 1 "flush ruleset": not flush set, add element/],
    ['delete table inet filter', /not flush set/],
    ['add rule inet filter input ip saddr 0.0.0.0/0 drop', /not flush set/],
    ['include "/etc/nftables.conf"', /not flush set/],
    ['define x = 1.2.3.4', /not flush set/],
    ['list ruleset', /not flush set/],
    ['  flush set inet filter doorman_v4', /not flush set/],
    ['flush set ip filter doorman_v4', /not the table inet filter/],
    ['flush set inet filterx doorman_v4', /not the table inet filter/],
    ['flush set inet filter doorman_v4x', /not one of the sets doorman_v4, doorman_v6/],
    ['flush set inet filter input', /not one of the sets/],
    ['flush set inet filter doorman_v4; flush ruleset', /not one of the sets/],
    ['flush set inet filter doorman_v4 ; flush ruleset', /more after the set name/],
    ['flush set inet filter doorman_v4 # a comment', /more after the set name/],
    ['list set inet filter doorman_v4 extra', /more after the set name/],
    ['add element inet filter doorman_v4 { 1.2.3.4 timeout 1h }; flush ruleset', /no \{ element, … \}/],
    ['add element inet filter doorman_v4 1.2.3.4', /no \{ element, … \}/],
    ['add element inet filter doorman_v4 {  }', /no \{ element, … \}/],
    ['add element inet filter doorman_v4 {   }', /element 1 has no timeout/],
    ['add element inet filter doorman_v4 { }', /no \{ element, … \}/],
    ['add element inet filter doorman_v4 { 1.2.3.4 }', /element 1 has no timeout/],
    ['add element inet filter doorman_v4 { 1.2.3.4 timeout 1h, }', /element 1: the timeout is not a time/],
    ['add element inet filter doorman_v4 { 1.2.3.4 timeout 1h,  }', /element 2 has no timeout/],
    ['add element inet filter doorman_v4 { 1.2.3.4 timeout 0s }', /element 1: the timeout is not a time/],
    ['add element inet filter doorman_v4 { 1.2.3.4 timeout 1h expires 1m }', /element 1: the timeout is not a time/],
    ['add element inet filter doorman_v4 { 1.2.3.4 timeout 1h comment "x" }', /element 1: the timeout is not a time/],
    ['add element inet filter doorman_v4 { 1.2.3.4 timeout $t }', /element 1: the timeout is not a time/],
    ['add element inet filter doorman_v4 { 2001:db8::1 timeout 1h }', /element 1 is not an IPv4 address/],
    ['add element inet filter doorman_v6 { 1.2.3.4 timeout 1h }', /element 1 is not an IPv6 address/],
    ['add element inet filter doorman_v6 { ::ffff:1.2.3.4%eth0 timeout 1h }', /element 1 is not an IPv6 address/],
    ['add element inet filter doorman_v6 { 2001:DB8::1 timeout 1h }', /element 1 is not an IPv6 address/],
    ['add element inet filter doorman_v4 { 1.2.3.4/33 timeout 1h }', /element 1 is not an IPv4/],
    ['add element inet filter doorman_v4 { 01.2.3.4 timeout 1h }', /element 1 is not an IPv4/],
    ['add element inet filter doorman_v4 { $bad timeout 1h }', /element 1 is not an IPv4/],
    ['add element inet filter doorman_v4 { @other timeout 1h }', /element 1 is not an IPv4/],
    ['delete element inet filter doorman_v4 { 1.2.3.4 timeout 1h }', /element 1 is not an IPv4/],
    ['delete element inet filter doorman_v4 { 1.2.3.4,1.2.3.5 }', /element 1 is not an IPv4/],
    ['add element inet filter doorman_v4 { 1.2.3.4 timeout 1h }\r', /no \{ element, … \}/],
    ['', /not flush set/],
  ];
  for (const [line, why] of cases) {
    const r = checkScript(`${line}\n`, NAMES);
    assert.equal(r.ok, false, line);
    assert.match((r as { error: string }).error, why, line);
  }
  assert.deepEqual(checkScript('', NAMES), { ok: false, error: 'an empty script' });
  assert.deepEqual(checkScript('flush set inet filter doorman_v4', NAMES), { ok: false, error: 'the script does not end with a newline' });
  assert.match((checkScript('flush set inet filter doorman_v4\n\n', NAMES) as { error: string }).error, /^line 2 "": /);
});

test('a set that is off is not written, and not listed', () => {
  const names = { ...NAMES, v6: null };
  assert.match((checkScript('flush set inet filter doorman_v6\n', names) as { error: string }).error, /not one of the sets doorman_v4$/);
  assert.equal(checkScript('flush set inet filter doorman_v4\n', names).ok, true);
});

test('elements: the forms nft-elements prints, and nothing near them', () => {
  for (const e of ['0.0.0.0', '255.255.255.255', '10.0.0.0/8', '0.0.0.0/0', '1.2.3.4-1.2.3.9']) assert.ok(validElement(e, 4), e);
  for (const e of ['::', '::1', '2001:db8::/32', '::/0', 'fe80::1-fe80::ff', '::ffff:1.2.3.4', '2001:db8:0:0:1:0:0:1']) assert.ok(validElement(e, 6), e);
  for (const e of ['256.0.0.0', '1.2.3', '1.2.3.4/', '1.2.3.4/08', '1.2.3.4-', '-1.2.3.4', '1.2.3.4/32/1', ' 1.2.3.4', '1.2.3.4 ']) assert.ok(!validElement(e, 4), e);
  for (const e of [':::', '2001:db8::/129', '2001:db8::/', 'fe80::1%lo', '2001:Db8::1', 'g::1']) assert.ok(!validElement(e, 6), e);
});

// --- properties ------------------------------------------------------------

const octet = fc.integer({ min: 0, max: 255 });
const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const v6 = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }).map((g) => {
  // Compressed as formatIp does it for one case in four, written whole otherwise: both forms are IPv6 text.
  const whole = g.map((x) => x.toString(16)).join(':');
  return g[0] === 0 && g[1] === 0 ? `::${g.slice(2).map((x) => x.toString(16)).join(':')}` : whole;
});
const element = (family: 4 | 6) => {
  const addr = family === 4 ? v4 : v6;
  return fc.oneof(addr, fc.tuple(addr, fc.integer({ min: 0, max: family === 4 ? 32 : 128 })).map(([a, l]) => `${a}/${l}`), fc.tuple(addr, addr).map(([a, b]) => `${a}-${b}`));
};
const time = fc
  .tuple(fc.integer({ min: 0, max: 99 }), fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 999 }))
  .filter((t) => t.some((n) => n > 0))
  .map(([d, h, m, s, ms]) => [d && `${d}d`, h && `${h}h`, m && `${m}m`, s && `${s}s`, ms && `${ms}ms`].filter((x) => x !== 0).join(''));
const setOf = fc.constantFrom<[string, 4 | 6]>(['doorman_v4', 4], ['doorman_v6', 6]);

/** A line the writer could print. */
const validLine = setOf.chain(([set, family]) =>
  fc.oneof(
    fc.constant(`flush set inet filter ${set}`),
    fc.array(fc.tuple(element(family), time), { minLength: 1, maxLength: 5 }).map((es) => `add element inet filter ${set} { ${es.map(([e, t]) => `${e} timeout ${t}`).join(', ')} }`),
    fc.array(element(family), { minLength: 1, maxLength: 5 }).map((es) => `delete element inet filter ${set} { ${es.join(', ')} }`),
  ),
);

/** Lines the helper must never pass on: other commands, places, options, a second command after the first. */
const hostileLine = fc.oneof(
  fc.constantFrom(
    'flush ruleset',
    'delete table inet filter',
    'add rule inet filter input accept',
    'add chain inet filter x',
    'list ruleset',
    'include "/etc/passwd"',
    'define bad = 1.2.3.4',
    'flush set inet filter input',
    'flush set ip filter doorman_v4',
    'add element inet filter doorman_v4 { 1.2.3.4 }',
    'delete element inet filter doorman_v6 { 2001:db8::1 timeout 1h }',
    'add element inet filter doorman_v4 { 2001:db8::1 timeout 1h }',
  ),
  fc.tuple(validLine, fc.constantFrom('; flush ruleset', ';flush ruleset', ' # x', ' comment "x"', ' ', '\r', ' }')).map(([l, tail]) => `${l}${tail}`),
  fc.tuple(fc.constantFrom('add element', 'delete element', 'flush set'), fc.constantFrom('inet nat', 'ip filter', 'inet  filter', 'inet filter doorman_v4x', 'inet filter other'), validLine).map(([verb, where, l]) => `${verb} ${where}${l.slice(l.indexOf(' {') >= 0 ? l.indexOf(' {') : l.length)}`),
);

/** A valid line with a character that is never valid anywhere in one put in at some place. */
const mutatedLine = fc.tuple(validLine, fc.nat(), fc.constantFrom(';', '#', '$', '@', '"', "'", '\\', '\t', '\r', '(', ')', '[', ']', '|', '*', 'X', 'Z', '%', '\u00a0', '\u2028')).map(([l, at, c]) => {
  const i = at % (l.length + 1);
  return `${l.slice(0, i)}${c}${l.slice(i)}`;
});

const TOKENS = ['add', 'delete', 'flush', 'list', 'element', 'set', 'ruleset', 'table', 'inet', 'ip', 'filter', 'doorman_v4', 'doorman_v6', 'input', '{', '}', ',', ';', '1.2.3.4', '1.2.3.4,', '10.0.0.0/8', '::1', '2001:db8::/32,', 'timeout', '1h', '1h,', '30s', '0s', '#', '"x"', '$x', '@s'];
/** Tokens at random, joined by single spaces: sometimes a valid line, mostly not. */
const soupLine = fc.array(fc.constantFrom(...TOKENS), { minLength: 1, maxLength: 12 }).map((t) => t.join(' '));

/** The oracle: the same rules, written on tokens. */
function oracleLine(line: string): 'write' | 'list' | null {
  const t = line.split(' ');
  const fam = t[4] === 'doorman_v4' ? 4 : t[4] === 'doorman_v6' ? 6 : null;
  if (t[2] !== 'inet' || t[3] !== 'filter' || fam === null) return null;
  if (t.length === 5 && t[0] === 'flush' && t[1] === 'set') return 'write';
  if (t.length === 5 && t[0] === 'list' && t[1] === 'set') return 'list';
  if (t[1] !== 'element' || (t[0] !== 'add' && t[0] !== 'delete') || t[5] !== '{' || t[t.length - 1] !== '}') return null;
  const inner = t.slice(6, -1);
  const per = t[0] === 'add' ? 3 : 1;
  if (inner.length === 0 || inner.length % per !== 0) return null;
  for (let g = 0; g < inner.length; g += per) {
    const last = g + per === inner.length;
    const group = inner.slice(g, g + per);
    let end = group[per - 1] as string;
    if (!last) {
      if (!end.endsWith(',')) return null;
      end = end.slice(0, -1);
    }
    group[per - 1] = end;
    if (!oracleElement(group[0] as string, fam)) return null;
    if (per === 3 && (group[1] !== 'timeout' || !oracleTime(group[2] as string))) return null;
  }
  return 'write';
}
function oracleAddress(a: string, fam: 4 | 6): boolean {
  if (fam === 4) return isIPv4(a) && a.split('.').every((o) => o === String(Number(o)));
  return isIPv6(a) && /^[0-9a-f:.]+$/.test(a);
}
function oracleElement(e: string, fam: 4 | 6): boolean {
  const [a, len, ...more] = e.split('/');
  if (more.length > 0) return false;
  if (len !== undefined) return /^(0|[1-9][0-9]*)$/.test(len) && Number(len) <= (fam === 4 ? 32 : 128) && oracleAddress(a as string, fam);
  const range = (a as string).split('-');
  return range.length <= 2 && range.every((x) => oracleAddress(x, fam));
}
function oracleTime(s: string): boolean {
  let rest = s;
  let any = false;
  for (const [unit, max] of [['d', 6], ['h', 2], ['m', 2], ['s', 2], ['ms', 3]] as const) {
    const m = new RegExp(`^([1-9][0-9]{0,${max - 1}})${unit}(?![a-z])`).exec(rest);
    if (m === null) continue;
    any = true;
    rest = rest.slice(m[0].length);
  }
  return any && rest === '';
}
function oracle(script: string): boolean {
  if (!script.endsWith('\n')) return false;
  const kinds = script.slice(0, -1).split('\n').map(oracleLine);
  if (kinds.some((k) => k === null)) return false;
  return !kinds.includes('list') || kinds.length === 1;
}

test('a script of lines the writer could print is accepted (property)', () => {
  fc.assert(
    fc.property(fc.array(validLine, { minLength: 1, maxLength: 8 }), (lines) => {
      const r = checkScript(`${lines.join('\n')}\n`, NAMES);
      assert.deepEqual(r, { ok: true, kind: 'write', lines: lines.length });
    }),
    { numRuns: 1000 },
  );
});

test('one hostile or mutated line anywhere and the script is refused, naming the first such line (property)', () => {
  fc.assert(
    fc.property(fc.array(validLine, { maxLength: 6 }), fc.oneof(hostileLine, mutatedLine), fc.nat(), fc.array(fc.oneof(validLine, hostileLine), { maxLength: 3 }), (before, bad, at, after) => {
      const head = before.slice(0, at % (before.length + 1));
      const r = checkScript(`${[...head, bad, ...after].join('\n')}\n`, NAMES);
      assert.equal(r.ok, false, bad);
      // The bad line itself may hold a newline (\u2028 does not count): then it fails on its first part or the next.
      if (!bad.includes('\n')) assert.match((r as { error: string }).error, new RegExp(`^line ${head.length + 1} `));
    }),
    { numRuns: 2000 },
  );
});

test('random scripts are refused unless every line is an allowed command: the checker agrees with the oracle (property)', () => {
  const line = fc.oneof({ weight: 2, arbitrary: validLine }, { weight: 2, arbitrary: hostileLine }, { weight: 1, arbitrary: mutatedLine }, { weight: 4, arbitrary: soupLine }, { weight: 2, arbitrary: fc.string({ maxLength: 60, unit: 'binary' }) });
  const script = fc.tuple(fc.array(line, { minLength: 1, maxLength: 5 }), fc.boolean()).map(([ls, nl]) => `${ls.join('\n')}${nl ? '\n' : ''}`);
  let accepted = 0;
  let refused = 0;
  fc.assert(
    fc.property(script, (s) => {
      const r = checkScript(s, NAMES);
      assert.equal(r.ok, oracle(s), JSON.stringify(s));
      if (r.ok) accepted++;
      else refused++;
    }),
    { numRuns: 5000 },
  );
  assert.ok(accepted > 25 && refused > 1000, `both outcomes were tried (${accepted} accepted, ${refused} refused)`);
});

test("every script the set writer makes passes, whatever the bans (property on the writer's real output)", () => {
  const target = fc.oneof(
    v4,
    fc.tuple(v4, fc.integer({ min: 8, max: 32 })).map(([a, l]) => `${a}/${l}`),
    v6,
    fc.tuple(v6, fc.integer({ min: 16, max: 128 })).map(([a, l]) => `${a}/${l}`),
    v4.map((a) => `::ffff:${a}`),
  );
  const op = fc.oneof(
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('add' as const), target, ttl: fc.integer({ min: 1, max: 90 * 86_400_000 }), origin: fc.constantFrom<BanOrigin>('operator', 'auto', 'crowdsec') }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('remove' as const), index: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const), layer: fc.constantFrom('local' as const, 'crowdsec' as const) }) },
    { weight: 3, arbitrary: fc.record({ kind: fc.constant('batch' as const), advance: fc.integer({ min: 0, max: 120_000 }), ok: fc.integer({ min: 0, max: 9 }).map((n) => n > 0) }) },
  );
  let scripts = 0;
  let adds = 0;
  let deletes = 0;
  fc.assert(
    fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
      const bans = new BanList();
      const plan = new SetPlan(NAMES, () => [], 30_000);
      bans.onChange((c) => plan.change(c));
      let now = T0;
      const added: string[] = [];
      const batch = (ok: boolean): void => {
        const b = plan.next(now, () => bans.list(now));
        if (b === null) return;
        for (const s of [b.pre, b.script]) {
          if (s === '') continue;
          assert.deepEqual(checkScript(s, NAMES).ok, true, `${s}\n${JSON.stringify(checkScript(s, NAMES))}`);
          scripts++;
          if (s.includes('add element')) adds++;
          if (s.includes('delete element')) deletes++;
        }
        plan.settle(ok);
      };
      for (const o of ops) {
        if (o.kind === 'add') {
          try {
            bans.add(o.target, o.ttl, 'property', now, { origin: o.origin });
            added.push(o.target);
          } catch {
            // A target the ban list refuses (loopback, say) is not a change.
          }
        } else if (o.kind === 'remove') {
          const t = added[o.index % Math.max(1, added.length)];
          if (t !== undefined) for (const layer of ['local', 'crowdsec'] as const) bans.remove(t, layer);
        } else if (o.kind === 'clear') bans.clear(o.layer);
        else {
          now += o.advance;
          batch(o.ok);
        }
      }
      batch(true);
    }),
    { numRuns: 500 },
  );
  assert.ok(scripts > 500 && adds > 250 && deletes > 30, `the writer's scripts were tried (${scripts}: ${adds} with adds, ${deletes} with deletes)`);
});
