/**
 * `doorman check ADDR --service S`: what connect and AUTH would get for a
 * client right now, asked of the running daemon (`/api/check`: its live
 * counts, bans and run-time country rules). With `--offline`, the old
 * judgement from the configuration alone, with empty counts and no bans.
 *
 * There is no silent fallback from one to the other: the two can disagree
 * (a ban, a run-time rule, a client at its limit), and an answer that quietly
 * left those out would mislead. Without a daemon the command fails and says
 * to use --offline.
 */
import type { Command } from 'commander';
import { fail, json, runAdmin, withAdminOptions } from '../admin-command.js';
import { AdminError, EXIT } from '../admin-client.js';
import type { AdminOptions } from '../admin-target.js';
import type { ApiCheck, ApiDecision } from '../api-types.js';
import { parseAddress } from '../args.js';
import { formatDuration } from '../format.js';
import { specialPurpose } from '../../geo/special.js';

interface Options extends AdminOptions {
  service: string;
  offline?: boolean;
  json?: boolean;
}

/** The daemon's answer as text, in the layout of the offline check. */
export function formatLiveCheck(r: ApiCheck): string {
  const special = r.country === null ? specialPurpose(r.address) : null;
  const lines = [`${r.address} (${r.service}): country ${r.country ?? `none${special ? ` (${special})` : ''}`}`];
  if (r.counted_as !== undefined && r.counted_as !== r.address) lines.push(`  counted as ${r.counted_as}, the range smtpd (Postfix 3.8+) counts it in`);
  for (const [name, d] of [['connect', r.connect], ['auth', r.auth]] as const) {
    lines.push(`  ${name.padEnd(8)} ${d.action.padEnd(7)} ${describeDecision(d)}`);
    for (const x of d.dry_run ?? []) lines.push(`  ${''.padEnd(8)} dry-run would refuse: ${ruleName(x.rule)}: ${x.reason}`);
  }
  return `${lines.join('\n')}\n`;
}

function describeDecision(d: ApiDecision): string {
  const rule = ruleName(d.rule);
  const retry = d.action === 'refuse' && d.retry_after_s !== undefined && d.retry_after_s > 0 ? ` (retry after ${formatDuration(d.retry_after_s)})` : '';
  return `${rule ? `${rule}: ` : ''}${d.reason}${retry}`;
}

/** The contract leaves a rule's shape open: a name, or an object naming it. */
function ruleName(rule: unknown): string {
  if (rule === null || rule === undefined) return '';
  if (typeof rule === 'string') return rule;
  const o = rule as { rule?: unknown; name?: unknown; key?: unknown };
  for (const v of [o.rule, o.name, o.key]) if (typeof v === 'string') return v;
  return JSON.stringify(rule);
}

export function registerCheck(program: Command): void {
  const cmd = program
    .command('check')
    .description("what connect and AUTH would get for an address now, from the running daemon's counts, bans and rules")
    .argument('<address>', 'client IP address', parseAddress)
    .requiredOption('-s, --service <name>', 'service whose rules apply (e.g. smtp, imap)')
    .option('--offline', 'judge from the configuration alone (empty counts, no bans, no run-time rules); needs no daemon')
    .option('--json', 'one JSON object instead of text');
  withAdminOptions(cmd).action(async (address: string, opts: Options) => {
    if (opts.offline) return checkOffline(address, opts);
    await runAdmin(opts, async ({ client, print }) => {
      let r: ApiCheck;
      try {
        r = await client.get<ApiCheck>('/api/check', { address, service: opts.service });
      } catch (err) {
        if (err instanceof AdminError && err.exitCode === EXIT.unreachable) {
          throw new AdminError(err.code, `${err.message}; --offline judges from the configuration alone`, err.exitCode, null, { cause: err });
        }
        throw err;
      }
      print(opts.json ? json(r) : formatLiveCheck(r));
    });
  });
  cmd.addHelpText('after', `\nWith --offline only --config matters (--url, --token and --timeout are not used).`);
}

/** The configuration-only check; its engine, geo database and logger load only here. */
async function checkOffline(address: string, opts: Options): Promise<void> {
  try {
    const { clientConfigPath, loadConfig } = await import('../../config/load.js');
    const { formatCheck, runCheck } = await import('../check.js');
    const config = loadConfig(clientConfigPath(opts.config));
    if (config.services[opts.service] === undefined) {
      const known = Object.keys(config.services);
      throw new AdminError('DOORMAN_ERR_SERVICE', `no service "${opts.service}" in ${config.source} (${known.length > 0 ? `it has ${known.join(', ')}` : 'it has none'})`, EXIT.usage);
    }
    const r = await runCheck(config, address, opts.service);
    process.stdout.write(opts.json ? json(r) : formatCheck(r));
  } catch (err) {
    fail(err);
  }
}
