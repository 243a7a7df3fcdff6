/**
 * `doorman connections`: the live connections through the guard proxy,
 * oldest first, as a table sized to the terminal or as JSON. The table is
 * also how kick, ban and block show the connections they hit.
 */
import type { Command } from 'commander';
import { json, runAdmin, withAdminOptions } from '../admin-command.js';
import type { AdminOptions } from '../admin-target.js';
import type { ApiConnection, ApiConnections } from '../api-types.js';
import { MAX_LIMIT, parseAddressOrNetwork, parseCountry, parseLimit } from '../args.js';
import { formatBytes, formatDuration, formatEndpoint, renderTable, type Column } from '../format.js';

const COLUMNS: readonly Column[] = [
  { header: 'ID' },
  { header: 'SERVICE', shrink: true },
  { header: 'CLIENT', shrink: true, min: 15 },
  { header: 'COUNTRY' },
  { header: 'AGE', align: 'right' },
  { header: 'IN', align: 'right' },
  { header: 'OUT', align: 'right' },
  { header: 'TLS' },
];

/** Connections as a table: id, service, client, country, age, bytes in (from the client) and out, TLS. */
export function connectionTable(items: readonly ApiConnection[], width = Infinity): string {
  const rows = items.map((c) => [
    c.id,
    c.service,
    formatEndpoint(c.client.address, c.client.port),
    c.country ?? '-',
    formatDuration(c.age_s),
    formatBytes(c.bytes_in),
    formatBytes(c.bytes_out),
    c.encrypted ? 'yes' : 'no',
  ]);
  return renderTable(COLUMNS, rows, width);
}

interface Options extends AdminOptions {
  service?: string;
  country?: string;
  address?: string;
  limit?: number;
  json?: boolean;
}

export function registerConnections(program: Command): void {
  const cmd = program
    .command('connections')
    .description('list live connections through the guard proxy, oldest first')
    .option('-s, --service <name>', 'only this service')
    .option('--country <cc>', 'only clients from this country (two letters)', parseCountry)
    .option('-a, --address <addr|cidr>', 'only this address or network', parseAddressOrNetwork)
    .option('-n, --limit <n>', `at most this many (1 to ${MAX_LIMIT}, default 100)`, parseLimit)
    .option('--json', 'the API\'s JSON ({"total","items"}) instead of a table');
  withAdminOptions(cmd).action((opts: Options) =>
    runAdmin(opts, async ({ client, print, width }) => {
      const r = await client.get<ApiConnections>('/api/connections', { service: opts.service, country: opts.country, address: opts.address, limit: opts.limit });
      if (opts.json) return print(json(r));
      // Fleet mode: a node that did not answer is named, so an empty list is not mistaken for none.
      if (r.missing_nodes !== undefined && r.missing_nodes.length > 0) print(`not answering in time: ${r.missing_nodes.join(', ')} (their connections are not listed)\n`);
      if (r.items.length === 0) return print(r.total === 0 ? `no live connections${filtered(opts) ? ' match' : ''}\n` : `none shown of ${r.total}\n`);
      print(connectionTable(r.items, width));
      if (r.total > r.items.length) print(`${r.items.length} of ${r.total} shown (--limit shows up to ${MAX_LIMIT})\n`);
    }),
  );
}

function filtered(o: Options): boolean {
  return o.service !== undefined || o.country !== undefined || o.address !== undefined;
}
