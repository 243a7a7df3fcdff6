/**
 * An in-process Doorman for the admin API's tests: the guard proxy for imap
 * in front of a fake IMAP server, the admin API on port 0 with TOKEN, and a
 * country map for loopback addresses (127.0.0.66 is "RU", 127.0.0.49 "DE"),
 * so real proxied connections from distinct sources have countries.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { startDaemon, type Daemon } from '../../src/main.js';
import { AdminClient } from './admin-client.js';
import { startFakeBackend } from './fake-backend.js';
import { memoryLogger } from './log.js';
import { RawClient } from './raw-client.js';
import { isolated } from './state.js';

export const TOKEN = 'admin-test-token-0123456789';
export const COUNTRIES: Record<string, string> = { '127.0.0.66': 'RU', '127.0.0.49': 'DE', '8.8.8.8': 'US', '77.88.8.8': 'RU' };
export const GREETING = '* OK ready\r\n';

export interface AdminSetup {
  readonly d: Daemon;
  readonly api: AdminClient;
  readonly dir: string;
  /** The imap proxy's port. */
  readonly port: number;
  readonly lines: Array<Record<string, unknown>>;
}

/** Starts it all; `imap` adds to the imap service's config, `extra` to the top level. Stopped after the test. */
export async function startAdminDaemon(t: TestContext, extra: Record<string, unknown> = {}, imap: Record<string, unknown> = {}): Promise<AdminSetup> {
  const dir = mkdtempSync(join(tmpdir(), 'doorman-admin-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const b = await startFakeBackend({ proxy: true, greeting: GREETING });
  t.after(() => b.close());
  const base = isolated(dir);
  const config = parseConfig(
    {
      anvil: { enabled: false },
      ...base,
      admin: { ...base.admin, token: TOKEN },
      exceptions: ['127.0.9.0/24'],
      services: { imap: { ...imap, proxy: { listen: ['127.0.0.1:0'], backend: `127.0.0.1:${b.port}`, proxy_protocol: 'v2', hostname: 'mx.test' } } },
      ...extra,
    },
    'admin-test',
  );
  const { log, lines } = memoryLogger();
  const d = await startDaemon(config, log, { countries: { country: (ip) => COUNTRIES[ip] ?? null } });
  t.after(() => d.stop());
  return { d, api: new AdminClient(d.adminPort, TOKEN), dir, port: d.proxies[0]?.port ?? 0, lines };
}

/** An IMAP client through the proxy from `from`, greeted; destroyed after the test. */
export async function proxiedClient(t: TestContext, port: number, from: string): Promise<RawClient> {
  const c = await RawClient.open(port, { localAddress: from });
  t.after(() => c.destroy());
  await c.waitFor(/ready\r\n/);
  return c;
}

/** An IMAP client through the proxy from `from` that is refused; resolves with what it was told. */
export async function refusedClient(port: number, from: string): Promise<string> {
  const c = await RawClient.open(port, { localAddress: from });
  await c.closed();
  return c.received;
}

/** The value of one series in Prometheus text, or undefined. */
export function metricValue(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}
