/**
 * Text formatting for the CLI: durations, byte counts, times, and tables sized
 * to fit a terminal. Pure functions: no I/O, so the commands' output can be
 * tested without a daemon.
 */

/**
 * Seconds as the two largest units, the second always two digits so a column
 * of them lines up: `45s`, `12m05s`, `3h07m`, `2d04h`. Fractions are dropped;
 * anything not a positive number is `0s`.
 */
export function formatDuration(seconds: number): string {
  const s = Number.isFinite(seconds) && seconds > 0 ? Math.floor(seconds) : 0;
  const two = (n: number) => String(n).padStart(2, '0');
  if (s >= 86_400) return `${Math.floor(s / 86_400)}d${two(Math.floor((s % 86_400) / 3600))}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  return `${s}s`;
}

const BYTE_UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const;

/** A byte count in binary units, one decimal below 10: `812 B`, `1.2 KiB`, `34 MiB`. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return '-';
  if (n < 1024) return `${Math.floor(n)} B`;
  let v = n;
  let unit = '';
  for (const u of BYTE_UNITS) {
    v /= 1024;
    unit = u;
    // Rounding 1023.96 KiB up to "1024 KiB" would hide that it is 1 MiB.
    if (Math.round(v) < 1024 || u === BYTE_UNITS[BYTE_UNITS.length - 1]) break;
  }
  return v < 9.95 ? `${v.toFixed(1)} ${unit}` : `${Math.round(v)} ${unit}`;
}

/** An ISO 8601 time from the API, to the second (`2026-06-20T10:15:01Z`); anything else as given. */
export function formatTime(iso: string): string {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? iso : new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** `n` and the noun, plural when n is not 1: `1 connection`, `3 connections`. */
export function plural(n: number, noun: string, nouns = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : nouns}`;
}

/** An address and port as a client would write them: `192.0.2.7:5123`, `[2001:db8::7]:5123`. */
export function formatEndpoint(address: string, port: number | null | undefined): string {
  const host = address.includes(':') ? `[${address}]` : address;
  return port === null || port === undefined ? host : `${host}:${port}`;
}

export interface Column {
  readonly header: string;
  /** Numbers read best right-aligned. */
  readonly align?: 'left' | 'right';
  /**
   * May be cut (ending in `…`) when the table is wider than the screen, down
   * to `min` characters (default: its header's width, and at least 4).
   * Columns that must stay whole (ids, counts) leave this unset.
   */
  readonly shrink?: boolean;
  readonly min?: number;
}

/** Two spaces between columns: enough to tell them apart, little enough to fit eight in 80 columns. */
const GAP = '  ';

/**
 * A plain-text table: a header line, then one line per row, columns as wide
 * as their widest cell. When that is wider than `maxWidth`, the shrinkable
 * columns give up width, widest first; if they cannot give enough the table
 * stays wider than asked rather than lose ids or numbers. Lines carry no
 * trailing spaces and each ends in a newline.
 */
export function renderTable(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>, maxWidth = Infinity): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const floors = columns.map((c, i) => (c.shrink ? Math.min(widths[i] as number, Math.max(c.min ?? c.header.length, 4)) : (widths[i] as number)));
  const total = () => widths.reduce((a, b) => a + b, 0) + GAP.length * (columns.length - 1);
  let over = total() - maxWidth;
  while (over > 0) {
    let widest = -1;
    for (let i = 0; i < widths.length; i++) {
      if ((widths[i] as number) > (floors[i] as number) && (widest < 0 || (widths[i] as number) > (widths[widest] as number))) widest = i;
    }
    if (widest < 0) break;
    widths[widest] = (widths[widest] as number) - 1;
    over--;
  }
  const line = (cells: readonly string[]) =>
    columns
      .map((c, i) => {
        const w = widths[i] as number;
        const cell = truncate(cells[i] ?? '', w);
        return c.align === 'right' ? cell.padStart(w) : cell.padEnd(w);
      })
      .join(GAP)
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...rows.map(line)].join('\n') + '\n';
}

/** `s` cut to `width` characters, the last one `…` when anything was cut. */
export function truncate(s: string, width: number): string {
  if (s.length <= width) return s;
  return width <= 1 ? '…'.slice(0, width) : `${s.slice(0, width - 1)}…`;
}

/**
 * How wide a table may be: the terminal's width when stdout is one, else
 * `$COLUMNS` when set, else no limit (a pipe or file gets every character).
 */
export function outputWidth(stream: { isTTY?: boolean; columns?: number } = process.stdout, env: NodeJS.ProcessEnv = process.env): number {
  if (stream.isTTY && stream.columns !== undefined && stream.columns > 0) return stream.columns;
  const c = Number(env['COLUMNS']);
  return Number.isInteger(c) && c > 0 ? c : Infinity;
}

/** Makes any text one line for an error message: whitespace runs become one space, and it is capped. */
export function oneLine(s: string, max = 500): string {
  return truncate(s.replace(/\s+/g, ' ').trim(), max);
}
