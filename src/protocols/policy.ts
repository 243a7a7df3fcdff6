/**
 * Postfix's SMTP access policy delegation protocol (SMTPD_POLICY_README), over
 * the plain attribute encoding of ./attr-plain.ts.
 *
 * smtpd sends one request at a time on a persistent connection:
 *     request=smtpd_access_policy LF protocol_state=RCPT LF ... LF LF
 * and the server answers one line and an empty line:
 *     action=DUNNO LF LF
 * Postfix adds attributes from release to release (3.7 sends about thirty,
 * most of them often empty), so names we do not use are accepted and kept;
 * what is not accepted: no `request`, a request other than
 * smtpd_access_policy, the same attribute twice, or anything over the caps.
 *
 * Seen from Postfix 3.7.11's smtpd: with smtpd_delay_reject = no it asks at
 * CONNECT; after XCLIENT it asks again with protocol_state=XCLIENT and the
 * new client_address, which a server must treat like CONNECT.
 */
import { ProtocolError } from '../errors.js';
import type { AttrLimits } from './attr-plain.js';

/**
 * A line carries one attribute; sender and recipient addresses are at most
 * a few hundred bytes, certificate subjects more: 4 KiB, as smtp-server caps a
 * command line. 64 attributes leaves twice what Postfix sends today; a
 * request of 32 KiB is far past any real one.
 */
export const POLICY_LIMITS: AttrLimits = { maxLine: 4096, maxAttrs: 64, maxBlock: 32 * 1024 };

export const POLICY_STATES = ['CONNECT', 'EHLO', 'HELO', 'MAIL', 'RCPT', 'DATA', 'END-OF-MESSAGE', 'VRFY', 'ETRN', 'XCLIENT'] as const;

/** A decoded request: its attributes by name. */
export type PolicyRequest = ReadonlyMap<string, string>;

export function decodePolicyRequest(attrs: readonly string[]): PolicyRequest {
  const m = new Map<string, string>();
  for (let i = 0; i < attrs.length; i += 2) {
    const name = attrs[i] as string;
    if (m.has(name)) throw new ProtocolError('DOORMAN_ERR_POLICY_DUPLICATE', `attribute ${name} sent twice`);
    m.set(name, attrs[i + 1] as string);
  }
  const request = m.get('request');
  if (request === undefined) throw new ProtocolError('DOORMAN_ERR_POLICY_REQUEST', 'no request attribute');
  if (request !== 'smtpd_access_policy') throw new ProtocolError('DOORMAN_ERR_POLICY_REQUEST', `unknown request ${JSON.stringify(request.slice(0, 64))}`);
  return m;
}

/**
 * Encodes the answer. An action is one line of text; anything that would
 * break the framing (LF, CR, NUL) is replaced, because the reason texts in
 * actions carry client-supplied strings.
 */
export function encodePolicyAction(action: string): string {
  // eslint-disable-next-line no-control-regex
  return `action=${action.replace(/[\r\n\0]/g, ' ')}\n\n`;
}

/** Builds a request (tests, benchmarks). */
export function encodePolicyRequest(attrs: Readonly<Record<string, string>>): string {
  let out = 'request=smtpd_access_policy\n';
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'request') continue;
    // An empty name would go out as "=value", which every reader refuses (DOORMAN_ERR_ATTR_NO_NAME).
    if (k === '' || /[=\n\0]/.test(k) || /[\n\0]/.test(v)) throw new ProtocolError('DOORMAN_ERR_ATTR_ENCODE', `cannot encode attribute ${JSON.stringify(k)}`);
    out += `${k}=${v}\n`;
  }
  return out + '\n';
}
