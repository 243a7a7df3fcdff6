/**
 * Every error code Doorman throws, logs or answers with, in one catalogue:
 * the code, what it means in an admin's words, its kind (where it applies)
 * and, for the admin API, the HTTP status it is answered with. A limit
 * being hit is a Decision, never an error: these are for input Doorman
 * refuses and for faults it cannot serve around.
 *
 * The code is the contract (log lines, the admin API's bodies, the tests);
 * the message at the throw site adds the particulars (file, key, value,
 * peer). `ErrorCode` is derived from the table, so a code that is not in it
 * does not compile, and each class below takes only codes of its kind.
 * src/errors.test.ts checks that every code in the sources is here, that
 * every entry is used, and that docs/admin-api.md lists the API's codes.
 *
 * The classes. Here, those that carry a code and nothing else, and the
 * configuration's, which every layer raises:
 *   DoormanError (any code), ConfigError (issues), ProtocolError, ListenError,
 *   StoreUnavailableError, ControlInputError, GuardrailError, PrivilegeError,
 *   HttpError, FirewallError.
 * Beside the concern whose data they carry:
 *   ReloadError                     config/reload.ts         the keys that need a restart
 *   GeoDatabaseError, GeoWatchError geo/errors.ts            the database file's path
 *   SpopError                       protocols/spop-data.ts   the SPOP status sent in AGENT-DISCONNECT
 *   NginxAuthError                  protocols/nginx-auth.ts  the header at fault
 *   DovecotPolicyError              protocols/dovecot-policy.ts  the body field at fault
 *   AdminError                      cli/admin-client.ts      the command's exit code, the HTTP status
 *   CrowdsecError                   crowdsec/lapi-client.ts  how CrowdSec's Local API could not be read
 *   StreamShapeError                crowdsec/stream.ts       (no code) a Local API answer of the wrong shape, made a CrowdsecError by its caller
 *
 * This module imports nothing: src/core/ and the codecs may use it.
 */

/** Where an error applies, and what follows from it. */
export const ERROR_KINDS = {
  config: 'the configuration is invalid: Doorman does not start, or a reload keeps the running configuration',
  reload: 'a reload refused whole: the running configuration stays',
  listen: 'a listener cannot start: Doorman does not start',
  privilege: 'root cannot be given up as run_as asks: Doorman stops',
  protocol: 'a wire protocol broken: by a peer (its connection is closed and the line logged), or by what Doorman was asked to send (refused before a byte leaves)',
  session: 'why a listener dropped a Postfix client, logged with the code',
  store: 'the shared store failed: each service answers as its on_store_failure says',
  input: 'an operator request (admin API, CLI) names something that does not exist or is malformed: nothing was changed',
  guardrail: 'an operator change refused so that the operator does not lock themselves or an exception network out: nothing was changed',
  http: 'the admin API refused a request',
  geo: 'the country database cannot be used or watched',
  firewall: 'the nftables sets Doorman copies its bans into (firewall.nft): at start Doorman does not start; later a failure is retried and decisions go on',
  crowdsec: "CrowdSec's Local API could not be read: the CrowdSec bans already known stay until they end, and the next poll asks again",
  cli: 'a doorman command could not talk to the daemon',
  internal: 'a bug: an error Doorman did not expect, logged with its stack',
} as const;

export type ErrorKind = keyof typeof ERROR_KINDS;

/** One entry of the catalogue. */
export interface ErrorInfo {
  readonly kind: ErrorKind;
  /** One line an admin understands. */
  readonly meaning: string;
  /** The admin API's status for it, when the API answers with it. */
  readonly http?: number;
}

/**
 * The catalogue. A key ending in `<status>` is a family: the code is the
 * prefix and an HTTP status (DOORMAN_ERR_HTTP_502).
 */
export const ERRORS = {
  // Configuration, reload, start
  DOORMAN_ERR_CONFIG: { kind: 'config', http: 400, meaning: 'The configuration is invalid; each problem names the file, the key, what it held and what was expected.' },
  DOORMAN_ERR_ADMIN_TOKEN: { kind: 'config', meaning: 'admin.token_file cannot be read, or its first line holds too short a token.' },
  DOORMAN_ERR_RELOAD_NEEDS_RESTART: { kind: 'reload', http: 409, meaning: 'A reload would change settings that need a restart (listeners, store, state files, a service\'s protocol or proxy); they are named, and nothing was changed.' },
  DOORMAN_ERR_LISTEN: { kind: 'listen', meaning: 'A listener cannot bind its address: the port is in use, the address is not local, or permission is denied.' },
  DOORMAN_ERR_SOCKET_PATH: { kind: 'listen', meaning: 'A listener\'s socket path exists and is not a socket; Doorman will not replace it.' },
  DOORMAN_ERR_SOCKET_IN_USE: { kind: 'listen', meaning: 'Another process (another Doorman?) already listens on a listener\'s Unix socket.' },
  DOORMAN_ERR_SOCKET_ACCESS: { kind: 'listen', meaning: 'A listener\'s Unix socket cannot be given its configured mode or owner.' },
  DOORMAN_ERR_ID_LOOKUP: { kind: 'listen', meaning: 'A user or group the configuration names is not in /etc/passwd or /etc/group, or those files cannot be read.' },
  DOORMAN_ERR_ROOT: { kind: 'privilege', meaning: 'Started as root without run_as.user: Doorman will not keep root unless run_as.allow_root says so.' },
  DOORMAN_ERR_RUN_AS: { kind: 'privilege', meaning: 'Root cannot be given up as run_as asks: the user is unknown or root, cannot write the state directory, or the switch did not hold.' },

  // The store
  DOORMAN_ERR_STORE_UNAVAILABLE: { kind: 'store', http: 503, meaning: 'The shared store (Redis) did not answer in time or cannot be reached; the admin API changes nothing.' },
  DOORMAN_ERR_STORE: { kind: 'store', meaning: 'Answering a Postfix client failed in the store, with no reply its protocol has for that: the client was dropped.' },

  // Postfix clients dropped by a listener
  DOORMAN_ERR_IDLE: { kind: 'session', meaning: 'A client of the anvil or policy service sent nothing for a whole idle period.' },
  DOORMAN_ERR_REQUEST_STALLED: { kind: 'session', meaning: 'A client began a request and did not finish it in time.' },
  DOORMAN_ERR_ANVIL_BAD_REQUESTS: { kind: 'session', meaning: 'An anvil client sent more unknown requests than anvil.max_bad_requests.' },

  // Postfix's attribute protocol, anvil and policy delegation
  DOORMAN_ERR_ATTR_NO_NAME: { kind: 'protocol', meaning: 'An attribute line with an empty name.' },
  DOORMAN_ERR_ATTR_NO_VALUE: { kind: 'protocol', meaning: 'An attribute line without "=".' },
  DOORMAN_ERR_ATTR_NUL: { kind: 'protocol', meaning: 'A NUL byte in an attribute.' },
  DOORMAN_ERR_ATTR_TOO_LONG: { kind: 'protocol', meaning: 'An attribute line or block longer than its cap.' },
  DOORMAN_ERR_ATTR_TOO_MANY: { kind: 'protocol', meaning: 'More attributes in one block than the cap.' },
  DOORMAN_ERR_ATTR_STATE: { kind: 'protocol', meaning: 'Bytes given to an attribute reader that has already failed (a bug in its caller).' },
  DOORMAN_ERR_ATTR_ENCODE: { kind: 'protocol', meaning: 'An attribute Doorman was to send cannot be written: an empty name, or "=", LF or NUL where they cannot go.' },
  DOORMAN_ERR_ANVIL_REQUEST: { kind: 'protocol', meaning: 'An anvil request that is not request=… then ident=….' },
  DOORMAN_ERR_ANVIL_REPLY: { kind: 'protocol', meaning: 'An anvil reply without the fields its request expects, in order, as numbers.' },
  DOORMAN_ERR_ANVIL_FAIL: { kind: 'protocol', meaning: 'An anvil server answered status=fail.' },
  DOORMAN_ERR_POLICY_REQUEST: { kind: 'protocol', meaning: 'A policy request without request=smtpd_access_policy.' },
  DOORMAN_ERR_POLICY_DUPLICATE: { kind: 'protocol', meaning: 'A policy request naming an attribute twice.' },

  // PROXY protocol
  DOORMAN_ERR_PROXY_MISSING: { kind: 'protocol', meaning: 'A connection from a trusted proxy did not start with a PROXY header.' },
  DOORMAN_ERR_PROXY_V1: { kind: 'protocol', meaning: 'A malformed PROXY v1 header: its fields, protocol, addresses, port, CRLF or length.' },
  DOORMAN_ERR_PROXY_V2: { kind: 'protocol', meaning: 'A malformed PROXY v2 header: its version, command, address family or block, or over the size cap.' },
  DOORMAN_ERR_PROXY_ENCODE: { kind: 'protocol', meaning: 'A PROXY header Doorman was to send names something that is not an IP address.' },

  // HAProxy's SPOP (SPOE agents)
  DOORMAN_ERR_SPOP_FRAME: { kind: 'protocol', meaning: 'A malformed SPOP frame: shorter than its header, reserved flags set, or ids its type does not take.' },
  DOORMAN_ERR_SPOP_TOO_BIG: { kind: 'protocol', meaning: 'An SPOP frame over the agreed max-frame-size.' },
  DOORMAN_ERR_SPOP_FRAGMENTED: { kind: 'protocol', meaning: 'HAProxy sent a fragmented payload, which Doorman does not accept.' },
  DOORMAN_ERR_SPOP_TYPE: { kind: 'protocol', meaning: 'An SPOP frame of a type HAProxy does not send.' },
  DOORMAN_ERR_SPOP_STATE: { kind: 'protocol', meaning: 'An SPOP frame out of turn (HELLO twice, NOTIFY before HELLO, a NOTIFY again before its ACK), or a reader that has already failed.' },
  DOORMAN_ERR_SPOP_CAP: { kind: 'protocol', meaning: 'Over one of Doorman\'s SPOP caps: items, messages, arguments, bytes of a value, NOTIFY frames waiting.' },
  DOORMAN_ERR_SPOP_BAD_VERSION: { kind: 'protocol', meaning: 'HAProxy and Doorman share no SPOP version, or a version item is malformed.' },
  DOORMAN_ERR_SPOP_BAD_FRAME_SIZE: { kind: 'protocol', meaning: 'An SPOP max-frame-size out of range.' },
  DOORMAN_ERR_SPOP_NO_VERSION: { kind: 'protocol', meaning: 'An SPOP HELLO without its version item.' },
  DOORMAN_ERR_SPOP_NO_FRAME_SIZE: { kind: 'protocol', meaning: 'An SPOP HELLO without max-frame-size.' },
  DOORMAN_ERR_SPOP_NO_CAPABILITIES: { kind: 'protocol', meaning: 'An SPOP HELLO without capabilities.' },
  DOORMAN_ERR_SPOP_MISSING_ITEM: { kind: 'protocol', meaning: 'An SPOP DISCONNECT without its status-code or message.' },
  DOORMAN_ERR_SPOP_PAYLOAD: { kind: 'protocol', meaning: 'An SPOP payload that breaks the protocol: an empty or repeated name, an item of the wrong type, an unknown action or scope, an over-long message.' },
  DOORMAN_ERR_SPOP_DATA: { kind: 'protocol', meaning: 'A malformed SPOP typed value: flags on a type that takes none, an INT32 out of range, a reserved type.' },
  DOORMAN_ERR_SPOP_TRUNCATED: { kind: 'protocol', meaning: 'An SPOP frame that ends inside a value.' },
  DOORMAN_ERR_SPOP_VARINT: { kind: 'protocol', meaning: 'An SPOP varint longer than 64 bits or over its field\'s maximum.' },
  DOORMAN_ERR_SPOP_ENCODE: { kind: 'protocol', meaning: 'An SPOP frame Doorman was to send cannot be written: a missing item, too many messages or arguments, an action it cannot encode.' },
  DOORMAN_ERR_SPOP_NOT_WAITING: { kind: 'protocol', meaning: 'An SPOP ACK for a NOTIFY that is not waiting for one (a bug in its caller).' },

  // Dovecot's auth policy protocol
  DOORMAN_ERR_DOVECOT_COMMAND: { kind: 'protocol', meaning: 'A Dovecot policy request whose URL has no command parameter, has it twice, or names neither allow nor report.' },
  DOORMAN_ERR_DOVECOT_BODY: { kind: 'protocol', meaning: 'A Dovecot policy request whose body is not a JSON object.' },
  DOORMAN_ERR_DOVECOT_MISSING: { kind: 'protocol', meaning: 'A Dovecot policy request without remote.' },
  DOORMAN_ERR_DOVECOT_TYPE: { kind: 'protocol', meaning: 'A Dovecot policy field of another JSON type than Dovecot writes: a string, or a boolean for success, policy_reject and tls.' },
  DOORMAN_ERR_DOVECOT_TOO_LONG: { kind: 'protocol', meaning: 'A Dovecot policy field longer than its cap, in characters.' },
  DOORMAN_ERR_DOVECOT_ENCODE: { kind: 'protocol', meaning: 'A Dovecot policy request or reply Doorman was to write cannot be: a field missing, mistyped or over its cap, a status not a 32-bit integer.' },
  DOORMAN_ERR_DOVECOT_REPLY: { kind: 'protocol', meaning: 'A Dovecot policy reply Dovecot would not act on: not a JSON object, no integer status, a msg that is not a string.' },
  // nginx's mail auth_http
  DOORMAN_ERR_NGINX_METHOD: { kind: 'protocol', meaning: 'An auth_http request that is not a GET.' },
  DOORMAN_ERR_NGINX_MISSING: { kind: 'protocol', meaning: 'An auth_http header nginx always sends is missing, or one of a group came without the rest.' },
  DOORMAN_ERR_NGINX_DUPLICATE: { kind: 'protocol', meaning: 'An auth_http header sent twice.' },
  DOORMAN_ERR_NGINX_VALUE: { kind: 'protocol', meaning: 'An auth_http header with a value nginx does not send: control characters, not UTF-8, not the number, address or word expected.' },
  DOORMAN_ERR_NGINX_ESCAPE: { kind: 'protocol', meaning: 'An auth_http header with a bad %-escape, or a byte nginx escapes left unescaped.' },
  DOORMAN_ERR_NGINX_TOO_LONG: { kind: 'protocol', meaning: 'An auth_http header longer than its cap (the login, the password, any header).' },
  DOORMAN_ERR_NGINX_TOO_MANY: { kind: 'protocol', meaning: 'More auth_http headers, or header bytes, than the cap.' },
  DOORMAN_ERR_NGINX_ENCODE: { kind: 'protocol', meaning: 'An auth_http request or answer Doorman was to send cannot be written so that nginx reads it back.' },
  DOORMAN_ERR_NGINX_ANSWER: { kind: 'protocol', meaning: 'An auth_http answer nginx would take for an internal server error (Auth-Server not an IP address, a bad Auth-Port).' },

  // Operator requests: the admin API and the CLI
  DOORMAN_ERR_SERVICE: { kind: 'input', http: 400, meaning: 'No service of that name in the configuration.' },
  DOORMAN_ERR_ADDRESS: { kind: 'input', http: 400, meaning: 'Not an IP address or network.' },
  DOORMAN_ERR_TARGET: { kind: 'input', http: 400, meaning: 'A kick target that is no live connection, address or network, or a connection to another service than the one named.' },
  DOORMAN_ERR_REASON: { kind: 'input', http: 400, meaning: 'A ban without a reason: every ban needs one, a kick that bans too.' },
  DOORMAN_ERR_BAN_TTL: { kind: 'input', http: 400, meaning: 'A ban shorter than 1 second or longer than 366 days.' },
  DOORMAN_ERR_COUNTRY: { kind: 'input', http: 400, meaning: 'Not an assigned ISO 3166-1 alpha-2 country code (nor XK).' },
  DOORMAN_ERR_COUNTRY_RULE: { kind: 'input', http: 400, meaning: 'A country rule that does not hold together: both lists or neither, or blocking the only country allowed.' },
  DOORMAN_ERR_CROWDSEC_BAN: { kind: 'input', http: 409, meaning: 'The ban is CrowdSec\'s: lift it in CrowdSec (cscli decisions delete), which Doorman follows.' },
  DOORMAN_ERR_GUARDRAIL: { kind: 'guardrail', http: 409, meaning: 'The change would ban your own address or an exception network, or block your own country.' },

  // The admin API
  DOORMAN_ERR_BAD_REQUEST: { kind: 'http', http: 400, meaning: 'A request the route does not take: a field or parameter (named) with the wrong value, an unknown field, a body that is not JSON (fastify\'s own 4xx keep their status).' },
  DOORMAN_ERR_UNAUTHORIZED: { kind: 'http', http: 401, meaning: 'No token or a wrong one; without admin.token, a Host header that is not a loopback name.' },
  DOORMAN_ERR_NOT_FOUND: { kind: 'http', http: 404, meaning: 'No such connection, ban or route.' },
  DOORMAN_ERR_TOO_MANY_STREAMS: { kind: 'http', http: 503, meaning: 'Too many event streams (/api/events) open at once; close one and retry.' },
  DOORMAN_ERR_STATE_WRITE: { kind: 'http', http: 500, meaning: 'The change could not be written to the state file or the audit log.' },
  DOORMAN_ERR_INTERNAL: { kind: 'internal', http: 500, meaning: 'An error Doorman did not expect (a bug): the admin API answers 500, a listener drops the client.' },

  // The country database
  DOORMAN_ERR_GEO_DATABASE: { kind: 'geo', meaning: 'A country database cannot be used: missing, unreadable, not a MaxMind DB, not country data, or corrupt.' },
  DOORMAN_ERR_GEO_WATCH: { kind: 'geo', meaning: 'A country database\'s directory cannot be watched, so updates are not seen until it can (tried again).' },

  // The nftables sets (firewall.nft)
  DOORMAN_ERR_FIREWALL_SET: { kind: 'firewall', meaning: 'At start: a set firewall.nft names does not exist, is not of the address type of its key (ipv4_addr, ipv6_addr) with flags interval and timeout, or nft cannot be run.' },
  DOORMAN_ERR_FIREWALL_SYNC: { kind: 'firewall', meaning: 'Writing bans to the nftables sets failed: logged and counted, then retried by a full resync after a backoff (1 s doubling to 60 s); decisions never wait for it.' },
  // CrowdSec's Local API, read by the bouncer (src/crowdsec/)
  DOORMAN_ERR_CROWDSEC_KEY_FILE: { kind: 'config', meaning: 'crowdsec.api_key_file cannot be read, or its first line is empty.' },
  DOORMAN_ERR_CROWDSEC_UNREACHABLE: { kind: 'crowdsec', meaning: 'Nothing answered at crowdsec.lapi_url: refused, reset, unknown host.' },
  DOORMAN_ERR_CROWDSEC_TIMEOUT: { kind: 'crowdsec', meaning: 'The Local API did not answer in full within crowdsec.request_timeout.' },
  DOORMAN_ERR_CROWDSEC_KEY: { kind: 'crowdsec', meaning: 'The Local API refused the bouncer key (401 or 403): add one with `cscli bouncers add NAME` and put it in crowdsec.api_key_file.' },
  DOORMAN_ERR_CROWDSEC_STATUS: { kind: 'crowdsec', meaning: 'The Local API answered with an HTTP status other than 200.' },
  DOORMAN_ERR_CROWDSEC_TOO_LARGE: { kind: 'crowdsec', meaning: 'The Local API\'s answer is larger than crowdsec.max_response_bytes: nothing of it is used.' },
  DOORMAN_ERR_CROWDSEC_ANSWER: { kind: 'crowdsec', meaning: 'The Local API\'s answer is not a decisions stream: not JSON, or not {new, deleted} lists.' },

  // The doorman command, talking to the daemon
  DOORMAN_ERR_ADMIN_OFF: { kind: 'cli', meaning: 'The admin API is off (admin.listen is null): nothing to talk to unless --url names one.' },
  DOORMAN_ERR_ADMIN_PORT: { kind: 'cli', meaning: 'admin.listen has port 0, chosen at start: --url must name the port the daemon logged.' },
  DOORMAN_ERR_ADMIN_TOKEN_FILE: { kind: 'cli', meaning: 'The command cannot read admin.token_file, or the file is empty.' },
  DOORMAN_ERR_ADMIN_UNREACHABLE: { kind: 'cli', meaning: 'Nothing answered at the admin API\'s address: refused, unknown host, unreachable.' },
  DOORMAN_ERR_ADMIN_TIMEOUT: { kind: 'cli', meaning: 'The daemon did not answer within the deadline (--timeout).' },
  DOORMAN_ERR_ADMIN_PROTOCOL: { kind: 'cli', meaning: 'What answered is not Doorman\'s admin API: not JSON, a redirect, a 404 without an error, an answer over 16 MiB.' },
  'DOORMAN_ERR_HTTP_<status>': { kind: 'cli', meaning: 'The admin API\'s address answered with an HTTP error and no Doorman error in it: another server, or a proxy in front of the daemon.' },
} as const satisfies Readonly<Record<`DOORMAN_ERR_${string}`, ErrorInfo>>;

type Catalogue = typeof ERRORS;
type Key = keyof Catalogue;
/** A key as thrown: a family's `<status>` is a number. */
type AsCode<K extends Key> = K extends `${infer Prefix}<status>` ? `${Prefix}${number}` : K;

/** Every code Doorman uses. */
export type ErrorCode = AsCode<Key>;
/** The codes of one kind. */
export type CodeOf<K extends ErrorKind> = AsCode<{ [C in Key]: Catalogue[C]['kind'] extends K ? C : never }[Key]>;
/** The codes the admin API answers with, each with its status. */
export type HttpCode = { [C in Key]: Catalogue[C] extends { readonly http: number } ? C : never }[Key];

const FAMILY = '<status>';
const FAMILIES = (Object.keys(ERRORS) as Key[]).filter((k) => k.endsWith(FAMILY)).map((k) => k.slice(0, -FAMILY.length));

/** Whether `s` (from a peer, a file) is a code of this catalogue. */
export function isErrorCode(s: string): s is ErrorCode {
  if (Object.hasOwn(ERRORS, s)) return !s.endsWith(FAMILY);
  return FAMILIES.some((p) => s.startsWith(p) && /^[1-9][0-9]{2}$/.test(s.slice(p.length)));
}

/** The entry for `code` (a family's member reads its family's). */
export function errorInfo(code: ErrorCode): ErrorInfo {
  if (Object.hasOwn(ERRORS, code)) return ERRORS[code as Key];
  const key = `${FAMILIES.find((p) => code.startsWith(p))}${FAMILY}` as Key;
  return ERRORS[key];
}

/** The admin API's status for `code`, or null for a code it does not answer with. */
export function httpStatus(code: ErrorCode): number | null {
  return errorInfo(code).http ?? null;
}

/** Base class: every error Doorman throws on purpose carries a code of the catalogue. */
export class DoormanError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** One problem found in a configuration file: which file, which key, what was there, what was expected. */
export interface ConfigIssue {
  file: string;
  key: string;
  value: unknown;
  expected: string;
}

/** The configuration is invalid. The message lists every issue, one per line. */
export class ConfigError extends DoormanError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super('DOORMAN_ERR_CONFIG', issues.map(formatIssue).join('\n'));
    this.issues = issues;
  }
}

function formatIssue(i: ConfigIssue): string {
  const shown = i.value === undefined ? '(missing)' : JSON.stringify(i.value);
  return `${i.file}: ${i.key || '(top level)'}: got ${shown}, expected ${i.expected}`;
}

/** Bytes from a peer broke the wire protocol (the connection that sent them is closed), or bytes to send would. */
export class ProtocolError extends DoormanError {
  constructor(code: CodeOf<'protocol'>, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** A listener could not start (socket in use, bad path, permissions). */
export class ListenError extends DoormanError {
  constructor(code: CodeOf<'listen'>, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * The shared store (Redis) did not answer in time or cannot be reached. The
 * gatekeeper turns it into the service's on_store_failure decision.
 */
export class StoreUnavailableError extends DoormanError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DOORMAN_ERR_STORE_UNAVAILABLE', message, options);
  }
}

/** An operator's request naming something that does not exist or is malformed. */
export class ControlInputError extends DoormanError {
  constructor(code: CodeOf<'input'>, message: string) {
    super(code, message);
  }
}

/** A change refused to keep the operator from locking themselves (or an exception network) out. */
export class GuardrailError extends DoormanError {
  constructor(code: CodeOf<'guardrail'>, message: string) {
    super(code, message);
  }
}

/** Root cannot be given up as run_as asks, or must not be kept. */
export class PrivilegeError extends DoormanError {
  constructor(code: CodeOf<'privilege'>, message: string) {
    super(code, message);
  }
}

/** Thrown by an admin API route: answered with its code's status (ERRORS[code].http). */
export class HttpError extends DoormanError {
  constructor(code: HttpCode, message: string) {
    super(code, message);
  }
}

/** The nftables sets of firewall.nft cannot be used (at start). */
export class FirewallError extends DoormanError {
  constructor(code: CodeOf<'firewall'>, message: string) {
    super(code, message);
  }
}
