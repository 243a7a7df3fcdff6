/**
 * `doorman block CC --service S`, `doorman unblock CC --service S` and
 * `doorman countries`. Blocking adds the country to the phase's deny list,
 * or takes it off its allow list, whichever rule is in force; unblocking is
 * the reverse. Changes made here are "runtime" rules: they replace the
 * configuration's rule for that phase and survive a restart (the state file).
 */
import type { Command } from 'commander';
import { json, runAdmin, withAdminOptions } from '../admin-command.js';
import type { AdminOptions } from '../admin-target.js';
import type { ApiCountries, ApiCountryChange, ApiRule } from '../api-types.js';
import { parseCountry, parsePhase, type Phase } from '../args.js';
import { plural, renderTable } from '../format.js';
import { connectionTable } from './connections.js';

/** `deny KP, RU` */
export function describeRule(r: ApiRule | null): string {
  return r === null ? 'none' : `${r.kind} ${r.codes.length > 0 ? r.codes.join(', ') : '(no country)'}`;
}

/** The rules in force as a table: service, phase, rule, mode, source. */
export function countriesTable(c: ApiCountries, width = Infinity): string {
  const names = Object.keys(c.services).sort();
  if (names.length === 0) return 'no services configured\n';
  const rows: string[][] = [];
  for (const name of names) {
    for (const phase of ['connect', 'auth'] as const) {
      const r = c.services[name]?.[phase] ?? null;
      rows.push([name, phase, describeRule(r), r?.mode ?? '', r?.source ?? '']);
    }
  }
  return renderTable([{ header: 'SERVICE', shrink: true }, { header: 'PHASE' }, { header: 'RULE', shrink: true, min: 12 }, { header: 'MODE' }, { header: 'SOURCE' }], rows, width);
}

interface ChangeOptions extends AdminOptions {
  service: string;
  phase: Phase;
  dryRun?: boolean;
  json?: boolean;
}

export function registerCountries(program: Command): void {
  for (const verb of ['block', 'unblock'] as const) {
    const cmd = program
      .command(verb)
      .description(verb === 'block' ? "refuse a country for a service's phase, whatever rule is in force" : 'let a country in again (the reverse of block)')
      .argument('<country>', 'a two-letter country code', parseCountry)
      .requiredOption('-s, --service <name>', 'the service (e.g. imap, smtp)')
      .option('--phase <phase>', 'connect or auth', parsePhase, 'connect')
      .option('--dry-run', `show the live connections it would ${verb === 'block' ? 'refuse on their next connect' : 'concern'}; change nothing`)
      .option('--json', "the API's JSON instead of text");
    withAdminOptions(cmd).action((country: string, opts: ChangeOptions) =>
      runAdmin(opts, async ({ client, print, width }) => {
        const path = `/api/countries/${encodeURIComponent(opts.service)}/${opts.phase}/${verb}`;
        const r = await client.post<ApiCountryChange>(path, { country, dry_run: opts.dryRun === true });
        if (opts.json) return print(json(r));
        const what = `${country} for ${opts.service} at ${opts.phase}`;
        let out = r.dry_run ? `dry run: would ${verb} ${what}\n` : `${verb}ed ${what}\n`;
        if (r.hits.length > 0) {
          out += `${plural(r.hits.length, 'live connection')} from there ${r.dry_run ? 'would stay' : 'stay'} open, refused from the next connect on:\n`;
          out += connectionTable(r.hits, width);
        }
        if (r.dry_run) out += 'nothing was changed\n';
        else {
          const now = await client.get<ApiCountries>('/api/countries');
          out += `${opts.service} ${opts.phase} rule now: ${describeRule(now.services[opts.service]?.[opts.phase] ?? null)}\n`;
        }
        print(out);
      }),
    );
  }

  const list = program.command('countries').description('the country rules in force per service and phase, from the configuration or set at run time').option('--json', "the API's JSON instead of a table");
  withAdminOptions(list).action((opts: AdminOptions & { json?: boolean }) =>
    runAdmin(opts, async ({ client, print, width }) => {
      const r = await client.get<ApiCountries>('/api/countries');
      print(opts.json ? json(r) : countriesTable(r, width));
    }),
  );
}
