/**
 * The configuration schema: every key, its default, and in words what it
 * expects (the words appear in error messages). Keys are snake_case, as in the
 * YAML file and the README reference.
 */
import { z } from 'zod';
import { durationSchema } from './duration.js';
import { rulesSchemaShape } from './rules-schema.js';

const duration = durationSchema;

/** A UNIX socket's mode, a quoted octal string (a YAML 0666 would be the decimal 666). */
function socketMode(def: string) {
  return z
    .string({ error: 'a quoted octal mode such as "0666"' })
    .regex(/^0?[0-7]{3}$/, { error: 'a quoted octal mode such as "0666"' })
    .default(def);
}

function int(def: number, min: number, max: number) {
  return z
    .number({ error: `an integer from ${min} to ${max}` })
    .int({ error: `an integer from ${min} to ${max}` })
    .min(min, { error: `an integer from ${min} to ${max}` })
    .max(max, { error: `an integer from ${min} to ${max}` })
    .default(def);
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T, def: T[number]) {
  return z.enum(values, { error: `one of: ${values.join(', ')}` }).default(def);
}

const userOrId = z
  .union([z.string().min(1), z.number().int().min(0)], { error: 'a user or group name, or a numeric id' })
  .nullable()
  .default(null);

const section = (name: string) => ({ error: `a mapping of ${name} settings` });

export const logSchema = z.strictObject({
  level: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], 'info'),
  format: oneOf(['auto', 'json', 'pretty'], 'auto'),
}, section('log'));

export const engineSchema = z.strictObject({
  rate_time_unit: duration('60s', 1000),
  rate_algorithm: oneOf(['sliding-window', 'fixed-window'], 'sliding-window'),
  status_update_time: duration('600s', 1000),
  max_entries: int(1_000_000, 1, 100_000_000),
}, section('engine'));

const hostPort = z
  .string({ error: 'host:port such as 10.0.0.5:26379' })
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { error: 'host:port such as 10.0.0.5:26379' });

export const redisSchema = z.strictObject(
  {
    /** One server: redis://[:password@]host:port[/db], rediss:// for TLS. */
    url: z
      .string({ error: 'a redis:// or rediss:// URL' })
      .regex(/^rediss?:\/\/\S+$/, { error: 'a redis:// or rediss:// URL such as redis://127.0.0.1:6379' })
      .nullable()
      .default(null),
    /** Sentinel: the sentinels to ask and the master's name (the password, if any, from password_file). */
    sentinels: z.array(hostPort, { error: 'a list of host:port' }).default([]),
    sentinel_name: z.string({ error: 'the name of the master the sentinels watch' }).min(1).default('mymaster'),
    /** Redis Cluster: a few seed nodes. */
    cluster: z.array(hostPort, { error: 'a list of host:port' }).default([]),
    /** A file holding the password (first line), kept out of this file and out of logs. */
    password_file: z.string({ error: 'a path to a file holding the password' }).min(1).nullable().default(null),
    /** Every key Doorman writes starts with this. */
    prefix: z.string({ error: 'a key prefix such as "doorman:"' }).max(64).default('doorman:'),
    /** The deadline of every call; past it the call counts as failed. */
    timeout: duration('250ms', 10),
  },
  section('store.redis'),
);

export const storeSchema = z.strictObject({
  type: oneOf(['memory', 'redis'], 'memory'),
  /** This host's name in the fleet; must be unique among nodes sharing a Redis. Default: the host name. */
  node: z.string({ error: 'a node name' }).regex(/^[A-Za-z0-9._-]{1,64}$/, { error: 'a node name of letters, digits, ".", "_" and "-" (at most 64)' }).nullable().default(null),
  /** How long a node's connections outlive it when it dies without releasing them. */
  lease: duration('30s', 3000),
  redis: redisSchema.default(() => redisSchema.parse({})),
}, section('store'));

export const anvilSchema = z.strictObject({
  enabled: z.boolean({ error: 'true or false' }).default(true),
  socket: z.string({ error: 'a path for the UNIX socket' }).min(1, { error: 'a path for the UNIX socket' }).default('./run/anvil'),
  socket_mode: socketMode('0666'),
  owner: userOrId,
  group: userOrId,
  max_clients: int(1000, 1, 100_000),
  request_timeout: duration('10s', 10),
  idle_timeout: duration('1h', 10),
  max_bad_requests: int(10, 1, 10_000),
  /**
   * Postfix 3.8+ smtpd names a client to anvil by its network when these are
   * shorter than the address (smtpd_client_ipv4_prefix_length and
   * smtpd_client_ipv6_prefix_length in main.cf; Postfix's defaults). The
   * policy service and `doorman check` use them to find smtpd's counts until
   * the anvil service has seen what smtpd really sends, which then wins.
   */
  client_ipv4_prefix_length: int(32, 0, 32),
  client_ipv6_prefix_length: int(84, 0, 128),
}, section('anvil'));

export const geoSchema = z.strictObject(
  {
    /** A MaxMind-format country database; null: the embedded CC0 database. */
    database: z.string({ error: 'a path to a MaxMind-format country database (.mmdb), or null' }).min(1).nullable().default(null),
  },
  section('geo'),
);

const listenAddress = z
  .string({ error: 'host:port (e.g. 127.0.0.1:10040, [::1]:10040) or an absolute UNIX socket path' })
  .regex(/^(\/.+|(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5})$/, { error: 'host:port (e.g. 127.0.0.1:10040, [::1]:10040) or an absolute UNIX socket path' });

export const postfixPolicySchema = z.strictObject(
  {
    /** Where to listen; empty: the policy service is off. */
    listen: z.array(listenAddress, { error: 'a list of host:port or socket paths' }).default([]),
    /** Rules used when a request has no policy_context naming a service. */
    service: z.string({ error: 'a service name' }).min(1).default('smtp'),
    /** Answer when a decision cannot be made in time or fails. */
    default_action: oneOf(['DUNNO', 'DEFER_IF_PERMIT'], 'DUNNO'),
    decision_timeout: duration('500ms', 1),
    socket_mode: socketMode('0666'),
    /** Owner and group of UNIX socket listeners (e.g. postfix), by name or number. */
    owner: userOrId,
    group: userOrId,
    max_clients: int(1000, 1, 100_000),
    request_timeout: duration('10s', 10),
    idle_timeout: duration('10m', 10),
  },
  section('postfix_policy'),
);

export const dovecotPolicySchema = z.strictObject(
  {
    /** host:port of the HTTP endpoint; null: off. */
    listen: z
      .string({ error: 'host:port such as 127.0.0.1:8026, or null' })
      .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { error: 'host:port such as 127.0.0.1:8026' })
      .nullable()
      .default(null),
    path: z.string({ error: 'a URL path such as /policy' }).regex(/^\/[^?#\s]*$/, { error: 'a URL path such as /policy' }).default('/policy'),
    /** Accepted as `X-API-Key: KEY` or `Authorization: Bearer KEY` (auth_policy_server_api_header). */
    api_key: z.string({ error: 'a secret string' }).min(8, { error: 'a secret of at least 8 characters' }).nullable().default(null),
    /** Accepted as HTTP Basic (user:password in auth_policy_server_url). */
    basic: z
      .strictObject({ user: z.string().min(1), password: z.string().min(8, { error: 'a password of at least 8 characters' }) }, { error: 'a mapping with user and password' })
      .nullable()
      .default(null),
    /** Requests that may wait for a decision at once; Dovecot keeps one connection per auth process. */
    max_clients: int(256, 1, 100_000),
    request_timeout: duration('5s', 10),
  },
  section('dovecot_policy'),
);

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;
/** nginx needs the backend as an IP address and a port (a name makes it fail the login). */
const IP_PORT = /^(\[[0-9A-Fa-f:.]+\]|\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}):\d{1,5}$/;

export const nginxAuthSchema = z.strictObject(
  {
    /** host:port of nginx mail's auth_http endpoint; null: off. */
    listen: z.string({ error: 'host:port such as 127.0.0.1:8027, or null' }).regex(HOST_PORT, { error: 'host:port such as 127.0.0.1:8027' }).nullable().default(null),
    path: z.string({ error: 'a URL path such as /auth' }).regex(/^\/[^?#\s]*$/, { error: 'a URL path such as /auth' }).default('/auth'),
    /** nginx sends it with `auth_http_header X-Doorman-Key SECRET;`. */
    api_key: z.string({ error: 'a secret string' }).min(8, { error: 'a secret of at least 8 characters' }).nullable().default(null),
    /** Where nginx proxies each protocol's admitted logins: an IP address and a port. */
    backends: z
      .strictObject(
        {
          imap: z.string().regex(IP_PORT, { error: 'an IP address and port such as 127.0.0.1:10143' }).nullable().default(null),
          pop3: z.string().regex(IP_PORT, { error: 'an IP address and port such as 127.0.0.1:10110' }).nullable().default(null),
          smtp: z.string().regex(IP_PORT, { error: 'an IP address and port such as 127.0.0.1:10587' }).nullable().default(null),
        },
        { error: 'a mapping of imap, pop3 and smtp to IP:port' },
      )
      .default({ imap: null, pop3: null, smtp: null }),
    /** A temporary refusal holds the client this long before nginx sends it (Auth-Wait), and lets it try again; 0: closed at once. */
    refusal_wait: duration('0s', 0),
    /** Requests waiting for a decision at once. */
    max_clients: int(256, 1, 100_000),
    request_timeout: duration('5s', 10),
  },
  section('nginx_auth'),
);

// --- haproxy_spoe: Doorman as HAProxy's SPOE agent (issue 19) -------------
/**
 * The SPOE agent HAProxy asks about each client session (contrib/haproxy/).
 * Variables are set by their bare names (verdict, text, …): HAProxy puts its
 * `option var-prefix` in front, so Doorman needs no prefix of its own.
 */
export const haproxySpoeSchema = z.strictObject(
  {
    /** Where HAProxy's agent backend connects; empty: off. */
    listen: z.array(hostPort, { error: 'a list of host:port such as 127.0.0.1:12345' }).default([]),
    /** The spoe-message Doorman answers; NOTIFY messages of other names are acknowledged with no variables. */
    message: z
      .string({ error: 'a spoe-message name' })
      .regex(/^[A-Za-z0-9._-]{1,64}$/, { error: 'a spoe-message name of letters, digits, ".", "_" and "-" (at most 64)' })
      .default('doorman-client'),
    /** The name in SMTP refusal lines; null: the system's host name. */
    hostname: z
      .string({ error: 'a host name' })
      .regex(/^[A-Za-z0-9.-]{1,253}$/, { error: 'a host name of letters, digits, dots and dashes' })
      .nullable()
      .default(null),
    /** HAProxy connections at once; HAProxy 2.6 opens them on demand, per thread, so expect many. */
    max_clients: int(1000, 1, 100_000),
    /** A frame begun and not finished in this time drops its connection. */
    request_timeout: duration('10s', 10),
    /** A connection silent for one to two times this is closed with AGENT-DISCONNECT; keep it above HAProxy's `timeout idle`. */
    idle_timeout: duration('10m', 1000),
    /** A decision not made in this time (a slow store) is answered "allow", before HAProxy's `timeout processing` fails the event. */
    decision_timeout: duration('500ms', 1),
    /** The largest frame taken, in bytes; HAProxy's own max-frame-size is used when smaller. */
    max_frame_size: int(16380, 256, 65532),
    /** NOTIFY frames one connection may leave waiting for their ACK (HAProxy 2.6 sends at most max-waiting-frames, 20 by default). */
    max_in_flight: int(256, 1, 4096),
  },
  section('haproxy_spoe'),
);
// --- end haproxy_spoe ------------------------------------------------------

// --- firewall: bans copied into nftables sets (issue 20) ----------------
/** An nft identifier: the scanner's letters, digits and _ (a keyword such as "ip" would not parse: the start check says so). */
const nftName = (what: string) =>
  z.string({ error: `the name of ${what}` }).regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, { error: `the name of ${what}: letters, digits and _ (at most 64), not starting with a digit` });

export const nftSetsSchema = z.strictObject(
  {
    /** The table holding the sets: its family and name, as nft names it. */
    table: z
      .string({ error: 'a family and a table name, such as "inet filter"' })
      .regex(/^(inet|ip|ip6|bridge|netdev) [A-Za-z_][A-Za-z0-9_]{0,63}$/, { error: 'a family (inet, ip, ip6, bridge, netdev) and a table name, such as "inet filter"' })
      .default('inet filter'),
    /** The set of type ipv4_addr (flags interval, timeout) for IPv4 bans and IPv4-mapped IPv6 ones; null: IPv4 bans are not written. */
    set_v4: nftName('a set of type ipv4_addr, or null').nullable().default('doorman_v4'),
    /** The set of type ipv6_addr (flags interval, timeout) for IPv6 bans; null: not written. */
    set_v6: nftName('a set of type ipv6_addr, or null').nullable().default('doorman_v6'),
    /** The program and any arguments before nft's own: ["nft"], or ["ip", "netns", "exec", "NAME", "nft"]. */
    command: z.array(z.string({ error: 'a program or argument' }).min(1), { error: 'a list: the program and its first arguments, such as [nft]' }).min(1, { error: 'a list: the program and its first arguments, such as [nft]' }).max(16).default(['nft']),
    /** How long ban changes are gathered into one nft run. */
    batch_delay: duration('20ms', 1),
    /** The deadline of one nft run; past it nft is killed and the run counts as failed. */
    timeout: duration('30s', 1000),
  },
  section('firewall.nft'),
);

export const firewallSchema = z.strictObject(
  {
    /** Bans copied into nftables sets that the admin's ruleset drops; null: off. */
    nft: nftSetsSchema.nullable().default(null),
  },
  section('firewall'),
);
// --- end firewall ----------------------------------------------------------
// --- crowdsec: CrowdSec's decisions as bans, Doorman's signals for CrowdSec (issue 20)
/** A list of words for a Local API filter (origins, scenario words): no commas, no spaces. */
const lapiWords = (what: string) =>
  z.array(z.string().regex(/^[^,\s]{1,128}$/, { error: `${what} without commas or spaces` }), { error: `a list of ${what}` }).max(64).default([]);

export const crowdsecSchema = z.strictObject(
  {
    /** The Local API, e.g. http://127.0.0.1:8080; null: the bouncer is off. */
    lapi_url: z
      .string({ error: 'an http:// or https:// URL such as http://127.0.0.1:8080, or null' })
      .regex(/^https?:\/\/[^\s/?#@]+(\/[^\s?#]*)?$/, { error: 'an http:// or https:// URL such as http://127.0.0.1:8080 (no user, query or fragment)' })
      .nullable()
      .default(null),
    /** The bouncer key (`cscli bouncers add doorman -o raw`); api_key_file keeps it out of this file. */
    api_key: z.string({ error: 'a bouncer key' }).min(16, { error: 'a bouncer key of at least 16 characters' }).nullable().default(null),
    api_key_file: z.string({ error: 'a path to a file holding the bouncer key' }).min(1).nullable().default(null),
    /** How often the Local API is asked what changed. */
    poll_interval: duration('10s', 1000),
    /** The deadline of one request, answer included (a startup answer can be megabytes). */
    request_timeout: duration('30s', 100),
    /** The largest answer taken, in bytes (a decision is about 200): a larger one is refused and the bans held stay. */
    max_response_bytes: int(64 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    /** Only decisions of these origins (crowdsec, cscli, CAPI, lists); empty: all. */
    origins: lapiWords('origins such as crowdsec, cscli, CAPI'),
    scenarios_containing: lapiWords('scenario words'),
    scenarios_not_containing: lapiWords('scenario words'),
    /** A file Doorman appends one line to per refusal and AUTH failure, for CrowdSec to read (contrib/crowdsec/); null: none. */
    signals_log: z.string({ error: 'a path for the signals log, or null' }).min(1).nullable().default(null),
  },
  section('crowdsec'),
);
// --- end crowdsec ----------------------------------------------------------

/** Where the admin API listens unless told otherwise; metrics listen here when nothing else serves them. */
export const ADMIN_DEFAULT_LISTEN = '127.0.0.1:8025';

export const adminSchema = z.strictObject(
  {
    /** host:port of the admin API and dashboard; null: off. Without a token only loopback is allowed. */
    listen: z
      .string({ error: 'host:port such as 127.0.0.1:8025, or null' })
      .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { error: 'host:port such as 127.0.0.1:8025' })
      .nullable()
      .default(ADMIN_DEFAULT_LISTEN),
    /** The bearer token every route but /health requires. */
    token: z.string({ error: 'a secret string' }).min(16, { error: 'a secret of at least 16 characters' }).nullable().default(null),
    /** A file holding the token (first line), instead of token. */
    token_file: z.string({ error: 'a path to a file holding the token' }).min(1).nullable().default(null),
  },
  section('admin'),
);

export const metricsSchema = z.strictObject(
  {
    /**
     * host:port of a listener serving only GET /metrics and GET /health, with
     * no token (as Prometheus scrapes): bind it where only Prometheus reaches.
     * null: /metrics is served by the admin API, or, when admin.listen is null
     * too, by a metrics-only listener on the admin API's default address.
     */
    listen: z
      .string({ error: 'host:port such as 127.0.0.1:9525, or null' })
      .regex(/^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { error: 'host:port such as 127.0.0.1:9525' })
      .nullable()
      .default(null),
  },
  section('metrics'),
);

export const stateSchema = z.strictObject(
  {
    /** Bans and country rules changed at run time; written atomically on every change, read at start. */
    file: z.string({ error: 'a path for the state file' }).min(1, { error: 'a path for the state file' }).default('./run/state.json'),
    /** One JSON line per run-time change: when, what, by whom, why. */
    audit_log: z.string({ error: 'a path for the audit log' }).min(1, { error: 'a path for the audit log' }).default('./run/audit.log'),
  },
  section('state'),
);

export const runAsSchema = z.strictObject(
  {
    /** Started as root: once every socket is bound, become this user (name or id). */
    user: userOrId,
    /** …and this group; default the user's primary group. */
    group: userOrId,
    /** Started as root without a user: keep running as root (refused otherwise). */
    allow_root: z.boolean({ error: 'true or false' }).default(false),
  },
  section('run_as'),
);

export const configSchema = z.strictObject({
  run_as: runAsSchema.default(() => runAsSchema.parse({})),
  log: logSchema.default(() => logSchema.parse({})),
  engine: engineSchema.default(() => engineSchema.parse({})),
  store: storeSchema.default(() => storeSchema.parse({})),
  anvil: anvilSchema.default(() => anvilSchema.parse({})),
  geo: geoSchema.default(() => geoSchema.parse({})),
  postfix_policy: postfixPolicySchema.default(() => postfixPolicySchema.parse({})),
  dovecot_policy: dovecotPolicySchema.default(() => dovecotPolicySchema.parse({})),
  state: stateSchema.default(() => stateSchema.parse({})),
  admin: adminSchema.default(() => adminSchema.parse({})),
  metrics: metricsSchema.default(() => metricsSchema.parse({})),
  nginx_auth: nginxAuthSchema.default(() => nginxAuthSchema.parse({})),
  haproxy_spoe: haproxySpoeSchema.default(() => haproxySpoeSchema.parse({})),
  firewall: firewallSchema.default(() => firewallSchema.parse({})),
  crowdsec: crowdsecSchema.default(() => crowdsecSchema.parse({})),
  ...rulesSchemaShape,
});

export type ConfigData = z.output<typeof configSchema>;
export type DovecotPolicyConfig = z.output<typeof dovecotPolicySchema>;
export type AdminConfig = z.output<typeof adminSchema>;
export type MetricsConfig = z.output<typeof metricsSchema>;
export type NginxAuthConfig = z.output<typeof nginxAuthSchema>;
export type HaproxySpoeConfig = z.output<typeof haproxySpoeSchema>;
export type NftSetsConfig = z.output<typeof nftSetsSchema>;
export type CrowdsecConfig = z.output<typeof crowdsecSchema>;
