/**
 * `doorman reload`: the running daemon re-reads its configuration file (as
 * SIGHUP does) and swaps in the rules and log level, keeping every
 * connection and count. An invalid file, or one that changes what needs a
 * restart, is refused with the reason; the running configuration stays.
 */
import type { Command } from 'commander';
import { json, runAdmin, withAdminOptions } from '../admin-command.js';
import type { AdminOptions } from '../admin-target.js';

interface ReloadOptions extends AdminOptions {
  json?: boolean;
}

export function formatReload(r: { changed: readonly string[] }): string {
  return r.changed.length === 0 ? 'configuration reloaded: nothing changed\n' : `configuration reloaded; changed: ${r.changed.join(', ')}\n`;
}

export function registerReload(program: Command): void {
  const cmd = program
    .command('reload')
    .description("re-read the daemon's configuration file and apply its rules without dropping a connection")
    .option('--json', "the API's JSON instead of text");
  withAdminOptions(cmd).action((opts: ReloadOptions) =>
    runAdmin(opts, async ({ client, print }) => {
      const r = await client.post<{ reloaded: boolean; changed: string[] }>('/api/reload', {});
      print(opts.json ? json(r) : formatReload(r));
    }),
  );
}
