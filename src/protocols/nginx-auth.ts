/**
 * nginx's mail auth_http protocol (ngx_mail_auth_http_module): the request
 * nginx sends, decoded on the side of the HTTP server it asks. No I/O. The
 * answer is ./nginx-auth-answer.ts.
 *
 * When a mail client authenticates (IMAP LOGIN or AUTHENTICATE, POP3
 * USER/PASS, APOP or AUTH, SMTP AUTH; with `smtp_auth none`, at each RCPT
 * TO), nginx sends one request per attempt. Seen from Debian 12's nginx
 * 1.22.1 (the module's source is the same in 1.26.3, Debian 13's):
 *
 *   GET /auth HTTP/1.0                 the URI of `auth_http`
 *   Host: 127.0.0.1                    the host of `auth_http`
 *   Auth-Method: plain                 plain (also for AUTH LOGIN, IMAP LOGIN
 *                                      and POP3 USER/PASS), apop, cram-md5,
 *                                      external, none; never "login"
 *   Auth-User: us%20er%25              always sent, maybe empty; escaped
 *   Auth-Pass: p%25a%20ss+w"o\rd       always sent, maybe empty; escaped
 *   Auth-Salt: <1.17@mx>               apop and cram-md5 only
 *   Auth-Protocol: imap                imap, pop3, smtp
 *   Auth-Login-Attempt: 1              1, 2, … within one session
 *   Client-IP: 127.0.0.1               the client (after set_real_ip_from)
 *   Client-Host: [UNAVAILABLE]         SMTP only: the name the resolver
 *                                      found, [UNAVAILABLE] or [TEMPUNAVAIL];
 *                                      upstream checks the name's characters
 *                                      only since 1.29.7
 *   Proxy-Protocol-Addr, -Port, -Server-Addr, -Server-Port   with PROXY on the listener
 *   Auth-SMTP-Helo, -From, -To         with Auth-Method none only: the HELO
 *                                      name, the whole MAIL and RCPT lines
 *   Auth-SSL: on, Auth-SSL-Protocol, -Cipher, -Verify, -Subject, -Issuer,
 *   -Serial, -Fingerprint, -Cert       over TLS (the certificate's fields
 *                                      with ssl_verify_client; -Cert escaped)
 *   (each auth_http_header line)
 *
 * Escaping (ngx_escape_uri with NGX_ESCAPE_MAIL_AUTH): bytes 00–20 and "%"
 * become %XX in upper-case hex; every other byte, "+" and 80–FF included,
 * goes as it is. So "+" is a plus, never a space, and UTF-8 arrives as raw
 * bytes, which Node hands over as one latin1 char per byte. DEL (7F) is not
 * escaped, and Node's parser refuses a header holding it: nginx gets a 400
 * for a password with DEL in it, and its client an internal error.
 *
 * Strict: a required header missing, a header twice, a bad number or
 * address, a broken escape, a raw byte nginx would have escaped, a value
 * over its cap, too many headers: each a NginxAuthError naming the header.
 * Headers nginx does not send (auth_http_header) are kept in `extra`.
 *
 * SECURITY: the password is wrapped in NginxPassword, which has no way to
 * give it back: JSON, inspection and string conversion show "[redacted]". A
 * gate needs to know only whether the same wrong password is tried again,
 * which a keyed digest tells; a non-enumerable string property would still
 * be one `req.password` away from a log line.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import { formatIp, parseIp } from '../core/ip.js';
import { ProtocolError, type CodeOf } from '../errors.js';

export const NGINX_AUTH_METHODS = ['plain', 'apop', 'cram-md5', 'external', 'none'] as const;
export type NginxAuthMethod = (typeof NGINX_AUTH_METHODS)[number];
export const NGINX_MAIL_PROTOCOLS = ['imap', 'pop3', 'smtp'] as const;
export type NginxMailProtocol = (typeof NGINX_MAIL_PROTOCOLS)[number];

/**
 * nginx sends 7 headers always, Auth-Salt and Client-Host at times, 4 more
 * with PROXY, 3 with `smtp_auth none`, 9 over TLS: 25, plus one per
 * auth_http_header. 48 leaves a config 23.
 */
export const MAX_HEADERS = 48;
/** Node's default maxHeaderSize: the listener gets no more anyway; nginx's own requests are under 1 KiB without a client certificate. */
export const MAX_REQUEST_BYTES = 16 * 1024;
/** An address is at most 254 octets (RFC 5321 4.5.3.1.3); a login past 256 bytes is no one's. */
export const MAX_USER_BYTES = 256;
/** App passwords and tokens are tens of bytes; 1 KiB is far past any, and the CRAM-MD5 and APOP answers are 32 hex digits. */
export const MAX_PASSWORD_BYTES = 1024;
/** An attempt number nginx counts per session; the documentation asks servers to stop retries after 10–20. 9 digits stay exact. */
const MAX_ATTEMPT_DIGITS = 9;

/** A request or answer Doorman refuses; `header` names the header at fault, when one is. */
export class NginxAuthError extends ProtocolError {
  readonly header: string | null;
  constructor(code: CodeOf<'protocol'>, header: string | null, message: string) {
    super(code, header === null ? message : `${header}: ${message}`);
    this.header = header;
  }
}

function fail(code: CodeOf<'protocol'>, header: string | null, message: string): never {
  throw new NginxAuthError(code, header, message);
}

const passwords = new WeakMap<NginxPassword, Buffer>();

/**
 * The password of a request. Nothing in it gives the bytes back: it can be
 * compared (in constant time) and digested under a key, and shows as
 * "[redacted]" wherever it is printed.
 */
export class NginxPassword {
  readonly byteLength: number;
  constructor(value: string | Uint8Array) {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
    passwords.set(this, bytes);
    this.byteLength = bytes.length;
  }
  /** Whether it is `candidate` (UTF-8 for a string), compared in constant time. */
  matches(candidate: string | Uint8Array): boolean {
    const a = passwords.get(this) as Buffer;
    const b = typeof candidate === 'string' ? Buffer.from(candidate, 'utf8') : Buffer.from(candidate);
    return a.length === b.length && timingSafeEqual(a, b);
  }
  /**
   * HMAC-SHA256 under `key`, as hex cut to `hexDigits`: short by default, like
   * Dovecot's pwhash, so it tells a repeated wrong password from a new guess
   * without being worth brute-forcing from a store dump.
   */
  digest(key: string | Uint8Array, hexDigits = 4): string {
    if (!Number.isInteger(hexDigits) || hexDigits < 1 || hexDigits > 64) throw new RangeError('hexDigits: 1 to 64');
    return createHmac('sha256', key).update(passwords.get(this) as Buffer).digest('hex').slice(0, hexDigits);
  }
  toJSON(): string {
    return '[redacted]';
  }
  toString(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return 'NginxPassword [redacted]';
  }
}

/** A decoded request. Field names follow the headers; `extra` holds the rest (auth_http_header), by lower-case name. */
export interface NginxAuthRequest {
  readonly path: string;
  readonly host: string | null;
  readonly method: NginxAuthMethod;
  readonly user: string;
  readonly password: NginxPassword;
  readonly salt: string | null;
  readonly protocol: NginxMailProtocol;
  readonly loginAttempt: number;
  /** Canonical text: dotted IPv4 (also for ::ffff:a.b.c.d), RFC 5952 IPv6. */
  readonly clientIp: string;
  readonly clientHost: string | null;
  readonly proxyProtocol: { readonly addr: string; readonly port: number; readonly serverAddr: string; readonly serverPort: number } | null;
  readonly smtp: { readonly helo: string; readonly from: string; readonly to: string } | null;
  readonly ssl: NginxSsl | null;
  readonly extra: ReadonlyMap<string, string>;
}

export interface NginxSsl {
  readonly protocol: string | null;
  readonly cipher: string | null;
  readonly verify: string | null;
  readonly subject: string | null;
  readonly issuer: string | null;
  readonly serial: string | null;
  readonly fingerprint: string | null;
  readonly cert: string | null;
}

type Kind = 'text' | 'escaped' | 'secret' | 'attempt' | 'port' | 'ip' | 'method' | 'protocol' | 'on';
type Group = 'base' | 'proxy' | 'smtp' | 'ssl';
interface Field {
  /** nginx's spelling; matched without regard to case. */
  readonly header: string;
  readonly name: string;
  readonly kind: Kind;
  /** Bytes on the wire (after escaping). */
  readonly max: number;
  readonly group: Group;
  readonly required?: true;
}

/** Every header nginx sends, in its order: the decoder's checks and the encoder's output come from this one table. */
const FIELDS: readonly Field[] = [
  { header: 'Host', name: 'host', kind: 'text', max: 512, group: 'base' },
  { header: 'Auth-Method', name: 'method', kind: 'method', max: 16, group: 'base', required: true },
  { header: 'Auth-User', name: 'user', kind: 'escaped', max: 3 * MAX_USER_BYTES, group: 'base', required: true },
  { header: 'Auth-Pass', name: 'password', kind: 'secret', max: 3 * MAX_PASSWORD_BYTES, group: 'base', required: true },
  // "<pid.time@server_name>": a server name is at most 253 bytes.
  { header: 'Auth-Salt', name: 'salt', kind: 'text', max: 512, group: 'base' },
  { header: 'Auth-Protocol', name: 'protocol', kind: 'protocol', max: 16, group: 'base', required: true },
  { header: 'Auth-Login-Attempt', name: 'loginAttempt', kind: 'attempt', max: MAX_ATTEMPT_DIGITS, group: 'base', required: true },
  // The longest IPv6 text is 45 characters.
  { header: 'Client-IP', name: 'clientIp', kind: 'ip', max: 64, group: 'base', required: true },
  // A DNS name is at most 253 bytes.
  { header: 'Client-Host', name: 'clientHost', kind: 'text', max: 256, group: 'base' },
  { header: 'Proxy-Protocol-Addr', name: 'addr', kind: 'ip', max: 64, group: 'proxy' },
  { header: 'Proxy-Protocol-Port', name: 'port', kind: 'port', max: 5, group: 'proxy' },
  { header: 'Proxy-Protocol-Server-Addr', name: 'serverAddr', kind: 'ip', max: 64, group: 'proxy' },
  { header: 'Proxy-Protocol-Server-Port', name: 'serverPort', kind: 'port', max: 5, group: 'proxy' },
  // An SMTP command line is at most 512 bytes (RFC 5321 4.5.3.1.4); twice that leaves room for extensions.
  { header: 'Auth-SMTP-Helo', name: 'helo', kind: 'text', max: 1024, group: 'smtp' },
  { header: 'Auth-SMTP-From', name: 'from', kind: 'text', max: 1024, group: 'smtp' },
  { header: 'Auth-SMTP-To', name: 'to', kind: 'text', max: 1024, group: 'smtp' },
  { header: 'Auth-SSL', name: 'on', kind: 'on', max: 2, group: 'ssl' },
  { header: 'Auth-SSL-Protocol', name: 'protocol', kind: 'text', max: 32, group: 'ssl' },
  { header: 'Auth-SSL-Cipher', name: 'cipher', kind: 'text', max: 128, group: 'ssl' },
  // SUCCESS, NONE or FAILED:reason.
  { header: 'Auth-SSL-Verify', name: 'verify', kind: 'text', max: 512, group: 'ssl' },
  // Distinguished names: RFC 5280's upper bounds add up to a few hundred bytes.
  { header: 'Auth-SSL-Subject', name: 'subject', kind: 'text', max: 1024, group: 'ssl' },
  { header: 'Auth-SSL-Issuer', name: 'issuer', kind: 'text', max: 1024, group: 'ssl' },
  { header: 'Auth-SSL-Serial', name: 'serial', kind: 'text', max: 128, group: 'ssl' },
  { header: 'Auth-SSL-Fingerprint', name: 'fingerprint', kind: 'text', max: 128, group: 'ssl' },
  // A PEM certificate escaped (auth_http_pass_client_cert): an RSA-4096 one is about 2 KiB.
  { header: 'Auth-SSL-Cert', name: 'cert', kind: 'escaped', max: 8192, group: 'ssl' },
];
const BY_NAME = new Map(FIELDS.map((f) => [f.header.toLowerCase(), f]));
const SSL_FIELDS = FIELDS.filter((f) => f.group === 'ssl' && f.kind !== 'on');
/** An auth_http_header line: a shared secret, a site name. */
const MAX_EXTRA_VALUE = 1024;

/** Node's req.rawHeaders ([name, value, name, value, …]) as the pairs decodeNginxAuthRequest takes. */
export function headerPairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string]);
  return out;
}

/** ngx_escape_uri's mail_auth table: 00–20 and "%". */
function mustEscape(b: number): boolean {
  return b <= 0x20 || b === 0x25;
}

function hexValue(c: number): number {
  return c >= 48 && c <= 57 ? c - 48 : c >= 65 && c <= 70 ? c - 55 : c >= 97 && c <= 102 ? c - 87 : -1;
}

/** %XX back to bytes; a raw byte nginx would have escaped, or a broken escape, is refused. */
function unescape(header: string, v: string): Buffer {
  const out = Buffer.allocUnsafe(v.length);
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c === 0x25) {
      const hi = hexValue(v.charCodeAt(i + 1));
      const lo = hexValue(v.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) fail('DOORMAN_ERR_NGINX_ESCAPE', header, `a "%" at ${i} is not followed by two hex digits`);
      out[n++] = hi * 16 + lo;
      i += 2;
    } else if (mustEscape(c) || c > 0xff) fail('DOORMAN_ERR_NGINX_ESCAPE', header, `byte ${c.toString(16)} at ${i} should have been escaped`);
    else out[n++] = c;
  }
  return out.subarray(0, n);
}

function escape(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += mustEscape(b) ? `%${b < 16 ? '0' : ''}${b.toString(16).toUpperCase()}` : String.fromCharCode(b);
  return s;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A header value as Node gives it (one latin1 char per byte), as UTF-8 text; control characters are refused, as Node's parser refuses them. */
function text(header: string, v: string, fatal: boolean): string {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f || c > 0xff) fail('DOORMAN_ERR_NGINX_VALUE', header, `control or non-byte character ${c.toString(16)} at ${i}`);
  }
  const bytes = Buffer.from(v, 'latin1');
  try {
    return fatal ? utf8.decode(bytes) : bytes.toString('utf8');
  } catch {
    return fail('DOORMAN_ERR_NGINX_VALUE', header, 'not UTF-8');
  }
}

function decimal(header: string, v: string, digits: number, min: number, max: number): number {
  if (v.length === 0 || v.length > digits || !/^(0|[1-9][0-9]*)$/.test(v) || Number(v) < min || Number(v) > max) {
    fail('DOORMAN_ERR_NGINX_VALUE', header, `expected a number from ${min} to ${max}, got ${JSON.stringify(v.slice(0, 16))}`);
  }
  return Number(v);
}

function oneOf<T extends string>(header: string, v: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(v)) fail('DOORMAN_ERR_NGINX_VALUE', header, `expected one of ${allowed.join(', ')}, got ${JSON.stringify(v.slice(0, 16))}`);
  return v as T;
}

function decodeField(f: Field, v: string): string | number | NginxPassword {
  switch (f.kind) {
    case 'text':
      return text(f.header, v, false);
    case 'escaped': {
      const bytes = unescape(f.header, v);
      if (f.name === 'user' && bytes.length > MAX_USER_BYTES) fail('DOORMAN_ERR_NGINX_TOO_LONG', f.header, `${bytes.length} bytes, at most ${MAX_USER_BYTES}`);
      try {
        return utf8.decode(bytes);
      } catch {
        return fail('DOORMAN_ERR_NGINX_VALUE', f.header, 'not UTF-8');
      }
    }
    case 'secret': {
      const bytes = unescape(f.header, v);
      if (bytes.length > MAX_PASSWORD_BYTES) fail('DOORMAN_ERR_NGINX_TOO_LONG', f.header, `${bytes.length} bytes, at most ${MAX_PASSWORD_BYTES}`);
      const p = new NginxPassword(bytes);
      bytes.fill(0);
      return p;
    }
    case 'attempt':
      return decimal(f.header, v, MAX_ATTEMPT_DIGITS, 1, 10 ** MAX_ATTEMPT_DIGITS - 1);
    case 'port':
      return decimal(f.header, v, 5, 0, 65535);
    case 'ip': {
      const ip = parseIp(v);
      if (ip === null) fail('DOORMAN_ERR_NGINX_VALUE', f.header, `not an IP address: ${JSON.stringify(v.slice(0, 64))}`);
      return formatIp(ip);
    }
    case 'method':
      return oneOf(f.header, v, NGINX_AUTH_METHODS);
    case 'protocol':
      return oneOf(f.header, v, NGINX_MAIL_PROTOCOLS);
    case 'on':
      return oneOf(f.header, v, ['on']);
  }
}

export interface HttpRequestParts {
  readonly method: string;
  /** The request target (req.url). */
  readonly path: string;
  /** Name and value pairs as Node gives them (headerPairs(req.rawHeaders)); names are matched without regard to case. */
  readonly headers: Iterable<readonly [string, string]>;
}

/** Decodes the request nginx sent; anything nginx would not send is a NginxAuthError naming the header. */
export function decodeNginxAuthRequest(req: HttpRequestParts): NginxAuthRequest {
  if (req.method !== 'GET') fail('DOORMAN_ERR_NGINX_METHOD', null, `nginx asks with GET, got ${JSON.stringify(req.method.slice(0, 16))}`);
  if (!req.path.startsWith('/')) fail('DOORMAN_ERR_NGINX_VALUE', null, 'the request target is not a path');
  const got = new Map<Field, string | number | NginxPassword>();
  const extra = new Map<string, string>();
  let count = 0;
  let bytes = 0;
  for (const [rawName, value] of req.headers) {
    const name = rawName.toLowerCase();
    if (++count > MAX_HEADERS) fail('DOORMAN_ERR_NGINX_TOO_MANY', null, `more than ${MAX_HEADERS} headers`);
    bytes += name.length + value.length + 4;
    if (bytes > MAX_REQUEST_BYTES) fail('DOORMAN_ERR_NGINX_TOO_MANY', rawName, `the headers pass ${MAX_REQUEST_BYTES} bytes`);
    const f = BY_NAME.get(name);
    if (f !== undefined ? got.has(f) : extra.has(name)) fail('DOORMAN_ERR_NGINX_DUPLICATE', f?.header ?? rawName, 'sent twice');
    const max = f?.max ?? MAX_EXTRA_VALUE;
    if (value.length > max) fail('DOORMAN_ERR_NGINX_TOO_LONG', f?.header ?? rawName, `${value.length} bytes, at most ${max}`);
    if (f === undefined) extra.set(name, text(rawName, value, false));
    else got.set(f, decodeField(f, value));
  }
  for (const f of FIELDS) if (f.required && !got.has(f)) fail('DOORMAN_ERR_NGINX_MISSING', f.header, 'missing');
  const group = (g: Group): Map<string, string | number> | null => {
    const fields = FIELDS.filter((f) => f.group === g);
    const present = fields.filter((f) => got.has(f));
    if (present.length === 0) return null;
    if (g !== 'ssl' && present.length !== fields.length) fail('DOORMAN_ERR_NGINX_MISSING', (fields.find((f) => !got.has(f)) as Field).header, `sent without the rest of ${fields.map((f) => f.header).join(', ')}`);
    if (g === 'ssl' && !got.has(BY_NAME.get('auth-ssl') as Field)) fail('DOORMAN_ERR_NGINX_MISSING', 'Auth-SSL', `${(present[0] as Field).header} sent without it`);
    return new Map(present.map((f) => [f.name, got.get(f) as string | number]));
  };
  const value = (header: string) => got.get(BY_NAME.get(header) as Field);
  const method = value('auth-method') as NginxAuthMethod;
  const protocol = value('auth-protocol') as NginxMailProtocol;
  const smtp = group('smtp');
  if ((method === 'none') !== (smtp !== null)) fail('DOORMAN_ERR_NGINX_MISSING', 'Auth-SMTP-Helo', 'the Auth-SMTP headers come with Auth-Method none, and only with it');
  if (method === 'none' && protocol !== 'smtp') fail('DOORMAN_ERR_NGINX_VALUE', 'Auth-Method', `none is for smtp, not ${protocol}`);
  const proxy = group('proxy');
  const ssl = group('ssl');
  const opt = (header: string) => (value(header) as string | undefined) ?? null;
  return Object.freeze({
    path: req.path,
    host: opt('host'),
    method,
    user: value('auth-user') as string,
    password: value('auth-pass') as NginxPassword,
    salt: opt('auth-salt'),
    protocol,
    loginAttempt: value('auth-login-attempt') as number,
    clientIp: value('client-ip') as string,
    clientHost: opt('client-host'),
    proxyProtocol: proxy && Object.freeze({ addr: proxy.get('addr') as string, port: proxy.get('port') as number, serverAddr: proxy.get('serverAddr') as string, serverPort: proxy.get('serverPort') as number }),
    smtp: smtp && Object.freeze({ helo: smtp.get('helo') as string, from: smtp.get('from') as string, to: smtp.get('to') as string }),
    ssl: ssl && (Object.freeze(Object.fromEntries(SSL_FIELDS.map((f) => [f.name, (ssl.get(f.name) as string | undefined) ?? null]))) as unknown as NginxSsl),
    extra,
  });
}

/**
 * The request nginx would send for `r`, in its order and spelling (tests,
 * benchmarks, fuzzing); values are one char per byte, as Node gives them.
 */
export function encodeNginxAuthRequest(r: NginxAuthRequest): { method: 'GET'; path: string; headers: Array<[string, string]> } {
  const headers: Array<[string, string]> = [];
  for (const f of FIELDS) {
    const v = fieldOf(r, f);
    if (v === null) continue;
    const wire =
      f.kind === 'secret' ? escape(passwords.get(v as NginxPassword) as Buffer)
      : f.kind === 'escaped' ? escape(Buffer.from(v as string, 'utf8'))
      : f.kind === 'text' ? Buffer.from(v as string, 'utf8').toString('latin1')
      : String(v);
    headers.push([f.header, encodable(f.header, wire, f.max, (w) => decodeField(f, w))]);
  }
  for (const [name, v] of r.extra) {
    if (BY_NAME.has(name) || !/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) fail('DOORMAN_ERR_NGINX_ENCODE', name, 'not a name for an extra header');
    headers.push([name, encodable(name, Buffer.from(v, 'utf8').toString('latin1'), MAX_EXTRA_VALUE, (w) => text(name, w, false))]);
  }
  return { method: 'GET', path: r.path, headers };
}

/** `wire`, if it survives an HTTP parser (which trims blanks at either end) and decodes back; else DOORMAN_ERR_NGINX_ENCODE. */
function encodable(header: string, wire: string, max: number, decode: (w: string) => unknown): string {
  if (wire.length > max || /^[ \t]|[ \t]$/.test(wire)) fail('DOORMAN_ERR_NGINX_ENCODE', header, 'does not fit in a header');
  try {
    decode(wire);
  } catch (err) {
    if (!(err instanceof NginxAuthError)) throw err;
    fail('DOORMAN_ERR_NGINX_ENCODE', header, err.message);
  }
  return wire;
}

function fieldOf(r: NginxAuthRequest, f: Field): string | number | NginxPassword | null {
  switch (f.group) {
    case 'base':
      return (r as unknown as Record<string, string | number | NginxPassword | null>)[f.name] ?? null;
    case 'proxy':
      return r.proxyProtocol?.[f.name as 'addr'] ?? null;
    case 'smtp':
      return r.smtp?.[f.name as 'helo'] ?? null;
    case 'ssl':
      return r.ssl === null ? null : f.kind === 'on' ? 'on' : r.ssl[f.name as keyof NginxSsl];
  }
}
