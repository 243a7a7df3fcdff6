/**
 * What a configuration reload may change while Doorman runs, and what needs
 * a restart. Reloadable: the rules (every service's limits, mode, prefix,
 * country rules, bans for AUTH failures, logins per country, on_store_failure),
 * exceptions, overrides and the log level — they are swapped in at once,
 * with every connection and count kept. Everything that binds a socket,
 * opens a file or sizes the counter table (listeners, the store, the state
 * files, the proxies, a service's protocol) needs a restart: a reload that
 * changes one of them is refused whole, naming the keys, and the running
 * configuration stays.
 */
import { DoormanError } from '../errors.js';
import type { Config } from './load.js';

/** A reload that would change what needs a restart; nothing was changed. */
export class ReloadError extends DoormanError {
  readonly keys: readonly string[];
  constructor(file: string, keys: readonly string[]) {
    super('DOORMAN_ERR_RELOAD_NEEDS_RESTART', `${file}: not reloaded; these keys need a restart: ${keys.join(', ')} (the running configuration stays)`);
    this.keys = keys;
  }
}

/** Top-level sections a reload may not change. */
const RESTART_SECTIONS = ['run_as', 'engine', 'store', 'anvil', 'geo', 'postfix_policy', 'dovecot_policy', 'nginx_auth', 'state', 'admin', 'metrics'] as const;
/** Per-service keys a reload may not change. */
const RESTART_SERVICE_KEYS = ['protocol', 'proxy'] as const;

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** Keys whose change needs a restart, as dotted paths ("anvil", "services.imap.proxy"). */
export function restartOnlyChanges(running: Config, next: Config): string[] {
  const out: string[] = [];
  for (const section of RESTART_SECTIONS) if (!same(running[section], next[section])) out.push(section);
  // The SPOE agent binds sockets (issue 19).
  if (!same(running.haproxy_spoe, next.haproxy_spoe)) out.push('haproxy_spoe');
  // The nftables sets are checked and filled at start (issue 20).
  if (!same(running.firewall, next.firewall)) out.push('firewall');
  // The CrowdSec bouncer holds a poll loop and a file open (issue 20).
  if (!same(running.crowdsec, next.crowdsec)) out.push('crowdsec');
  if (running.log.format !== next.log.format) out.push('log.format');
  const names = new Set([...Object.keys(running.services), ...Object.keys(next.services)]);
  for (const name of [...names].sort()) {
    const a = running.services[name];
    const b = next.services[name];
    for (const key of RESTART_SERVICE_KEYS) {
      // A service added or removed without a proxy is a rule change; with one it binds or frees a port.
      if (!same(a?.[key] ?? null, b?.[key] ?? null)) out.push(`services.${name}.${key}`);
    }
  }
  return out;
}

/** Keys a reload changes, as dotted paths, for the log and the audit entry. */
export function reloadableChanges(running: Config, next: Config): string[] {
  const out: string[] = [];
  if (running.log.level !== next.log.level) out.push('log.level');
  const names = new Set([...Object.keys(running.services), ...Object.keys(next.services)]);
  for (const name of [...names].sort()) {
    const a = running.services[name];
    const b = next.services[name];
    if (a === undefined || b === undefined) {
      out.push(`services.${name}`);
      continue;
    }
    for (const key of Object.keys({ ...a, ...b }).sort()) {
      if ((RESTART_SERVICE_KEYS as readonly string[]).includes(key)) continue;
      if (!same((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) out.push(`services.${name}.${key}`);
    }
  }
  if (!same(running.exceptions, next.exceptions)) out.push('exceptions');
  if (!same(running.overrides, next.overrides)) out.push('overrides');
  return out;
}
