/**
 * `doorman ban ADDR|CIDR --ttl 1h --reason TEXT`, `doorman unban ADDR|CIDR`
 * and `doorman bans`. A ban refuses new connections from the address or
 * network; connections already open stay open (`doorman kick --ban` closes
 * them too), and the output says how many there are.
 */
import type { Command } from 'commander';
import { json, runAdmin, withAdminOptions } from '../admin-command.js';
import { AdminError, EXIT } from '../admin-client.js';
import type { AdminOptions } from '../admin-target.js';
import type { ApiBan, ApiBanResult } from '../api-types.js';
import { parseAddressOrNetwork, parseBanDuration, parseReason } from '../args.js';
import { formatDuration, formatTime, plural, renderTable } from '../format.js';
import { connectionTable } from './connections.js';
import { describeBan } from './kick.js';

/** Bans as a table: target, time left, until, who made it (a repeat offender's strike after it), reason. */
export function banTable(items: readonly ApiBan[], width = Infinity): string {
  if (items.length === 0) return 'no bans\n';
  const by = (b: ApiBan) => (b.strike > 1 ? `${b.origin} #${b.strike}` : b.origin);
  const rows = [...items].sort((a, b) => a.left_s - b.left_s).map((b) => [b.target, formatDuration(b.left_s), formatTime(b.until), by(b), b.reason]);
  return renderTable([{ header: 'TARGET' }, { header: 'LEFT', align: 'right' }, { header: 'UNTIL' }, { header: 'BY' }, { header: 'REASON', shrink: true, min: 10 }], rows, width);
}

export function formatBanResult(target: string, ttl: string | number, r: ApiBanResult, width = Infinity): string {
  let out = r.ban ? `${describeBan(r.ban)}\n` : `dry run: would ban ${target} for ${typeof ttl === 'number' ? formatDuration(ttl) : ttl}\n`;
  if (r.hits.length > 0) {
    out += `${plural(r.hits.length, 'live connection')} from there ${r.dry_run ? 'would stay' : 'stay'} open (doorman kick ${target} closes them):\n`;
    out += connectionTable(r.hits, width);
  }
  if (r.dry_run) out += 'nothing was changed\n';
  return out;
}

interface BanOptions extends AdminOptions {
  ttl: string | number;
  reason: string;
  dryRun?: boolean;
  json?: boolean;
}

export function registerBans(program: Command): void {
  const ban = program
    .command('ban')
    .description('refuse new connections from an address or network for a time')
    .argument('<target>', 'an address or a CIDR network', parseAddressOrNetwork)
    .requiredOption('--ttl <duration>', 'how long (90s, 10m, 1h, 1d, up to 366d)', parseBanDuration)
    .requiredOption('--reason <text>', 'why, for the log and the audit log', parseReason)
    .option('--dry-run', 'show the live connections it would concern; change nothing')
    .option('--json', "the API's JSON instead of text");
  withAdminOptions(ban).action((target: string, opts: BanOptions) =>
    runAdmin(opts, async ({ client, print, width }) => {
      const r = await client.post<ApiBanResult>('/api/bans', { target, ttl: opts.ttl, reason: opts.reason, dry_run: opts.dryRun === true });
      print(opts.json ? json(r) : formatBanResult(target, opts.ttl, r, width));
    }),
  );

  const unban = program
    .command('unban')
    .description('lift the ban on an address or network')
    .argument('<target>', 'the address or network, as `doorman bans` shows it', parseAddressOrNetwork)
    .option('--json', "the API's JSON instead of text");
  withAdminOptions(unban).action((target: string, opts: AdminOptions & { json?: boolean }) =>
    runAdmin(opts, async ({ client, print }) => {
      const r = await client.delete<{ removed: boolean }>('/api/bans', { target });
      if (r.removed !== true) throw new AdminError('DOORMAN_ERR_NOT_FOUND', `no ban on ${target}`, EXIT.refused);
      print(opts.json ? json(r) : `unbanned ${target}\n`);
    }),
  );

  const list = program.command('bans').description('the bans in force, soonest to end first, with the time left').option('--json', "the API's JSON instead of a table");
  withAdminOptions(list).action((opts: AdminOptions & { json?: boolean }) =>
    runAdmin(opts, async ({ client, print, width }) => {
      const r = await client.get<{ items: ApiBan[] }>('/api/bans');
      print(opts.json ? json(r) : banTable(r.items, width));
    }),
  );
}
