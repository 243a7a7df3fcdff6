/**
 * Where the CLI finds the daemon's admin API, and which token it sends.
 *
 * URL: `--url`, else the configuration's `admin.listen` (a wildcard address
 * is reached on loopback). Token, first found: `--token`, `$DOORMAN_TOKEN`,
 * the configuration's `admin.token`, the first line of its `admin.token_file`.
 *
 * The configuration (`--config FILE`, else ./doorman.yaml, else the package's
 * /etc/doorman/doorman.yaml if readable, else the embedded defaults) is read only when it is needed: without `--url`, or when
 * `--config` is given. With `--url` alone the configuration's token is not
 * sent: it belongs to that configuration's own daemon, not to any URL.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from '../config/load.js';
import { AdminError, EXIT } from './admin-client.js';

/** The options every admin command takes. */
export interface AdminOptions {
  readonly config?: string;
  readonly url?: string;
  readonly token?: string;
  readonly timeout?: number;
}

export interface AdminTarget {
  readonly url: string;
  /** Where the URL came from, for the message when nothing answers there. */
  readonly urlSource: string;
  readonly token: string | null;
  readonly tokenSource: string | null;
}

export const TOKEN_ENV = 'DOORMAN_TOKEN';

export type ConfigLoader = (path: string | undefined) => Config | Promise<Config>;

/** The URL and token for `opts`; configuration problems throw (ConfigError, or AdminError with EXIT.usage). */
export async function resolveAdminTarget(opts: AdminOptions, env: NodeJS.ProcessEnv = process.env, load: ConfigLoader = defaultLoader): Promise<AdminTarget> {
  const config = opts.url === undefined || opts.config !== undefined ? await load(opts.config) : null;
  let url: string;
  let urlSource: string;
  if (opts.url !== undefined) {
    url = opts.url;
    urlSource = 'the URL was given with --url';
  } else {
    const c = config as Config;
    const where = c.source.startsWith('(') ? '(the default: no ./doorman.yaml here, no readable /etc/doorman/doorman.yaml and no --config)' : `in ${c.source}`;
    const listen = c.admin.listen;
    if (listen === null) throw new AdminError('DOORMAN_ERR_ADMIN_OFF', `the admin API is off (admin.listen is null ${where}): nothing to talk to; --url names one elsewhere`, EXIT.usage);
    url = listenUrl(listen, where);
    urlSource = `admin.listen is ${listen} ${where}`;
  }
  const envToken = env[TOKEN_ENV];
  if (opts.token !== undefined) return { url, urlSource, token: opts.token, tokenSource: '--token' };
  if (envToken !== undefined && envToken !== '') return { url, urlSource, token: envToken, tokenSource: `$${TOKEN_ENV}` };
  if (config !== null && config.admin.token !== null) return { url, urlSource, token: config.admin.token, tokenSource: `admin.token in ${config.source}` };
  if (config !== null && config.admin.token_file !== null) {
    const file = resolve(config.admin.token_file);
    return { url, urlSource, token: readTokenFile(file), tokenSource: `admin.token_file ${file}` };
  }
  return { url, urlSource, token: null, tokenSource: null };
}

/** `host:port` from admin.listen as a URL; the wildcard addresses are reached on loopback. */
export function listenUrl(listen: string, where = ''): string {
  const colon = listen.lastIndexOf(':');
  let host = listen.slice(0, colon);
  const port = listen.slice(colon + 1);
  if (Number(port) === 0) {
    throw new AdminError('DOORMAN_ERR_ADMIN_PORT', `admin.listen is ${listen}${where ? ` ${where}` : ''}, a port chosen at start: pass --url with the port the daemon logged`, EXIT.usage);
  }
  if (host === '0.0.0.0') host = '127.0.0.1';
  if (host === '[::]' || host === '::') host = '[::1]';
  return `http://${host}:${Number(port)}`;
}

function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new AdminError('DOORMAN_ERR_ADMIN_TOKEN_FILE', `cannot read admin.token_file ${file} (${why}): run as a user who can, or pass the token in $${TOKEN_ENV}`, EXIT.usage);
  }
  const token = (text.split(/\r?\n/, 1)[0] ?? '').trim();
  if (token === '') throw new AdminError('DOORMAN_ERR_ADMIN_TOKEN_FILE', `admin.token_file ${file} is empty`, EXIT.usage);
  return token;
}

/** Loaded on demand: zod and the YAML parser cost a tenth of a second that `--url --token` need not pay. */
async function defaultLoader(path: string | undefined): Promise<Config> {
  const { clientConfigPath, loadConfig } = await import('../config/load.js');
  return loadConfig(clientConfigPath(path));
}
