/**
 * `doorman why ADDR`: refused by what, until when, and the one command that
 * lifts it. Asks the running daemon (`/api/why`: every node's answer in a
 * fleet) for the bans in force covering the address, in both layers, and
 * its recent refusals, newest first, each with the front-end, the rule, the
 * reason, the count against the limit and the retry-after.
 */
import type { Command } from 'commander';
import { json, runAdmin, withAdminOptions } from '../admin-command.js';
import type { AdminOptions } from '../admin-target.js';
import type { ApiWhy } from '../api-types.js';
import { parseAddress } from '../args.js';
import { formatDuration, formatTime, plural } from '../format.js';

/** Text from the daemon may carry what a login or a ban reason was given: no control characters reach the terminal. */
function clean(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

const WHO: Record<string, string> = { operator: 'an operator', auto: "Doorman's own rule", crowdsec: 'CrowdSec' };

/** The daemon's answer as a few lines per item: bans in force first, then refusals, newest first. */
export function formatWhy(w: ApiWhy): string {
  const out: string[] = [];
  const head = `${w.address}${w.country ? ` (${w.country})` : ''}`;
  out.push(`${head}: ${plural(w.bans.length, 'ban')} in force, ${plural(w.refusals.length, 'refusal')} recorded`);
  for (const b of w.bans) {
    const strike = b.strike > 1 ? `, strike ${b.strike}` : '';
    const nodes = b.nodes.length > 1 ? `, on ${b.nodes.map(clean).join(', ')}` : '';
    out.push(`banned: ${clean(b.target)} (${b.layer} layer, by ${WHO[b.origin] ?? clean(b.origin)}${strike}${nodes}) until ${formatTime(b.until)}, ${formatDuration(b.left_s)} left: ${clean(b.reason)}`);
    out.push(...liftLines(b.lift, true));
  }
  for (const r of w.refusals) {
    const times = r.times > 1 ? `, ${r.times} times since ${formatTime(r.first_at)}` : '';
    out.push(`${formatTime(r.at)} ${clean(r.service)}, refused by ${clean(r.by)}: ${clean(r.rule)} (on ${clean(r.node)}${times})`);
    out.push(`  ${clean(r.reason)}${counts(r, w.address)}`);
    out.push(`  ${standing(r)}`);
    out.push(...liftLines(r.lift, r.in_force));
  }
  if (w.bans.length === 0 && w.refusals.length === 0 && w.record !== undefined) {
    const rec = w.record;
    out.push(`(the record keeps the last ${rec.addresses} addresses refused, ${rec.per_address} refusals each, for ${formatDuration(rec.max_age_s)})`);
  }
  if (w.missing_nodes !== undefined && w.missing_nodes.length > 0) out.push(`not answered in time by: ${w.missing_nodes.map(clean).join(', ')}`);
  return `${out.join('\n')}\n`;
}

function counts(r: ApiWhy['refusals'][number], address: string): string {
  if (r.count === null || r.limit === null) return '';
  const as = r.key !== null && r.key !== address ? `, counted as ${clean(r.key)}` : '';
  return ` [${r.count} against a limit of ${r.limit}${as}]`;
}

function standing(r: ApiWhy['refusals'][number]): string {
  const temporary = r.retry_after_s > 0 ? `retry after ${formatDuration(r.retry_after_s)}` : 'not temporary';
  if (r.until === null) return r.in_force ? `${temporary}; in force until it is lifted` : `${temporary}; no longer in force`;
  return r.in_force ? `${temporary}, until ${formatTime(r.until)}` : `${temporary}; no longer in force (ended ${formatTime(r.until)} or lifted)`;
}

function liftLines(l: ApiWhy['refusals'][number]['lift'], inForce: boolean): string[] {
  if (!inForce) return [`  ${clean(l.how)}`];
  if (l.command === null) return [`  to lift it: ${clean(l.how)}`];
  return [`  to lift it: ${clean(l.command)}`, `    (${clean(l.how)})`];
}

export function registerWhy(program: Command): void {
  const cmd = program
    .command('why')
    .description('why an address is refused: its bans in force and recent refusals, until when, and the command that lifts each')
    .argument('<address>', 'client IP address', parseAddress)
    .option('--json', "the API's JSON instead of text");
  withAdminOptions(cmd).action((address: string, opts: AdminOptions & { json?: boolean }) =>
    runAdmin(opts, async ({ client, print }) => {
      const r = await client.get<ApiWhy>('/api/why', { address });
      print(opts.json ? json(r) : formatWhy(r));
    }),
  );
}
