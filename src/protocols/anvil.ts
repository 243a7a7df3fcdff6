/**
 * Postfix's anvil protocol (anvil(8), src/global/anvil_clnt.c), over the plain
 * attribute encoding of ./attr-plain.ts.
 *
 * On accept the server announces itself, and the client waits for it:
 *     protocol=anvil_protocol LF LF
 * Then, one at a time, the client sends
 *     request=NAME LF ident=SERVICE:ADDRESS LF LF
 * in exactly that order (Postfix's anvil drops a client that sends ident
 * first), and the server answers with the attributes REPLY_FIELDS[NAME] lists,
 * in that order. Numbers go out as C's %u prints an int, so the failure status
 * -1 is sent as 4294967295; the client reads them back with %u.
 *
 * Seen from Postfix 3.7.11's smtpd (Debian 12), byte for byte:
 *     request=connect\nident=127.0.0.1:12525:127.0.0.1\n\n
 *     request=message\nident=127.0.0.1:12525:127.0.0.1\n\n   (at MAIL FROM)
 *     request=recipient\nident=...\n\n                       (at RCPT TO)
 *     request=disconnect\nident=...\n\n
 * An unknown request name gets `status=4294967295\n\n` and the connection
 * stays open, as Postfix's anvil does.
 *
 * Postfix 3.8–3.11 speak the same protocol (only the idents changed: see
 * ../core/postfix-ranges.ts). The 3.12 development line adds `tlstr`
 * (snapshot 20260514): smtpd, smtp and tlsproxy ask it before writing a TLS
 * trace file, always with the ident `any:any`, and read `status, rate`;
 * `tls_trace_rate_limit` (default 1) is compared with the rate. Its
 * anvil_clnt_lookup() reads a `tlstr` after `auth`, which this table sends;
 * 3.12's own anvil sends `auth` twice there instead (the second holding the
 * tlstr rate), and no Postfix program calls lookup.
 *
 * One table drives both directions (server encode, client decode) so the two
 * cannot drift apart.
 */
import { ProtocolError } from '../errors.js';
import type { AttrLimits } from './attr-plain.js';

export const ANVIL_GREETING = 'protocol=anvil_protocol\n\n';

/** Reply attributes for every request, in wire order. */
export const REPLY_FIELDS = {
  connect: ['status', 'count', 'rate'],
  disconnect: ['status'],
  message: ['status', 'rate'],
  recipient: ['status', 'rate'],
  newtls: ['status', 'rate'],
  newtls_status: ['status', 'rate'],
  auth: ['status', 'rate'],
  tlstr: ['status', 'rate'],
  lookup: ['status', 'count', 'rate', 'mail', 'rcpt', 'newtls', 'auth', 'tlstr'],
} as const;

export type AnvilRequestName = keyof typeof REPLY_FIELDS;
export type AnvilReplyField<R extends AnvilRequestName> = (typeof REPLY_FIELDS)[R][number];
export type AnvilReply<R extends AnvilRequestName> = { [K in AnvilReplyField<R>]: number };

export const ANVIL_STAT_OK = 0;
export const ANVIL_STAT_FAIL = -1;

/**
 * Caps for one anvil client. An ident is SERVICE ":" ADDRESS: a master.cf
 * service name (at most a host:port) and an IP address, well under 300 bytes;
 * 1024 leaves room for odd service names without letting a client make us
 * buffer much. A request has exactly two attributes.
 */
export const ANVIL_LIMITS: AttrLimits = { maxLine: 1024, maxAttrs: 2, maxBlock: 2100 };

export function isAnvilRequest(name: string): name is AnvilRequestName {
  return Object.prototype.hasOwnProperty.call(REPLY_FIELDS, name);
}

/** A decoded request. `request` may be a name the table does not know: that is answered, not fatal. */
export interface AnvilRequest {
  readonly request: string;
  readonly ident: string;
}

/** Decodes one request block; anything but `request=…` then `ident=…` is a ProtocolError. */
export function decodeAnvilRequest(attrs: readonly string[]): AnvilRequest {
  if (attrs.length !== 4 || attrs[0] !== 'request' || attrs[2] !== 'ident') {
    const names = attrs.filter((_, i) => i % 2 === 0).join(',') || '(none)';
    throw new ProtocolError('DOORMAN_ERR_ANVIL_REQUEST', `expected attributes request,ident; got ${names}`);
  }
  return { request: attrs[1] as string, ident: attrs[3] as string };
}

export function encodeAnvilRequest(request: string, ident: string): string {
  if (/[\n\0]/.test(request) || /[\n\0]/.test(ident)) {
    throw new ProtocolError('DOORMAN_ERR_ATTR_ENCODE', 'request or ident contains LF or NUL');
  }
  return `request=${request}\nident=${ident}\n\n`;
}

/** C's `%u` of an int: -1 becomes 4294967295. */
function u32(n: number): number {
  return n >>> 0;
}

/** Encodes a reply from the table. Values are integers; a missing field is a bug, so it throws. */
export function encodeAnvilReply<R extends AnvilRequestName>(request: R, values: AnvilReply<R>): string {
  const fields = REPLY_FIELDS[request] as readonly AnvilReplyField<R>[];
  let out = '';
  for (const f of fields) {
    const v = values[f];
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`anvil reply field ${f} is not an integer`);
    out += `${f}=${u32(v)}\n`;
  }
  return out + '\n';
}

/** What Postfix's anvil sends for a request name it does not know. */
export const ANVIL_FAIL_REPLY = `status=${u32(ANVIL_STAT_FAIL)}\n\n`;

/**
 * Decodes a reply to `request` (the client side: tests, benchmarks, `doorman`
 * tools). Field names and order must match the table; numbers are read as %u
 * and turned back into C ints, so status 4294967295 reads as -1. A lookup
 * reply from Postfix 3.7–3.11's anvil, which ends at auth, is taken with
 * tlstr 0.
 */
export function decodeAnvilReply<R extends AnvilRequestName>(request: R, attrs: readonly string[]): AnvilReply<R> {
  if (attrs.length === 2 && attrs[0] === 'status' && attrs[1] === String(u32(ANVIL_STAT_FAIL))) {
    throw new ProtocolError('DOORMAN_ERR_ANVIL_FAIL', `anvil answered status=fail to ${request}`);
  }
  const fields = REPLY_FIELDS[request] as readonly string[];
  const older = request === 'lookup' && attrs.length === (fields.length - 1) * 2;
  if (attrs.length !== fields.length * 2 && !older) {
    throw new ProtocolError('DOORMAN_ERR_ANVIL_REPLY', `reply to ${request} has ${attrs.length / 2} attributes, expected ${fields.length}`);
  }
  // An anvil before Postfix 3.12 ends lookup at auth: it keeps no tlstr rate, which reads as 0.
  const out: Record<string, number> = older ? { tlstr: 0 } : {};
  for (let i = 0; i < attrs.length / 2; i++) {
    const name = attrs[i * 2] as string;
    const raw = attrs[i * 2 + 1] as string;
    if (name !== fields[i]) throw new ProtocolError('DOORMAN_ERR_ANVIL_REPLY', `reply to ${request}: expected ${fields[i]}, got ${name}`);
    if (!/^[0-9]{1,10}$/.test(raw) || Number(raw) > 0xffffffff) {
      throw new ProtocolError('DOORMAN_ERR_ANVIL_REPLY', `reply to ${request}: ${name} is not a number: ${raw}`);
    }
    out[name] = Number(raw) | 0;
  }
  return out as AnvilReply<R>;
}

export { parseAnvilIdent, type AnvilIdent } from '../core/anvil-ident.js';
