/**
 * Fuzzing the configuration loader (src/config/load.ts): YAML text through
 * parseConfigText, objects through parseConfig. Whatever it is given, the
 * loader returns a frozen Config or throws a ConfigError whose every issue
 * names the file; any other exception (a TypeError, a library's plain Error,
 * a RangeError) fails. A config given as an object and the same object
 * written as YAML must be judged alike.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { parseDocument, stringify } from 'yaml';
import { parseConfig, parseConfigText } from '../../src/config/load.js';
import { ConfigError } from '../../src/errors.js';
import { mutated, unicodeString, type FuzzCodec } from './harness.js';

const FILE = '/etc/doorman/fuzz.yaml';
const EXAMPLE = readFileSync(new URL('../../../doorman.example.yaml', import.meta.url), 'utf8');

/** Valid configurations, from the defaults to every section and rule kind. */
const BASES: ReadonlyArray<Record<string, unknown>> = [
  {},
  { log: { level: 'warn', format: 'json' }, engine: { rate_time_unit: '2m', rate_algorithm: 'fixed-window', status_update_time: 30, max_entries: 5000 } },
  { anvil: { socket: '/var/spool/postfix/private/anvil', socket_mode: '0660', max_clients: 50, request_timeout: '250ms' }, geo: { database: null } },
  {
    services: {
      smtp: { mode: 'enforce', limits: { connections_per_address: 10, connections_per_prefix: 50, connection_rate: 60 }, prefix: { ipv4: 24, ipv6: 64 }, countries: { connect: { deny: ['KP'] } } },
      imap: { limits: { auth_failure_rate: 5 }, auth_failure_ban: '10m', countries: { auth: { allow: ['DE', 'AT'], mode: 'dry-run' } }, max_countries_per_login: { countries: 2, window: '24h', action: 'refuse', exempt_logins: ['bob'] } },
    },
  },
  { exceptions: ['10.0.0.0/8', '2001:db8::/32'], overrides: [{ networks: ['192.0.2.0/24'], services: ['smtp'], limits: { connection_rate: 600 }, reason: 'office' }], services: { smtp: {} } },
  { services: { pop3: { proxy: { listen: ['127.0.0.1:0'], backend: '127.0.0.1:10110', proxy_protocol: 'v2', accept_proxy_from: ['10.1.0.0/16'], texts: { too_many: 'slow down' } } } } },
  {
    postfix_policy: { listen: ['127.0.0.1:10040'], service: 'smtp', default_action: 'DUNNO', decision_timeout: '500ms' },
    dovecot_policy: { listen: '127.0.0.1:8026', api_key: 'k'.repeat(24), basic: { user: 'dovecot', password: 'p'.repeat(12) } },
    admin: { listen: '0.0.0.0:8025', token: 't'.repeat(20) },
    metrics: { listen: '0.0.0.0:9525' },
    state: { file: '/var/lib/doorman/state.json', audit_log: '/var/log/doorman/audit.log' },
  },
];

/** Hand-written YAML the object bases do not reach: flow style, anchors, comments, block scalars. */
const TEXTS = [
  EXAMPLE,
  'engine: { rate_time_unit: 60s, max_entries: 100 }  # flow\nanvil: &a\n  max_clients: 10\n',
  'services:\n  smtp: &s\n    limits: { connection_rate: 5 }\n  submission: *s\n',
  'exceptions:\n  - 10.0.0.0/8   # office\n  - "::1/128"\noverrides: []\n',
  'log:\n  level: >-\n    info\nservices:\n  imap:\n    proxy:\n      listen: ["0.0.0.0:143"]\n      backend: 127.0.0.1:10143\n      proxy_protocol: none\n      texts:\n        banned: |\n          go away\n',
];

/** Pieces of YAML syntax and of Doorman's keys and values, for mutations and token soup. */
const TOKENS = [
  ': ', '\n', '\n  ', '\n    ', '- ', '? ', '{', '}', '[', ']', ', ', '"', "'", '#', '|', '>', '\t', '&a ', '*a', '&b ', '*b', '<<: ', '<<: *a',
  '!!binary ', '!!set ', '!!omap ', '!!timestamp ', '!!int ', '!!float ', '!!str ', '!foo ', '%YAML 1.1\n---\n', '%TAG ! tag:x,2000:\n---\n', '---\n', '...\n',
  'null', '~', 'true', 'yes', '0666', '0o666', '0x1f', '1e999', '-1', '.nan', '10m', '1h', '250ms', '0', '99999999999999999999',
  'engine', 'services', 'smtp', 'imap', 'limits', 'connection_rate', 'proxy', 'listen', 'exceptions', 'overrides', 'networks', 'countries', 'allow', 'deny', 'admin', 'token',
  '10.0.0.0/8', '::1/128', '10.0.0.0/33', '127.0.0.1:0', '__proto__', 'constructor',
];
const tokenBytes = TOKENS.map((t) => Buffer.from(t));

type Json = unknown;

/** Values to plant anywhere in a config object: JSON, and what only a JS caller can pass. */
const oddValueArb: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 2, arbitrary: fc.constantFrom('10m', '0666', '', 'x'.repeat(300), '1.2.3.4/8', '::/0', '0.0.0.0:0', -1, 0, 1, 1.5, 2 ** 53, -0, true, null, [], {}) },
  { weight: 1, arbitrary: fc.constantFrom(NaN, Infinity, undefined, new Date(0), new Map(), new Set([1]), Buffer.from('ab'), Object.create(null) as object) },
);

type Edit = { op: 'set' | 'delete' | 'add' | 'cycle'; at: number; key: string; value: Json };
const editArb: fc.Arbitrary<Edit> = fc.record({
  op: fc.oneof({ weight: 6, arbitrary: fc.constant('set' as const) }, { weight: 2, arbitrary: fc.constantFrom('delete' as const, 'add' as const) }, { weight: 1, arbitrary: fc.constant('cycle' as const) }),
  at: fc.nat(),
  key: fc.oneof(fc.constantFrom('engine', 'limits', 'listen', 'smtp', '__proto__', 'constructor', 'toString', '0'), fc.string({ maxLength: 8 })),
  value: oddValueArb,
});

/** Every object or array in `root` with the path to it, root first. */
function containers(root: object): Array<{ node: Record<string, unknown>; keys: string[] }> {
  const out: Array<{ node: Record<string, unknown>; keys: string[] }> = [];
  const walk = (v: unknown, depth: number) => {
    if (typeof v !== 'object' || v === null || depth > 8 || out.some((c) => c.node === v)) return;
    // Only plain objects and arrays are edited: a Buffer or a Date planted earlier is left as it is.
    if (!Array.isArray(v) && Object.getPrototypeOf(v) !== Object.prototype) return;
    out.push({ node: v as Record<string, unknown>, keys: Object.keys(v) });
    for (const k of Object.keys(v)) walk((v as Record<string, unknown>)[k], depth + 1);
  };
  walk(root, 0);
  return out;
}

/** A deep copy of a JSON base with the edits made: values set, keys deleted or added, a container made to hold its ancestor. */
function edit(base: Record<string, unknown>, edits: readonly Edit[]): Record<string, unknown> {
  const root = structuredClone(base);
  for (const e of edits) {
    const all = containers(root);
    const c = all[e.at % all.length]!;
    const key = c.keys.length > 0 && e.op !== 'add' ? c.keys[e.at % c.keys.length]! : e.key;
    if (e.op === 'delete') {
      delete c.node[key];
      continue;
    }
    // Defined, not assigned: "__proto__" must become a key, as YAML and JSON.parse make it.
    const value = e.op === 'cycle' ? all[e.at % (all.indexOf(c) + 1)]!.node : e.value;
    Object.defineProperty(c.node, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return root;
}

const objectArb = fc.tuple(fc.constantFrom(...BASES), fc.array(editArb, { minLength: 1, maxLength: 4 })).map(([b, es]) => edit(b, es));

const SECTIONS = new Set(['log', 'engine', 'store', 'anvil', 'geo', 'postfix_policy', 'dovecot_policy', 'state', 'admin', 'services', 'exceptions', 'overrides']);

/** The tally word for a ConfigError: which section the first issue is in, or "yaml" for a syntax error. */
function judge(run: () => unknown): string {
  try {
    const c = run() as { source?: unknown };
    if (c.source !== FILE || !Object.isFrozen(c)) throw new Error('a config neither frozen nor from its file');
    return 'ok';
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    if (err.code !== 'DOORMAN_ERR_CONFIG' || err.issues.length === 0) throw new Error(`a ConfigError with code ${err.code} and ${err.issues.length} issues`);
    for (const i of err.issues) if (!i.file.startsWith(FILE)) throw new Error(`an issue that does not name the file: ${i.file}`);
    // Not every line: a key may itself hold a line break ("? a\n  b" is the key "a\nb").
    if (!err.message.startsWith(FILE)) throw new Error('a message that does not start with the file');
    const first = err.issues[0]!;
    const section = first.key.split('.')[0] ?? '';
    const where = first.expected.startsWith('valid YAML') ? '(yaml)' : section === '' ? '(top level)' : SECTIONS.has(section) ? section : '(unknown key)';
    return `${err.code} ${where}`;
  }
}

/** Data YAML writes and reads back exactly: plain objects and arrays, strings, finite numbers but -0, booleans, null. */
function plainJson(v: unknown, depth = 0): boolean {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v) && !Object.is(v, -0);
  if (typeof v !== 'object' || depth > 20) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== Array.prototype) return false;
  return Object.values(v).every((x) => plainJson(x, depth + 1));
}

/** The object as YAML text, when YAML can say exactly the same thing; then loading either must come out the same. */
function asYaml(o: Record<string, unknown>): string | null {
  if (!plainJson(o)) return null;
  const text = stringify(o);
  const back: unknown = parseDocument(text).toJS();
  return JSON.stringify(back) === JSON.stringify(o) ? text : null;
}

/** Keeps yaml's process warnings (collection keys turned into strings) out of the output while fuzzing. */
function quietYamlWarnings(): () => void {
  const original = process.emitWarning;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]) {
    const text = typeof warning === 'string' ? warning : warning.message;
    if (text.startsWith('Keys with collection values')) return;
    return (original as (...a: unknown[]) => void).call(this, warning, ...rest);
  } as typeof process.emitWarning;
  return () => {
    process.emitWarning = original;
  };
}

export const configCodec: FuzzCodec = {
  name: 'config',
  open(tally) {
    const restore = quietYamlWarnings();
    const texts = [...TEXTS, ...BASES.map((b) => stringify(b))].map((t) => Buffer.from(t));
    return {
      properties: [
        {
          name: 'token soup and random text: a Config or a ConfigError naming the file',
          property: fc.property(fc.oneof(fc.array(fc.constantFrom(...TOKENS), { maxLength: 40 }).map((t) => t.join('')), unicodeString(120)), (text) => {
            tally.add('random', judge(() => parseConfigText(text, FILE)));
          }),
        },
        {
          name: 'mutated valid YAML',
          property: fc.property(mutated(fc.constantFrom(...texts), tokenBytes), (b) => {
            tally.add('mutated-yaml', judge(() => parseConfigText(b.toString(), FILE)));
          }),
        },
        {
          name: 'edited valid objects, and the same written as YAML, are judged alike',
          property: fc.property(objectArb, (o) => {
            const direct = judge(() => parseConfig(o, FILE));
            tally.add('mutated-object', direct);
            const text = asYaml(o);
            if (text === null) return;
            const viaText = judge(() => parseConfigText(text, FILE));
            if (viaText !== direct) throw new Error(`as an object: ${direct}; as YAML: ${viaText}\n${text}`);
            if (direct === 'ok') {
              const { source: _a, ...a } = parseConfig(o, FILE);
              const { source: _b, ...b } = parseConfigText(text, FILE);
              if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`loaded differently as an object and as YAML:\n${text}`);
            }
          }),
        },
      ],
      async close() {
        restore();
      },
    };
  },
};
