/**
 * Loads the configuration once: read the YAML, validate it against the schema,
 * compile its rules (the only place they are compiled from a file), and
 * return a deep-frozen Config carrying them. Every problem found is reported together,
 * each naming the file, the key, the value found and what was expected.
 * `doorman config check` calls this same function.
 */
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { ConfigError, type ConfigIssue } from '../errors.js';
import { Rules } from '../core/rules.js';
import { configSchema, type ConfigData } from './schema.js';
import { parseHostPort } from './endpoint.js';

export type Config = DeepReadonly<ConfigData> & {
  readonly source: string;
  /** services, exceptions and overrides compiled (../core/rules.ts), once, here. */
  readonly rules: Rules;
};

type DeepReadonly<T> = T extends (infer U)[]
  ? ReadonlyArray<DeepReadonly<U>>
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

export const DEFAULT_CONFIG_FILE = 'doorman.yaml';
export const EMBEDDED_DEFAULTS = '(embedded defaults)';
/** Where the Debian package installs the configuration. */
export const PACKAGED_CONFIG_FILE = '/etc/doorman/doorman.yaml';

/**
 * The file a command that does not run the daemon reads when not told
 * (`--config`): ./doorman.yaml when present, else the package's
 * /etc/doorman/doorman.yaml when this user may read it (an admin with sudo;
 * the file is root:doorman 0640), else none: the embedded defaults. So on a
 * packaged host `doorman status` finds the admin API and its token, and
 * `doorman config check` checks the file the unit runs on. `serve` never
 * looks in /etc: the unit names its file, and `npm start` in a checkout must
 * not pick up a host's production configuration.
 */
export function clientConfigPath(path: string | undefined, packaged = PACKAGED_CONFIG_FILE): string | undefined {
  if (path !== undefined || existsSync(DEFAULT_CONFIG_FILE)) return path;
  try {
    accessSync(packaged, constants.R_OK);
    return packaged;
  } catch {
    return undefined;
  }
}

/**
 * With `path`, that file must exist. Without it, ./doorman.yaml is used when
 * present, else the embedded defaults.
 */
export function loadConfig(path?: string): Config {
  if (path === undefined) {
    if (!existsSync(DEFAULT_CONFIG_FILE)) return parseConfig({}, EMBEDDED_DEFAULTS);
    path = DEFAULT_CONFIG_FILE;
  }
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConfigError([{ file, key: '', value: undefined, expected: `a readable YAML file (${reason})` }]);
  }
  return parseConfigText(text, file);
}

/** Parses YAML text; `file` is only used in messages. */
export function parseConfigText(text: string, file: string): Config {
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true, logLevel: 'error' });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({
        file: e.linePos ? `${file}:${e.linePos[0].line}:${e.linePos[0].col}` : file,
        key: '',
        value: undefined,
        expected: `valid YAML (${e.message.split('\n')[0]})`,
      })),
    );
  }
  let data: unknown;
  try {
    data = doc.toJS() ?? {};
  } catch (err) {
    // The parser lets through what only turns out wrong when the data is built
    // (an alias before its anchor, a YAML 1.1 merge of a non-mapping, an alias
    // bomb); yaml throws plain Errors for those.
    throw new ConfigError([{ file, key: '', value: undefined, expected: `valid YAML (${String((err as Error).message).split('\n')[0]})` }]);
  }
  const odd = exoticValue(data, []);
  if (odd !== null) throw new ConfigError([{ file, key: odd.key, value: `a YAML ${odd.kind}`, expected: 'a plain mapping, list, string, number or boolean (no !! tags)' }]);
  return parseConfig(data, file);
}

/**
 * The first value YAML's tags made into something no key takes — a set, a
 * date, binary, a map with non-string keys — which the schema would
 * otherwise read as an empty mapping; null if there is none.
 */
function exoticValue(v: unknown, path: string[]): { key: string; kind: string } | null {
  if (v === null || typeof v !== 'object') return null;
  const kind = v instanceof Set ? 'set' : v instanceof Date ? 'timestamp' : v instanceof Uint8Array ? 'binary' : v instanceof Map ? 'map with non-string keys' : null;
  if (kind !== null) return { key: path.join('.'), kind };
  if (path.length > 64) return null;
  for (const [k, x] of Object.entries(v)) {
    const found = exoticValue(x, [...path, k]);
    if (found !== null) return found;
  }
  return null;
}

/** Validates already-parsed data. */
export function parseConfig(data: unknown, file: string): Config {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new ConfigError([{ file, key: '', value: data, expected: `a mapping of sections (${Object.keys(configSchema.shape).join(', ')})` }]);
  }
  // An alias inside its own anchor (`a: &x { b: *x }`) makes data that contains itself.
  const loop = selfContaining(data);
  if (loop !== null) throw new ConfigError([{ file, key: loop, value: undefined, expected: 'a value that does not contain itself (a YAML alias inside its own anchor)' }]);
  const result = configSchema.safeParse(data);
  if (!result.success) throw new ConfigError(result.error.issues.flatMap((i) => toIssues(i, data, file)));
  // Checks across keys (networks, contradictions) happen when the rules compile.
  const rules = Rules.compile(result.data, file);
  const seen = new Map<string, string>();
  for (const [name, svc] of Object.entries(result.data.services)) {
    for (const [i, listen] of (svc.proxy?.listen ?? []).entries()) {
      const key = `services.${name}.proxy.listen.${i}`;
      const first = seen.get(listen);
      if (first !== undefined && !listen.endsWith(':0')) throw new ConfigError([{ file, key, value: listen, expected: `an address no other proxy listens on (${first} has it)` }]);
      seen.set(listen, key);
    }
  }
  const a = result.data.admin;
  if (a.token !== null && a.token_file !== null) {
    throw new ConfigError([{ file, key: 'admin.token_file', value: a.token_file, expected: 'either admin.token or admin.token_file, not both' }]);
  }
  if (a.listen !== null && a.token === null && a.token_file === null && !isLoopbackListen(a.listen)) {
    throw new ConfigError([{ file, key: 'admin.listen', value: a.listen, expected: 'a loopback address (127.0.0.1, [::1], localhost) unless admin.token or admin.token_file is set: the admin API can kick and ban' }]);
  }
  const m = result.data.metrics.listen;
  if (m !== null && !m.endsWith(':0')) {
    for (const key of ['admin.listen', 'dovecot_policy.listen'] as const) {
      const other = key === 'admin.listen' ? a.listen : result.data.dovecot_policy.listen;
      if (other === m) throw new ConfigError([{ file, key: 'metrics.listen', value: m, expected: `an address of its own (${key} has it)` }]);
    }
  }
  const st = result.data.store;
  if (st.type === 'redis') {
    const ways = [st.redis.url !== null, st.redis.sentinels.length > 0, st.redis.cluster.length > 0].filter(Boolean).length;
    if (ways !== 1) {
      throw new ConfigError([{ file, key: 'store.redis', value: undefined, expected: 'exactly one of url, sentinels or cluster when store.type is redis' }]);
    }
  }
  const n = result.data.nginx_auth;
  if (n.listen !== null && n.api_key === null) {
    throw new ConfigError([{ file, key: 'nginx_auth.api_key', value: null, expected: 'a secret that nginx sends with `auth_http_header X-Doorman-Key SECRET;`: the endpoint answers where logins go' }]);
  }
  const d = result.data.dovecot_policy;
  if (d.listen !== null && d.api_key === null && d.basic === null) {
    throw new ConfigError([{ file, key: 'dovecot_policy.api_key', value: null, expected: 'an api_key or basic credentials: Dovecot sends them, and the endpoint refuses requests without them' }]);
  }
  const fw = result.data.firewall.nft;
  if (fw !== null && fw.set_v4 === null && fw.set_v6 === null) {
    throw new ConfigError([{ file, key: 'firewall.nft', value: { set_v4: null, set_v6: null }, expected: 'set_v4, set_v6 or both naming a set (or firewall.nft: null to turn the sets off)' }]);
  }
  const cs = result.data.crowdsec;
  if (cs.api_key !== null && cs.api_key_file !== null) {
    throw new ConfigError([{ file, key: 'crowdsec.api_key_file', value: cs.api_key_file, expected: 'either crowdsec.api_key or crowdsec.api_key_file, not both' }]);
  }
  if (cs.lapi_url !== null && cs.api_key === null && cs.api_key_file === null) {
    throw new ConfigError([{ file, key: 'crowdsec.api_key_file', value: null, expected: 'a file holding the bouncer key (`cscli bouncers add doorman -o raw`), or crowdsec.api_key: the Local API answers no bouncer without one' }]);
  }
  return Object.freeze({ ...deepFreeze({ ...result.data, source: file }), rules }) as Config;
}

/**
 * The key path of the first value found inside itself, or null. Iterative, as
 * the data may nest deeper than the stack; a value shared by aliases is walked
 * once, so the walk is linear however often it is referred to.
 */
function selfContaining(data: object): string | null {
  const onPath = new Set<object>([data]);
  const done = new Set<object>();
  const stack: Array<{ node: object; keys: string[]; next: number; path: string }> = [{ node: data, keys: Object.keys(data), next: 0, path: '' }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1] as (typeof stack)[number];
    if (top.next === top.keys.length) {
      onPath.delete(top.node);
      done.add(top.node);
      stack.pop();
      continue;
    }
    const key = top.keys[top.next++] as string;
    const child: unknown = (top.node as Record<string, unknown>)[key];
    if (typeof child !== 'object' || child === null || done.has(child)) continue;
    const path = top.path === '' ? key : `${top.path}.${key}`;
    if (onPath.has(child)) return path;
    onPath.add(child);
    stack.push({ node: child, keys: Object.keys(child), next: 0, path });
  }
  return null;
}

function isLoopbackListen(listen: string): boolean {
  const { host } = parseHostPort(listen);
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function toIssues(issue: z.core.$ZodIssue, data: unknown, file: string): ConfigIssue[] {
  const path = issue.path.map(String);
  if (issue.code === 'unrecognized_keys') {
    const parent = valueAt(data, path);
    const known = knownKeys(path);
    return issue.keys.map((k) => ({
      file,
      key: [...path, k].join('.'),
      value: (parent as Record<string, unknown> | undefined)?.[k],
      expected: known.length > 0 ? `no such key; known keys here: ${known.join(', ')}` : 'no such key',
    }));
  }
  const value = valueAt(data, path);
  // A secret that is wrong (too short) is still someone's secret: the message names the key, not the value.
  const shown = typeof value === 'string' && SECRET_KEYS.has(path[path.length - 1] ?? '') ? '(a secret, not shown)' : value;
  return [{ file, key: path.join('.'), value: shown, expected: issue.message }];
}

/** Keys whose values error messages never show. */
const SECRET_KEYS = new Set(['api_key', 'token', 'password']);

function valueAt(data: unknown, path: readonly string[]): unknown {
  let v: unknown = data;
  for (const p of path) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}

/** The keys the schema allows at `path`, for "did you mean" style messages. */
function knownKeys(path: readonly string[]): string[] {
  let s: unknown = configSchema;
  for (const p of path) {
    s = unwrap(s);
    const shape = (s as { shape?: Record<string, unknown> }).shape;
    if (!shape) return [];
    s = shape[p];
  }
  s = unwrap(s);
  const shape = (s as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape) : [];
}

function unwrap(s: unknown): unknown {
  let cur = s as { def?: { innerType?: unknown; type?: string } } | undefined;
  while (cur?.def?.innerType) cur = cur.def.innerType as typeof cur;
  return cur;
}

export function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
