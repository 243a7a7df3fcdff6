/**
 * `doorman status`: the daemon at a glance — version and uptime, each
 * service with its live connections and where it listens, the total, bans,
 * engine entries, and live connections per country.
 */
import type { Command } from 'commander';
import { json, runAdmin, withAdminOptions } from '../admin-command.js';
import type { AdminOptions } from '../admin-target.js';
import type { ApiStatus } from '../api-types.js';
import { formatDuration, formatTime, renderTable } from '../format.js';

/** The status as text. */
export function formatStatus(s: ApiStatus, width = Infinity): string {
  const head = [`doorman${s.version ? ` ${s.version}` : ''}`];
  if (s.uptime_s !== undefined) head.push(`up ${formatDuration(s.uptime_s)}`);
  if (s.started_at !== undefined) head.push(`(since ${formatTime(s.started_at)})`);
  const rows = Object.entries(s.services)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, v]) => [name, v.protocol ?? '', String(v.connections), v.listen && v.listen.length > 0 ? v.listen.join(' ') : '-']);
  rows.push(['total', '', String(s.connections), '']);
  const table = renderTable(
    [{ header: 'SERVICE', shrink: true }, { header: 'PROTOCOL' }, { header: 'CONNECTIONS', align: 'right' }, { header: 'LISTEN', shrink: true }],
    rows,
    width,
  );
  const tail: string[] = [];
  if (s.bans !== undefined) tail.push(`bans: ${s.bans}`);
  if (s.engine !== undefined) tail.push(`engine entries: ${s.engine.entries}`);
  if (s.store !== undefined && s.store.type !== 'memory') {
    tail.push(`store: ${s.store.type} as node ${s.store.node}${s.store.up === false ? ` (DOWN: counting in ${s.store.backend ?? 'memory'}, ${s.store.failovers ?? 0} failovers)` : ''}`);
  }
  const cs = s.crowdsec;
  if (cs !== undefined && cs !== null) {
    const who = cs.role === 'follower' ? `, polled by ${cs.poller ?? 'another node'}` : cs.role === 'fleet-unreachable' ? ', nobody polls (fleet store unreachable)' : '';
    const health = cs.up === null ? 'not polled yet' : cs.up ? 'up' : `DOWN (${cs.last_error?.code ?? 'failed'}; last success ${cs.last_success === null ? 'never' : formatTime(cs.last_success)})`;
    const skipped = cs.skipped?.['exception'] ? `, ${cs.skipped['exception']} skipped over exceptions` : '';
    tail.push(`crowdsec: ${health}, ${cs.bans} bans${who}${skipped}`);
  }
  const countries = Object.entries(s.countries ?? {})
    .filter(([, n]) => n > 0)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b))
    .map(([cc, n]) => `${cc === '' || cc === 'null' || cc === '--' ? 'none' : cc} ${n}`);
  if (countries.length > 0) tail.push(`by country: ${countries.join(', ')}`);
  return `${head.join(' ')}\n${table}${tail.length > 0 ? `${tail.join('   ')}\n` : ''}`;
}

export function registerStatus(program: Command): void {
  const cmd = program.command('status').description('services and their live connections, totals, bans and engine entries').option('--json', "the API's JSON instead of text");
  withAdminOptions(cmd).action((opts: AdminOptions & { json?: boolean }) =>
    runAdmin(opts, async ({ client, print, width }) => {
      const s = await client.get<ApiStatus>('/api/status');
      print(opts.json ? json(s) : formatStatus(s, width));
    }),
  );
}
