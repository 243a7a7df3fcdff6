/**
 * Peak statistics, as anvil(8) keeps them: the highest connection count and
 * the highest rate of each event seen since the last report, with the key and
 * the time it was seen, and the table's peak size. A report resets them.
 */
import type { RateMetric } from './metrics.js';

export interface Peak {
  value: number;
  key: string;
  at: number;
}

export type PeakName = 'count' | RateMetric | 'entries';

const REPORT_ORDER: ReadonlyArray<[PeakName, string]> = [
  ['conn', 'max connection rate'],
  ['count', 'max connection count'],
  ['mail', 'max message rate'],
  ['rcpt', 'max recipient rate'],
  ['newtls', 'max newtls rate'],
  ['auth', 'max auth rate'],
  ['tlstr', 'max tlstrace rate'],
  ['authfail', 'max auth failure rate'],
];

export class PeakStats {
  private readonly peaks = new Map<PeakName, Peak>();

  /** Records `value` for `name` if it beats the peak so far. */
  update(name: PeakName, value: number, key: string, at: number): void {
    const p = this.peaks.get(name);
    if (p === undefined) {
      if (value > 0) this.peaks.set(name, { value, key, at });
    } else if (value > p.value) {
      p.value = value;
      p.key = key;
      p.at = at;
    }
  }

  get(name: PeakName): Peak | undefined {
    const p = this.peaks.get(name);
    return p && { ...p };
  }

  /** All current peaks, for the admin API. */
  snapshot(): Partial<Record<PeakName, Peak>> {
    return Object.fromEntries([...this.peaks].map(([k, p]) => [k, { ...p }]));
  }

  /**
   * The report lines in anvil's wording, then reset, e.g.
   *   statistics: max connection rate 12/60s for (smtp:203.0.113.9) at Nov 22 10:15:01
   *   statistics: max cache size 1234 at Nov 22 10:15:01
   */
  report(unitMs: number): string[] {
    const lines: string[] = [];
    const unit = `${Math.round(unitMs / 1000)}s`;
    for (const [name, label] of REPORT_ORDER) {
      const p = this.peaks.get(name);
      if (p === undefined) continue;
      const value = name === 'count' ? `${p.value}` : `${p.value}/${unit}`;
      lines.push(`statistics: ${label} ${value} for (${p.key}) at ${ctimeShort(p.at)}`);
    }
    const size = this.peaks.get('entries');
    if (size !== undefined) lines.push(`statistics: max cache size ${size.value} at ${ctimeShort(size.at)}`);
    this.peaks.clear();
    return lines;
  }
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Local time as ctime(3) prints it from the 5th character for 15: "Nov  2 10:15:01". */
export function ctimeShort(ms: number): string {
  const d = new Date(ms);
  const p2 = (n: number) => String(n).padStart(2, '0');
  return `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())}`;
}
