/**
 * Parsers for the CLI's arguments, checked before anything is sent: a typo
 * is a usage error (exit 2) naming the argument, not a round trip to the
 * daemon. Each throws commander's InvalidArgumentError, which commander turns
 * into `error: option '--limit <n>' argument 'x' is invalid. …`.
 */
import { isIP } from 'node:net';
import { InvalidArgumentError } from 'commander';
import { parseDuration } from '../config/duration.js';
import { parseNetwork } from '../core/networks.js';
import { badCountryMessage, normaliseCountry } from '../core/country-codes.js';

/** The API pages connections at most this many at a time (docs/admin-api.md). */
export const MAX_LIMIT = 1000;
/** Bans last 1 s to 366 days (Control.ban); checked here so a typo costs no round trip. */
const MIN_BAN_S = 1;
const MAX_BAN_S = 366 * 86_400;
/** A request deadline below this would fail on a loaded but healthy daemon; above, a stuck one hangs the shell. */
const MIN_TIMEOUT_MS = 100;
const MAX_TIMEOUT_MS = 600_000;
/** A reason is one audit-log line; longer text is a paste gone wrong. */
const MAX_REASON = 500;

/** An integer from 1 to MAX_LIMIT. */
export function parseLimit(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > MAX_LIMIT) throw new InvalidArgumentError(`expected a whole number from 1 to ${MAX_LIMIT}.`);
  return Number(v);
}

/** A two-letter country code, in capitals. */
/** A country code as the configuration takes it (../core/country-codes.ts): any case in, capitals out. */
export function parseCountry(v: string): string {
  const code = normaliseCountry(v);
  if (code === null) throw new InvalidArgumentError(`${badCountryMessage(v)}.`);
  return code;
}

export type Phase = 'connect' | 'auth';

export function parsePhase(v: string): Phase {
  if (v !== 'connect' && v !== 'auth') throw new InvalidArgumentError('expected connect or auth.');
  return v;
}

/** An IP address. */
export function parseAddress(v: string): string {
  if (isIP(v) === 0) throw new InvalidArgumentError(`${JSON.stringify(v.slice(0, 64))} is not an IP address (such as 192.0.2.7 or 2001:db8::7).`);
  return v;
}

/** An IP address or a CIDR network, as the API takes them (unchanged). */
export function parseAddressOrNetwork(v: string): string {
  try {
    parseNetwork(v);
  } catch {
    throw new InvalidArgumentError('expected an IP address or a CIDR network such as 192.0.2.0/24.');
  }
  return v;
}

/**
 * A ban's length as the API takes it: a duration with a unit (`90s`, `10m`,
 * `1h`, `1d`) is passed on as written, a bare number is seconds.
 */
export function parseBanDuration(v: string): string | number {
  const value = /^\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : v.trim();
  const ms = parseDuration(value);
  if (ms === null || ms < MIN_BAN_S * 1000 || ms > MAX_BAN_S * 1000) {
    throw new InvalidArgumentError('expected a duration from 1s to 366d, such as 90s, 10m, 1h, 1d, or a number of seconds.');
  }
  return value;
}

/** A request deadline in milliseconds. */
export function parseTimeout(v: string): number {
  const ms = parseDuration(/^\d+(\.\d+)?$/.test(v.trim()) ? Number(v) : v);
  if (ms === null || ms < MIN_TIMEOUT_MS || ms > MAX_TIMEOUT_MS) throw new InvalidArgumentError('expected a duration from 100ms to 10m, such as 500ms or 30s.');
  return ms;
}

/** An http(s) URL of the admin API. */
export function parseUrl(v: string): string {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new InvalidArgumentError('expected a URL such as http://127.0.0.1:8025.');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidArgumentError('expected an http:// or https:// URL.');
  return v;
}

/** A non-empty, one-line text (a reason), capped so it fits an audit line. */
export function parseReason(v: string): string {
  const t = v.trim();
  if (t === '' || /[\r\n]/.test(t) || t.length > MAX_REASON) throw new InvalidArgumentError(`expected one line of text, at most ${MAX_REASON} characters.`);
  return t;
}
