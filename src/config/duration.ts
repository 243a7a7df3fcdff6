import { z } from 'zod';

/** Durations in the configuration: a number of seconds, or "500ms", "60s", "10m", "1h", "1d". */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export const DURATION_EXPECTED = 'a duration such as 500ms, 60s, 10m, 1h or a number of seconds';

/** Milliseconds, or null when `v` is not a duration. */
export function parseDuration(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : null;
  if (typeof v !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/.exec(v);
  if (!m) return null;
  return Math.round(Number(m[1]) * (UNIT_MS[m[2] as string] as number));
}

/** A duration key with its default, turned into milliseconds; below `minMs` is refused. */
export function durationSchema(def: string, minMs = 1) {
  const floor = minMs % 1000 === 0 ? `${minMs / 1000}s` : `${minMs} ms`;
  const expected = minMs > 1 ? `${DURATION_EXPECTED}, at least ${floor}` : DURATION_EXPECTED;
  return z
    .unknown()
    .optional()
    .transform((v, ctx) => {
      const ms = parseDuration(v ?? def);
      if (ms === null || ms < minMs) {
        ctx.addIssue({ code: 'custom', message: expected });
        return z.NEVER;
      }
      return ms;
    });
}

/** A duration key that is off (null) unless set; below `minMs` is refused. */
export function optionalDurationSchema(minMs = 1) {
  const floor = minMs % 1000 === 0 ? `${minMs / 1000}s` : `${minMs} ms`;
  const expected = `${DURATION_EXPECTED}, at least ${floor}, or null for off`;
  return z
    .unknown()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v === null) return null;
      const ms = parseDuration(v);
      if (ms === null || ms < minMs) {
        ctx.addIssue({ code: 'custom', message: expected });
        return z.NEVER;
      }
      return ms;
    });
}
