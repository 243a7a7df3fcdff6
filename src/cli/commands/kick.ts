/**
 * `doorman kick ID|ADDR|CIDR`: closes live connections (one by id, or all
 * from an address or network), optionally banning the address or network
 * first so the client cannot come straight back. `--dry-run` lists what
 * would be closed and changes nothing.
 */
import { Option, type Command } from 'commander';
import { json, runAdmin, withAdminOptions } from '../admin-command.js';
import { AdminError, EXIT } from '../admin-client.js';
import type { AdminOptions } from '../admin-target.js';
import type { ApiBan, ApiKick } from '../api-types.js';
import { parseBanDuration, parseReason } from '../args.js';
import { formatDuration, formatTime, plural } from '../format.js';
import { connectionTable } from './connections.js';

interface Options extends AdminOptions {
  ttl?: string | number;
  /** The old spelling of ttl. */
  ban?: string | number;
  reason?: string;
  service?: string;
  dryRun?: boolean;
  json?: boolean;
}

/** One line for a ban just made: `banned 192.0.2.7 for 10m00s (until …): reason`. */
export function describeBan(b: ApiBan): string {
  return `banned ${b.target} for ${formatDuration(b.left_s)} (until ${formatTime(b.until)}): ${b.reason}`;
}

/** What a kick did, or would do, as text. */
export function formatKick(target: string, r: ApiKick, banAsked: string | number | undefined, width = Infinity): string {
  const lines: string[] = [];
  const banText = banAsked === undefined ? '' : ` and ban ${target} for ${typeof banAsked === 'number' ? formatDuration(banAsked) : banAsked}`;
  if (r.dry_run) {
    lines.push(r.hits.length === 0 ? `dry run: no live connection matches ${target}; would kick none${banText}` : `dry run: would kick ${plural(r.hits.length, 'connection')}${banText}:`);
  } else {
    lines.push(r.kicked === 0 ? `no live connection matches ${target}; kicked none` : `kicked ${plural(r.kicked, 'connection')}:`);
  }
  let out = `${lines.join('\n')}\n`;
  if (r.hits.length > 0) out += connectionTable(r.hits, width);
  if (r.ban) out += `${describeBan(r.ban)}\n`;
  if (r.dry_run) out += 'nothing was changed\n';
  return out;
}

export function registerKick(program: Command): void {
  const cmd = program
    .command('kick')
    .description('close live connections: one by id, or every one from an address or network')
    .argument('<target>', 'a connection id (from `doorman connections`), an address or a CIDR network')
    // --ttl, as in `doorman ban`: one spelling for a ban's length. --ban is the old spelling, kept hidden for scripts.
    .option('--ttl <duration>', 'ban the address or network first, for this long (90s, 10m, 1h, 1d, up to 366d)', parseBanDuration)
    .addOption(new Option('--ban <duration>', 'the old spelling of --ttl').argParser(parseBanDuration).hideHelp().conflicts('ttl'))
    .option('--reason <text>', 'why, for the log, the audit log and the ban (required with --ttl, as by ban)', parseReason)
    .option('-s, --service <name>', 'only connections to this service')
    .option('--dry-run', 'show what would be kicked; change nothing')
    .option('--json', "the API's JSON instead of text");
  withAdminOptions(cmd).action((target: string, opts: Options) =>
    runAdmin(opts, async ({ client, print, width }) => {
      const ttl = opts.ttl ?? opts.ban;
      // Checked here too, so a missing reason costs no round trip: every ban says why.
      if (ttl !== undefined && opts.reason === undefined) throw new AdminError('DOORMAN_ERR_REASON', 'kick --ttl bans, and a ban needs --reason (as doorman ban does)', EXIT.usage);
      const r = await client.post<ApiKick>('/api/kick', { target, ban: ttl, reason: opts.reason, service: opts.service, dry_run: opts.dryRun === true });
      print(opts.json ? json(r) : formatKick(target, r, ttl, width));
    }),
  );
}
