/**
 * Dovecot's auth policy protocol (auth_policy_server_url), decoded on the
 * side of the server Dovecot asks, and the reply encoded. No I/O: the HTTP
 * server is src/http/dovecot-policy.ts. Seen from Debian 12's Dovecot
 * 2.3.19.1 (/work/shared/notes/dovecot-2.3.md) and read in Dovecot 2.4.1's
 * src/auth/auth-policy.c:
 *
 *   POST <url>?command=allow    before the password is checked, and again
 *                               after it was accepted (same session_id);
 *                               "&command=…" when the URL ends in "&"
 *   POST <url>?command=report   after the attempt
 *   Content-Type: application/json
 *   {"device_id":"","fail_type":"credentials","login":"alice","protocol":"imap",
 *    "pwhash":"0690","remote":"203.0.113.7","session_id":"Bo5C5upgMdTLAHEH",
 *    "success":false,"policy_reject":false,"tls":false}
 *                               (2.4's report of a wrong password; 2.3 sends
 *                               the same without fail_type)
 *
 *   The attributes of auth_policy_request_attributes come first, sorted by
 *   name, each a JSON string ("/" in a name nests an object); then, in a
 *   report only, the booleans success and policy_reject; then the boolean
 *   tls, always. fail_type is 2.4's (its default attributes add it): "" in
 *   an allow, in a report why the attempt failed (see countsAsGuess).
 *
 *   reply: {"status":N,"msg":"…"}   N < 0 refuses (msg shown to the client),
 *                                   N > 0 tarpits N seconds, 0 lets it go on.
 *   2.3 took {} as status 0; 2.4 takes a reply without status for an error,
 *   so every reply carries one. Both read only status (an integer) and msg
 *   (a string), and skip other keys.
 *
 * Strict where Dovecot is exact: one `command` parameter, allow or report;
 * the body a JSON object with `remote`; each field Doorman reads of the JSON
 * type Dovecot writes (a string, or a boolean for success, policy_reject
 * and tls) and within its cap. Anything else is a DovecotPolicyError naming
 * the field. Keys Doorman does not read (an admin's own attributes) are
 * left alone, whatever their type.
 *
 * The caps count characters (code points, at most 4 bytes each), not
 * bytes, and are no tighter than the JSON schema's maxLength this codec
 * replaced. A refused request is an HTTP error to Dovecot, and by default
 * (auth_policy_reject_on_fail = no) Dovecot then lets the login go on
 * unchecked; login and device_id are the client's text (device_id holds
 * its IMAP ID with imap_id_retain, each invalid UTF-8 byte of it sent as
 * U+FFFD, 3 bytes), so a cap tighter than before would let more clients
 * skip the policy check.
 *
 * SECURITY: login and remote are what the client typed and where it came
 * from, and may hold anything JSON can; pwhash is a truncated hash of the
 * password under auth_policy_hash_nonce, never the password itself.
 *
 * BUGS (Dovecot's): a URL holding "?" but not ending in "&" still gets
 * "?command=…" appended, so the command arrives inside another parameter's
 * value and the request is refused here as having none.
 */
import { clientAddress, type ClientAddress } from '../core/ip.js';
import { ProtocolError } from '../errors.js';

export const DOVECOT_COMMANDS = ['allow', 'report'] as const;
export type DovecotCommand = (typeof DOVECOT_COMMANDS)[number];

/**
 * Dovecot's requests are a few hundred bytes, a few KiB with every field
 * below at its cap; 16 KiB leaves room for attributes an admin adds
 * (auth_policy_request_attributes).
 */
export const MAX_BODY_BYTES = 16 * 1024;

/** Dovecot reads status into a C int (json_node_get_int). */
const INT_MIN = -(2 ** 31);
const INT_MAX = 2 ** 31 - 1;

/** The codes this codec refuses with, all of the protocol kind. */
export type DovecotErrorCode =
  | 'DOORMAN_ERR_DOVECOT_COMMAND'
  | 'DOORMAN_ERR_DOVECOT_BODY'
  | 'DOORMAN_ERR_DOVECOT_MISSING'
  | 'DOORMAN_ERR_DOVECOT_TYPE'
  | 'DOORMAN_ERR_DOVECOT_TOO_LONG'
  | 'DOORMAN_ERR_DOVECOT_ENCODE'
  | 'DOORMAN_ERR_DOVECOT_REPLY';

/** A request or reply Doorman refuses; `field` names the body field (or "status", "msg") at fault, when one is. */
export class DovecotPolicyError extends ProtocolError {
  readonly field: string | null;
  constructor(code: DovecotErrorCode, field: string | null, message: string) {
    super(code, field === null ? message : `${field}: ${message}`);
    this.field = field;
  }
}

function fail(code: DovecotErrorCode, field: string | null, message: string): never {
  throw new DovecotPolicyError(code, field, message);
}

/** The fields Doorman reads, named as the code names them; absent is undefined. */
export interface DovecotPolicyFields {
  readonly deviceId?: string;
  readonly failType?: string;
  readonly login?: string;
  readonly protocol?: string;
  readonly pwhash?: string;
  readonly remote: string;
  readonly sessionId?: string;
  readonly success?: boolean;
  readonly policyReject?: boolean;
  readonly tls?: boolean;
}

/** A decoded request: every field present as a key, absent ones undefined. */
export interface DovecotPolicyRequest extends DovecotPolicyFields {
  readonly command: DovecotCommand;
  /**
   * The login was longer than its cap and is cut to it. No name is that
   * long; a client that types one is padding a name Dovecot shortens (an
   * auth_username_format that drops the domain) to slip past the check, so
   * the adapter refuses it rather than answer 400, which Dovecot lets pass.
   */
  readonly loginCut: boolean;
  /** `remote` parsed, once; null when it is no IP address (Dovecot sends "" when it knows none). */
  readonly client: ClientAddress | null;
}

interface TextField {
  readonly wire: string;
  readonly kind: 'text';
  /** In characters (code points): a surrogate pair is one. */
  readonly maxChars: number;
  readonly required?: true;
  /**
   * Past the cap the value is cut to it rather than refused: a 400 makes
   * Dovecot go on without a decision (auth_policy_reject_on_fail = no), so a
   * field the client controls must never be a way around the check.
   */
  readonly cut?: true;
}
interface FlagField {
  readonly wire: string;
  readonly kind: 'flag';
}
type FieldSpec = TextField | FlagField;

/**
 * Every field, in the order Dovecot writes them: the default attributes
 * sorted by name, then success, policy_reject and tls. The decoder reads
 * through it and the encoder writes through it, so they cannot disagree on
 * a name, a type or a cap.
 */
export const DOVECOT_FIELDS = {
  /** %{client_id}: "" unless imap_id_retain = yes; then the client's IMAP ID, kept under 256 bytes before quoting (LOGIN_MAX_CLIENT_ID_LEN). */
  deviceId: { wire: 'device_id', kind: 'text', maxChars: 256, cut: true },
  /** 2.4 (auth_policy_fail_type): a word of at most 11 letters; room for words a later release adds. */
  failType: { wire: 'fail_type', kind: 'text', maxChars: 32 },
  /** The name as typed: an address is at most 254 octets (RFC 5321), and master-user logins add "*master". */
  login: { wire: 'login', kind: 'text', maxChars: 512, cut: true },
  /** imap, pop3, submission, lmtp, managesieve… */
  protocol: { wire: 'protocol', kind: 'text', maxChars: 32 },
  /** Hex of a hash truncated to auth_policy_hash_truncate bits: 4 digits by default, 128 for a whole SHA-512. */
  pwhash: { wire: 'pwhash', kind: 'text', maxChars: 128 },
  /** %{rip}: IPv6 text is at most 45 characters. */
  remote: { wire: 'remote', kind: 'text', maxChars: 64, required: true },
  /** Dovecot's session ids are 16 to 32 base64 characters. */
  sessionId: { wire: 'session_id', kind: 'text', maxChars: 128 },
  success: { wire: 'success', kind: 'flag' },
  policyReject: { wire: 'policy_reject', kind: 'flag' },
  tls: { wire: 'tls', kind: 'flag' },
} as const satisfies { readonly [K in keyof DovecotPolicyFields]-?: FieldSpec };

const FIELD_LIST = Object.entries(DOVECOT_FIELDS) as ReadonlyArray<[keyof DovecotPolicyFields, FieldSpec]>;

function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/** Whether `s` has at most `maxChars` code points; counted only when its length leaves a doubt (a code point is 1 or 2 UTF-16 units). */
function fits(s: string, maxChars: number): boolean {
  if (s.length <= maxChars) return true;
  if (s.length > 2 * maxChars) return false;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // A high surrogate and the low one after it are one character; a lone surrogate is one too.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++;
    if (++n > maxChars) return false;
  }
  return true;
}

function text(body: Record<string, unknown>, f: TextField): string | undefined {
  const v = body[f.wire];
  if (v === undefined) {
    if (f.required === true) fail('DOORMAN_ERR_DOVECOT_MISSING', f.wire, 'missing');
    return undefined;
  }
  if (typeof v !== 'string') fail('DOORMAN_ERR_DOVECOT_TYPE', f.wire, `expected a string, got ${kindOf(v)}`);
  if (!fits(v, f.maxChars)) {
    if (f.cut !== true) fail('DOORMAN_ERR_DOVECOT_TOO_LONG', f.wire, `longer than ${f.maxChars} characters`);
    return cutTo(v, f.maxChars);
  }
  return v;
}

/** The first `maxChars` code points of `s` (a surrogate pair stays whole). */
function cutTo(s: string, maxChars: number): string {
  let n = 0;
  for (let i = 0; i < s.length; i++, n++) {
    if (n === maxChars) return s.slice(0, i);
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) i++;
  }
  return s;
}

function flag(body: Record<string, unknown>, f: FlagField): boolean | undefined {
  const v = body[f.wire];
  if (v === undefined || typeof v === 'boolean') return v;
  return fail('DOORMAN_ERR_DOVECOT_TYPE', f.wire, `expected a boolean, got ${kindOf(v)}`);
}

/**
 * Decodes a request: the command from its target (path and query, as the
 * request line has them), the fields from its body parsed as JSON, and
 * `remote` parsed as an address once.
 */
export function decodeDovecotRequest(target: string, body: unknown): DovecotPolicyRequest {
  const command = decodeDovecotCommand(target);
  if (typeof body !== 'object' || body === null || Array.isArray(body)) fail('DOORMAN_ERR_DOVECOT_BODY', null, `the body is ${kindOf(body)}, not a JSON object`);
  const b = body as Record<string, unknown>;
  const F = DOVECOT_FIELDS;
  // In table order, so the first field at fault is named; one literal, so every request has one shape.
  const deviceId = text(b, F.deviceId);
  const failType = text(b, F.failType);
  const rawLogin = b[F.login.wire];
  const login = text(b, F.login);
  const loginCut = typeof rawLogin === 'string' && login !== rawLogin;
  const protocol = text(b, F.protocol);
  const pwhash = text(b, F.pwhash);
  const remote = text(b, F.remote) as string;
  const sessionId = text(b, F.sessionId);
  const success = flag(b, F.success);
  const policyReject = flag(b, F.policyReject);
  const tls = flag(b, F.tls);
  return { command, deviceId, failType, login, protocol, pwhash, remote, sessionId, success, policyReject, tls, client: clientAddress(remote), loginCut };
}

/** "+" as a space, then %XX escapes, as a form field is decoded; the text as it is when an escape is broken. */
function formDecode(s: string): string {
  const plain = s.indexOf('+') === -1 ? s : s.replaceAll('+', ' ');
  if (plain.indexOf('%') === -1) return plain;
  try {
    return decodeURIComponent(plain);
  } catch {
    return plain;
  }
}

/** Whether target[from, to) is `word`, decoded as a form field; allocates only when it holds "%" or "+". */
function isWord(target: string, from: number, to: number, word: string): boolean {
  if (to - from === word.length && target.startsWith(word, from)) return true;
  for (let i = from; i < to; i++) {
    const c = target.charCodeAt(i);
    if (c === 0x25 || c === 0x2b) return formDecode(target.slice(from, to)) === word;
  }
  return false;
}

/**
 * The command of a request target. Dovecot adds the one `command` parameter
 * to auth_policy_server_url and leaves any of the URL's own alone; a second
 * `command`, none, or a value but allow or report is refused. Names and
 * values are decoded as form fields, so "command=%61llow" is allow. The
 * query starts at the first "?", or "#" if that comes first: where a
 * router ends the path.
 */
export function decodeDovecotCommand(target: string): DovecotCommand {
  let q = target.indexOf('?');
  const hash = target.indexOf('#');
  if (hash !== -1 && (q === -1 || hash < q)) q = hash;
  let command: DovecotCommand | null = null;
  let seen = false;
  // The next "=" at or after `start`, looked for again only once passed: one scan of the query in all.
  let eq = -2;
  for (let start = q + 1; q !== -1 && start <= target.length; ) {
    const amp = target.indexOf('&', start);
    const end = amp === -1 ? target.length : amp;
    if (eq !== -1 && eq < start) eq = target.indexOf('=', start);
    const nameEnd = eq === -1 || eq > end ? end : eq;
    if (nameEnd > start && isWord(target, start, nameEnd, 'command')) {
      if (seen) fail('DOORMAN_ERR_DOVECOT_COMMAND', null, 'command given twice');
      seen = true;
      const from = nameEnd === end ? end : nameEnd + 1;
      command = isWord(target, from, end, 'allow') ? 'allow' : isWord(target, from, end, 'report') ? 'report' : null;
      if (command === null) fail('DOORMAN_ERR_DOVECOT_COMMAND', null, `unknown command ${JSON.stringify(target.slice(from, Math.min(end, from + 32)))}`);
    }
    start = end + 1;
  }
  if (command === null) fail('DOORMAN_ERR_DOVECOT_COMMAND', null, 'no command in the URL');
  return command;
}

/**
 * Whether a failed login Dovecot reports is a guess at credentials, which
 * counts toward AUTH-failure bans. Dovecot 2.3 says only that it failed (no
 * fail_type): every failure is taken for one, as before. Dovecot 2.4 says
 * why (auth_policy_fail_type): a wrong password (`credentials`) or an
 * unknown user (`account`) is a guess, which Dovecot answers the client
 * alike and a password sprayer produces by the thousand; an internal error,
 * an expired password, a disabled account, a policy refusal or a kind this
 * code does not know is no guess, and must not get an innocent address
 * banned.
 */
export function countsAsGuess(failType: string | undefined): boolean {
  return failType === undefined || failType === 'credentials' || failType === 'account';
}

/**
 * Whether a report tells of a guess at credentials that failed: not a
 * success, not refused by the policy server (that refusal was counted where
 * it was made), and a guess by its fail_type.
 */
export function reportsFailedGuess(r: DovecotPolicyFields): boolean {
  return r.success === false && r.policyReject !== true && countsAsGuess(r.failType);
}

/** A reply: `status` < 0 refuses, > 0 tarpits that many seconds, 0 lets the login go on; `msg` is shown to a refused client. */
export interface DovecotReply {
  readonly status: number;
  readonly msg?: string;
}

/** The status of a refusal. */
export const REFUSE_STATUS = -1;
/** The reply to nearly every request, encoded once. */
export const CONTINUE_REPLY = '{"status":0}';

/** Encodes a reply as JSON, status first. */
export function encodeDovecotReply(r: DovecotReply): string {
  if (!Number.isInteger(r.status) || r.status < INT_MIN || r.status > INT_MAX) fail('DOORMAN_ERR_DOVECOT_ENCODE', 'status', `not an integer Dovecot can read: ${String(r.status)}`);
  if (r.msg === undefined) return r.status === 0 ? CONTINUE_REPLY : `{"status":${r.status}}`;
  if (typeof r.msg !== 'string') fail('DOORMAN_ERR_DOVECOT_ENCODE', 'msg', `expected a string, got ${kindOf(r.msg)}`);
  return `{"status":${r.status},"msg":${JSON.stringify(r.msg)}}`;
}

/**
 * Reads a reply as Dovecot 2.4 does (auth_policy_parse_response): a JSON
 * object with an integer status and, if any, a string msg; other keys are
 * skipped, and an empty msg is none. (2.3 also took a missing status as 0.)
 */
export function decodeDovecotReply(json: string): DovecotReply {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    fail('DOORMAN_ERR_DOVECOT_REPLY', null, 'not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('DOORMAN_ERR_DOVECOT_REPLY', null, `${kindOf(v)}, not a JSON object`);
  const { status, msg } = v as Record<string, unknown>;
  if (status === undefined) fail('DOORMAN_ERR_DOVECOT_REPLY', 'status', 'missing');
  if (typeof status !== 'number' || !Number.isInteger(status) || status < INT_MIN || status > INT_MAX) fail('DOORMAN_ERR_DOVECOT_REPLY', 'status', `not an integer: ${JSON.stringify(status)}`);
  if (msg !== undefined && typeof msg !== 'string') fail('DOORMAN_ERR_DOVECOT_REPLY', 'msg', `expected a string, got ${kindOf(msg)}`);
  return msg === undefined || msg === '' ? { status } : { status, msg };
}

/** The request target Dovecot sends for `command` to auth_policy_server_url's path and query, `url`. */
export function encodeDovecotTarget(url: string, command: DovecotCommand): string {
  return url.endsWith('&') ? `${url}command=${command}` : `${url}?command=${command}`;
}

/**
 * Encodes a body as Dovecot writes one: compact JSON, the fields in
 * DOVECOT_FIELDS' order, those undefined left out. (Dovecot's own escaping
 * of control characters in a string may differ; JSON reads both alike.)
 */
export function encodeDovecotBody(fields: DovecotPolicyFields): string {
  const parts: string[] = [];
  for (const [key, spec] of FIELD_LIST) {
    const v: unknown = fields[key];
    if (v === undefined) {
      if (spec.kind === 'text' && spec.required === true) fail('DOORMAN_ERR_DOVECOT_ENCODE', spec.wire, 'missing');
      continue;
    }
    if (spec.kind === 'flag' ? typeof v !== 'boolean' : typeof v !== 'string') fail('DOORMAN_ERR_DOVECOT_ENCODE', spec.wire, `not a ${spec.kind === 'flag' ? 'boolean' : 'string'}`);
    if (spec.kind === 'text' && !fits(v as string, spec.maxChars)) fail('DOORMAN_ERR_DOVECOT_ENCODE', spec.wire, `longer than ${spec.maxChars} characters`);
    parts.push(`"${spec.wire}":${JSON.stringify(v)}`);
  }
  return `{${parts.join(',')}}`;
}
