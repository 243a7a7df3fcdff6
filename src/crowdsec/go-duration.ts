/**
 * Go's duration text, as CrowdSec's Local API writes a decision's time left
 * (`Until.Sub(now).String()` in pkg/apiserver/controllers/v1/decisions.go):
 * "3h59m58.123456789s", "59m59.1s", "-10.530707ms" for a decision just
 * deleted or expired, "1.5µs", "0s".
 *
 * The grammar is Go's time.ParseDuration: an optional sign, then one or more
 * numbers (digits, an optional fraction) each followed by a unit — ns, us,
 * µs (U+00B5) or μs (U+03BC), ms, s, m, h — or the bare "0". Anything else
 * is refused (null), never guessed. The result is whole milliseconds,
 * rounded toward zero, which is as fine as Doorman's bans are kept.
 */

const UNIT_NS: ReadonlyMap<string, bigint> = new Map([
  ['ns', 1n],
  ['us', 1000n],
  ['\u00b5s', 1000n],
  ['\u03bcs', 1000n],
  ['ms', 1_000_000n],
  ['s', 1_000_000_000n],
  ['m', 60_000_000_000n],
  ['h', 3_600_000_000_000n],
]);

/** Longer text than any duration Go writes (about 25 characters at most): refused unread. */
export const GO_DURATION_MAX_CHARS = 64;

/** Go's largest duration, about 292 years: a longer one overflows in Go and is refused here too. */
const MAX_NS = 9_223_372_036_854_775_807n;

/** The common form: hours (at most 7 digits: Go's largest duration has 2562047), minutes and seconds below 60. */
const COMMON = /^(-)?(?:(\d{1,7})h)?(?:([0-5]?\d)m)?([0-5]?\d)(?:\.(\d{1,9}))?s$/;

const TERM = /(\d*)(?:\.(\d*))?([a-z\u00b5\u03bc]+)/y;

/**
 * Milliseconds (negative for a time already past), or null when `text` is
 * no Go duration. Counted in whole nanoseconds (BigInt), as Go counts them:
 * a float would round "2501h59m59.263999999s" up a millisecond.
 */
export function parseGoDuration(text: string): number | null {
  if (text.length === 0 || text.length > GO_DURATION_MAX_CHARS) return null;
  // What Duration.String() writes for a second or more ("3h59m58.123456789s"), read in whole
  // milliseconds with plain numbers (exact: at most 7 digits of hours); the rest the general way.
  const f = COMMON.exec(text);
  // Near Go's largest duration the exact nanoseconds decide: the general way.
  if (f !== null && Number(f[2] ?? '0') < 2_562_047) {
    const [, sign, h = '0', m = '0', sec = '0', frac = ''] = f;
    const ms = Number(h) * 3_600_000 + Number(m) * 60_000 + Number(sec) * 1000 + Number(frac.slice(0, 3).padEnd(3, '0'));
    return sign === '-' && ms !== 0 ? -ms : ms;
  }
  let i = 0;
  let negative = false;
  if (text[0] === '-' || text[0] === '+') {
    negative = text[0] === '-';
    i = 1;
  }
  if (text.slice(i) === '0') return 0;
  if (i === text.length) return null;
  let ns = 0n;
  while (i < text.length) {
    TERM.lastIndex = i;
    const m = TERM.exec(text);
    if (m === null) return null;
    const [whole, int = '', frac = '', unit = ''] = m;
    // Go requires a digit on one side of the point at least: ".5s" and "5.s" pass, ".s" does not.
    if (int === '' && frac === '') return null;
    const scale = UNIT_NS.get(unit);
    if (scale === undefined) return null;
    ns += BigInt(int || '0') * scale;
    // The fraction's nanoseconds, rounded down as Go's integer arithmetic leaves them.
    if (frac !== '') ns += (BigInt(frac) * scale) / 10n ** BigInt(frac.length);
    if (ns > MAX_NS) return null;
    i += whole.length;
  }
  const ms = Number(ns / 1_000_000n);
  return negative && ms !== 0 ? -ms : ms;
}

/** Go's Duration.String() for whole milliseconds: the inverse of parseGoDuration, for tests and fixtures. */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const neg = ms < 0;
  let left = Math.abs(ms);
  let out: string;
  if (left < 1000) out = `${left}ms`;
  else {
    const h = Math.floor(left / 3_600_000);
    left -= h * 3_600_000;
    const m = Math.floor(left / 60_000);
    left -= m * 60_000;
    const s = Math.floor(left / 1000);
    const frac = left - s * 1000;
    const sec = frac === 0 ? `${s}s` : `${s}.${String(frac).padStart(3, '0').replace(/0+$/, '')}s`;
    out = h > 0 ? `${h}h${m}m${sec}` : m > 0 ? `${m}m${sec}` : sec;
  }
  return neg ? `-${out}` : out;
}
