import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatDuration, formatEndpoint, formatTime, oneLine, outputWidth, plural, renderTable, truncate, type Column } from './format.js';

test('formatDuration: the two largest units, the second two digits wide', () => {
  const cases: Array<[number, string]> = [
    [0, '0s'],
    [0.9, '0s'],
    [-5, '0s'],
    [Number.NaN, '0s'],
    [45, '45s'],
    [59.99, '59s'],
    [60, '1m00s'],
    [725, '12m05s'],
    [3599, '59m59s'],
    [3600, '1h00m'],
    [11_220, '3h07m'],
    [86_399, '23h59m'],
    [86_400, '1d00h'],
    [187_200, '2d04h'],
    [366 * 86_400, '366d00h'],
  ];
  for (const [s, want] of cases) assert.equal(formatDuration(s), want, `${s} s`);
});

test('formatBytes: bytes below 1 KiB, then binary units with one decimal below 10', () => {
  const cases: Array<[number, string]> = [
    [0, '0 B'],
    [812, '812 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1229, '1.2 KiB'],
    [10_137, '9.9 KiB'],
    [10_189, '10 KiB'],
    [10_200, '10 KiB'],
    [1024 * 1023.96, '1.0 MiB'],
    [34 * 1024 * 1024, '34 MiB'],
    [5 * 1024 ** 4, '5.0 TiB'],
    [2 ** 70, '1048576 PiB'],
    [-1, '-'],
    [Number.POSITIVE_INFINITY, '-'],
  ];
  for (const [n, want] of cases) assert.equal(formatBytes(n), want, `${n} bytes`);
});

test('formatTime, formatEndpoint, plural, truncate, oneLine', () => {
  assert.equal(formatTime('2026-06-20T10:15:01.123Z'), '2026-06-20T10:15:01Z');
  assert.equal(formatTime('2026-06-20T12:15:01+02:00'), '2026-06-20T10:15:01Z');
  assert.equal(formatTime('soon'), 'soon');
  assert.equal(formatEndpoint('192.0.2.7', 5123), '192.0.2.7:5123');
  assert.equal(formatEndpoint('2001:db8::7', 5123), '[2001:db8::7]:5123');
  assert.equal(formatEndpoint('2001:db8::7', null), '[2001:db8::7]');
  assert.deepEqual([plural(0, 'ban'), plural(1, 'ban'), plural(2, 'ban')], ['0 bans', '1 ban', '2 bans']);
  assert.deepEqual([truncate('abcdef', 6), truncate('abcdef', 4), truncate('abcdef', 1), truncate('abcdef', 0)], ['abcdef', 'abc…', '…', '']);
  assert.equal(oneLine('  refused:\n  covers\tyour address  '), 'refused: covers your address');
  assert.equal(oneLine('x'.repeat(600)).length, 500);
});

test('outputWidth: the terminal when stdout is one, else $COLUMNS, else no limit', () => {
  assert.equal(outputWidth({ isTTY: true, columns: 100 }, { COLUMNS: '60' }), 100);
  assert.equal(outputWidth({ isTTY: false }, { COLUMNS: '60' }), 60);
  assert.equal(outputWidth({ isTTY: false }, { COLUMNS: 'wide' }), Infinity);
  assert.equal(outputWidth({}, {}), Infinity);
});

const COLS: Column[] = [{ header: 'ID' }, { header: 'CLIENT', shrink: true, min: 8 }, { header: 'BYTES', align: 'right' }, { header: 'REASON', shrink: true }];
const ROWS = [
  ['1', '192.0.2.7:5123', '812 B', 'flood'],
  ['2a', '[2001:db8:1234:5678::7]:40000', '1.2 KiB', 'too many AUTH failures from here'],
];

test('renderTable: columns as wide as their widest cell, numbers right-aligned, no trailing spaces', () => {
  assert.equal(
    renderTable(COLS, ROWS),
    [
      'ID  CLIENT                           BYTES  REASON',
      '1   192.0.2.7:5123                   812 B  flood',
      '2a  [2001:db8:1234:5678::7]:40000  1.2 KiB  too many AUTH failures from here',
      '',
    ].join('\n'),
  );
  assert.equal(renderTable(COLS, []), 'ID  CLIENT  BYTES  REASON\n');
});

test('renderTable: to fit, shrinkable columns give up width, widest first, cut with …', () => {
  assert.equal(
    renderTable(COLS, ROWS, 60),
    [
      'ID  CLIENT                    BYTES  REASON',
      '1   192.0.2.7:5123            812 B  flood',
      '2a  [2001:db8:1234:5678::…  1.2 KiB  too many AUTH failures…',
      '',
    ].join('\n'),
  );
  for (const width of [70, 60, 50, 40]) {
    const lines = renderTable(COLS, ROWS, width).trimEnd().split('\n');
    assert.ok(lines.every((l) => l.length <= width), `width ${width}:\n${lines.join('\n')}`);
  }
  // Floors reached (CLIENT's min 8, REASON's header): wider than asked rather than lose ids or numbers.
  assert.equal(
    renderTable(COLS, ROWS, 10),
    ['ID  CLIENT      BYTES  REASON', '1   192.0.2…    812 B  flood', '2a  [2001:d…  1.2 KiB  too m…', ''].join('\n'),
  );
});
