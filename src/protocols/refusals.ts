/**
 * What the guard proxy says when it turns a client away or closes it, in
 * each mail protocol's own words, before the real server is touched. No I/O.
 *
 *   SMTP   421 4.7.0 <host> text    temporary (RFC 5321 4.2.3: closing the channel)
 *          521 5.7.1 <host> text    permanent (RFC 7504: does not accept mail)
 *   POP3   -ERR [SYS/TEMP] text     temporary (RFC 3206)
 *          -ERR [SYS/PERM] text     permanent
 *   IMAP   * BYE [UNAVAILABLE] text temporary (RFC 5530)
 *          * BYE [CONTACTADMIN] text permanent (RFC 5530)
 *
 * The implicit-TLS ports (smtps, pop3s, imaps) expect a TLS handshake first:
 * a plain-text line would only be garbage to the client, so they get a close.
 *
 * A clear refusal that names the limit matters most for IMAP: clients open
 * several sessions by default, and one told "at most N" can warn its user and
 * use fewer instead of retrying in a loop.
 */
import type { RefusalCause } from '../core/decision.js';
import type { Protocol } from '../core/rules.js';

/** Why a client is refused, in the words a refusal text is chosen by. */
export const REFUSAL_KINDS = ['too_many', 'too_many_network', 'rate', 'banned', 'country', 'unavailable'] as const;
export type RefusalKind = (typeof REFUSAL_KINDS)[number];

/** The operator's own words per kind (`{limit}` filled in); null: the built-in ones. Filled from services.NAME.proxy.texts. */
export type RefusalTexts = { readonly [K in RefusalKind]: string | null };

export const IMPLICIT_TLS: ReadonlySet<Protocol> = new Set<Protocol>(['smtps', 'pop3s', 'imaps']);

type Family = 'smtp' | 'pop3' | 'imap';

function family(p: Protocol): Family {
  return p === 'pop3' || p === 'pop3s' ? 'pop3' : p === 'imap' || p === 'imaps' ? 'imap' : 'smtp';
}

const COMMON: Record<RefusalKind, string> = {
  too_many: 'Too many connections from your address (at most {limit} at once), try again later',
  too_many_network: 'Too many connections from your network (at most {limit} at once), try again later',
  rate: 'Too many connections from your address in a short time (at most {limit} a minute), try again later',
  banned: 'Your address is temporarily blocked, try again later',
  country: 'Access from your country is not allowed',
  unavailable: 'Service temporarily unavailable, try again later',
};

/** The built-in texts; SMTP's connection-limit line is the one mail administrators know. */
export const DEFAULT_TEXTS: Readonly<Record<Family, Record<RefusalKind, string>>> = {
  smtp: { ...COMMON, too_many: 'Too many connections from your address, try again later' },
  pop3: COMMON,
  imap: COMMON,
};

/** Which text a refusal's cause calls for. */
export function refusalKindOf(cause: RefusalCause): RefusalKind {
  switch (cause) {
    case 'ban':
      return 'banned';
    case 'connections_per_address':
      return 'too_many';
    case 'connections_per_prefix':
      return 'too_many_network';
    case 'connection_rate':
      return 'rate';
    case 'country':
      return 'country';
    default:
      return 'unavailable';
  }
}

/**
 * The text for `kind`: the configured one or the built-in, with `{limit}`
 * replaced (and a "(… {limit} …)" aside dropped when no limit is known).
 */
export function refusalText(protocol: Protocol, kind: RefusalKind, texts: RefusalTexts | null, limit: number | null): string {
  const t = texts?.[kind] ?? DEFAULT_TEXTS[family(protocol)][kind];
  if (limit !== null) return t.replaceAll('{limit}', String(limit));
  return t.replace(/ ?\([^()]*\{limit\}[^()]*\)/g, '').replaceAll('{limit}', 'the limit');
}

/** The bytes that refuse a client before its session starts; null where only a close will do (implicit TLS). */
export function refusalLine(protocol: Protocol, temporary: boolean, text: string, host: string): Buffer | null {
  if (IMPLICIT_TLS.has(protocol)) return null;
  switch (family(protocol)) {
    case 'smtp':
      return Buffer.from(temporary ? `421 4.7.0 ${host} ${text}\r\n` : `521 5.7.1 ${host} ${text}\r\n`, 'latin1');
    case 'pop3':
      return Buffer.from(temporary ? `-ERR [SYS/TEMP] ${text}\r\n` : `-ERR [SYS/PERM] ${text}\r\n`, 'latin1');
    case 'imap':
      return Buffer.from(temporary ? `* BYE [UNAVAILABLE] ${text}\r\n` : `* BYE [CONTACTADMIN] ${text}\r\n`, 'latin1');
  }
}

/**
 * The goodbye to a session closed by the operator (a kick), sent between the
 * server's lines while the session is still plain text; null where it cannot
 * be sent (implicit TLS).
 */
export function goodbyeLine(protocol: Protocol, host: string, text = 'Connection closed by the administrator'): Buffer | null {
  return refusalLine(protocol, true, text, host);
}
